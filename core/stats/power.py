"""Simulation-based power for one fixed effect of a linear mixed model, as R's simr computes it.

The method of ``simr::powerSim`` / ``powerCurve`` (Green & MacLeod, 2016) with lme4's simulation
and lmerTest's test (Kuznetsova et al., 2017), for any model ``python -m core fit`` accepts:

1. **Fit** the model by REML on the data (:func:`core.stats.formula.fit_formula`: the rows the formula
   can use, lme4's ``na.omit``; lme4's column names and dropped collinear columns).
   The generating model is that fit: its fixed effects ``β`` (the tested one set to the chosen
   effect, or left at its estimate), its relative covariance factor ``θ`` and residual SD ``σ``.
2. **Design for N patients.** The patients of the rows used, in the order of the file; N ≤
   observed: the first N; N > observed: patients recycled in that order as new patients (simr's
   ``extend(along = "patient")``), each copy with every session of its original. The derived
   variables (``time``, ``m_between``, ``m_within``) are recomputed on the design, whose rows are
   again those the formula can use; its model matrices come from :mod:`core.stats.formula` as the
   fit's did (a design whose fixed-effect columns differ from the fit's is refused in words).
3. **Simulate** the outcome on the design from the generating model: new random effects for every
   group, ``y = Xβ + Zb + e`` with ``b = σΛ(θ)u``, ``u ~ N(0, I)``, ``e ~ N(0, σ²I)`` (lme4's
   ``simulate``); **refit** by REML; **test** the term as simr does by default for an lmer fixed
   effect, by Kenward–Roger (pbkrtest's ``KRmodcomp``; ``test="kr"``), or with the Satterthwaite
   t-test (lmerTest's ``summary``; ``test="satterthwaite"``). A refit that raises or gives no finite
   p counts as failed, as in simr; singular refits are counted (``n_singular``), not failed.
4. **Power** = significant / (nsim − failed) (simr's), with the exact Clopper–Pearson 95%
   interval (``binom.test``, which simr's ``confint`` uses).

**Seeds.** Simulation *i* for *N* patients draws every number from
``numpy.random.default_rng([seed, N, i])`` (:func:`core.stats.power_sim.simulation_rng`), so the
result is the same on one process, on all cores, or on a Dask cluster, however the simulations
are cut into chunks (:mod:`core.stats.power_run`).

**Observed power.** Power computed at the *observed* effect is a function of the p-value and says
nothing beyond it (Hoenig & Heisey, 2001); plan with the smallest effect of interest.

References: Green, P., & MacLeod, C. J. (2016). SIMR: an R package for power analysis of
generalized linear mixed models by simulation. *Methods in Ecology and Evolution*, 7, 493–498.
Hoenig, J. M., & Heisey, D. M. (2001). The abuse of power. *The American Statistician*, 55, 19–24.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from core.errors import ModelError
from core.i18n import N_, _, ngettext
from core.stats.power_run import LocalRunner, Progress, Runner
from core.stats.power_sim import SimulationDesign, template_model

PATIENT = "patient"
DEFAULT_NSIM = 1000
DEFAULT_ALPHA = 0.05
DEFAULT_SEED = 1
#: The tests of the simulated fits: Kenward–Roger (simr's default for an lmer fixed effect) or Satterthwaite.
TESTS = ("kr", "satterthwaite")
DEFAULT_TEST = "kr"
TEST_NAMES = {"kr": N_("Kenward–Roger's F test (pbkrtest), simr's default"),
              "satterthwaite": N_("Satterthwaite's t-test (lmerTest)")}

#: The warning on observed power (English; translate where shown: ``_(HOENIG_HEISEY)``).
HOENIG_HEISEY = N_("Power computed at the observed effect is a restatement of the p-value and says nothing "
                   "beyond it (Hoenig & Heisey, 2001). Plan with the smallest effect that would matter "
                   "clinically instead.")


# ----------------------------------------------------------------------------------------------
# The model: core.stats.formula builds every model frame and design of the project (names, derived
# variables, types, lme4's na.omit, collinear columns dropped); power uses it for the data and for
# every design, and simulates from its REML fit.
# ----------------------------------------------------------------------------------------------

def fit_model(data: pd.DataFrame, formula: str, *, role_headers: dict[str, str] | None = None,
              cell_reasons: pd.DataFrame | None = None):
    """The REML fit of ``formula`` on validated ``data`` (:func:`core.stats.formula.fit_formula`).

    By the mixedlm engine: its θ, β and σ generate the simulated outcomes, which the power tests
    reproduce bit for bit, and every refit is mixedlm's (the profiled engine agrees to about 1e-8,
    not to the last bit)."""
    from core.stats.formula import fit_formula

    return fit_formula(data, formula, ml=False, role_headers=role_headers, cell_reasons=cell_reasons,
                       engine="mixedlm")


def fixed_effects(data: pd.DataFrame, formula: str, *, role_headers: dict[str, str] | None = None,
                  cell_reasons: pd.DataFrame | None = None) -> pd.DataFrame:
    """The REML fixed effects of ``formula`` on ``data`` (``term, estimate, se, df, p``; Satterthwaite),
    to choose the term and see its estimate before planning."""
    fit = fit_model(data, formula, role_headers=role_headers, cell_reasons=cell_reasons)
    return fit.fixed[["term", "estimate", "se", "df", "p"]].reset_index(drop=True)


def design_frame(data: pd.DataFrame, formula, *, role_headers: dict[str, str] | None = None) -> pd.DataFrame:
    """The model frame of ``formula`` on ``data`` (derived variables computed on ``data`` itself;
    the rows the formula can use)."""
    from core.stats.formula import build_model_frame

    return build_model_frame(data, formula, role_headers=role_headers).data


def design_matrices(data: pd.DataFrame, fit, n_patients: int, *, role_headers: dict[str, str] | None = None):
    """mixedlm model matrices (no data frame) of the design ``data`` for ``n_patients`` patients,
    built as the fit's: same fixed-effect columns and random-effect structure, else a plain refusal."""
    import mixedlm

    from core.stats.formula import build_design, build_model_frame, check_design, engine_inputs

    try:
        # poly() terms in the fit's basis (R's predict with the fitted coefs), so β means the same
        frame = build_model_frame(data, fit.frame.formula, role_headers=role_headers, poly_coefs=fit.frame.poly_coefs)
        design = build_design(frame)
        check_design(design)
    except ModelError as err:
        raise ModelError(_("With {n} patients the model cannot be fitted: {reason}").format(
            n=n_patients, reason=str(err))) from None
    if design.names != fit.design.names:
        lost = [_label(n) for n in fit.design.names if n not in design.names] or \
            [_label(n) for n in design.names if n not in fit.design.names]
        raise ModelError(_("With {n} patients the model's fixed effects differ from those of the data "
                           "({terms}: a level missing from the first {n} patients, or a column that becomes "
                           "collinear); choose more patients.").format(n=n_patients, terms=", ".join(lost)))
    engine_data, engine_formula = engine_inputs(design)
    if engine_formula != fit.engine_formula:
        raise ModelError(_("With {n} patients the random effects are ordered differently from the data's (a "
                           "grouping factor with more levels than patients); choose more patients.").format(
            n=n_patients))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = mixedlm.lFormula(engine_formula, engine_data, REML=True)
    return replace(parsed.matrices, frame=None), frame

