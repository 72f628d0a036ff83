"""Meta-analysis: random-effects pooling (stage 2) and two-stage IPD meta-analysis.

Two public layers, both pure functions on numbers and DataFrames:

- :func:`pool_effects` pools study estimates with their standard errors in a random-effects
  model, reproducing ``metafor::rma(yi, sei=..., method="REML"|"DL", test="z"|"knha")`` and
  ``predict()`` (Viechtbauer 2010, metafor 3.8-1).
- :func:`lagged_within_effects` (stage 1, one study) and :func:`ipd_meta_analysis` (stage 1 in
  every study, then stage 2 per direction) implement the two-stage individual-participant-data
  meta-analysis of lagged alliance/symptom effects of Flückiger et al. (2020).

References
----------
- DerSimonian, R., & Laird, N. (1986). Meta-analysis in clinical trials. *Controlled Clinical
  Trials, 7*, 177-188.
- Higgins, J. P. T., & Thompson, S. G. (2002). Quantifying heterogeneity in a meta-analysis.
  *Statistics in Medicine, 21*, 1539-1558.
- Knapp, G., & Hartung, J. (2003). Improved tests for a random effects meta-regression with a
  single covariate. *Statistics in Medicine, 22*, 2693-2710.
- Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in the
  random-effects model. *Journal of Educational and Behavioral Statistics, 30*, 261-293.
- Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
  Statistical Software, 36*(3), 1-48.
- Flückiger, C., Rubel, J., Del Re, A. C., Horvath, A. O., Wampold, B. E., Crits-Christoph, P.,
  Atzil-Slonim, D., Compare, A., Falkenström, F., Ekeblad, A., Errázuriz, P., Fisher, H.,
  Hoffart, A., Huppert, J. D., Kivity, Y., Kumar, M., Lutz, W., Muran, J. C., Strunk, D. R.,
  ... Barber, J. P. (2020). The reciprocal relationship between alliance and early treatment
  symptoms: A two-stage individual participant data meta-analysis. *Journal of Consulting and
  Clinical Psychology, 88*(9), 829-843.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from core.errors import InputError, ModelError
from core.i18n import _

#: Pooling methods accepted by :func:`pool_effects`.
METHODS = ("reml", "dl")

#: Stage-1 directions: key -> (outcome, lagged cross term, lagged autoregressive term, patient mean).
DIRECTIONS = {
    "alliance_to_symptoms": ("sz", "aw_l", "sw_l", "ab"),
    "symptoms_to_alliance": ("az", "sw_l", "aw_l", "sb"),
}

#: Suffix of the cross-level interaction directions (``interaction=True``).
INTERACTION_SUFFIX = "_interaction"

#: Fewest patients with at least one lagged pair that a study needs for the stage-1 models (lme4
#: fits a random intercept from two groups; the fit is then often singular, which stage 1 reports).
MIN_PATIENTS = 2

# metafor's rma.uni control defaults (metafor 3.8-1).
_FISHER_THRESHOLD = 1e-5       # con$threshold: stop when |tau2 change| < threshold
_FISHER_MAXITER = 100          # con$maxiter
_LL0_TOLERANCE = np.finfo(float).eps ** 0.25  # con$tol, used in the "tau2 = 0 is better" check

_LEVEL = 0.95


# ---------------------------------------------------------------------------------------------
# Stage 2: random-effects pooling
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolResult:
    """A random-effects meta-analysis, as ``metafor::rma`` and ``predict()`` report it.

    ``ci_low``/``ci_high`` are the 95% confidence interval of the pooled estimate,
    ``pi_low``/``pi_high`` the 95% prediction interval for the true effect in a new study,
    ``i2`` is in percent, ``q``/``q_p`` the fixed-effect heterogeneity test. ``studies`` has
    one row per study: ``label, estimate, se, weight`` (weight in percent of the total
    random-effects weight, as ``metafor::weights()``).
    """

    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p: float
    tau2: float
    i2: float
    q: float
    q_p: float
    pi_low: float
    pi_high: float
    method: str
    knapp_hartung: bool
    studies: pd.DataFrame = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able numbers (``None`` where a number does not exist, never NaN)."""
        out: dict[str, Any] = {
            name: _json_number(getattr(self, name))
            for name in ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q", "q_p",
                         "pi_low", "pi_high")
        }
        out = {"k": int(self.k), **out, "method": self.method,
               "knapp_hartung": bool(self.knapp_hartung)}
        out["studies"] = [
            {"label": str(row.label), "estimate": _json_number(row.estimate),
             "se": _json_number(row.se), "weight": _json_number(row.weight)}
            for row in self.studies.itertuples(index=False)
        ]
        return out


