"""Meta-analysis: random-effects pooling (stage 2) and two-stage IPD meta-analysis.

Two public layers, both pure functions on numbers and DataFrames:

- :func:`pool_effects` pools study estimates with their standard errors in a random-effects
  model, reproducing ``metafor::rma(yi, sei=..., method="REML"|"DL", test="z"|"knha")`` and
  ``predict()`` (Viechtbauer 2010, metafor 3.8-1); :func:`meta_regression` adds study-level
  moderators (``rma(mods = ~ ...)``); :func:`egger_test`, :func:`leave_one_out` and
  :func:`influence` are metafor's ``regtest``, ``leave1out`` and ``influence``. A study whose
  standard error is 0 is handled as metafor handles it (REML keeps it, DL refuses it).
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
- Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected by
  a simple, graphical test. *BMJ, 315*, 629-634.
- Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for meta-analysis.
  *Research Synthesis Methods, 1*, 112-125.
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
from core.i18n import _, ngettext

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
# Stage 2: random-effects pooling and meta-regression (metafor's rma.uni)
# ---------------------------------------------------------------------------------------------

#: metafor's name of the intercept, and the contract's.
INTERCEPT = "intercept"


@dataclass(frozen=True)
class _RMA:
    """One fitted ``metafor::rma.uni`` model: what the reports need of metafor's object.

    ``X`` holds the intercept and the moderators (``names``), ``w = 1/(v + tau2)``; ``vb`` is the
    covariance of ``beta`` (times ``s2w`` with Knapp-Hartung); ``stat`` the z (or t) values; ``df``
    is ``k - p`` with Knapp-Hartung, else ``None``. ``qe, qe_p, i2, h2`` are NaN when a sampling
    variance is 0 (metafor: "Cannot compute Q-test, I^2, or H^2 ..."). ``btt``: the coefficients
    that ``qm`` tests (the moderators; the intercept in an intercept-only model).
    """

    y: np.ndarray
    v: np.ndarray
    X: np.ndarray
    names: tuple[str, ...]
    method: str
    knapp_hartung: bool
    tau2: float
    beta: np.ndarray
    vb: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    p: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: int | None
    crit: float
    s2w: float
    w: np.ndarray
    qe: float
    qe_p: float
    i2: float
    h2: float
    qm: float
    qm_p: float
    btt: tuple[int, ...]
    warnings: tuple[str, ...] = ()

    @property
    def k(self) -> int:
        return int(self.y.size)

    @property
    def p_coef(self) -> int:
        return int(self.X.shape[1])

    def hat(self) -> np.ndarray:
        """``diag(X (X'WX)^-1 X'W)`` (metafor's ``hatvalues``; values within 10 eps of 1 set to 1)."""
        xwx_inv = np.linalg.inv(self.X.T @ (self.w[:, None] * self.X))
        h = np.einsum("ij,jk,ik->i", self.X, xwx_inv, self.X) * self.w
        h[h > 1 - 10 * np.finfo(float).eps] = 1.0
        return h

    def weights(self) -> np.ndarray:
        """Study weights in percent, ``100 w_i / sum w`` (metafor's ``weights()``)."""
        return 100.0 * self.w / np.sum(self.w)


def _zero_variance_error(v: np.ndarray, labels: Sequence[Any]) -> InputError:
    """The refusal when a study with standard error 0 would get an infinite weight (tau2 = 0)."""
    names = ", ".join(str(labels[i]) for i in np.flatnonzero(v == 0))
    return InputError(_("The standard error of {studies} is 0 and the between-study variance is estimated at 0, so "
                        "that study would get an infinite weight (metafor stops here too). Check that standard "
                        "error: a value rounded to 0 should be given with more decimals.").format(studies=names))


def _solve_weighted(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(X'WX)^-1`` with ``W = diag(w)``."""
    return np.linalg.inv(X.T @ (w[:, None] * X))


def _p_matrix(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``P = W - W X (X'WX)^-1 X' W``."""
    wx = w[:, None] * X
    return np.diag(w) - wx @ _solve_weighted(X, w) @ wx.T


def _reml_loglik_x(tau2: float, y: np.ndarray, v: np.ndarray, X: np.ndarray) -> float:
    """Restricted log-likelihood of ``y ~ X`` with ``tau2``, as metafor's ``ll.REML`` without its
    constant: ``-1/2 (sum log(v + tau2) + log det(X'WX) + RSS)``."""
    w = 1.0 / (v + tau2)
    xwx = X.T @ (w[:, None] * X)
    beta = np.linalg.solve(xwx, X.T @ (w * y))
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    return float(-0.5 * (np.sum(np.log(v + tau2)) + np.linalg.slogdet(xwx)[1] + rss))


def _tau2_estimate(y: np.ndarray, v: np.ndarray, X: np.ndarray, method: str,
                   labels: Sequence[Any]) -> tuple[float, list[str]]:
    """``tau2`` as ``metafor::rma.uni`` estimates it (metafor 3.8-1), and warnings.

    ``"dl"``: ``max(0, (Q_E - (k-p)) / tr P)`` with fixed-effect weights ``1/v``; refused when a
    sampling variance is 0 (metafor: "DL estimator cannot be used when there are non-positive
    sampling variances"). ``"reml"``: Fisher scoring from the Hedges estimate
    ``max(0, (y'(I - H)y - tr((I - H)V)) / (k-p))``, ``H = X(X'X)^-1 X'``, steps
    ``(y'PPy - tr P) / tr(PP)`` halved while they would go below 0, until a step is below 1e-5
    (at most 100 steps); then, when every variance is positive, ``tau2 = 0`` if the restricted
    likelihood is higher there by more than ``eps^(1/4)`` (metafor's ``ll0check``).
    """
    k, p = X.shape
    warnings: list[str] = []
    yc = y - y.mean()  # metafor works with the centred outcome (P annihilates the intercept)
    all_positive = bool(np.all(v > 0))
    if method == "dl":
        if not all_positive:
            names = ", ".join(str(labels[i]) for i in np.flatnonzero(v == 0))
            raise InputError(_("DerSimonian–Laird cannot pool a study whose standard error is 0 ({studies}); metafor "
                               "refuses it too. Use REML, which keeps that study, or check its standard error.").format(
                studies=names))
        P = _p_matrix(X, 1.0 / v)
        return max(0.0, float((yc @ P @ yc - (k - p)) / np.trace(P))), warnings
    ols = np.eye(k) - X @ np.linalg.inv(X.T @ X) @ X.T
    tau2 = max(0.0, float((yc @ ols @ yc - np.sum(np.diag(ols) * v)) / (k - p)))
    converged = False
    for _iteration in range(_FISHER_MAXITER):
        if np.any(v + tau2 == 0):
            raise _zero_variance_error(v, labels)
        w = 1.0 / (v + tau2)
        P = _p_matrix(X, w)
        PP = P @ P
        step = float((yc @ PP @ yc - np.trace(P)) / np.trace(PP))
        if not np.isfinite(step):
            step = 0.0
        if tau2 + step < 0:
            if tau2 == 0:  # metafor halves the step until tau2 + step is no longer below 0: from 0 that is 0
                step = 0.0
            while tau2 + step < 0:
                step /= 2
        old, tau2 = tau2, tau2 + step
        if abs(tau2 - old) <= _FISHER_THRESHOLD:
            converged = True
            break
    if not converged or not np.isfinite(tau2):
        from scipy import optimize

        floor = 0.0 if all_positive else 1e-12 * max(float(np.var(y, ddof=1)), 1e-300)
        upper = 10.0 * (float(np.var(y, ddof=1)) + float(np.max(v))) + floor
        found = optimize.minimize_scalar(lambda t: -_reml_loglik_x(t, y, v, X), bounds=(floor, upper),
                                         method="bounded", options={"xatol": 1e-12})
        tau2 = float(found.x)
        if all_positive and _reml_loglik_x(0.0, y, v, X) >= _reml_loglik_x(tau2, y, v, X):
            tau2 = 0.0
        warnings.append(_("Fisher scoring did not settle on τ² within {n} steps (metafor would stop here); τ² "
                          "was found by maximising the restricted likelihood directly.").format(n=_FISHER_MAXITER))
    elif all_positive and tau2 > _FISHER_THRESHOLD and \
            _reml_loglik_x(0.0, y, v, X) - _reml_loglik_x(tau2, y, v, X) > _LL0_TOLERANCE:
        tau2 = 0.0
        warnings.append(_("Fisher scoring may have stopped at a local maximum; τ² was set to 0, where the "
                          "restricted likelihood is higher (as metafor does)."))
    return max(0.0, float(tau2)), warnings


def _fit_rma(y: np.ndarray, v: np.ndarray, X: np.ndarray, names: Sequence[str], method: str,
             knapp_hartung: bool, labels: Sequence[Any]) -> _RMA:
    """``metafor::rma.uni(yi, vi, mods = X[, -1], method, test = "z"|"knha")`` (see :func:`pool_effects`
    and :func:`meta_regression` for the formulas). One study (``k = 1``, intercept only) is fitted as
    metafor fits it: ``tau2 = 0`` and a z test."""
    from scipy import stats

    k, p = X.shape
    warnings: list[str] = []
    if k == 1 and p == 1:
        tau2, knapp_hartung = 0.0, False
    else:
        tau2, warnings = _tau2_estimate(y, v, X, method, labels)
    if np.any(v + tau2 == 0):
        raise _zero_variance_error(v, labels)
    w = 1.0 / (v + tau2)
    vb = _solve_weighted(X, w)
    beta = vb @ (X.T @ (w * y))
    s2w, df = 1.0, None
    if knapp_hartung:
        rss = float(np.sum(w * (y - X @ beta) ** 2))
        s2w = rss / (k - p) if rss > np.finfo(float).eps else 0.0
        df = k - p
    vb = s2w * vb
    se = np.sqrt(np.diag(vb))
    dist = stats.t(df=df) if knapp_hartung else stats.norm()
    crit = float(dist.ppf(1 - (1 - _LEVEL) / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = beta / se
    p_values = np.array([_two_sided_p(b, s, dist) for b, s in zip(beta, se)])
    btt = tuple(range(1, p)) if p > 1 else (0,)
    sub = vb[np.ix_(btt, btt)]
    try:
        qm = float(beta[list(btt)] @ np.linalg.solve(sub, beta[list(btt)])) if np.all(np.diag(sub) > 0) else math.nan
    except np.linalg.LinAlgError:
        qm = math.nan
    m = len(btt)
    if knapp_hartung:
        qm = qm / m
        qm_p = float(stats.f.sf(qm, m, k - p)) if np.isfinite(qm) else math.nan
    else:
        qm_p = float(stats.chi2.sf(qm, m)) if np.isfinite(qm) else math.nan
    qe = qe_p = i2 = h2 = math.nan
    if np.all(v > 0):
        if k > p:
            P = _p_matrix(X, 1.0 / v)
            yc = y - y.mean()
            qe = max(0.0, float(yc @ P @ yc))
            qe_p = float(stats.chi2.sf(qe, k - p))
            vt = (k - p) / float(np.trace(P))
            i2 = 100.0 * tau2 / (vt + tau2)
            h2 = tau2 / vt + 1.0
        else:
            qe, qe_p, i2, h2 = 0.0, 1.0, 0.0, 1.0
    return _RMA(y=y, v=v, X=X, names=tuple(names), method=method, knapp_hartung=bool(knapp_hartung),
                tau2=float(tau2), beta=beta, vb=vb, se=se, stat=stat, p=p_values, ci_low=beta - crit * se,
                ci_high=beta + crit * se, df=df, crit=crit, s2w=s2w, w=w, qe=qe, qe_p=qe_p, i2=i2, h2=h2,
                qm=qm, qm_p=qm_p, btt=btt, warnings=tuple(warnings))


def _check_effects(estimates: Sequence[float], ses: Sequence[float], labels: Sequence[Any] | None,
                   method: str) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    """Estimates, standard errors and labels as arrays, or one sentence saying what to fix.

    A standard error of 0 is allowed here (REML keeps that study, DL refuses it; see
    :func:`_tau2_estimate`); a missing, negative or non-finite one is not."""
    method = str(method).lower()
    if method not in METHODS:
        raise InputError(_("Unknown pooling method '{method}'; use 'reml' or 'dl'.").format(method=method))
    y = _as_float_array(estimates, _("estimates"))
    se = _as_float_array(ses, _("standard errors"))
    if y.shape != se.shape:
        raise InputError(_("There are {n} estimates but {k} standard errors; give one standard error per "
                           "estimate.").format(n=y.size, k=se.size))
    k = y.size
    labels = [f"Study {i}" for i in range(1, k + 1)] if labels is None else list(labels)
    if len(labels) != k:
        raise InputError(_("There are {n} estimates but {k} study labels; give one label per estimate.").format(
            n=k, k=len(labels)))
    if k < 2:
        raise InputError(_("Pooling needs at least 2 studies; the between-study variance "
                           "cannot be estimated from one."))
    bad = [str(labels[i]) for i in range(k) if not np.isfinite(y[i])]
    if bad:
        raise InputError(_("The estimate is missing or not a number for: {studies}.").format(studies=", ".join(bad)))
    bad = [str(labels[i]) for i in range(k) if not (np.isfinite(se[i]) and se[i] >= 0)]
    if bad:
        raise InputError(_("The standard error must be a positive number; it is missing, "
                           "negative or not a number for: {studies}.").format(studies=", ".join(bad)))
    return y, se, labels, method


def _zero_se_warning(se: np.ndarray, labels: Sequence[Any]) -> list[str]:
    """The warning that a study with standard error 0 is kept (REML), as metafor keeps it."""
    zero = [str(labels[i]) for i in np.flatnonzero(se == 0)]
    if not zero:
        return []
    return [ngettext("The standard error of {studies} is 0. The study is kept, as metafor's REML keeps it: its weight "
                     "is 1/τ², the largest of all. Cochran's Q and I² cannot be computed (they need every "
                     "study's standard error to be positive); check whether 0 is a rounded value.",
                     "The standard errors of {studies} are 0. These studies are kept, as metafor's REML keeps them: "
                     "their weight is 1/τ², the largest of all. Cochran's Q and I² cannot be computed (they need "
                     "every study's standard error to be positive); check whether 0 is a rounded value.",
                     len(zero)).format(studies=", ".join(zero))]


@dataclass(frozen=True)
class PoolResult:
    """A random-effects meta-analysis, as ``metafor::rma`` and ``predict()`` report it.

    ``ci_low``/``ci_high`` are the 95% confidence interval of the pooled estimate,
    ``pi_low``/``pi_high`` the 95% prediction interval for the true effect in a new study,
    ``i2`` is in percent, ``q``/``q_p`` the fixed-effect heterogeneity test (NaN when a standard
    error is 0). ``studies`` has one row per study: ``label, estimate, se, weight`` (weight in
    percent of the total random-effects weight, as ``metafor::weights()``). ``regtest``: Egger's
    test (:func:`egger_test`) when ``k >= 3``; ``warnings``: plain sentences (a standard error of 0).
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
    warnings: tuple[str, ...] = field(default=(), compare=False)
    regtest: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    fit: _RMA | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able numbers (``None`` where a number does not exist, never NaN)."""
        out: dict[str, Any] = {
            name: _json_number(getattr(self, name))
            for name in ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q", "q_p",
                         "pi_low", "pi_high")
        }
        out = {"k": int(self.k), **out, "method": self.method,
               "knapp_hartung": bool(self.knapp_hartung)}
        if self.knapp_hartung:
            out["df"] = int(self.k - 1)
        out["studies"] = _studies_records(self.studies)
        out["regtest"] = _json_dict(self.regtest)
        out["warnings"] = list(self.warnings)
        return out


def _studies_records(studies: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"label": str(row.label), "estimate": _json_number(row.estimate),
             "se": _json_number(row.se), "weight": _json_number(row.weight)}
            for row in studies[["label", "estimate", "se", "weight"]].itertuples(index=False)]


def _json_dict(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {k: (_json_number(v) if isinstance(v, (float, np.floating)) else v) for k, v in value.items()}


def pool_effects(estimates: Sequence[float], ses: Sequence[float],
                 labels: Sequence[Any] | None = None, method: str = "reml",
                 knapp_hartung: bool = False) -> PoolResult:
    """Random-effects meta-analysis of ``k >= 2`` estimates ``y_i`` with standard errors ``se_i``.

    Reproduces ``metafor::rma(yi, sei=se, method="REML"|"DL", test="z"|"knha")`` with
    ``predict()`` and ``regtest()`` (Viechtbauer 2010). With ``v_i = se_i^2``:

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
    - A standard error of 0 (as metafor): REML keeps the study (weight ``1/tau2``) with a warning,
      and ``Q``, ``I2`` do not exist (NaN); DL refuses it; so does REML when ``tau2`` is 0.
    - ``regtest``: Egger's test for funnel-plot asymmetry when ``k >= 3`` (:func:`egger_test`).

    Raises :class:`InputError` for fewer than 2 studies, missing or non-finite estimates, and
    missing, negative or non-finite standard errors.

    >>> r = pool_effects([0.1, 0.3, 0.5], [0.1, 0.1, 0.2])  # R: metafor::rma(yi, sei = sei)
    >>> round(r.estimate, 4), round(r.tau2, 4)
    (0.2552, 0.0147)
    """
    y, se, labels, method = _check_effects(estimates, ses, labels, method)
    with np.errstate(all="ignore"):
        fit = _fit_rma(y, se ** 2, np.ones((y.size, 1)), [INTERCEPT], method, knapp_hartung, labels)
    return _pool_result(fit, labels, _zero_se_warning(se, labels))


def _pool_result(fit: _RMA, labels: Sequence[Any], warnings: Sequence[str] = ()) -> PoolResult:
    """A :class:`PoolResult` from an intercept-only fit, with its prediction interval and Egger's test."""
    mu, se_mu = float(fit.beta[0]), float(fit.se[0])
    half_pi = fit.crit * math.sqrt(se_mu ** 2 + fit.tau2)
    studies = pd.DataFrame({"label": list(labels), "estimate": fit.y, "se": np.sqrt(fit.v),
                            "weight": fit.weights()})
    return PoolResult(k=fit.k, estimate=mu, se=se_mu, ci_low=float(fit.ci_low[0]), ci_high=float(fit.ci_high[0]),
                      p=float(fit.p[0]), tau2=fit.tau2, i2=fit.i2, q=fit.qe, q_p=fit.qe_p,
                      pi_low=mu - half_pi, pi_high=mu + half_pi, method=fit.method,
                      knapp_hartung=fit.knapp_hartung, studies=studies,
                      warnings=tuple(warnings) + fit.warnings,
                      regtest=egger_test(fit, labels) if fit.k >= 3 else None, fit=fit)


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


# --- Egger's test, leave-one-out, influence (metafor's regtest, leave1out, influence) ---

def egger_test(fit: _RMA, labels: Sequence[Any]) -> dict[str, Any]:
    """Egger's regression test for funnel-plot asymmetry, as ``metafor::regtest(res)`` (defaults:
    ``model = "rma"``, ``predictor = "sei"``): the model refitted with the standard error added as a
    moderator, same method and test; ``z`` (a t with Knapp-Hartung, ``df = k - p - 1``) and ``p`` of
    its coefficient. For a model without moderators also the limit estimate (the intercept: the
    effect as the standard error goes to 0) and its 95% CI. When the standard errors cannot be a
    moderator (all equal) or the refit fails, ``z`` and ``p`` are None and ``note`` says why.

    >>> fit = pool_effects([0.1, 0.3, 0.5, 0.2], [0.1, 0.15, 0.2, 0.1]).fit
    >>> round(egger_test(fit, list("ABCD"))["z"], 4)  # R: regtest(rma(yi, sei = sei))$zval
    1.7782
    """
    from core.stats.formula import drop_collinear

    X = np.column_stack([fit.X, np.sqrt(fit.v)])
    out: dict[str, Any] = {"z": None, "p": None, "test": "t" if fit.knapp_hartung else "z", "df": None,
                           "predictor": "sei", "limit_estimate": None, "limit_ci_low": None, "limit_ci_high": None}
    if len(drop_collinear(X)) < X.shape[1]:
        out["note"] = _("Egger's test needs standard errors that differ between studies; here the standard error "
                        "is a combination of the other predictors (for example the same in every study).")
        return out
    if X.shape[1] + 1 > fit.k:
        out["note"] = _("Egger's test needs more studies than predictors plus one.")
        return out
    try:
        with np.errstate(all="ignore"):
            egger = _fit_rma(fit.y, fit.v, X, (*fit.names, "sei"), fit.method, fit.knapp_hartung, labels)
    except (InputError, ModelError, np.linalg.LinAlgError) as err:
        out["note"] = str(err)
        return out
    last = X.shape[1] - 1
    out.update(z=_json_number(egger.stat[last]), p=_json_number(egger.p[last]), df=egger.df)
    if fit.X.shape[1] == 1:
        out.update(limit_estimate=_json_number(egger.beta[0]), limit_ci_low=_json_number(egger.ci_low[0]),
                   limit_ci_high=_json_number(egger.ci_high[0]), slope=_json_number(egger.beta[last]))
    return out


def leave_one_out(result: PoolResult) -> pd.DataFrame:
    """Each study left out in turn, as ``metafor::leave1out(res)`` (models without moderators):
    the pooled ``estimate, se, stat`` (z, or t with Knapp-Hartung), ``p, ci_low, ci_high`` and
    ``q, q_p, tau2, i2, h2`` of the other ``k - 1`` studies, same method and test, one row per study
    in the given order. A refit that cannot be made (metafor's ``try-error``) gives NaN in its row.
    With ``k = 2``, each row is the one remaining study (tau2 = 0, z test, as metafor's ``k = 1``).
    """
    fit = _require_fit(result)
    labels = result.studies["label"].tolist()
    rows = []
    for i in range(fit.k):
        keep = np.arange(fit.k) != i
        row: dict[str, Any] = {"label": labels[i]}
        try:
            with np.errstate(all="ignore"):
                sub = _fit_rma(fit.y[keep], fit.v[keep], fit.X[keep], fit.names, fit.method, fit.knapp_hartung,
                               [labels[j] for j in np.flatnonzero(keep)])
            row.update(estimate=sub.beta[0], se=sub.se[0], stat=sub.stat[0], p=sub.p[0], ci_low=sub.ci_low[0],
                       ci_high=sub.ci_high[0], q=sub.qe, q_p=sub.qe_p, tau2=sub.tau2, i2=sub.i2, h2=sub.h2)
        except (InputError, ModelError, np.linalg.LinAlgError):
            pass
        rows.append(row)
    columns = ["label", "estimate", "se", "stat", "p", "ci_low", "ci_high", "q", "q_p", "tau2", "i2", "h2"]
    return pd.DataFrame(rows).reindex(columns=columns)


def influence(result: "PoolResult | MetaRegressionResult") -> pd.DataFrame:
    """Case-deletion diagnostics as ``metafor::influence(res)`` (Viechtbauer & Cheung 2010).

    For study ``i``, with the model refitted without it (same method and test; ``_(-i)``):
    ``rstudent = (y_i - x_i'b_(-i)) / sqrt(v_i s2w_(-i) + x_i'V_(-i)x_i + tau2_(-i) s2w_(-i))``;
    ``dffits = (x_i'b - x_i'b_(-i)) / sqrt(s2w_(-i) h_i (tau2_(-i) + v_i))``;
    ``cook_d = (b - b_(-i))' V^-1 (b - b_(-i))`` over every coefficient, the intercept included
    (metafor's ``influence`` sets ``btt`` with ``int.incl = FALSE``); ``cov_r = det V_(-i) / det V``;
    ``tau2_del``, ``qe_del``; ``hat`` (:meth:`_RMA.hat`); ``weight`` (percent);
    ``dfbs_<term> = (b - b_(-i)) / sqrt(s2w_(-i) diag((X'W_(-i)X)^-1))`` with ``W_(-i)`` the full
    data's weights at ``tau2_(-i)``; ``influential`` as metafor's mark: ``|dffits| > 3 sqrt(p/(k-p))``,
    ``pchisq(cook_d, m) > 0.5``, ``hat > 3p/k`` or any ``|dfbs| > 1``. A refit that cannot be made
    (too few studies, a moderator that no longer varies) gives NaN in its row.
    """
    from scipy import stats

    from core.stats.formula import drop_collinear

    fit = _require_fit(result)
    labels = result.studies["label"].tolist()
    k, p = fit.X.shape
    btt = list(range(p))  # every coefficient, as metafor's influence()
    hat = fit.hat()
    svb = np.linalg.inv(fit.vb[np.ix_(btt, btt)]) if np.all(np.diag(fit.vb)[btt] > 0) else None
    det_full = float(np.linalg.det(fit.vb[np.ix_(btt, btt)]))
    pred_full = fit.X @ fit.beta
    rows = []
    for i in range(k):
        keep = np.arange(k) != i
        row: dict[str, Any] = {"label": labels[i]}
        Xi = fit.X[keep]
        try:
            if len(drop_collinear(Xi)) < p:
                raise ModelError("redundant")
            with np.errstate(all="ignore"):
                sub = _fit_rma(fit.y[keep], fit.v[keep], Xi, fit.names, fit.method, fit.knapp_hartung,
                               [labels[j] for j in np.flatnonzero(keep)])
        except (InputError, ModelError, np.linalg.LinAlgError):
            rows.append(row)
            continue
        x = fit.X[i]
        delpred = float(x @ sub.beta)
        vdelpred = float(x @ sub.vb @ x)
        resid = fit.y[i] - delpred
        if abs(resid) < 100 * np.finfo(float).eps:
            resid = 0.0
        with np.errstate(all="ignore"):
            row["rstudent"] = resid / math.sqrt(fit.v[i] * sub.s2w + vdelpred + sub.tau2 * sub.s2w)
            row["dffits"] = (pred_full[i] - delpred) / math.sqrt(sub.s2w * hat[i] * (sub.tau2 + fit.v[i]))
            vb_del = _solve_weighted(fit.X, 1.0 / (fit.v + sub.tau2))
            dfb = fit.beta - sub.beta
            dfbs = dfb / np.sqrt(sub.s2w * np.diag(vb_del))
            row["cook_d"] = float(dfb[btt] @ svb @ dfb[btt]) if svb is not None else math.nan
            row["cov_r"] = float(np.linalg.det(sub.vb[np.ix_(btt, btt)])) / det_full if det_full != 0 else math.nan
        row.update(tau2_del=sub.tau2, qe_del=sub.qe)
        for name, value in zip(fit.names, dfbs):
            row[f"dfbs_{name}"] = float(value)
        rows.append(row)
    dfbs_columns = [f"dfbs_{name}" for name in fit.names]
    table = pd.DataFrame(rows).reindex(columns=["label", "rstudent", "dffits", "cook_d", "cov_r", "tau2_del",
                                                "qe_del", *dfbs_columns])
    table.insert(7, "hat", hat)
    table.insert(8, "weight", fit.weights())
    with np.errstate(invalid="ignore"):
        flagged = ((table["dffits"].abs() > 3 * math.sqrt(p / (k - p)))
                   | (pd.Series(stats.chi2.cdf(table["cook_d"], len(btt))) > 0.5)
                   | (table["hat"] > 3 * p / k)
                   | (table[dfbs_columns].abs() > 1).any(axis=1))
    table["influential"] = flagged.fillna(False).astype(bool)
    return table


def _require_fit(result) -> _RMA:
    fit = getattr(result, "fit", None)
    if fit is None:
        raise ModelError(_("This pooled result holds no fitted model; pool the effects again."))
    return fit


def leave_one_out_records(table: pd.DataFrame, knapp_hartung: bool) -> list[dict[str, Any]]:
    """:func:`leave_one_out` as the contract's ``[{label, estimate, se, ci_low, ci_high, p, tau2, i2}]``
    (plus ``z`` or ``t``, ``q``, ``q_p``, ``h2``), plain JSON numbers."""
    stat = "t" if knapp_hartung else "z"
    out = []
    for row in table.to_dict("records"):
        entry = {"label": str(row["label"])}
        for key in ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q", "q_p", "h2"):
            entry[key] = _json_number(row[key])
        entry[stat] = _json_number(row["stat"])
        out.append(entry)
    return out


def influence_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """:func:`influence` as ``[{label, rstudent, dffits, cook_d, cov_r, tau2_del, qe_del, hat, weight,
    dfbs: {term: value}, influential}]``, plain JSON numbers."""
    out = []
    for row in table.to_dict("records"):
        entry: dict[str, Any] = {"label": str(row["label"])}
        for key in ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "qe_del", "hat", "weight"):
            entry[key] = _json_number(row[key])
        entry["dfbs"] = {k[len("dfbs_"):]: _json_number(v) for k, v in row.items() if str(k).startswith("dfbs_")}
        entry["influential"] = bool(row["influential"])
        out.append(entry)
    return out


# --- Meta-regression (metafor's rma(mods = ~ ...)) ---

def moderator_design(moderators: pd.DataFrame, labels: Sequence[Any]) -> tuple[np.ndarray, list[str], list[str]]:
    """The design matrix of study-level moderators as R's ``model.matrix(~ a + b)`` builds it for
    ``rma(mods = ~ a + b)``: an intercept, each numeric column as it is, each categorical column
    (any value that is not a number) as indicator columns of its levels but the first (levels
    sorted; terms named column + level, as R names them). Columns that are linear combinations of
    earlier ones are dropped, as metafor drops them ("Redundant predictors dropped from the
    model."), and said in the returned warnings. Returns ``(X, names, warnings)``.
    """
    from core.stats.formula import _typed_other_column, drop_collinear

    k = len(moderators)
    columns, names = [np.ones(k)], [INTERCEPT]
    for col in moderators.columns:
        values, categorical = _typed_other_column(moderators[col].reset_index(drop=True))
        missing = values.isna().to_numpy()
        if missing.any():
            raise InputError(_("The moderator '{column}' has no value for {studies}; give every study a value or "
                               "leave those studies out.").format(
                column=col, studies=", ".join(str(labels[i]) for i in np.flatnonzero(missing))))
        if categorical:
            levels = sorted(set(values.astype(str)))
            for level in levels[1:]:
                columns.append((values.astype(str) == level).to_numpy(dtype=float))
                names.append(f"{col}{level}")
        else:
            columns.append(values.to_numpy(dtype=float))
            names.append(str(col))
    X = np.column_stack(columns)
    keep = drop_collinear(X)
    warnings = []
    if len(keep) < X.shape[1]:
        dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
        warnings.append(_("Redundant predictors dropped from the model: {terms} (a moderator that does not vary "
                          "between these studies, or a combination of the others; metafor drops them too).").format(
            terms=", ".join(dropped)))
        X, names = X[:, keep], [names[j] for j in keep]
    if X.shape[1] == 1:
        raise InputError(_("The moderators {columns} have the same value in every study, so they cannot explain "
                           "differences between studies.").format(columns=", ".join(map(str, moderators.columns))))
    return X, names, warnings


@dataclass(frozen=True)
class MetaRegressionResult:
    """A mixed-effects meta-regression, as ``metafor::rma(yi, sei = se, mods = ~ ...)`` reports it.

    ``coefficients``: one row per term (``intercept`` first): ``term, estimate, se, stat`` (z, or t
    with Knapp-Hartung), ``p, ci_low, ci_high``. ``qm``/``qm_p``: the omnibus test of the moderators
    (chi-square with ``qm_df``, or with Knapp-Hartung F with ``qm_df`` and ``k - p``); ``tau2``,
    ``i2``: residual heterogeneity; ``q``/``q_p``: the test for residual heterogeneity (``QE``, df
    ``k - p``); ``r2``: percent of ``tau2`` accounted for, metafor's
    ``max(0, 100 (tau2_RE - tau2) / tau2_RE)`` with ``tau2_RE`` from ``without_moderators`` (0 when
    that is 0). ``studies``: ``label, estimate, se, weight``.
    """

    k: int
    coefficients: pd.DataFrame
    qm: float
    qm_df: int
    qm_p: float
    tau2: float
    i2: float
    q: float
    q_p: float
    r2: float
    method: str
    knapp_hartung: bool
    studies: pd.DataFrame = field(compare=False, repr=False)
    without_moderators: PoolResult | None = field(default=None, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    regtest: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    fit: _RMA | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``pool --mods`` keys: ``moderators.<term>: {estimate, se, z|t, p, ci_low,
        ci_high}``, ``qm, qm_df, qm_p``, ``tau2`` (residual), ``r2``; ``q, q_p, i2`` residual; the
        model without moderators under ``without_moderators``; ``estimate, se, ci_low, ci_high, p,
        pi_low, pi_high`` are None (a meta-regression has no single pooled effect)."""
        stat = "t" if self.knapp_hartung else "z"
        moderators = {}
        for row in self.coefficients.to_dict("records"):
            entry = {"estimate": _json_number(row["estimate"]), "se": _json_number(row["se"]),
                     stat: _json_number(row["stat"]), "p": _json_number(row["p"]),
                     "ci_low": _json_number(row["ci_low"]), "ci_high": _json_number(row["ci_high"])}
            if self.knapp_hartung:
                entry["df"] = int(self.k - len(self.coefficients))
            moderators[str(row["term"])] = entry
        out: dict[str, Any] = {"k": int(self.k)}
        out.update({key: None for key in ("estimate", "se", "ci_low", "ci_high", "p", "pi_low", "pi_high")})
        out.update(tau2=_json_number(self.tau2), i2=_json_number(self.i2), q=_json_number(self.q),
                   q_p=_json_number(self.q_p), q_df=int(self.k - len(self.coefficients)),
                   method=self.method, knapp_hartung=bool(self.knapp_hartung), moderators=moderators,
                   qm=_json_number(self.qm), qm_df=int(self.qm_df),
                   qm_df2=int(self.k - len(self.coefficients)) if self.knapp_hartung else None,
                   qm_test="F" if self.knapp_hartung else "chisq", qm_p=_json_number(self.qm_p),
                   r2=_json_number(self.r2), studies=_studies_records(self.studies),
                   regtest=_json_dict(self.regtest), warnings=list(self.warnings),
                   without_moderators=self.without_moderators.to_dict() if self.without_moderators else None)
        return out


def meta_regression(estimates: Sequence[float], ses: Sequence[float], moderators: pd.DataFrame,
                    labels: Sequence[Any] | None = None, method: str = "reml",
                    knapp_hartung: bool = False) -> MetaRegressionResult:
    """Mixed-effects meta-regression on study-level moderators: ``metafor::rma(yi, sei = se,
    mods = ~ m1 + m2, method = "REML"|"DL", test = "z"|"knha")`` (Viechtbauer 2010; Knapp & Hartung
    2003; Viechtbauer et al. 2015 for the R² and tests).

    With ``X`` = intercept and moderators (:func:`moderator_design`), ``p`` columns, and
    ``W = diag(1/(v_i + tau2))``: ``tau2`` by REML (Fisher scoring on
    ``P = W - WX(X'WX)^-1X'W``) or DL (``(Q_E - (k-p)) / tr P_FE``); ``b = (X'WX)^-1 X'Wy``,
    ``V = (X'WX)^-1`` (times ``s2w = sum w_i (y_i - x_i'b)^2 / (k-p)`` with Knapp-Hartung, t with
    ``k - p`` df); ``QM = b_m' V_m^-1 b_m`` over the moderators (chi-square with ``m`` df; with
    Knapp-Hartung ``QM/m`` against F(m, k-p)); ``Q_E = y'P_FE y`` (df ``k - p``); residual
    ``I2 = 100 tau2 / (tau2 + (k-p)/tr P_FE)``; ``R2 = max(0, 100 (tau2_RE - tau2)/tau2_RE)``.
    Needs ``k >= p + 1`` studies.

    >>> r = meta_regression([0.1, 0.3, 0.5, 0.4, 0.9], [0.1, 0.1, 0.2, 0.15, 0.2],
    ...                     pd.DataFrame({"year": [1, 2, 3, 4, 5]}))  # R: rma(yi, sei = sei, mods = ~ year)
    >>> round(float(r.coefficients.set_index("term").loc["year", "estimate"]), 4)
    0.1548
    """
    y, se, labels, method = _check_effects(estimates, ses, labels, method)
    moderators = pd.DataFrame(moderators).reset_index(drop=True)
    if len(moderators) != y.size:
        raise InputError(_("There are {n} estimates but {k} rows of moderators; give one row per study.").format(
            n=y.size, k=len(moderators)))
    X, names, warnings = moderator_design(moderators, labels)
    if X.shape[1] + 1 > y.size:
        raise InputError(_("A meta-regression with {p} coefficients needs at least {need} studies; there are {k}. "
                           "Use fewer moderators.").format(p=X.shape[1], need=X.shape[1] + 1, k=y.size))
    with np.errstate(all="ignore"):
        fit = _fit_rma(y, se ** 2, X, names, method, knapp_hartung, labels)
    try:
        plain = pool_effects(y, se, labels, method=method, knapp_hartung=knapp_hartung)
    except InputError:
        plain = None
    if plain is None:
        r2 = math.nan
    elif plain.tau2 == 0:
        r2 = 0.0
    else:
        r2 = max(0.0, 100.0 * (plain.tau2 - fit.tau2) / plain.tau2)
    coefficients = pd.DataFrame({"term": list(fit.names), "estimate": fit.beta, "se": fit.se, "stat": fit.stat,
                                 "p": fit.p, "ci_low": fit.ci_low, "ci_high": fit.ci_high})
    studies = pd.DataFrame({"label": labels, "estimate": y, "se": se, "weight": fit.weights()})
    return MetaRegressionResult(
        k=fit.k, coefficients=coefficients, qm=fit.qm, qm_df=len(fit.btt), qm_p=fit.qm_p, tau2=fit.tau2,
        i2=fit.i2, q=fit.qe, q_p=fit.qe_p, r2=r2, method=method, knapp_hartung=bool(knapp_hartung),
        studies=studies, without_moderators=plain,
        warnings=tuple(warnings + _zero_se_warning(se, labels)) + fit.warnings,
        regtest=egger_test(fit, labels) if fit.k >= 3 else None, fit=fit)


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


def pool_stage1(stage1: pd.DataFrame, method: str = "reml", knapp_hartung: bool = False,
                moderators: pd.DataFrame | None = None) -> dict[str, "PoolResult | MetaRegressionResult"]:
    """Stage 2: :func:`pool_effects` over studies for each direction of a stage-1 table, or with
    ``moderators`` (a table indexed by study label, one column per moderator) :func:`meta_regression`.

    Lets the method be changed without refitting stage 1.
    """
    pooled = {}
    for direction, part in stage1.groupby("direction", sort=False):
        labels = part["study"].tolist()
        if moderators is not None and len(moderators.columns):
            rows = moderators.loc[[str(s) for s in labels]]
            pooled[str(direction)] = meta_regression(part["estimate"].to_numpy(), part["se"].to_numpy(), rows,
                                                     labels=labels, method=method, knapp_hartung=knapp_hartung)
        else:
            pooled[str(direction)] = pool_effects(part["estimate"].to_numpy(), part["se"].to_numpy(),
                                                  labels=labels, method=method, knapp_hartung=knapp_hartung)
    return pooled


def ipd_meta_analysis(df: pd.DataFrame, study: str = "study", patient: str = "patient",
                      session: str = "session", alliance: str = "alliance",
                      symptoms: str = "symptoms", method: str = "reml",
                      knapp_hartung: bool = False, interaction: bool = False,
                      progress: Callable[[int, int, str], None] | None = None,
                      exclude: Sequence[str] = (), moderators: Sequence[str] = ()) -> IPDMetaResult:
    """Two-stage IPD meta-analysis of lagged alliance/symptom effects (Flückiger et al. 2020).

    Stage 1 (:func:`stage1_effects`): in each study separately, z-score, split into patient
    means and deviations, lag the deviations by one session, and fit the two REML models of
    :func:`lagged_within_effects` (each with lme4's ``converged``/``singular`` and warnings).
    Stage 2 (:func:`pool_stage1`): pool each direction's study coefficients with
    :func:`pool_effects` (``method``, ``knapp_hartung``). A study that cannot be fitted, or is
    named in ``exclude``, is left out of the pooling and listed in ``excluded_studies`` with the
    reason; at least two fitted studies are needed. ``progress(i, n, study_label)`` is called once
    per study, e.g. for a progress bar. ``moderators``: columns with one value per study
    (:func:`study_moderators`); stage 2 is then a meta-regression on them (:func:`meta_regression`),
    and a study without a value is left out with that reason.
    """
    if str(method).lower() not in METHODS:
        raise InputError(_("Unknown pooling method '{method}'; use 'reml' or 'dl'.").format(method=method))
    table, lacking = (study_moderators(df, list(moderators), study) if moderators and study in df.columns
                      else (None, {}))
    stage1 = stage1_effects(df, study, patient, session, alliance, symptoms, interaction=interaction,
                            progress=progress, exclude=[*exclude, *(s for s in lacking if s not in map(str, exclude))])
    skipped = dict(stage1.attrs.get("excluded_studies", {}))
    skipped.update({label: reason for label, reason in lacking.items() if label in skipped})
    fitted = stage1["study"].nunique()
    if fitted < 2:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise InputError(_("Pooling needs at least 2 studies that can be fitted; {n} can be. Left out: {why}").format(
            n=fitted, why=why))
    return IPDMetaResult(stage1=stage1, pooled=pool_stage1(stage1, method, knapp_hartung, table),
                         excluded_studies=skipped)


def sorted_study_labels(labels: Sequence[Any]) -> list[Any]:
    """Study labels in sorted order (numbers numerically, otherwise as text)."""
    labels = list(labels)
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=str)


# ---------------------------------------------------------------------------------------------
# Diagnostics in reports, and study-level moderators of individual-participant data
# ---------------------------------------------------------------------------------------------

def diagnostics_dict(result: "PoolResult | MetaRegressionResult") -> dict[str, Any]:
    """``leave_one_out`` (metafor's ``leave1out``; for a meta-regression, of the model without
    moderators, since metafor's ``leave1out`` is for models without moderators, said in
    ``leave_one_out_model``) and ``influence`` (metafor's ``influence``, of the model itself)."""
    plain = result.without_moderators if isinstance(result, MetaRegressionResult) else result
    out: dict[str, Any] = {}
    if plain is not None:
        out["leave_one_out"] = leave_one_out_records(leave_one_out(plain), plain.knapp_hartung)
        out["leave_one_out_model"] = "without_moderators" if plain is not result else "pooled"
    out["influence"] = influence_records(influence(result))
    return out


def study_moderators(data: pd.DataFrame, columns: Sequence[str], study: str = "study"
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Study-level moderators from individual-participant data: for each study the one value each of
    ``columns`` takes in its rows (blank cells ignored). Returns ``(table indexed by study label as
    text, {study: reason})`` for the studies without a value. A column that takes two values in one
    study is not a study-level moderator: :class:`InputError` names the column and the study."""
    missing_cols = [c for c in columns if c not in data.columns]
    if missing_cols:
        raise InputError(_("The data have no column '{column}' for a moderator; a moderator is a column with one "
                           "value per study.").format(column=missing_cols[0]))
    from core.intake.validation import MISSING_TEXTS

    labels = data[study].astype(str)
    table = pd.DataFrame(index=pd.Index(sorted_study_labels(labels.unique()), name=study))
    lacking: dict[str, str] = {}
    for col in columns:
        text = data[col].astype(str).str.strip()
        present = ~text.str.lower().isin(MISSING_TEXTS) & data[col].notna()
        values = text[present].groupby(labels[present]).unique()
        several = [(s, v) for s, v in values.items() if len(v) > 1]
        if several:
            s, v = several[0]
            raise InputError(_("The moderator '{column}' takes {n} values in study {study} ({values}); a moderator "
                               "must have one value per study.").format(column=col, n=len(v), study=s,
                                                                         values=", ".join(map(str, v[:5]))))
        table[col] = [values[s][0] if s in values.index else None for s in table.index]
        for s in table.index[table[col].isna()]:
            lacking.setdefault(str(s), _("no value of the moderator '{column}'").format(column=col))
    return table, lacking