# ----------------------------------------------------------------------------------------------


def patient_order(data: pd.DataFrame) -> list[str]:
    """Patients in the order of the file (first appearance; by spreadsheet ``row`` when present)."""
    ordered = data.sort_values("row", kind="stable") if "row" in data.columns else data
    return list(pd.unique(ordered[PATIENT].astype(str)))


def design_data(data: pd.DataFrame, n_patients: int, order: list[str]) -> pd.DataFrame:
    """The data of a study with ``n_patients`` patients (before the derived variables).

    The first ``n_patients`` of ``order``; beyond ``len(order)`` the patients are recycled in
    that order as new patients named ``"<id>#2"``, ``"<id>#3"`` … (every row of the original
    copied, simr's ``extend`` along patient).

    >>> d = pd.DataFrame({"patient": ["a", "a", "b"], "session": [1, 2, 1]})
    >>> design_data(d, 3, ["a", "b"])["patient"].tolist()
    ['a', 'a', 'b', 'a#2', 'a#2']
    """
    if n_patients < 1:
        raise ModelError(_("The number of patients must be at least 1."))
    rows = data.groupby(data[PATIENT].astype(str), sort=False).indices
    positions, labels = [], []
    for i in range(n_patients):
        pid = order[i % len(order)]
        copy = i // len(order)
        idx = rows[pid]
        positions.append(idx)
        labels.extend([pid if copy == 0 else f"{pid}#{copy + 1}"] * len(idx))
    out = data.iloc[np.concatenate(positions)].reset_index(drop=True)
    out[PATIENT] = labels
    return out