def pool_effects(estimates: Sequence[float], ses: Sequence[float],
                 labels: Sequence[Any] | None = None, method: str = "reml",
                 knapp_hartung: bool = False) -> PoolResult:
    """Random-effects meta-analysis of ``k >= 2`` estimates ``y_i`` with standard errors ``se_i``.

    Reproduces ``metafor::rma(yi, sei=se, method="REML"|"DL", test="z"|"knha")`` with
    ``predict()`` (Viechtbauer 2010). With ``v_i = se_i^2``:

    - Between-study variance ``tau2``:

      * ``"dl"`` (DerSimonian & Laird 1986): ``tau2 = max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``
        with fixed-effect weights ``w_i = 1/v_i``.
      * ``"reml"``: maximiser of the restricted likelihood over ``tau2 >= 0``, found by
        metafor's Fisher scoring (Viechtbauer 2005): start at the Hedges estimate
        ``max(0, (sum (y_i - ybar)^2 - (1 - 1/k) sum v_i) / (k-1))`` and iterate
        ``tau2 += (y'PPy - tr P) / tr(PP)`` with ``W = diag(1/(v_i + tau2))``,
        ``P = W - W 1 1' W / sum W`` (halving the step while it would go below 0) until the
        change is below 1e-5; then, as metafor, ``tau2 = 0`` if the restricted likelihood is
        higher there.

    - Pooled estimate ``mu = sum w*_i y_i / sum w*_i`` with ``w*_i = 1/(v_i + tau2)``,
      ``se = sqrt(1 / sum w*_i)``; ``z = mu/se``, normal p-value and 95% CI ``mu +- z_.975 se``.
    - Knapp & Hartung (2003), metafor's ``test="knha"``: ``se`` multiplied by ``sqrt(s2w)``
      with ``s2w = sum w*_i (y_i - mu)^2 / (k-1)`` (not truncated at 1, metafor's default), and
      the t distribution with ``k-1`` df for the p-value and CI.
    - ``Q = sum w_i (y_i - mu_FE)^2`` with ``w_i = 1/v_i``; ``q_p`` from chi-square(k-1).
    - ``I2 = 100 tau2 / (tau2 + s2)`` with the typical within-study variance
      ``s2 = (k-1) sum w / ((sum w)^2 - sum w^2)`` (Higgins & Thompson 2002; metafor's
      definition, so I2 agrees with the ``tau2`` of the chosen estimator).
    - 95% prediction interval ``mu +- c sqrt(se^2 + tau2)``, ``c`` the normal quantile, or
      with Knapp-Hartung the t(k-1) quantile and the adjusted ``se`` (metafor's ``predict()``).
    - Study weights ``100 w*_i / sum w*_i`` (metafor's ``weights()``).

    Raises :class:`InputError` for fewer than 2 studies, missing or non-finite estimates, and
    missing, zero or negative standard errors.
    """
    method = str(method).lower()
    if method not in METHODS:
        raise InputError(_("Unknown pooling method '{method}'; use 'reml' or 'dl'.").format(method=method))
    y = _as_float_array(estimates, _("estimates"))
    se = _as_float_array(ses, _("standard errors"))
    if y.shape != se.shape:
        raise InputError(_("There are {n} estimates but {k} standard errors; give one standard error per "
                           "estimate.").format(n=y.size, k=se.size))
    k = y.size
    if labels is None:
        labels = [f"Study {i}" for i in range(1, k + 1)]
    labels = list(labels)
    if len(labels) != k:
        raise InputError(_("There are {n} estimates but {k} study labels; give one label per estimate.").format(
            n=k, k=len(labels)))
    if k < 2:
        raise InputError(_("Pooling needs at least 2 studies; the between-study variance "
                           "cannot be estimated from one."))
    bad = [str(labels[i]) for i in range(k) if not np.isfinite(y[i])]
    if bad:
        raise InputError(_("The estimate is missing or not a number for: {studies}.").format(studies=", ".join(bad)))
    bad = [str(labels[i]) for i in range(k) if not (np.isfinite(se[i]) and se[i] > 0)]
    if bad:
        raise InputError(_("The standard error must be a positive number; it is missing, zero "
                           "or negative for: {studies}.").format(studies=", ".join(bad)))

    from scipy import stats  # loaded when pooling, not by every page that imports this module

    v = se ** 2
    with np.errstate(all="ignore"):
        w_fixed = 1.0 / v
        mu_fixed = np.sum(w_fixed * y) / np.sum(w_fixed)
        q = float(np.sum(w_fixed * (y - mu_fixed) ** 2))
        q_p = float(stats.chi2.sf(q, k - 1))
        tau2 = _tau2_reml(y, v) if method == "reml" else _tau2_dl(y, v)

        w = 1.0 / (v + tau2)
        sum_w = np.sum(w)
        mu = float(np.sum(w * y) / sum_w)
        se_mu = math.sqrt(1.0 / sum_w)
        if knapp_hartung:
            s2w = float(np.sum(w * (y - mu) ** 2) / (k - 1))
            se_mu *= math.sqrt(s2w)
            dist = stats.t(df=k - 1)
        else:
            dist = stats.norm()
        crit = float(dist.ppf(1 - (1 - _LEVEL) / 2))
        p = _two_sided_p(mu, se_mu, dist)
        half_pi = crit * math.sqrt(se_mu ** 2 + tau2)
        s2_typical = (k - 1) * np.sum(w_fixed) / (np.sum(w_fixed) ** 2 - np.sum(w_fixed ** 2))
        i2 = float(100.0 * tau2 / (tau2 + s2_typical)) if tau2 > 0 else 0.0

    studies = pd.DataFrame({"label": labels, "estimate": y, "se": se,
                            "weight": 100.0 * w / sum_w})
    return PoolResult(k=k, estimate=mu, se=se_mu, ci_low=mu - crit * se_mu,
                      ci_high=mu + crit * se_mu, p=p, tau2=float(tau2), i2=i2, q=q, q_p=q_p,
                      pi_low=mu - half_pi, pi_high=mu + half_pi, method=method,
                      knapp_hartung=bool(knapp_hartung), studies=studies)


