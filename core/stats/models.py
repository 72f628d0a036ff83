"""Linear mixed models of the ANS study (Manubens et al., 2023): the model builder and the ladder.

Estimation is lme4's (Bates et al., 2015) profiled (RE)ML, computed by the ``mixedlm`` package,
which reproduces lme4 1.1 and lmerTest 3.1 on the reference data to about 1e-6 (see
``bench/README.md``). Fixed effects come from REML fits, with Satterthwaite degrees of freedom
(Kuznetsova et al., 2017, lmerTest) and t-based p-values and 95% intervals; likelihood-ratio
tests refit every model by maximum likelihood (a REML likelihood is not comparable across
different fixed effects).

The ladder (keys of the report, ``symptoms`` as outcome; lme4 notation):

========================  =====================================================
``unconditional``         ``symptoms ~ 1 + (1 | patient)``
``unconditional_3level``  ``symptoms ~ 1 + (1 | therapist) + (1 | patient)``
``time``                  ``symptoms ~ time + (time | patient)``
``hybrid``                ``symptoms ~ between + within + (1 | patient)``
``hybrid_detrended``      ``symptoms ~ between + within + time + (1 | patient)``
``interaction``           ``symptoms ~ between * within + (1 | patient)``
========================  =====================================================

with ``time``, ``between`` and ``within`` as defined in :mod:`core.stats.decomposition`. Every rung
is a preset of :func:`build_model`, the builder researchers use for their own models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from core.errors import ModelError
from core.i18n import N_, _, ngettext
from core.intake.mapping import role_name

#: Below this therapist share of the variance the ANS study kept two levels (patients only).
THERAPIST_ICC_RULE = 0.01

PATIENT, THERAPIST = "patient", "therapist"


@dataclass(frozen=True)
class ModelSpec:
    """One linear mixed model: outcome, fixed terms, random effects.

    ``fixed`` lists the fixed terms besides the intercept in formula order (an interaction as
    ``"between:within"``); ``random_slope`` is a variable whose effect varies over patients
    (correlated with the random intercept, lme4's ``(x | patient)``); ``therapist_level`` adds
    a random intercept for therapists. ``labels`` maps term names to readable labels.
    """

    outcome: str = "symptoms"
    fixed: tuple[str, ...] = ()
    random_slope: str | None = None
    therapist_level: bool = False
    predictor: str | None = None
    key: str = "custom"
    title: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def formula(self) -> str:
        """The model in lme4 notation (a column name that is not a plain name in backticks)."""
        rhs = " + ".join(":".join(_quoted(v) for v in term_parts(t)) for t in self.fixed) if self.fixed else "1"
        parts = [rhs]
        if self.therapist_level:
            parts.append(f"(1 | {THERAPIST})")
        parts.append(f"({_quoted(self.random_slope)} | {PATIENT})" if self.random_slope else f"(1 | {PATIENT})")
        return f"{self.outcome} ~ " + " + ".join(parts)

    @property
    def variables(self) -> list[str]:
        """Data columns the model needs."""
        names = {self.outcome, PATIENT}
        for term in self.fixed:
            names.update(term_parts(term))
        if self.random_slope:
            names.add(self.random_slope)
        if self.therapist_level:
            names.add(THERAPIST)
        return sorted(names)


@dataclass(frozen=True)
class ModelResult:
    """A fitted model: the REML fixed-effects table, variance components, fit statistics.

    ``fixed`` columns: ``term, estimate, se, df, t, p, ci_low, ci_high`` (REML, Satterthwaite df,
    t-based p and 95% CI). ``variance`` keys: ``patient_intercept``, ``patient_slope``,
    ``patient_intercept_slope_cov``, ``therapist_intercept``, ``residual`` (those the model has).
    ``n_params_ml`` counts fixed effects, variance parameters and the residual variance, as
    lme4's ``attr(logLik(), "df")``. ``random_effects`` holds the patients' predicted random
    effects (BLUPs), with their conditional SD ``intercept_se`` in two-level random-intercept models; ``fitted`` and ``residuals`` the REML fit's conditional values; ``fixed_cov``
    the covariance matrix of the fixed effects (rows and columns in the order of ``fixed``).
    ``loglik_ml`` and ``n_params_ml`` are None when the model was fitted with ``ml=False``.
    Fitted with ``keep_data=False`` (the command line on large files), a result keeps its estimates
    and ``rows_used`` but not its per-row arrays (``fitted``, ``residuals``, ``random_effects`` are
    empty and ``formula_fit`` is None).
    """

    spec: ModelSpec
    fixed: pd.DataFrame
    variance: dict[str, float]
    loglik_reml: float
    loglik_ml: float | None
    n_params_ml: int | None
    converged: bool
    singular: bool
    warnings: tuple[str, ...]
    n_observations: int
    n_patients: int
    n_therapists: int | None
    random_effects: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    fitted: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    residuals: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    fixed_cov: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    aic: float | None = None
    bic: float | None = None
    r2_marginal: float | None = None
    r2_conditional: float | None = None
    #: Rows of the table this model leaves out (a variable it needs is missing): ``row, reason``.
    excluded: pd.DataFrame = field(repr=False, default_factory=lambda: pd.DataFrame(columns=["row", "reason"]))
    #: lme4's ``as.data.frame(VarCorr())``: ``group, term1, term2, vcov``.
    variance_rows: tuple = field(repr=False, default=())
    #: The formula fit underneath (engine fits, model frame, design); None with ``keep_data=False``.
    formula_fit: object = field(repr=False, default=None, compare=False)
    #: The spreadsheet rows the model uses (``row`` of its model frame); None: every row of the table
    #: it was fitted on (no copy of millions of row numbers per model).
    rows_used: np.ndarray | None = field(repr=False, default=None, compare=False)
    #: The formula fitted (lme4 notation, as the formula fit writes it).
    formula_text: str = ""

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def formula(self) -> str:
        """The formula fitted (lme4 notation)."""
        if self.formula_fit is not None:
            return self.formula_fit.formula
        return self.formula_text or self.spec.formula

    def term(self, name: str) -> dict:
        """One row of the fixed-effects table as a dict."""
        row = self.fixed.loc[self.fixed["term"] == name]
        if row.empty:
            raise KeyError(name)
        return row.iloc[0].to_dict()


# --------------------------------------------------------------------------------- builder

_PLAIN_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _quoted(name: str) -> str:
    """A column name as a formula may use it: as it is, or in backticks."""
    return name if _PLAIN_NAME.match(name) else f"`{name}`"


def term_parts(term: str) -> list[str]:
    """The variables of a fixed term: ``"between:within"`` → ``["between", "within"]``; a name in
    backticks is one variable whatever it holds (``"`a:b`"`` → ``["a:b"]``).

    >>> term_parts("between:within"), term_parts("`![c](http://x:9)`:time")
    (['between', 'within'], ['![c](http://x:9)', 'time'])
    """
    return [p[1:-1] if p.startswith("`") and p.endswith("`") and len(p) > 1 else p
            for p in re.findall(r"`[^`]*`|[^:`]+", term)]


def covariate_labels(result_terms: list[str], covariates: list[str], levels: dict[str, list[str]]) -> dict[str, str]:
    """Readable labels of covariate terms: ``age`` → "age"; ``sitesouth`` → "site = south (vs east)"."""
    labels = {}
    for cov in covariates:
        if cov in levels:
            ref = levels[cov][0]
            for lev in levels[cov][1:]:
                if f"{cov}{lev}" in result_terms:
                    labels[f"{cov}{lev}"] = _("{name} = {level} (vs {reference})").format(name=cov, level=lev, reference=ref)
        elif cov in result_terms:
            labels[cov] = cov
    return labels


def build_model(outcome: str = "symptoms", predictor: str | None = "alliance", *,
                disaggregate: bool = True, detrend: bool = False, interaction: bool = False,
                time_only: bool = False, covariate_terms: tuple[str, ...] = (),
                random_slope: str | None = None, therapist_level: bool = False,
                key: str = "custom", title: str = "", labels: dict[str, str] | None = None) -> ModelSpec:
    """The model builder. The ladder's rungs are presets of it (:func:`ladder_specs`).

    - ``predictor`` given and ``disaggregate``: ``between + within`` of the predictor
      (the hybrid model); ``interaction`` adds ``between:within`` (cross-level interaction).
    - ``detrend``: adds ``time`` (controls the within effect for the common linear trend).
    - ``time_only``: ``time`` is the only predictor.
    - ``covariate_terms``: extra fixed terms: columns of the file by their headers (a text column is
      dummy-coded, first level of the sorted levels as reference, as in lme4).
    - ``random_slope``: a term whose effect varies over patients (``"within"`` or ``"time"``).
    - ``therapist_level``: random intercept for therapists (three levels).
    """
    fixed: list[str] = []
    if time_only:
        fixed.append("time")
    elif predictor and disaggregate:
        fixed += ["between", "within"]
        if interaction:
            fixed.append("between:within")
    if detrend and "time" not in fixed:
        fixed.append("time")
    fixed += [c if _PLAIN_NAME.match(c) else f"`{c}`" for c in covariate_terms]  # a column, not a term
    if random_slope and random_slope not in fixed:
        raise ModelError(_("A random slope for '{term}' needs '{term}' among the fixed effects.").format(term=random_slope))
    return ModelSpec(outcome=outcome, fixed=tuple(fixed), random_slope=random_slope,
                     therapist_level=therapist_level, predictor=predictor, key=key, title=title,
                     labels=tuple(sorted((labels or {}).items())))


def ladder_specs(has_predictor: bool, has_therapist: bool, outcome: str = "symptoms",
                 predictor: str = "alliance") -> list[ModelSpec]:
    """The ANS study's ladder as builder presets, in the order of the paper."""
    specs = [build_model(outcome, None, key="unconditional", title=_("Unconditional (patients)"))]
    if has_therapist:
        specs.append(build_model(outcome, None, therapist_level=True, key="unconditional_3level",
                                 title=_("Unconditional (therapists and patients)")))
    specs.append(build_model(outcome, None, time_only=True, random_slope="time", key="time",
                             title=_("Time (random slope)")))
    if has_predictor:
        specs += [
            build_model(outcome, predictor, key="hybrid", title=_("Hybrid: between and within")),
            build_model(outcome, predictor, detrend=True, key="hybrid_detrended",
                        title=_("Hybrid, controlling for time")),
            build_model(outcome, predictor, interaction=True, key="interaction",
                        title=_("Between × within interaction")),
        ]
    return specs


# --------------------------------------------------------------------------------- fitting

#: The largest magnitude a model variable may have: beyond it sums of squares lose all precision
#: or overflow (validation already leaves out scores beyond ±10^6).
LARGEST_FOR_FIT = 1e15


def check_model_data(data: pd.DataFrame, spec: ModelSpec) -> None:
    """Raise :class:`ModelError` in plain words when the data cannot identify the model.

    ``data`` is the model frame (the rows the model uses). Mirrors lme4's own checks: at least two
    patients; fewer patients than observations (one session per patient confounds patient and
    session variance); more observations than random effects for a random slope; two therapists
    for a therapist level; the outcome and the fixed terms ``between``, ``within`` and ``time``
    must vary (a constant covariate is dropped as lme4 drops it, with a warning).
    """
    n = len(data)
    n_pat = data[PATIENT].nunique()

    def constant(values: pd.Series) -> bool:  # fewer than two distinct values (NaN aside)
        v = values.to_numpy()
        v = v[pd.notna(v)]
        return len(v) == 0 or bool(np.all(v == v[0]))

    if n_pat < 2:
        raise ModelError(_("A multilevel model needs at least two patients; this data has one."))
    if n_pat >= n:
        raise ModelError(_("Each patient has only one session, so differences between patients cannot be "
                           "told apart from differences between sessions. A multilevel model needs "
                           "patients with two or more sessions."))
    if constant(data[spec.outcome]):
        raise ModelError(_("{outcome} has the same value in every row: there is nothing to model.").format(
            outcome=role_name(spec.outcome).capitalize()))
    for term in spec.fixed:
        for var in term_parts(term):
            if var in ("between", "within", "time") and constant(data[var]):
                raise ModelError((_("'{term}' has the same value in every row, so its effect cannot be estimated "
                                    "(every patient has a single session).") if var in ("within", "time") else
                                  _("'{term}' has the same value in every row, so its effect cannot be estimated."))
                                 .format(term=var))
    if spec.random_slope and n <= 2 * n_pat:
        raise ModelError(_("A random slope for {term} needs more sessions than twice the number of patients "
                           "({n} sessions, {patients} patients); use a random intercept only.").format(
            term=spec.random_slope, n=n, patients=n_pat))
    if spec.therapist_level and data[THERAPIST].nunique() < 2:
        raise ModelError(_("The three-level model needs at least two therapists; this data has one."))
    for var in spec.variables:  # issue 13: extreme values would overflow the fit's arithmetic
        if var not in (PATIENT, THERAPIST) and pd.api.types.is_numeric_dtype(data[var]):
            values = np.abs(data[var].to_numpy(dtype=float))
            if not np.isfinite(values).all() or values.max() > LARGEST_FOR_FIT:
                raise ModelError(_("'{name}' holds values too large to fit a model (up to {largest:.3g}); "
                                   "check the data for typing or export errors.").format(name=var, largest=values.max()))


def _variance_components(rows) -> dict[str, float]:
    """The ladder's variance keys from lme4's ``as.data.frame(VarCorr())`` rows."""
    out: dict[str, float] = {}
    for r in rows:
        group = r["group"].split(".")[0]
        if group == "Residual":
            out["residual"] = r["vcov"]
            continue
        prefix = "patient" if group == PATIENT else "therapist" if group == THERAPIST else group
        if r["term2"] is not None:
            out.setdefault(f"{prefix}_intercept_slope_cov", r["vcov"])
        elif r["term1"] == "(Intercept)":
            out.setdefault(f"{prefix}_intercept", r["vcov"])
        else:
            out.setdefault(f"{prefix}_slope", r["vcov"])
    return {k: out[k] for k in ("patient_intercept", "patient_slope", "patient_intercept_slope_cov",
                                "therapist_intercept", "residual") if k in out} | \
        {k: v for k, v in out.items() if k not in ("patient_intercept", "patient_slope",
                                                   "patient_intercept_slope_cov", "therapist_intercept", "residual")}


def term_aliases(predictor: str | None) -> dict[str, str]:
    """``between``/``within`` as the predictor's ``<m>_between``/``<m>_within`` (the ladder's names)."""
    if not predictor:
        return {}
    return {"between": f"{predictor}_between", "within": f"{predictor}_within"}


def fit_model(data: pd.DataFrame, spec: ModelSpec, *, ml: bool = True,
              cell_reasons: pd.DataFrame | None = None, rows=None, keep_data: bool = True,
              df_method: str = "satterthwaite") -> ModelResult:
    """Fit ``spec`` by REML (estimates) and by ML (likelihood for comparisons).

    ``data`` is a validated table; ``time``, ``between`` and ``within`` (of ``spec.predictor``)
    are derived as the contract defines them unless the table already has them. The model uses the
    rows with every variable it names (lme4's ``na.omit``); the others are in ``excluded`` with
    their reasons (``cell_reasons``: why a measure is missing, from validation). ``ml=False``
    skips the ML refit (about half the time) where no likelihood-ratio test will use it.
    ``rows`` (spreadsheet row numbers) restricts the model to those rows, with the derived
    variables still computed on the whole table (for a likelihood-ratio test on the same rows).
    ``keep_data=False`` keeps the estimates only (see :class:`ModelResult`), so that a ladder on
    millions of rows does not hold every model's frame, design and per-row arrays at once.
    Every model of the project goes through :func:`core.stats.formula.fit_formula`.
    """
    from dataclasses import replace as _replace

    from core.intake.reading import ROW
    from core.stats.formula import build_model_frame, derived_renames, fit_formula

    # the ladder's and the builder's time, between and within are the derived ones (the contract's
    # definitions), also when the file has a column of that name (which the formula box would use)
    own = [c for c in derived_renames(data) if c in data.columns]
    frame = build_model_frame(data.drop(columns=own) if own else data, spec.formula,
                              aliases=term_aliases(spec.predictor or "alliance"), cell_reasons=cell_reasons)
    if rows is not None:
        keep = frame.data[ROW].isin(np.asarray(list(rows) if isinstance(rows, (set, frozenset)) else rows))
        left = pd.DataFrame({"row": frame.data.loc[~keep, ROW].astype(int).to_numpy(),
                             "reason": _("left out to compare with a model fitted on fewer rows")})
        frame = _replace(frame, data=frame.data[keep].reset_index(drop=True),
                         excluded=pd.concat([frame.excluded, left], ignore_index=True).sort_values("row"))
    check_model_data(frame.data, spec)
    fit = fit_formula(None, frame.formula, ml=ml, frame=frame, df_method=df_method)
    used = frame.data
    notes = list(fit.warnings)
    n_pat = int(used[PATIENT].nunique())
    if n_pat < 5 or (spec.therapist_level and used[THERAPIST].nunique() < 5):
        few = n_pat if n_pat < 5 else int(used[THERAPIST].nunique())
        notes.append((_("Few groups: variance components estimated from fewer than 5 groups ({n} patients) are "
                        "unreliable.") if n_pat < 5 else
                      _("Few groups: variance components estimated from fewer than 5 groups ({n} therapists) are "
                        "unreliable.")).format(n=few))
    if fit.singular:
        notes = [w for w in notes if not w.startswith("boundary (singular) fit")]
        notes.append(_("Singular fit: a variance component (or a correlation of random effects) is estimated "
                       "at its boundary (zero variance or correlation ±1). The model is more complex than "
                       "the data supports; consider removing that random effect."))
    variance = _variance_components(fit.variance)
    common = dict(
        spec=spec, fixed=fit.fixed, variance=variance, loglik_reml=fit.loglik_reml,
        loglik_ml=fit.loglik_ml, n_params_ml=fit.n_params_ml, converged=fit.converged,
        singular=fit.singular, warnings=tuple(dict.fromkeys(notes)), n_observations=len(used),
        n_patients=n_pat,
        n_therapists=int(used[THERAPIST].nunique()) if spec.therapist_level else None,
        fixed_cov=fit.fixed_cov, aic=fit.aic, bic=fit.bic, r2_marginal=fit.r2_marginal,
        r2_conditional=fit.r2_conditional, excluded=fit.excluded, variance_rows=tuple(fit.variance),
        rows_used=None if len(used) == len(data) else used[ROW].to_numpy(np.int64).copy(), formula_text=fit.formula)
    if not keep_data:
        return ModelResult(**common)
    reml = fit.reml
    # The BLUPs come as arrays in the sorted order of the group labels (as R's factor).
    b = next(i for i, blk in enumerate(fit.design.blocks) if blk.group == PATIENT)
    block = fit.design.blocks[b]
    blups = reml.ranef()[f"g{b}"]
    ranef = pd.DataFrame({PATIENT: np.asarray(block.labels, dtype=object)})
    for j, values in enumerate(blups.values()):
        name = block.names[j]
        ranef["intercept" if name == "(Intercept)" else name] = np.asarray(values, float)
    if not spec.random_slope and not spec.therapist_level:
        # Conditional SD of a random intercept (as lme4's condVar): 1 / (1/tau^2 + n_i/sigma^2)
        n_i = np.bincount(block.codes, minlength=block.n_levels).astype(float)
        tau2, sigma2 = variance["patient_intercept"], variance["residual"]
        with np.errstate(divide="ignore"):
            ranef["intercept_se"] = np.sqrt(1.0 / (1.0 / tau2 + n_i / sigma2)) if tau2 > 0 else 0.0
    return ModelResult(**common, random_effects=ranef, fitted=np.asarray(reml.fitted(), float),
                       residuals=np.asarray(reml.residuals(), float), formula_fit=fit)


# --------------------------------------------------------------------------------- ladder

@dataclass(frozen=True)
class Comparison:
    """Likelihood-ratio test of ``simpler`` against ``fuller`` on ML fits."""

    simpler: str
    fuller: str
    chisq: float
    df: int
    p: float
    note: str = ""


def likelihood_ratio_test(simpler: ModelResult, fuller: ModelResult, note: str = "") -> Comparison:
    """χ² = 2 (ℓ_ML(fuller) − ℓ_ML(simpler)), df = difference in parameter counts, p from χ²(df)."""
    if fuller.loglik_ml is None or simpler.loglik_ml is None:
        raise ValueError("Both models need their ML fit (fit_model(..., ml=True)) for a likelihood-ratio test.")
    chisq = 2.0 * (fuller.loglik_ml - simpler.loglik_ml)
    df = fuller.n_params_ml - simpler.n_params_ml
    if df > 0:
        from scipy.special import chdtrc  # what scipy.stats.chi2.sf computes

        p = float(chdtrc(df, max(chisq, 0.0)))
    else:
        p = float("nan")
    return Comparison(simpler.key, fuller.key, float(chisq), int(df), p, note)


#: Comparisons the report always makes: name → (simpler, fuller).
COMPARISONS = {
    "time_vs_unconditional": ("unconditional", "time"),
    "hybrid_vs_unconditional": ("unconditional", "hybrid"),
    "interaction_vs_hybrid": ("hybrid", "interaction"),
    "hybrid_detrended_vs_hybrid": ("hybrid", "hybrid_detrended"),
    "unconditional_3level_vs_unconditional": ("unconditional", "unconditional_3level"),
}
_BOUNDARY_NOTE = N_("The therapist variance is tested at its boundary (zero), where the χ² test is "
                    "conservative; a p-value from the 50:50 mixture of χ²(0) and χ²(1) is half of this one.")


@dataclass(frozen=True)
class LadderResult:
    """The whole ladder: models by key, models that could not be fitted (key → reason), ICCs,
    likelihood-ratio comparisons, the level decision as advice, and the data counts."""

    models: dict[str, ModelResult]
    errors: dict[str, str]
    icc: dict[str, float | None]
    comparisons: dict[str, Comparison]
    advice: tuple[str, ...]
    n_observations: int
    n_patients: int
    n_therapists: int | None
    outcome: str = "symptoms"
    predictor: str | None = "alliance"


def compute_iccs(models: dict[str, ModelResult]) -> dict[str, float | None]:
    """ICCs from the REML unconditional models.

    ``patient`` = τ²_patient / (τ²_patient + σ²) (two levels); ``therapist`` = τ²_therapist /
    (τ²_therapist + τ²_patient + σ²) and ``patient_3level`` the patient share in that model.
    """
    icc: dict[str, float | None] = {"patient": None, "therapist": None, "patient_3level": None}
    if "unconditional" in models:
        v = models["unconditional"].variance
        icc["patient"] = v["patient_intercept"] / (v["patient_intercept"] + v["residual"])
    if "unconditional_3level" in models:
        v = models["unconditional_3level"].variance
        total = v["therapist_intercept"] + v["patient_intercept"] + v["residual"]
        icc["therapist"] = v["therapist_intercept"] / total
        icc["patient_3level"] = v["patient_intercept"] / total
    return icc


def level_advice(icc: dict[str, float | None], n_therapists: int | None) -> tuple[str, ...]:
    """The ANS study's level rule as advice (never applied silently)."""
    if n_therapists is None:
        return (_("No therapist column: the models have two levels (sessions within patients)."),)
    if icc.get("therapist") is None:
        return (ngettext("Only {n} therapist: a therapist level cannot be estimated; two levels are used.",
                         "Only {n} therapists: a therapist level cannot be estimated; two levels are used.",
                         n_therapists).format(n=n_therapists),)
    share = icc["therapist"] * 100
    if icc["therapist"] < THERAPIST_ICC_RULE:
        return (_("Therapists account for {share:.1f}% of the variance in the outcome (< 1%). As in "
                  "Manubens et al. (2023), a two-level model (sessions within patients) is enough; "
                  "the ladder below uses two levels.").format(share=share),)
    return (_("Therapists account for {share:.1f}% of the variance in the outcome (≥ 1%). Consider "
              "keeping the therapist level (turn it on in the model builder); the ladder below, like "
              "the ANS study's, uses two levels.").format(share=share),)


def fit_ladder(data: pd.DataFrame, outcome: str = "symptoms", predictor: str = "alliance",
               progress=None, cell_reasons: pd.DataFrame | None = None, keep_data: bool = True) -> LadderResult:
    """Fit the ANS study's model ladder to validated long data.

    ``data`` needs ``patient``, ``session`` and the outcome; ``predictor`` and ``therapist`` are
    used when present. ``time``, ``between`` and ``within`` are derived as the contract defines
    them. Each model uses the rows complete for its own variables (lme4's ``na.omit``) and lists
    the others. A likelihood-ratio test needs both models on the same rows: when the fuller model
    uses fewer rows (a measure missing), the simpler one is refitted on the fuller one's rows for
    the test (said in the comparison's note). A model the data cannot support is listed in
    ``errors`` with the reason. ``progress(i, n, key)`` is called before each model.
    ``keep_data=False``: each model keeps its estimates only (see :class:`ModelResult`).
    """
    from core.intake.reading import ROW
    from core.stats.formula import group_codes

    # patients and therapists as codes once, not as text in every model's frame
    data = data.assign(**{role: group_codes(data[role]) for role in (PATIENT, THERAPIST) if role in data.columns})
    has_predictor = predictor in data.columns and data[predictor].notna().any()
    has_therapist = THERAPIST in data.columns
    specs = ladder_specs(has_predictor, has_therapist, outcome, predictor)
    models: dict[str, ModelResult] = {}
    errors: dict[str, str] = {}
    for i, spec in enumerate(specs):
        if progress:
            progress(i, len(specs), spec.key)
        try:
            models[spec.key] = fit_model(data, spec, cell_reasons=cell_reasons, keep_data=keep_data)
        except ModelError as err:
            errors[spec.key] = str(err)
    comparisons = {}
    for name, (a, b) in COMPARISONS.items():
        if a in models and b in models:
            note = _(_BOUNDARY_NOTE) if name.startswith("unconditional_3level") else ""
            simpler, fuller = models[a], models[b]
            every = data[ROW].to_numpy() if ROW in data.columns else None
            rows_a = np.sort(every if simpler.rows_used is None else simpler.rows_used) if every is not None else None
            rows_b = np.sort(every if fuller.rows_used is None else fuller.rows_used) if every is not None else None
            if rows_a is not None and not (simpler.rows_used is None and fuller.rows_used is None) \
                    and not np.array_equal(rows_a, rows_b) and np.isin(rows_b, rows_a).all():
                try:
                    simpler = fit_model(data, simpler.spec, cell_reasons=cell_reasons, rows=rows_b,
                                        keep_data=keep_data)
                except ModelError:
                    continue
                note = (note + " " if note else "") + _(
                    "{simpler} was refitted on the {n} sessions that {fuller} uses "
                    "(a likelihood-ratio test compares models on the same rows).").format(
                    simpler=a, n=fuller.n_observations, fuller=b)
            comparisons[name] = likelihood_ratio_test(simpler, fuller, note)
    icc = compute_iccs(models)
    n_ther = int(data[THERAPIST].nunique()) if has_therapist else None
    return LadderResult(models=models, errors=errors, icc=icc, comparisons=comparisons,
                        advice=level_advice(icc, n_ther), n_observations=len(data),
                        n_patients=int(data[PATIENT].nunique()), n_therapists=n_ther,
                        outcome=outcome, predictor=predictor if has_predictor else None)


def with_key(spec: ModelSpec, key: str) -> ModelSpec:
    """A copy of ``spec`` under another key."""
    return replace(spec, key=key)


# --------------------------------------------------------------------------------- builder options

DIRECTIONS = {"alliance_to_symptoms": ("symptoms", "alliance"), "symptoms_to_alliance": ("alliance", "symptoms")}


@dataclass(frozen=True)
class BuilderOptions:
    """What a researcher chooses in the model builder (page and ``python -m core report``)."""

    direction: str = "alliance_to_symptoms"
    detrend: bool = False
    interaction: bool = False
    covariates: tuple[str, ...] = ()
    random_slope_within: bool = False
    therapist_level: bool = False

    def describe(self) -> str:
        outcome, predictor = DIRECTIONS[self.direction]
        parts = [f"{role_name(predictor)} → {role_name(outcome)}"]
        parts += [_(text) for on, text in ((self.detrend, N_("controlling for time")),
                                           (self.interaction, N_("between × within interaction")),
                                           (self.random_slope_within, N_("random slope for within")),
                                           (self.therapist_level, N_("therapist level"))) if on]
        if self.covariates:
            parts.append(_("covariates: {names}").format(names=", ".join(self.covariates)))
        return "; ".join(parts)


def builder_spec(options: BuilderOptions, key: str = "custom") -> ModelSpec:
    """The builder's choices as a model (its ``formula`` is what the page's formula box shows)."""
    if options.direction not in DIRECTIONS:
        raise ModelError(_("Unknown direction '{direction}'.").format(direction=options.direction))
    outcome, predictor = DIRECTIONS[options.direction]
    return build_model(outcome, predictor, detrend=options.detrend, interaction=options.interaction,
                       covariate_terms=tuple(options.covariates),
                       random_slope="within" if options.random_slope_within else None,
                       therapist_level=options.therapist_level, key=key, title=options.describe())


def fit_custom_model(data: pd.DataFrame, options: BuilderOptions, key: str = "custom",
                     cell_reasons: pd.DataFrame | None = None, df_method: str = "satterthwaite") -> ModelResult:
    """Fit the builder's model: between/within of the predictor, with the chosen extras.

    Covariates are columns of the file by their headers: numeric when every non-missing value is a
    number, otherwise dummy-coded with the first sorted level as reference (as lme4 codes a factor).
    """
    outcome, predictor = DIRECTIONS.get(options.direction, (None, None))
    spec = builder_spec(options, key)
    for needed in (outcome, predictor):
        if needed not in data.columns:
            raise ModelError((_("This model needs an alliance column.") if needed == "alliance" else
                              _("This model needs a symptoms column.")))
    if options.therapist_level and THERAPIST not in data.columns:
        raise ModelError(_("The therapist level needs a therapist column."))
    for cov in options.covariates:
        if cov not in data.columns:
            raise ModelError(_("There is no column '{column}' to use as a covariate.").format(column=cov))
    result = fit_model(data, spec, cell_reasons=cell_reasons, df_method=df_method)
    levels = result.formula_fit.frame.levels if result.formula_fit is not None else {}
    labels = covariate_labels(list(result.fixed["term"]), list(options.covariates), levels)
    return replace(result, spec=replace(spec, labels=tuple(sorted(labels.items()))))


def fit_formula_model(data: pd.DataFrame, formula: str, key: str = "formula", title: str = "",
                      cell_reasons: pd.DataFrame | None = None, predictor: str = "alliance",
                      df_method: str = "satterthwaite") -> ModelResult:
    """A researcher's own lme4 formula as a :class:`ModelResult` (the page's formula box).

    The outcome and the patient grouping come from the formula; terms keep lme4's names;
    ``between``/``within`` are those of ``predictor``.
    """
    from core.stats.formula import build_model_frame, fit_formula, parse_formula

    parsed = parse_formula(formula)
    if not any(r.group == PATIENT for r in parsed.random):
        raise ModelError(_("The formula needs a random effect for patients, e.g. (1 | patient)."))
    frame = build_model_frame(data, parsed, aliases=term_aliases(predictor), cell_reasons=cell_reasons)
    fit = fit_formula(None, parsed, frame=frame, df_method=df_method)
    spec = ModelSpec(outcome=parsed.outcome, fixed=parsed.fixed_labels, key=key, title=title or parsed.text,
                     therapist_level=any(r.group == THERAPIST for r in parsed.random))
    used = frame.data
    b = next(i for i, blk in enumerate(fit.design.blocks) if blk.group == PATIENT)
    block = fit.design.blocks[b]
    ranef = pd.DataFrame({PATIENT: sorted(used[PATIENT].unique())})
    for j, values in enumerate(fit.reml.ranef()[f"g{b}"].values()):
        name = block.names[j]
        ranef["intercept" if name == "(Intercept)" else name] = np.asarray(values, float)
    return ModelResult(
        spec=replace(spec, labels=()), fixed=fit.fixed, variance=_variance_components(fit.variance),
        loglik_reml=fit.loglik_reml, loglik_ml=fit.loglik_ml, n_params_ml=fit.n_params_ml,
        converged=fit.converged, singular=fit.singular, warnings=fit.warnings,
        n_observations=len(used), n_patients=int(used[PATIENT].nunique()),
        n_therapists=int(used[THERAPIST].nunique()) if THERAPIST in used else None,
        random_effects=ranef, fitted=np.asarray(fit.reml.fitted(), float),
        residuals=np.asarray(fit.reml.residuals(), float), fixed_cov=fit.fixed_cov,
        aic=fit.aic, bic=fit.bic, r2_marginal=fit.r2_marginal, r2_conditional=fit.r2_conditional,
        excluded=fit.excluded, variance_rows=tuple(fit.variance), formula_fit=fit)
