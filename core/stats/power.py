"""Simulation-based power for one fixed effect of a linear mixed model, as R's simr computes it.

The method of ``simr::powerSim`` / ``powerCurve`` (Green & MacLeod, 2016) with lme4's simulation
and lmerTest's test (Kuznetsova et al., 2017), for any model ``python -m core fit`` accepts:

1. **Fit** the model by REML on the data (the rows the formula can use, lme4's ``na.omit``).
   The generating model is that fit: its fixed effects ``β`` (the tested one set to the chosen
   effect, or left at its estimate), its relative covariance factor ``θ`` and residual SD ``σ``.
2. **Design for N patients.** The patients of the rows used, in the order of the file; N ≤
   observed: the first N; N > observed: patients recycled in that order as new patients (simr's
   ``extend(along = "patient")``), each copy with every session of its original. The derived
   variables (``time``, ``m_between``, ``m_within``) are recomputed on the design, whose rows are
   again those the formula can use.
3. **Simulate** the outcome on the design from the generating model: new random effects for every
   group, ``y = Xβ + Zb + e`` with ``b = σΛ(θ)u``, ``u ~ N(0, I)``, ``e ~ N(0, σ²I)`` (lme4's
   ``simulate``); **refit** by REML; **test** the term with the Satterthwaite t-test (lmerTest's
   ``summary``). A refit that raises or gives no finite p counts as failed, as in simr.
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
from core.stats.power_run import LocalRunner, Progress, Runner
from core.stats.power_sim import SimulationDesign, template_model

PATIENT = "patient"
DEFAULT_NSIM = 1000
DEFAULT_ALPHA = 0.05
DEFAULT_SEED = 1

HOENIG_HEISEY = ("Power computed at the observed effect is a restatement of the p-value and says nothing "
                 "beyond it (Hoenig & Heisey, 2001). Plan with the smallest effect that would matter "
                 "clinically instead.")


# ----------------------------------------------------------------------------------------------
# The model frame.
# ADAPTER, to be replaced by issue 12's formula module (core/stats/formula.py): the one place that
# builds a model frame from validated data and an lme4 formula (roles, time, m_between/m_within,
# other columns typed per the contract, lme4's na.omit, collinear columns dropped). Until it lands
# on main, power builds the frame here with the contract's rules for the derived variables.
# ----------------------------------------------------------------------------------------------

def _formula_variables(formula: str) -> tuple[str, list[str]]:
    """``(response, every variable the formula names)`` (mixedlm's parser)."""
    import mixedlm

    try:
        parsed = mixedlm.parse_formula(formula)
    except Exception as err:  # the parser raises several kinds; all mean "not a formula"
        raise ModelError(f"The formula '{formula}' cannot be read: {err}") from None
    names = [parsed.response, *sorted(parsed.all_variables - {parsed.response})]
    return parsed.response, names


def model_frame(data: pd.DataFrame, formula: str) -> pd.DataFrame:
    """The rows and columns ``formula`` uses, with the contract's derived variables.

    ``time`` = session − the smallest session; for ``alliance`` and ``symptoms``: ``m_between`` =
    the patient's mean over the sessions where ``m`` was observed − the mean of the patient means,
    ``m_within`` = ``m`` − the patient's mean. Other columns: numeric when every non-missing value
    reads as a number, otherwise categorical. Rows: complete cases of the formula's variables
    (lme4's ``na.omit``), in the order of ``data``.
    """
    _, names = _formula_variables(formula)
    frame = data.copy()
    if "session" in frame.columns:
        frame["time"] = frame["session"] - frame["session"].min()
    for measure in ("alliance", "symptoms"):
        if measure in frame.columns:
            groups = frame.groupby(PATIENT, sort=False)[measure]
            mean = groups.transform("mean")
            frame[f"{measure}_between"] = mean - groups.mean().mean()
            frame[f"{measure}_within"] = frame[measure] - mean
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ModelError(f"The formula names '{missing[0]}', which is neither a role, a derived variable "
                         "(time, alliance_between, alliance_within, symptoms_between, symptoms_within) "
                         "nor a column of the file.")
    out = frame[names].copy()
    for name in names:
        if name in (PATIENT, "therapist") or pd.api.types.is_numeric_dtype(out[name]):
            continue
        numeric = pd.to_numeric(out[name], errors="coerce")
        out[name] = numeric if numeric.notna().sum() == out[name].notna().sum() else out[name].astype("string")
    for group in (PATIENT, "therapist"):
        if group in out.columns:
            out[group] = out[group].astype(str)
    return out.loc[out.notna().all(axis=1)]


def fit_pilot(frame: pd.DataFrame, formula: str):
    """The REML fit of ``formula`` on ``frame`` (mixedlm's ``LmerResult``)."""
    import mixedlm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return mixedlm.lmer(formula, frame.reset_index(drop=True), REML=True)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
            raise ModelError(f"The model '{formula}' could not be fitted: {err}") from None


def fixed_effects(data: pd.DataFrame, formula: str) -> pd.DataFrame:
    """The REML fixed effects of ``formula`` on ``data`` (``term, estimate, se, df, p``; Satterthwaite),
    to choose the term and see its estimate before planning."""
    frame = model_frame(data, formula)
    if frame.empty:
        raise ModelError(f"No row has a value for every variable of '{formula}'.")
    fit = fit_pilot(frame, formula)
    tidy = fit.tidy(ddf_method="Satterthwaite")
    return pd.DataFrame({"term": tidy["term"].replace({"(Intercept)": "intercept"}).to_numpy(),
                         "estimate": tidy["estimate"].to_numpy(float), "se": tidy["std.error"].to_numpy(float),
                         "df": tidy["df"].to_numpy(float), "p": tidy["p.value"].to_numpy(float)})

# --------------------------------------------------------------------------- end of the adapter


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
        raise ModelError("The number of patients must be at least 1.")
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
    raise ModelError(f"The model has no fixed effect '{term}'; its fixed effects are: {shown}.")


def design_matrices(pilot, frame: pd.DataFrame):
    """mixedlm model matrices of ``frame`` with the pilot fit's encoding of factors and its dropped
    columns (as mixedlm's own ``powerCurve`` resizes a design), without a data frame."""
    from mixedlm.matrices.design import build_random_matrix

    frame = frame.reset_index(drop=True)
    source = pilot.matrices
    X = np.asarray(pilot._prediction_fixed_matrix(frame), float)
    Z, structures = build_random_matrix(pilot.formula, frame, contrasts=source.contrasts,
                                        category_levels=source.category_levels)
    n = len(frame)
    return replace(source, y=frame[pilot.formula.response].to_numpy(float), X=X, Z=Z,
                   random_structures=structures, n_obs=n, n_random=Z.shape[1],
                   weights=np.ones(n), offset=np.zeros(n), trials=None, frame=None, na_info=None)


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

    @property
    def at_observed_effect(self) -> bool:
        """The simulations used the estimate itself (observed power: see Hoenig & Heisey)."""
        return math.isclose(self.effect, self.observed, rel_tol=1e-12, abs_tol=1e-15)

    def table(self) -> pd.DataFrame:
        """One row per N: ``n_patients, n_observations, power, ci_low, ci_high, nsim, n_failed``."""
        return pd.DataFrame([{k: getattr(p, k) for k in ("n_patients", "n_observations", "power", "ci_low",
                                                           "ci_high", "nsim", "n_failed", "n_significant")}
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
            "n_patients_observed": self.n_patients_observed, "n_observations": self.n_observations,
            "power": {str(p.n_patients): {"power": p.power, "ci_low": p.ci_low, "ci_high": p.ci_high,
                                          "nsim": p.nsim, "n_failed": p.n_failed,
                                          "n_significant": p.n_significant,
                                          "n_observations": p.n_observations}
                      for p in self.points},
            "method": METHOD_TEXT,
            "methods_sentence": methods_sentence(self),
            "warnings": [HOENIG_HEISEY] if self.at_observed_effect else [],
            "engine": self.engine, "seconds": self.seconds,
        }


METHOD_TEXT = ("simr's method (Green & MacLeod, 2016): the outcome simulated from the REML fit (fixed effects "
               "with the tested one set to the effect, new random effects and residuals with the estimated "
               "variances) on the design for N patients (the first N patients in file order, recycled as new "
               "patients beyond the observed number, derived variables recomputed); each simulated data set "
               "refitted by REML and the term tested with the Satterthwaite t-test; power = significant / "
               "(simulations - failed fits), exact Clopper-Pearson 95% interval; simulation i for N patients "
               "seeded with numpy.random.default_rng([seed, N, i]).")


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for a binomial proportion, as R's ``binom.test``.

    >>> [round(x, 4) for x in clopper_pearson(37, 100)]
    [0.2755, 0.4723]
    """
    from scipy import stats

    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _label(term: str) -> str:
    return "intercept" if term == "(Intercept)" else term


def methods_sentence(result: PowerAnalysis) -> str:
    """The sentence a methods section needs."""
    sizes = ", ".join(str(p.n_patients) for p in result.points)
    parts = []
    for p in result.points:
        if p.power is None:
            parts.append(f"N = {p.n_patients}: no simulation could be fitted")
        else:
            parts.append(f"N = {p.n_patients}: {100 * p.power:.1f}% (95% CI {100 * p.ci_low:.1f}–{100 * p.ci_high:.1f}%)")
    effect = ("its estimate in the data" if result.at_observed_effect else "the smallest effect of interest")
    failed = sum(p.n_failed for p in result.points)
    return (f"Power to detect an effect of {_label(result.term)} of {result.effect:.4g} ({effect}; estimate in the "
            f"data {result.observed:.4g}, SE {result.observed_se:.3g}) at α = {result.alpha:g} was estimated by "
            f"simulation, as in simr (Green & MacLeod, 2016): {result.nsim} data sets were simulated from the "
            f"fitted model {result.formula} for {sizes} patients, refitted by REML, and the effect tested with "
            f"Satterthwaite's t-test (lmerTest); power with exact 95% confidence intervals: {'; '.join(parts)}"
            + (f" ({failed} simulations could not be fitted and were left out)" if failed else "")
            + f". Seed {result.seed}.")


def _design_key(formula: str, term: str, beta: np.ndarray, theta: np.ndarray, sigma: float, alpha: float,
                seed: int, n_patients: int, frame: pd.DataFrame) -> str:
    digest = hashlib.sha1(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(repr((formula, term, beta.tolist(), theta.tolist(), sigma, alpha, seed, n_patients)).encode())
    return digest.hexdigest()


def default_sizes(n_observed: int) -> list[int]:
    """Half, the observed number and double, as a first look."""
    return sorted({max(2, n_observed // 2), n_observed, 2 * n_observed})


def prepare(data: pd.DataFrame, formula: str, term: str, *, effect: float | None = None,
            patients: list[int] | None = None, seed: int = DEFAULT_SEED, alpha: float = DEFAULT_ALPHA):
    """Fit the model and build one :class:`SimulationDesign` per N (no simulation yet).

    Returns ``(designs, info)`` where ``info`` has ``term, effect, observed, observed_se,
    n_patients_observed, n_observations``.
    """
    if not 0 < alpha < 1:
        raise ModelError("The significance level must lie between 0 and 1 (for example 0.05).")
    if seed < 0:
        raise ModelError("The seed must be a whole number of 0 or more.")
    frame = model_frame(data, formula)
    if frame.empty:
        raise ModelError(f"No row has a value for every variable of '{formula}'.")
    pilot = fit_pilot(frame, formula)
    names = list(pilot.matrices.fixed_names)
    column = resolve_term(names, term)
    index = names.index(column)
    beta = np.asarray(pilot.beta, float).copy()
    observed = float(beta[index])
    observed_se = float(np.sqrt(pilot.vcov()[index, index]))
    if effect is not None:
        if not np.isfinite(effect):
            raise ModelError("The effect must be a number.")
        beta[index] = float(effect)
    theta = np.asarray(pilot.theta, float)
    sigma = float(pilot.sigma)
    used = set(frame[PATIENT])
    order = [pid for pid in patient_order(data) if pid in used]
    source = data.loc[data[PATIENT].astype(str).isin(set(order))]
    sizes = sorted(set(patients or default_sizes(len(order))))
    if sizes[0] < 2:
        raise ModelError("A multilevel model needs at least 2 patients; choose numbers of patients of 2 or more.")
    designs = []
    for n in sizes:
        design_frame = model_frame(design_data(source, n, order), formula)
        if design_frame[PATIENT].nunique() >= len(design_frame):
            raise ModelError(f"With {n} patients every patient has one session, so the model cannot be fitted; "
                             "choose more patients.")
        try:
            matrices = design_matrices(pilot, design_frame)
        except ValueError as err:
            raise ModelError(f"The design for {n} patients cannot be built: {err}") from None
        empty = [names[j] for j in range(len(names)) if not np.any(matrices.X[:, j])]
        if empty:
            raise ModelError(f"With {n} patients the column for '{_label(empty[0])}' is zero in every row (a level "
                             "missing from the first patients); choose more patients.")
        key = _design_key(formula, column, beta, theta, sigma, alpha, seed, n, design_frame)
        design = SimulationDesign(formula=pilot.formula, matrices=matrices, beta=tuple(beta.tolist()),
                                  theta=tuple(theta.tolist()), sigma=sigma, term=column, alpha=float(alpha),
                                  seed=int(seed), n_patients=int(n), key=key)
        template_model(design)  # fails here, in plain words, rather than in every worker
        designs.append(design)
    info = {"term": column, "effect": float(beta[index]), "observed": observed, "observed_se": observed_se,
            "n_patients_observed": len(order), "n_observations": len(frame)}
    return designs, info


def power_analysis(data: pd.DataFrame, formula: str, term: str, *, effect: float | None = None,
                   patients: list[int] | None = None, nsim: int = DEFAULT_NSIM, seed: int = DEFAULT_SEED,
                   alpha: float = DEFAULT_ALPHA, runner: Runner | None = None,
                   progress: Progress | None = None) -> PowerAnalysis:
    """Power of the Satterthwaite t-test of ``term`` for each number of patients in ``patients``.

    ``data``: validated long data (``patient``, ``session``, the measures, other columns);
    ``formula``: lme4 notation with the names of ``python -m core fit``; ``effect``: the value of
    the term in the simulations (default: its estimate, i.e. observed power); ``runner``: where the
    simulations run (:class:`core.stats.power_run.LocalRunner` on this machine's cores by default,
    :class:`core.stats.power_run.DaskRunner` on a cluster); ``progress(done, total, seconds_left)``.
    See the module docstring for the method and the seeds.
    """
    if nsim < 1:
        raise ModelError("The number of simulations must be at least 1.")
    started = time.perf_counter()
    designs, info = prepare(data, formula, term, effect=effect, patients=patients, seed=seed, alpha=alpha)
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
                                 mean_estimate=float(values[ok, 0].mean()) if n_ok else None))
        p_values[design.n_patients] = p
    return PowerAnalysis(formula=formula, term=info["term"], effect=info["effect"], observed=info["observed"],
                         observed_se=info["observed_se"], alpha=float(alpha), seed=int(seed), nsim=int(nsim),
                         n_patients_observed=info["n_patients_observed"], n_observations=info["n_observations"],
                         points=tuple(points), engine=runner.describe(), seconds=time.perf_counter() - started,
                         p_values=p_values)