def _tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    """DerSimonian-Laird: ``max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``, ``w = 1/v``."""
    w = 1.0 / v
    mu = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mu) ** 2)
    c = np.sum(w) - np.sum(w ** 2) / np.sum(w)
    return max(0.0, float((q - (y.size - 1)) / c))


def _reml_loglik(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    """Restricted log-likelihood of the intercept-only model, up to a constant.

    ``-1/2 (sum log(v_i + tau2) + log sum w_i + sum w_i (y_i - mu)^2)``, ``w_i = 1/(v_i + tau2)``.
    """
    w = 1.0 / (v + tau2)
    mu = np.sum(w * y) / np.sum(w)
    return float(-0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w))
                         + np.sum(w * (y - mu) ** 2)))


def _tau2_reml(y: np.ndarray, v: np.ndarray) -> float:
    """REML ``tau2`` by metafor's Fisher scoring (see :func:`pool_effects`).

    For the intercept-only model ``P = W - w w'/sum w`` gives in closed form
    ``Py = w (y - mu)``, ``y'PPy = sum w^2 (y - mu)^2``, ``tr P = sum w - sum w^2 / sum w`` and
    ``tr PP = sum w^2 - 2 sum w^3 / sum w + (sum w^2 / sum w)^2``. If scoring has not converged
    after 100 iterations (metafor stops with an error there), the restricted likelihood is
    maximised directly over ``[0, upper]`` instead.
    """
    k = y.size
    tau2 = max(0.0, float((np.sum((y - y.mean()) ** 2) - (1 - 1 / k) * np.sum(v)) / (k - 1)))
    converged = False
    for _iteration in range(_FISHER_MAXITER):
        w = 1.0 / (v + tau2)
        s1, s2, s3 = np.sum(w), np.sum(w ** 2), np.sum(w ** 3)
        mu = np.sum(w * y) / s1
        score = np.sum(w ** 2 * (y - mu) ** 2) - (s1 - s2 / s1)
        information = s2 - 2 * s3 / s1 + (s2 / s1) ** 2
        step = float(score / information)
        if tau2 + step < 0:
            # metafor halves the step until tau2 stays >= 0; from tau2 = 0 that ends at 0.
            if tau2 == 0:
                step = 0.0
            while tau2 + step < 0:
                step /= 2
        old = tau2
        tau2 = tau2 + step
        if abs(tau2 - old) < _FISHER_THRESHOLD:
            converged = True
            break
    if not converged or not np.isfinite(tau2):
        from scipy import optimize

        upper = 10.0 * (float(np.var(y, ddof=1)) + float(np.max(v)))
        found = optimize.minimize_scalar(lambda t: -_reml_loglik(t, y, v), bounds=(0.0, upper),
                                         method="bounded", options={"xatol": 1e-12})
        tau2 = float(found.x)
        if _reml_loglik(0.0, y, v) >= _reml_loglik(tau2, y, v):
            tau2 = 0.0
    # metafor's check that the scoring did not stop at a worse point than tau2 = 0.
    if tau2 > _FISHER_THRESHOLD and _reml_loglik(0.0, y, v) - _reml_loglik(tau2, y, v) > _LL0_TOLERANCE:
        tau2 = 0.0
    return max(0.0, float(tau2))


