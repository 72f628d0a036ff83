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
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from core.errors import ModelError
from core.stats.decomposition import add_model_terms

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
        """The model in lme4 notation."""
        rhs = " + ".join(self.fixed) if self.fixed else "1"
        parts = [rhs]
        if self.therapist_level:
            parts.append(f"(1 | {THERAPIST})")
        parts.append(f"({self.random_slope} | {PATIENT})" if self.random_slope else f"(1 | {PATIENT})")
        return f"{self.outcome} ~ " + " + ".join(parts)

    @property
    def variables(self) -> list[str]:
        """Data columns the model needs."""
        names = {self.outcome, PATIENT}
        for term in self.fixed:
            names.update(term.split(":"))
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

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def formula(self) -> str:
        return self.spec.formula

    def term(self, name: str) -> dict:
        """One row of the fixed-effects table as a dict."""
        row = self.fixed.loc[self.fixed["term"] == name]
        if row.empty:
            raise KeyError(name)
        return row.iloc[0].to_dict()


# --------------------------------------------------------------------------------- builder

def _safe_name(text: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]", "_", str(text)).strip("_") or "x"
    return name if not name[0].isdigit() else f"x_{name}"


def prepare_covariates(data: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Model columns for covariates: numeric ones as they are, categorical ones dummy-coded.

    A covariate whose values are all numbers enters as a number; otherwise each level but the
    first (alphabetical; the reference level) becomes a 0/1 column ``cov_<name>_<level>``.
    Returns ``(data with the new columns, term names, {term: readable label})``.
    """
    out = data.copy()
    terms: list[str] = []
    labels: dict[str, str] = {}
    for cov in covariates:
        if cov not in out.columns:
            raise ModelError(f"There is no column '{cov}' to use as a covariate.")
        values = out[cov]
        numeric = pd.to_numeric(values.astype(str).str.replace(",", ".", regex=False), errors="coerce")
        if numeric.notna().all():
            name = f"cov_{_safe_name(cov)}"
            out[name] = numeric.astype(float)
            terms.append(name)
            labels[name] = str(cov)
            continue
        levels = sorted(values.astype(str).unique())
        if len(levels) < 2:
            raise ModelError(f"The covariate '{cov}' has the same value in every row, so it cannot be used.")
        for level in levels[1:]:
            name = f"cov_{_safe_name(cov)}_{_safe_name(level)}"
            out[name] = (values.astype(str) == level).astype(float)
            terms.append(name)
            labels[name] = f"{cov} = {level} (vs {levels[0]})"
    return out, terms, labels


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
    - ``covariate_terms``: extra fixed terms (columns made by :func:`prepare_covariates`).
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
    fixed += list(covariate_terms)
    if random_slope and random_slope not in fixed:
        raise ModelError(f"A random slope for '{random_slope}' needs '{random_slope}' among the fixed effects.")
    return ModelSpec(outcome=outcome, fixed=tuple(fixed), random_slope=random_slope,
                     therapist_level=therapist_level, predictor=predictor, key=key, title=title,
                     labels=tuple(sorted((labels or {}).items())))


def ladder_specs(has_predictor: bool, has_therapist: bool, outcome: str = "symptoms",
                 predictor: str = "alliance") -> list[ModelSpec]:
    """The ANS study's ladder as builder presets, in the order of the paper."""
    specs = [build_model(outcome, None, key="unconditional", title="Unconditional (patients)")]
    if has_therapist:
        specs.append(build_model(outcome, None, therapist_level=True, key="unconditional_3level",
                                 title="Unconditional (therapists and patients)"))
    specs.append(build_model(outcome, None, time_only=True, random_slope="time", key="time",
                             title="Time (random slope)"))
    if has_predictor:
        specs += [
            build_model(outcome, predictor, key="hybrid", title="Hybrid: between and within"),
            build_model(outcome, predictor, detrend=True, key="hybrid_detrended",
                        title="Hybrid, controlling for time"),
            build_model(outcome, predictor, interaction=True, key="interaction",
                        title="Between × within interaction"),
        ]
    return specs


# --------------------------------------------------------------------------------- fitting

#: The largest magnitude a model variable may have: beyond it sums of squares lose all precision
#: or overflow (validation already leaves out scores beyond ±10^6).
LARGEST_FOR_FIT = 1e15


def check_model_data(data: pd.DataFrame, spec: ModelSpec) -> None:
    """Raise :class:`ModelError` in plain words when the data cannot identify the model.

    Mirrors lme4's own checks: at least two patients; fewer patients than observations (one
    session per patient confounds patient and session variance); more observations than random
    effects for a random slope; two therapists for a therapist level; the outcome and every
    fixed term must vary.
    """
    missing = [v for v in spec.variables if v not in data.columns]
    if missing:
        raise ModelError(f"The data has no '{missing[0]}' column, which this model needs.")
    n = len(data)
    n_pat = data[PATIENT].nunique()
    if n_pat < 2:
        raise ModelError("A multilevel model needs at least two patients; this data has one.")
    if n_pat >= n:
        raise ModelError("Each patient has only one session, so differences between patients cannot be "
                         "told apart from differences between sessions. A multilevel model needs "
                         "patients with two or more sessions.")
    if data[spec.outcome].nunique() < 2:
        raise ModelError(f"{spec.outcome.capitalize()} has the same value in every row: there is nothing to model.")
    for term in spec.fixed:
        for var in term.split(":"):
            if data[var].nunique() < 2:
                raise ModelError(f"'{var}' has the same value in every row, so its effect cannot be estimated"
                                 + (" (every patient has a single session)." if var in ("within", "time") else "."))
    if spec.random_slope and n <= 2 * n_pat:
        raise ModelError(f"A random slope for {spec.random_slope} needs more sessions than twice the number of "
                         f"patients ({n} sessions, {n_pat} patients); use a random intercept only.")
    if spec.therapist_level and data[THERAPIST].nunique() < 2:
        raise ModelError("The three-level model needs at least two therapists; this data has one.")
    for var in spec.variables:  # issue 13: extreme values would overflow the fit's arithmetic
        if var not in (PATIENT, THERAPIST) and pd.api.types.is_numeric_dtype(data[var]):
            values = np.abs(data[var].to_numpy(dtype=float))
            if not np.isfinite(values).all() or values.max() > LARGEST_FOR_FIT:
                raise ModelError(f"'{var}' holds values too large to fit a model (up to {values.max():.3g}); "
                                 "check the data for typing or export errors.")


def _variance_components(result, spec: ModelSpec) -> dict[str, float]:
    vc = result.VarCorr()
    out: dict[str, float] = {}
    for name, group in vc.groups.items():
        cov = np.atleast_2d(group.cov)
        prefix = "patient" if name == PATIENT else "therapist"
        out[f"{prefix}_intercept"] = float(cov[0, 0])
        if cov.shape[0] > 1:
            out[f"{prefix}_slope"] = float(cov[1, 1])
            out[f"{prefix}_intercept_slope_cov"] = float(cov[0, 1])
    out["residual"] = float(vc.residual)
    return out


def _fixed_table(result) -> pd.DataFrame:
    tidy = result.tidy(conf_int=True, ddf_method="Satterthwaite")
    tidy = tidy[tidy["effect"] == "fixed"]
    df = tidy["df"].to_numpy(float)
    est = tidy["estimate"].to_numpy(float)
    se = tidy["std.error"].to_numpy(float)
    t = est / se
    q = stats.t.ppf(0.975, df)
    return pd.DataFrame({
        "term": tidy["term"].replace({"(Intercept)": "intercept"}).to_numpy(),
        "estimate": est, "se": se, "df": df, "t": t,
        "p": 2 * stats.t.sf(np.abs(t), df),
        "ci_low": est - q * se, "ci_high": est + q * se,
    })


def _plain_warning(message: str) -> str | None:
    """lme4/mixedlm warnings in plain words (None for messages we report otherwise)."""
    if "singular" in message.lower():
        return None  # reported through ``singular`` with our own sentence
    if "only 2 levels" in message or "only 3 levels" in message or "levels. Mixed models" in message:
        return ("Few groups: variance components estimated from fewer than 5 groups are unreliable. "
                f"({message.strip()})")
    return message.strip()


def _fit(data: pd.DataFrame, spec: ModelSpec, reml: bool):
    import mixedlm

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = mixedlm.lmer(spec.formula, data, REML=reml)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
            if re.search(r"finite|\bnan\b|\binf", str(err), re.I):  # issue 13: no engine message
                raise ModelError(f"The model '{spec.formula}' could not be fitted: the estimation met numbers "
                                 "that are not finite; check the data for extreme values.") from None
            raise ModelError(f"The model '{spec.formula}' could not be fitted: {err}") from None
    messages = [str(w.message) for w in caught]
    return result, messages


def fit_model(data: pd.DataFrame, spec: ModelSpec, *, ml: bool = True) -> ModelResult:
    """Fit ``spec`` by REML (estimates) and by ML (likelihood for comparisons).

    ``data`` must already hold the model's columns (see :func:`core.stats.decomposition.add_model_terms`).
    Rows with a missing value in a model column are not expected here: validation removed them.
    ``ml=False`` skips the ML refit (about half the time) where no likelihood-ratio test will use
    it, e.g. the clinic's expected trajectory or the therapist share on the clinician pages.
    """
    frame = data[spec.variables].copy()
    frame[PATIENT] = frame[PATIENT].astype(str)
    if spec.therapist_level:
        frame[THERAPIST] = frame[THERAPIST].astype(str)
    if frame.isna().any().any():
        raise ModelError("The model data has missing values; validate the data first.")
    check_model_data(frame, spec)
    reml, reml_messages = _fit(frame, spec, reml=True)
    ml, ml_messages = _fit(frame, spec, reml=False) if ml else (None, [])
    notes: list[str] = []
    for message in dict.fromkeys(reml_messages + ml_messages):
        plain = _plain_warning(message)
        if plain:
            notes.append(plain)
    singular = bool(reml.isSingular())
    if singular:
        notes.append("Singular fit: a variance component (or a correlation of random effects) is estimated "
                     "at its boundary (zero variance or correlation ±1). The model is more complex than "
                     "the data supports; consider removing that random effect.")
    converged = bool(reml.converged) and (ml is None or bool(ml.converged))
    if not converged:
        notes.append("The fit did not converge: the estimates may not be the maximum of the likelihood. "
                     f"Optimizer said: {reml.message if not reml.converged else ml.message}")
    # mixedlm returns the BLUPs as arrays in the sorted order of the group labels (as R's factor).
    blups = reml.ranef()[PATIENT]
    ranef = pd.DataFrame({PATIENT: sorted(frame[PATIENT].unique())})
    for name, values in blups.items():
        ranef["intercept" if name == "(Intercept)" else name] = np.asarray(values, float)
    variance = _variance_components(reml, spec)
    if not spec.random_slope and not spec.therapist_level:
        # Conditional SD of a random intercept (as lme4's condVar): 1 / (1/tau^2 + n_i/sigma^2)
        n_i = frame.groupby(PATIENT).size().reindex(ranef[PATIENT]).to_numpy(float)
        tau2, sigma2 = variance["patient_intercept"], variance["residual"]
        with np.errstate(divide="ignore"):
            ranef["intercept_se"] = np.sqrt(1.0 / (1.0 / tau2 + n_i / sigma2)) if tau2 > 0 else 0.0
    return ModelResult(
        spec=spec,
        fixed=_fixed_table(reml),
        variance=variance,
        loglik_reml=float(reml.logLik().value),
        loglik_ml=float(ml.logLik().value) if ml is not None else None,
        n_params_ml=int(ml.logLik().df) if ml is not None else None,
        converged=converged,
        singular=singular,
        warnings=tuple(notes),
        n_observations=len(frame),
        n_patients=int(frame[PATIENT].nunique()),
        n_therapists=int(frame[THERAPIST].nunique()) if spec.therapist_level else None,
        random_effects=ranef,
        fitted=np.asarray(reml.fitted(), float),
        residuals=np.asarray(reml.residuals(), float),
        fixed_cov=np.asarray(reml.vcov(), float),
    )


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
    p = float(stats.chi2.sf(max(chisq, 0.0), df)) if df > 0 else float("nan")
    return Comparison(simpler.key, fuller.key, float(chisq), int(df), p, note)


#: Comparisons the report always makes: name → (simpler, fuller).
COMPARISONS = {
    "time_vs_unconditional": ("unconditional", "time"),
    "hybrid_vs_unconditional": ("unconditional", "hybrid"),
    "interaction_vs_hybrid": ("hybrid", "interaction"),
    "hybrid_detrended_vs_hybrid": ("hybrid", "hybrid_detrended"),
    "unconditional_3level_vs_unconditional": ("unconditional", "unconditional_3level"),
}
_BOUNDARY_NOTE = ("The therapist variance is tested at its boundary (zero), where the χ² test is "
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
        return ("No therapist column: the models have two levels (sessions within patients).",)
    if icc.get("therapist") is None:
        return (f"Only {n_therapists} therapist(s): a therapist level cannot be estimated; two levels are used.",)
    share = icc["therapist"] * 100
    if icc["therapist"] < THERAPIST_ICC_RULE:
        return (f"Therapists account for {share:.1f}% of the variance in the outcome (< 1%). As in "
                "Manubens et al. (2023), a two-level model (sessions within patients) is enough; "
                "the ladder below uses two levels.",)
    return (f"Therapists account for {share:.1f}% of the variance in the outcome (≥ 1%). Consider "
            "keeping the therapist level (turn it on in the model builder); the ladder below, like "
            "the ANS study's, uses two levels.",)


def fit_ladder(data: pd.DataFrame, outcome: str = "symptoms", predictor: str = "alliance",
               progress=None) -> LadderResult:
    """Fit the ANS study's model ladder to validated long data.

    ``data`` needs ``patient``, ``session`` and the outcome; ``predictor`` and ``therapist`` are
    used when present. ``time``, ``between`` and ``within`` are computed here (contract
    definitions). A model the data cannot support is listed in ``errors`` with the reason.
    ``progress(i, n, key)`` is called before each model.
    """
    has_predictor = predictor in data.columns
    has_therapist = THERAPIST in data.columns
    frame = add_model_terms(data, predictor=predictor)
    specs = ladder_specs(has_predictor, has_therapist, outcome, predictor)
    models: dict[str, ModelResult] = {}
    errors: dict[str, str] = {}
    for i, spec in enumerate(specs):
        if progress:
            progress(i, len(specs), spec.key)
        try:
            models[spec.key] = fit_model(frame, spec)
        except ModelError as err:
            errors[spec.key] = str(err)
    comparisons = {}
    for name, (a, b) in COMPARISONS.items():
        if a in models and b in models:
            note = _BOUNDARY_NOTE if name.startswith("unconditional_3level") else ""
            comparisons[name] = likelihood_ratio_test(models[a], models[b], note)
    icc = compute_iccs(models)
    n_ther = int(frame[THERAPIST].nunique()) if has_therapist else None
    return LadderResult(models=models, errors=errors, icc=icc, comparisons=comparisons,
                        advice=level_advice(icc, n_ther), n_observations=len(frame),
                        n_patients=int(frame[PATIENT].nunique()), n_therapists=n_ther,
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
        parts = [f"{predictor} → {outcome}"]
        parts += [text for on, text in ((self.detrend, "controlling for time"),
                                        (self.interaction, "between × within interaction"),
                                        (self.random_slope_within, "random slope for within"),
                                        (self.therapist_level, "therapist level")) if on]
        if self.covariates:
            parts.append("covariates: " + ", ".join(self.covariates))
        return "; ".join(parts)


def fit_custom_model(data: pd.DataFrame, options: BuilderOptions, key: str = "custom") -> ModelResult:
    """Fit the builder's model: between/within of the predictor, with the chosen extras."""
    if options.direction not in DIRECTIONS:
        raise ModelError(f"Unknown direction '{options.direction}'.")
    outcome, predictor = DIRECTIONS[options.direction]
    for needed in (outcome, predictor):
        if needed not in data.columns:
            raise ModelError(f"This model needs a {needed} column.")
    if options.therapist_level and THERAPIST not in data.columns:
        raise ModelError("The therapist level needs a therapist column.")
    frame = add_model_terms(data, predictor=predictor)
    frame, terms, labels = prepare_covariates(frame, list(options.covariates))
    spec = build_model(outcome, predictor, detrend=options.detrend, interaction=options.interaction,
                       covariate_terms=tuple(terms), random_slope="within" if options.random_slope_within else None,
                       therapist_level=options.therapist_level, key=key, title=options.describe(),
                       labels=labels)
    return fit_model(frame, spec)