def resolve_term(names: list[str], term: str) -> str:
    """The fixed-effect column ``term`` names: ``intercept`` is ``(Intercept)``, and an
    interaction may list its parts in any order (``within:between``)."""
    if term in names:
        return term
    if term.strip().lower() == "intercept" and "(Intercept)" in names:
        return "(Intercept)"
    parts = sorted(p.strip() for p in term.split(":"))
    matches = [n for n in names if sorted(n.split(":")) == parts]
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join("intercept" if n == "(Intercept)" else n for n in names)
    raise ModelError(_("The model has no fixed effect '{term}'; its fixed effects are: {shown}.").format(
        term=term, shown=shown))


@dataclass(frozen=True)
class PowerPoint:
    """Power for one number of patients: ``power`` = significant / (nsim − n_failed) with its
    Clopper–Pearson 95% interval (None when every simulation failed)."""

    n_patients: int
    n_observations: int
    power: float | None
    ci_low: float | None
    ci_high: float | None
    nsim: int
    n_failed: int
    n_significant: int
    mean_estimate: float | None
    n_singular: int = 0


@dataclass(frozen=True)
class PowerAnalysis:
    """A power curve: the model, the term, the effect simulated, and one point per N."""

    formula: str
    term: str
    effect: float
    observed: float
    observed_se: float
    alpha: float
    seed: int
    nsim: int
    n_patients_observed: int
    n_observations: int
    points: tuple[PowerPoint, ...]
    engine: str
    seconds: float
    p_values: dict[int, np.ndarray] = field(repr=False, default_factory=dict)
    excluded: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    test: str = DEFAULT_TEST

    @property
    def at_observed_effect(self) -> bool:
        """The simulations used the estimate itself (observed power: see Hoenig & Heisey)."""
        return math.isclose(self.effect, self.observed, rel_tol=1e-12, abs_tol=1e-15)

    def table(self) -> pd.DataFrame:
        """One row per N: ``n_patients, n_observations, power, ci_low, ci_high, nsim, n_failed``."""
        return pd.DataFrame([{k: getattr(p, k) for k in ("n_patients", "n_observations", "power", "ci_low",
                                                           "ci_high", "nsim", "n_failed", "n_significant",
                                                           "n_singular")}
                             for p in self.points])

    def smallest_n(self, target: float = 0.8) -> int | None:
        """The smallest N of the curve whose power reaches ``target`` (None if none does)."""
        hits = [p.n_patients for p in self.points if p.power is not None and p.power >= target]
        return min(hits) if hits else None

    def report(self) -> dict:
        """The contract's keys (``term, effect, observed, alpha, power.<N>``) and a few more."""
        return {
            "formula": self.formula, "term": self.term, "effect": self.effect, "observed": self.observed,
            "observed_se": self.observed_se, "alpha": self.alpha, "seed": self.seed, "nsim": self.nsim,
            "test": self.test,
            "n_patients_observed": self.n_patients_observed, "n_observations": self.n_observations,
            "power": {str(p.n_patients): {"power": p.power, "ci_low": p.ci_low, "ci_high": p.ci_high,
                                          "nsim": p.nsim, "n_failed": p.n_failed,
                                          "n_significant": p.n_significant, "n_singular": p.n_singular,
                                          "n_observations": p.n_observations}
                      for p in self.points},
            "method": _(METHOD_TEXT).format(test=_(TEST_NAMES[self.test])),
            "methods_sentence": methods_sentence(self),
            "warnings": [_(HOENIG_HEISEY)] if self.at_observed_effect else [],
            "engine": self.engine, "seconds": self.seconds,
        }