def _two_sided_p(estimate: float, se: float, dist) -> float:
    """Two-sided p-value of ``estimate/se``; with ``se = 0`` it is 0 (or 1 for a zero estimate)."""
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * dist.sf(abs(estimate / se)))


def _as_float_array(values: Sequence[float], what: str) -> np.ndarray:
    """``values`` as a 1-d float array; text that is not a number becomes NaN (reported later)."""
    series = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
    array = series.to_numpy(dtype=float, na_value=np.nan)
    if array.ndim != 1:
        raise InputError(_("Give the {what} as a plain list of numbers.").format(what=what))
    return array


def _json_number(value: Any) -> float | None:
    """A float for JSON, or ``None`` for a missing or non-finite value."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Stage 1: lagged within-patient effects in one study
# ---------------------------------------------------------------------------------------------

def prepare_lagged(df: pd.DataFrame, patient: str = "patient", session: str = "session",
                   alliance: str = "alliance", symptoms: str = "symptoms",
                   study_label: Any = None) -> pd.DataFrame:
    """One study's long data with z-scores, patient-mean split and lag-1 deviations.

    Rows are ordered by patient, then session (stable, as R's ``order``). Over all the study's
    rows: ``az = (alliance - mean) / sd`` and ``sz`` likewise (sample SD, ``ddof=1``);
    ``ab``/``sb`` = the patient's mean of ``az``/``sz`` over all that patient's rows; ``aw =
    az - ab``, ``sw = sz - sb``. ``aw_l``/``sw_l`` are ``aw``/``sw`` of the previous row, set
    only where that row is the same patient's and its session number is exactly one less (a
    gap gives NaN, not the earlier session). A missing score (blank cell) stays missing: means,
    SDs and patient means use the observed scores of each measure. Returns all rows with columns
    ``patient`` (as text), ``session``, ``az, sz, ab, sb, aw, sw, aw_l, sw_l``; the models use
    the rows with every one of these (lme4's ``na.omit``).
    """
    name = _study_name(study_label)
    for col in (patient, session, alliance, symptoms):
        if col not in df.columns:
            raise InputError(_("{study}: the data have no column '{column}'.").format(study=name, column=col))
    if df.empty:
        raise InputError(_("{study} has no rows.").format(study=name))
    if df[patient].isna().any():
        raise InputError(_("{study}: {n} rows have no patient ID; fill or remove them.").format(
            study=name, n=int(df[patient].isna().sum())))
    x = pd.DataFrame({"patient": df[patient].astype(str).to_numpy()})
    for out_col, col in (("session", session), ("alliance", alliance), ("symptoms", symptoms)):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan).copy()
        values[~np.isfinite(values)] = np.nan
        if out_col == "session" and np.isnan(values).any():
            raise InputError(_("{study}: {n} rows have no numeric '{column}'; fill or remove them.").format(
                study=name, n=int(np.isnan(values).sum()), column=col))
        if out_col != "session" and np.isnan(values).all():
            raise InputError(_("{study}: no row has a numeric '{column}'.").format(study=name, column=col))
        x[out_col] = values
    x = x.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)

    for raw, z in (("alliance", "az"), ("symptoms", "sz")):
        sd = x[raw].std(ddof=1) if x[raw].count() > 1 else float("nan")
        if not (np.isfinite(sd) and sd > 0):
            raise InputError(_("{study}: '{column}' has the same value in every row, so it cannot be "
                               "standardised.").format(study=name, column=alliance if raw == "alliance" else symptoms))
        x[z] = (x[raw] - x[raw].mean()) / sd
    by_patient = x.groupby("patient", sort=False)
    x["ab"] = by_patient["az"].transform("mean")
    x["sb"] = by_patient["sz"].transform("mean")
    x["aw"] = x["az"] - x["ab"]
    x["sw"] = x["sz"] - x["sb"]

    same_patient = x["patient"].eq(x["patient"].shift(1))
    next_session = (x["session"] - x["session"].shift(1)).eq(1)
    has_lag = same_patient & next_session
    x["aw_l"] = x["aw"].shift(1).where(has_lag)
    x["sw_l"] = x["sw"].shift(1).where(has_lag)
    return x.drop(columns=["alliance", "symptoms"])


def lagged_within_effects(df: pd.DataFrame, patient: str = "patient", session: str = "session",
                          alliance: str = "alliance", symptoms: str = "symptoms",
                          interaction: bool = False, study_label: Any = None) -> dict[str, Any]:
    """Stage 1 of the two-stage IPD meta-analysis (Flückiger et al. 2020) in one study.

    On the rows of :func:`prepare_lagged` that have a lag, two REML fits (``mixedlm.lmer``,
    lme4's algorithm):

    - ``alliance_to_symptoms``: ``sz ~ aw_l + sw_l + ab + (1 | patient)``, coefficient of ``aw_l``
      (does a patient's better-than-usual alliance precede lower symptoms next session?);
    - ``symptoms_to_alliance``: ``az ~ sw_l + aw_l + sb + (1 | patient)``, coefficient of ``sw_l``.

    With ``interaction=True`` the cross-level interaction ``ab:aw_l`` (``sb:sw_l``) is added to
    the first (second) model, and its coefficient is returned as
    ``alliance_to_symptoms_interaction`` (``symptoms_to_alliance_interaction``); the main
    coefficients are then those of the models with interaction.

    Returns ``{n_patients, n_observations, alliance_to_symptoms: {estimate, se},
    symptoms_to_alliance: {estimate, se}}`` where ``n_observations`` counts the rows in the
    models and ``n_patients`` the patients among them. ``study_label`` only names the study in
    error messages. Raises :class:`InputError` when fewer than 3 patients have a pair of
    consecutive sessions, and :class:`ModelError` when a coefficient cannot be estimated.
    """
    from core.stats.formula import fit_formula

    name = _study_name(study_label)
    x = prepare_lagged(df, patient, session, alliance, symptoms, study_label)
    y = x.dropna(subset=["az", "sz", "ab", "sb", "aw_l", "sw_l"]).reset_index(drop=True)
    n_patients = int(y["patient"].nunique())
    n_observations = int(len(y))
    if n_observations == 0:
        raise InputError(_("{study} has no pair of consecutive sessions (session n followed by "
                           "n+1 for the same patient), so no lagged effect can be estimated.").format(study=name))
    if n_patients < MIN_PATIENTS or n_observations <= n_patients:
        raise InputError(_("{study} has too few patients with consecutive sessions ({patients} patients, "
                           "{observations} lagged observations); it needs at least {min} patients and more "
                           "lagged observations than patients.").format(
            study=name, patients=n_patients, observations=n_observations, min=MIN_PATIENTS))

    result: dict[str, Any] = {"n_patients": n_patients, "n_observations": n_observations}
    converged, singular, notes = True, False, []
    for direction, (outcome, cross, auto, mean) in DIRECTIONS.items():
        terms = [cross, auto, mean] + ([f"{mean}:{cross}"] if interaction else [])
        formula = f"{outcome} ~ {' + '.join(terms)} + (1 | patient)"
        try:
            fit = fit_formula(y, formula, ml=False)
        except ModelError as err:
            raise ModelError(_("{study}: {error}").format(study=name, error=err)) from None
        diagnostics = {"converged": fit.converged, "singular": fit.singular, "warnings": list(fit.warnings)}
        result[direction] = {**_coefficient(fit, cross, name, formula), **diagnostics}
        converged &= fit.converged
        singular |= fit.singular
        notes += [f"{direction}: {w}" for w in fit.warnings]
        if interaction:
            result[direction + INTERACTION_SUFFIX] = {
                **_coefficient(fit, (f"{cross}:{mean}", f"{mean}:{cross}"), name, formula), **diagnostics}
    result.update(converged=converged, singular=singular, warnings=notes)
    return result


def _coefficient(fit: Any, term, study_name: str, formula: str) -> dict[str, float]:
    """``{estimate, se}`` of a fixed effect of a :class:`~core.stats.formula.FormulaFit` (REML);
    ``term`` may list the names it can have (an interaction's variables in either order)."""
    table = fit.fixed.set_index("term")
    names = [term] if isinstance(term, str) else list(term)
    found = next((t for t in names if t in table.index), None)
    if found is None:
        raise ModelError(_("{study}: the coefficient of {term} cannot be estimated in {formula} (the predictors "
                           "are collinear).").format(study=study_name, term=names[0], formula=formula))
    estimate = float(table.loc[found, "estimate"])
    se = float(table.loc[found, "se"])
    if not (np.isfinite(estimate) and np.isfinite(se) and se > 0):
        raise ModelError(_("{study}: the model {formula} gave no usable estimate for {term}.").format(
            study=study_name, formula=formula, term=names[0]))
    return {"estimate": estimate, "se": se}


def _study_name(label: Any) -> str:
    return _("The data") if label is None else _("Study '{study}'").format(study=label)


# ---------------------------------------------------------------------------------------------
# Two-stage IPD meta-analysis
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IPDMetaResult:
    """Result of :func:`ipd_meta_analysis`.

    ``stage1``: one row per study and direction with columns ``study, direction, estimate, se,
    n_patients, n_observations``; ``pooled``: direction -> :class:`PoolResult`.
    """

    stage1: pd.DataFrame = field(compare=False)
    pooled: dict[str, PoolResult] = field(compare=False)
    #: Studies left out of the pooling: label -> reason (could not be fitted, or excluded by the user).
    excluded_studies: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``{stage1: {<study>: {n_patients, n_observations, converged, singular, warnings,
        <direction>: {estimate, se, converged, singular, warnings}}}, pooled: {<direction>:
        <PoolResult.to_dict()>}, excluded_studies: [{study, reason}]}`` with plain JSON numbers."""
        stage1: dict[str, dict[str, Any]] = {}
        for row in self.stage1.itertuples(index=False):
            entry = stage1.setdefault(str(row.study), {"n_patients": int(row.n_patients),
                                                       "n_observations": int(row.n_observations),
                                                       "converged": True, "singular": False,
                                                       "warnings": []})
            entry[row.direction] = {"estimate": _json_number(row.estimate),
                                    "se": _json_number(row.se),
                                    "converged": bool(row.converged), "singular": bool(row.singular),
                                    "warnings": list(row.warnings)}
            if not row.direction.endswith(INTERACTION_SUFFIX):
                entry["converged"] &= bool(row.converged)
                entry["singular"] |= bool(row.singular)
                entry["warnings"] += [f"{row.direction}: {w}" for w in row.warnings]
        return {"stage1": stage1,
                "pooled": {direction: pooled.to_dict() for direction, pooled in self.pooled.items()},
                "excluded_studies": [{"study": k, "reason": v} for k, v in self.excluded_studies.items()]}


def stage1_effects(df: pd.DataFrame, study: str = "study", patient: str = "patient",
                   session: str = "session", alliance: str = "alliance",
                   symptoms: str = "symptoms", interaction: bool = False,
                   progress: Callable[[int, int, str], None] | None = None,
                   exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Stage 1 in every study: :func:`lagged_within_effects` per study, in sorted study order.

    Returns the tidy table ``study, direction, estimate, se, n_patients, n_observations,
    converged, singular, warnings`` (one row per study and direction). A study that cannot be
    fitted, or is named in ``exclude``, is not fitted: it appears in the table's
    ``attrs["excluded_studies"]`` (label → reason) instead. ``progress(i, n, study_label)`` is
    called before study ``i`` (1-based) of ``n`` is fitted.
    """
    if study not in df.columns:
        raise InputError(_("The data have no column '{column}'.").format(column=study))
    if df[study].isna().any():
        raise InputError(_("{n} rows have no study label; fill or remove them.").format(n=int(df[study].isna().sum())))
    labels = sorted_study_labels(df[study].unique())
    if len(labels) < 2:
        raise InputError(_("A meta-analysis needs at least 2 studies; the data have {n}.").format(n=len(labels)))
    wanted = {str(x) for x in exclude}
    unknown = wanted - {str(x) for x in labels}
    if unknown:
        raise InputError(_("There is no study {names} to exclude; the studies are {studies}.").format(
            names=", ".join(sorted(unknown)), studies=", ".join(str(x) for x in labels)))
    effects, skipped = {}, {}
    for i, label in enumerate(labels, start=1):
        if progress is not None:
            progress(i, len(labels), str(label))
        if str(label) in wanted:
            skipped[str(label)] = _("excluded by the user (--exclude-study)")
            continue
        try:
            effects[str(label)] = lagged_within_effects(df.loc[df[study] == label], patient, session, alliance,
                                                        symptoms, interaction=interaction, study_label=label)
        except (InputError, ModelError) as err:
            skipped[str(label)] = str(err)
    table = stage1_table(effects)
    table.attrs["excluded_studies"] = skipped
    return table


def stage1_table(effects: dict[str, dict]) -> pd.DataFrame:
    """Tidy stage-1 table from ``{study: lagged_within_effects(...)}`` (in the given order)."""
    rows = []
    for label, study_effects in effects.items():
        for direction, value in study_effects.items():
            if isinstance(value, dict):
                rows.append({"study": str(label), "direction": direction,
                             "estimate": value["estimate"], "se": value["se"],
                             "n_patients": study_effects["n_patients"],
                             "n_observations": study_effects["n_observations"],
                             "converged": bool(value.get("converged", True)),
                             "singular": bool(value.get("singular", False)),
                             "warnings": tuple(value.get("warnings", ()))})
    return pd.DataFrame(rows, columns=["study", "direction", "estimate", "se", "n_patients",
                                       "n_observations", "converged", "singular", "warnings"])


def pool_stage1(stage1: pd.DataFrame, method: str = "reml",
                knapp_hartung: bool = False) -> dict[str, PoolResult]:
    """Stage 2: :func:`pool_effects` over studies for each direction of a stage-1 table.

    Lets the method be changed without refitting stage 1.
    """
    pooled = {}
    for direction, part in stage1.groupby("direction", sort=False):
        pooled[str(direction)] = pool_effects(part["estimate"].to_numpy(), part["se"].to_numpy(),
                                              labels=part["study"].tolist(), method=method,
                                              knapp_hartung=knapp_hartung)
    return pooled


def ipd_meta_analysis(df: pd.DataFrame, study: str = "study", patient: str = "patient",
                      session: str = "session", alliance: str = "alliance",
                      symptoms: str = "symptoms", method: str = "reml",
                      knapp_hartung: bool = False, interaction: bool = False,
                      progress: Callable[[int, int, str], None] | None = None,
                      exclude: Sequence[str] = ()) -> IPDMetaResult:
    """Two-stage IPD meta-analysis of lagged alliance/symptom effects (Flückiger et al. 2020).

    Stage 1 (:func:`stage1_effects`): in each study separately, z-score, split into patient
    means and deviations, lag the deviations by one session, and fit the two REML models of
    :func:`lagged_within_effects` (each with lme4's ``converged``/``singular`` and warnings).
    Stage 2 (:func:`pool_stage1`): pool each direction's study coefficients with
    :func:`pool_effects` (``method``, ``knapp_hartung``). A study that cannot be fitted, or is
    named in ``exclude``, is left out of the pooling and listed in ``excluded_studies`` with the
    reason; at least two fitted studies are needed. ``progress(i, n, study_label)`` is called once
    per study, e.g. for a progress bar.
    """
    if str(method).lower() not in METHODS:
        raise InputError(_("Unknown pooling method '{method}'; use 'reml' or 'dl'.").format(method=method))
    stage1 = stage1_effects(df, study, patient, session, alliance, symptoms,
                            interaction=interaction, progress=progress, exclude=exclude)
    skipped = dict(stage1.attrs.get("excluded_studies", {}))
    fitted = stage1["study"].nunique()
    if fitted < 2:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise InputError(_("Pooling needs at least 2 studies that can be fitted; {n} can be. Left out: {why}").format(
            n=fitted, why=why))
    return IPDMetaResult(stage1=stage1, pooled=pool_stage1(stage1, method, knapp_hartung),
                         excluded_studies=skipped)


def sorted_study_labels(labels: Sequence[Any]) -> list[Any]:
    """Study labels in sorted order (numbers numerically, otherwise as text)."""
    labels = list(labels)
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=str)