#: The method in one paragraph (English; the report gives it in the current language).
METHOD_TEXT = N_("simr's method (Green & MacLeod, 2016): the outcome simulated from the REML fit (fixed effects "
                 "with the tested one set to the effect, new random effects and residuals with the estimated "
                 "variances) on the design for N patients (the first N patients in file order, recycled as new "
                 "patients beyond the observed number, derived variables recomputed); each simulated data set "
                 "refitted by REML and the term tested with {test}; power = significant / "
                 "(simulations - failed fits), exact Clopper-Pearson 95% interval; singular refits counted, not "
                 "failed; simulation i for N patients seeded with numpy.random.default_rng([seed, N, i]).")


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for a binomial proportion, as R's ``binom.test``.

    >>> [round(x, 4) for x in clopper_pearson(37, 100)]
    [0.2756, 0.4724]
    """
    from scipy import stats

    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _label(term: str) -> str:
    return "intercept" if term == "(Intercept)" else term


def methods_sentence(result: PowerAnalysis) -> str:
    """The sentence a methods section needs (in the current language; numbers as it writes them)."""
    sizes = ", ".join(str(p.n_patients) for p in result.points)
    parts = []
    for p in result.points:
        if p.power is None:
            parts.append(_("N = {n}: no simulation could be fitted").format(n=str(p.n_patients)))
        else:
            parts.append(_("N = {n}: {power:.1f}% (95% CI {low:.1f}–{high:.1f}%)").format(
                n=str(p.n_patients), power=100 * p.power, low=100 * p.ci_low, high=100 * p.ci_high))
    effect = _("its estimate in the data") if result.at_observed_effect else _("the smallest effect of interest")
    failed = sum(p.n_failed for p in result.points)
    left_out = (" (" + ngettext("{n} simulation could not be fitted and was left out",
                                "{n} simulations could not be fitted and were left out", failed).format(n=str(failed))
                + ")") if failed else ""
    singular = sum(p.n_singular for p in result.points)
    if singular:
        left_out += " (" + ngettext("{n} refit was singular", "{n} refits were singular", singular).format(
            n=str(singular)) + ")"
    term = _("intercept") if result.term == "(Intercept)" else result.term
    test = _("Kenward–Roger's F test (pbkrtest)") if result.test == "kr" else _("Satterthwaite's t-test (lmerTest)")
    return _("Power to detect an effect of {term} of {effect:.4g} ({kind}; estimate in the data {observed:.4g}, "
             "SE {se:.3g}) at α = {alpha:g} was estimated by simulation, as in simr (Green & MacLeod, 2016): "
             "{nsim} data sets were simulated from the fitted model {formula} for {sizes} patients, refitted by "
             "REML, and the effect tested with {test}; power with exact 95% confidence "
             "intervals: {results}{left_out}. Seed {seed}.").format(
        term=term, effect=float(result.effect), kind=effect, observed=float(result.observed),
        se=float(result.observed_se), alpha=float(result.alpha), nsim=str(result.nsim), formula=result.formula,
        sizes=sizes, results="; ".join(parts), left_out=left_out, seed=str(result.seed), test=test)


def _design_key(formula: str, term: str, beta: np.ndarray, theta: np.ndarray, sigma: float, alpha: float,
                seed: int, n_patients: int, frame: pd.DataFrame) -> str:
    digest = hashlib.sha1(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(repr((formula, term, beta.tolist(), theta.tolist(), sigma, alpha, seed, n_patients)).encode())
    return digest.hexdigest()


def default_sizes(n_observed: int) -> list[int]:
    """Half, the observed number and double, as a first look."""
    return sorted({max(2, n_observed // 2), n_observed, 2 * n_observed})


def prepare(data: pd.DataFrame, formula: str, term: str, *, effect: float | None = None,
            patients: list[int] | None = None, seed: int = DEFAULT_SEED, alpha: float = DEFAULT_ALPHA,
            role_headers: dict[str, str] | None = None, cell_reasons: pd.DataFrame | None = None,
            test: str = DEFAULT_TEST):
    """Fit the model and build one :class:`SimulationDesign` per N (no simulation yet).

    Returns ``(designs, info)`` where ``info`` has ``term, effect, observed, observed_se,
    n_patients_observed, n_observations, excluded`` (the rows the model leaves out, with reasons).
    """
    if not 0 < alpha < 1:
        raise ModelError(_("The significance level must lie between 0 and 1 (for example 0.05)."))
    if seed < 0:
        raise ModelError(_("The seed must be a whole number of 0 or more."))
    if test not in TESTS:
        raise ModelError(_("The test must be kr (Kenward–Roger) or satterthwaite."))
    fit = fit_model(data, formula, role_headers=role_headers, cell_reasons=cell_reasons)
    names = list(fit.design.names)
    column = resolve_term(names, term)
    index = names.index(column)
    beta = np.asarray(fit.reml.beta, float).copy()
    observed = float(beta[index])
    observed_se = float(fit.fixed["se"].iloc[index])
    if effect is not None:
        if not np.isfinite(effect):
            raise ModelError(_("The effect must be a number."))
        beta[index] = float(effect)
    theta = np.asarray(fit.reml.theta, float)
    sigma = float(fit.reml.sigma)
    order = patient_order(fit.frame.data)
    source = data.loc[data[PATIENT].astype(str).isin(set(order))]
    sizes = sorted(set(patients or default_sizes(len(order))))
    if sizes[0] < 2:
        raise ModelError(_("A multilevel model needs at least 2 patients; choose numbers of patients of 2 or more."))
    designs = []
    for n in sizes:
        matrices, frame = design_matrices(design_data(source, n, order), fit, n, role_headers=role_headers)
        key = _design_key(formula, column, beta, theta, sigma, alpha, seed, n, frame.data) + test
        design = SimulationDesign(formula=fit.reml.formula, matrices=matrices,
                                  beta=tuple(beta.tolist()), theta=tuple(theta.tolist()), sigma=sigma,
                                  term=matrices.fixed_names[index], alpha=float(alpha), seed=int(seed),
                                  n_patients=int(n), key=key, test=test)
        template_model(design)  # fails here, in plain words, rather than in every worker
        if test == "kr" and len(matrices.random_structures) > 1:
            from core.stats.kenward_roger import MAX_DENSE

            if matrices.n_random > MAX_DENSE:  # every refit's test would fail
                raise ModelError(_("With {n} patients the Kenward–Roger test would need a dense computation over "
                                   "{q} random effects in every simulation, too large here; choose the "
                                   "Satterthwaite test (--test satterthwaite).").format(n=n, q=matrices.n_random))
        designs.append(design)
    info = {"term": column, "effect": float(beta[index]), "observed": observed, "observed_se": observed_se,
            "n_patients_observed": len(order), "n_observations": fit.n_observations, "excluded": fit.excluded}
    return designs, info


def power_analysis(data: pd.DataFrame, formula: str, term: str, *, effect: float | None = None,
                   patients: list[int] | None = None, nsim: int = DEFAULT_NSIM, seed: int = DEFAULT_SEED,
                   alpha: float = DEFAULT_ALPHA, runner: Runner | None = None,
                   progress: Progress | None = None, role_headers: dict[str, str] | None = None,
                   cell_reasons: pd.DataFrame | None = None, test: str = DEFAULT_TEST) -> PowerAnalysis:
    """Power of the test of ``term`` (``test``: ``"kr"``, Kenward–Roger as simr's default, or
    ``"satterthwaite"``) for each number of patients in ``patients``.

    ``data``: validated long data (``patient``, ``session``, the measures, other columns);
    ``formula``: lme4 notation with the names of ``python -m core fit``; ``effect``: the value of
    the term in the simulations (default: its estimate, i.e. observed power); ``runner``: where the
    simulations run (:class:`core.stats.power_run.LocalRunner` on this machine's cores by default,
    :class:`core.stats.power_run.DaskRunner` on a cluster); ``progress(done, total, seconds_left)``.
    See the module docstring for the method and the seeds.
    """
    if nsim < 1:
        raise ModelError(_("The number of simulations must be at least 1."))
    started = time.perf_counter()
    designs, info = prepare(data, formula, term, effect=effect, patients=patients, seed=seed, alpha=alpha,
                            role_headers=role_headers, cell_reasons=cell_reasons, test=test)
    runner = runner or LocalRunner()
    results = runner.run(designs, int(nsim), progress=progress)
    points, p_values = [], {}
    for design in designs:
        values = results[design.n_patients]
        p = values[:, 1]
        ok = np.isfinite(p)
        n_ok = int(ok.sum())
        hits = int((p[ok] < alpha).sum())
        low, high = clopper_pearson(hits, n_ok) if n_ok else (None, None)
        points.append(PowerPoint(n_patients=design.n_patients, n_observations=int(design.matrices.n_obs),
                                 power=hits / n_ok if n_ok else None, ci_low=low, ci_high=high, nsim=int(nsim),
                                 n_failed=int(nsim - n_ok), n_significant=hits,
                                 mean_estimate=float(values[ok, 0].mean()) if n_ok else None,
                                 n_singular=int(np.nansum(values[ok, 2])) if values.shape[1] > 2 else 0))
        p_values[design.n_patients] = p
    return PowerAnalysis(formula=formula, term=info["term"], effect=info["effect"], observed=info["observed"],
                         observed_se=info["observed_se"], alpha=float(alpha), seed=int(seed), nsim=int(nsim),
                         n_patients_observed=info["n_patients_observed"], n_observations=info["n_observations"],
                         points=tuple(points), engine=runner.describe(), seconds=time.perf_counter() - started,
                         p_values=p_values, excluded=info["excluded"], test=test)
