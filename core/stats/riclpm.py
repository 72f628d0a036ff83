"""Random-intercept cross-lagged panel model (RI-CLPM) of alliance and symptoms over sessions,
fitted by full-information maximum likelihood with lavaan's numbers.

The model (Hamaker, Kuiper & Grasman, 2015; lavaan syntax of Mulder & Hamaker, 2021). Waves
``t = 1..T`` are the sessions ``FIRST..LAST``; for patient ``i``

    A_it = mu_A,t + RIA_i + wA_it          S_it = mu_S,t + RIS_i + wS_it

- ``RIA, RIS``: random intercepts (loadings fixed to 1), the patient's stable level, with
  variances and a covariance, uncorrelated with the within components;
- ``mu``: observed intercepts, free per session (the sample means may move over sessions);
- within components, for ``t >= 2``::

      wA_t = aa * wA_{t-1} + sa * wS_{t-1} + zA_t      (sa: symptoms -> next alliance)
      wS_t = ss * wS_{t-1} + as * wA_{t-1} + zS_t      (as: alliance -> next symptoms)

  with the four lagged effects equal over sessions (default) or free per session pair;
- ``(wA_1, wS_1)`` and the residuals ``(zA_t, zS_t)`` have free variances and a covariance per
  wave; the observed scores have no measurement error of their own (fixed to 0).

With ``B`` the lagged effects among the within components, ``Psi`` the wave-1 and residual
(co)variances, ``Lambda`` the random-intercept loadings and ``Phi`` their covariance matrix, the
implied moments are ``mu`` and ``Sigma = Lambda Phi Lambda' + (I - B)^-1 Psi (I - B)^-T``.

Estimation: full-information maximum likelihood (``lavaan(..., missing = "ml")``): each patient
contributes the normal log-likelihood of the scores observed, so a patient who drops out keeps
the early sessions and a session with one questionnaire keeps that one. The sum is computed per
missingness pattern (patterns of equal size as one stack of Cholesky factors) with its analytic
gradient; Fisher scoring with step halving, then Newton steps on the observed information. A
second, plainer start is tried when the optimum is inadmissible or scoring finds no maximum (the
higher maximum is kept). Standard errors: the inverse of the observed information (the Hessian of
the log-likelihood by lavaan's five-point differences of the analytic gradient), as lavaan's
default ``information = "observed"`` for FIML; p-values and 95% CIs from z.

Fit, as lavaan's ``fitMeasures``: ``loglik`` (with the 2 pi constant); the unrestricted model
H1 (free means and covariances, by EM) for ``chisq = 2 (logL_H1 - logL)`` with
``df = p + p (p + 1) / 2 - npar`` (``p = 2T``); the baseline (independence) model with free means
and variances for CFI and TLI; ``rmsea = sqrt(max(chisq - df, 0) / (df N))`` with N (not N - 1);
``aic = -2 logL + 2 npar``, ``bic = -2 logL + npar log N`` (``npar`` counts the means).
Standardised lagged effects are lavaan's ``std.all``: the estimate times the model-implied SD of
the predictor over that of the outcome; with equal lags they differ by session pair.

A cross-lagged effect here is a within-person carry-over: in a session where a patient's
alliance was above that patient's own usual level (the random intercept) and the session mean,
``as`` is how far the next session's symptoms sit from the patient's own usual level, beyond
what the symptoms' own carry-over (``ss``) predicts. Stable differences between patients are in
the random intercepts, not in the lagged effects.

References
----------
- Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the cross-lagged
  panel model. *Psychological Methods, 20*(1), 102-116.
- Mulder, J. D., & Hamaker, E. L. (2021). Three extensions of the random intercept cross-lagged
  panel model. *Structural Equation Modeling, 28*(4), 638-648.
- Falkenström, F., Solomonov, N., & Rubel, J. A. (2022). How to model and interpret
  cross-lagged effects in psychotherapy mechanisms of change research. *Psychotherapy Research,
  32*(1), 1-13.
- Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
  Statistical Software, 48*(2), 1-36.
- Arbuckle, J. L. (1996). Full information estimation in the presence of incomplete data. In
  *Advanced structural equation modeling* (pp. 243-277). Erlbaum.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(1)
>>> rows = [(f"P{i}", t, 5 + a + rng.normal(0, .4), 2 + s + rng.normal(0, .3))
...         for i, (a, s) in enumerate(rng.normal(0, .5, (120, 2))) for t in (1, 2, 3)]
>>> data = pd.DataFrame(rows, columns=["patient", "session", "alliance", "symptoms"])
>>> fit = fit_riclpm(data)
>>> fit.sessions, fit.n_patients, fit.fit["df"]
((1, 2, 3), 120, 5)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from core.errors import InputError, ModelError
from core.i18n import _, ngettext

#: The four lagged effects: report key -> (lavaan label, outcome measure, predictor measure).
LAGS = {
    "alliance_to_symptoms": ("as", "S", "A"),
    "symptoms_to_alliance": ("sa", "A", "S"),
    "alliance_autoregressive": ("aa", "A", "A"),
    "symptoms_autoregressive": ("ss", "S", "S"),
}
#: Most waves (sessions) one model takes: 2 x 12 = 24 observed variables.
MAX_WAVES = 12
#: Fewest waves: with 2 waves the model has more parameters than the data have moments.
MIN_WAVES = 3

_LOG2PI = math.log(2 * math.pi)
_Z975 = stats.norm.ppf(0.975)


# ---------------------------------------------------------------------------------------------
# Data: long table -> one row per patient, 2T columns (A_1..A_T, S_1..S_T), NaN where missing
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PanelData:
    """The waves of one RI-CLPM: ``y`` is patients x (A_1..A_T, S_1..S_T), NaN where missing.

    ``excluded_patients``: patients with no score in the sessions (``patient, reason``);
    ``n_rows_outside``: rows whose session is outside ``first..last`` (not used by this model,
    not errors); ``n_observations``: patient-sessions in the range with at least one score.
    """

    y: np.ndarray
    patients: tuple[str, ...]
    sessions: tuple[int, ...]
    excluded_patients: pd.DataFrame
    n_rows_outside: int
    n_observations: int

    @property
    def n_waves(self) -> int:
        return len(self.sessions)


def parse_session_range(text: str) -> tuple[int, int]:
    """``"1-4"`` (or ``1:4``, ``1..4``, ``1–4``) -> ``(1, 4)``."""
    import re

    match = re.fullmatch(r"\s*(-?\d+)\s*(?:-|:|\.\.|–|—|to)\s*(-?\d+)\s*", str(text))
    if not match:
        raise InputError(_("The sessions '{text}' are not of the form FIRST-LAST (for example 1-4).").format(text=text))
    first, last = int(match.group(1)), int(match.group(2))
    if last < first:
        raise InputError(_("The sessions '{text}' end before they start; write FIRST-LAST with FIRST <= LAST.").format(text=text))
    return first, last


def _whole_sessions(data: pd.DataFrame) -> pd.Series:
    session = pd.to_numeric(data["session"], errors="coerce")
    return session.where(session % 1 == 0)


def suggested_sessions(data: pd.DataFrame, max_waves: int = MAX_WAVES, min_share: float = 0.5) -> tuple[int, int]:
    """A session range to propose: every session from the first to the last when that is at most
    ``max_waves`` waves; otherwise from the first session to the last one (at most ``max_waves``
    waves on) that at least ``min_share`` of the patients attended (at least three waves)."""
    session = _whole_sessions(data).dropna().astype(int)
    if session.empty:
        raise InputError(_("No row has a whole session number, so there are no waves for the model."))
    first, last = int(session.min()), int(session.max())
    if last - first + 1 <= max_waves:
        return first, last
    share = data.loc[session.index].groupby(session)["patient"].nunique() / data["patient"].nunique()
    ok = [s for s in range(first + MIN_WAVES - 1, first + max_waves) if share.get(s, 0) >= min_share]
    return first, (max(ok) if ok else first + MIN_WAVES - 1)


def panel_data(data: pd.DataFrame, first: int | None = None, last: int | None = None) -> PanelData:
    """The wide panel of sessions ``first..last`` (default: the first to the last session in
    ``data``) from a long table with ``patient, session, alliance, symptoms`` (measures may be
    NaN: FIML uses the other one).

    Rows outside the range are not used (counted in ``n_rows_outside``); a session number that
    is not whole counts as outside. A patient without a score in the range is listed in
    ``excluded_patients``. Raises :class:`InputError` when a patient-session occurs twice.
    """
    missing = [c for c in ("patient", "session", "alliance", "symptoms") if c not in data.columns]
    if missing:
        raise InputError(ngettext("The RI-CLPM needs the columns patient, session, alliance and symptoms; {columns} is missing.",
                                  "The RI-CLPM needs the columns patient, session, alliance and symptoms; {columns} are missing.",
                                  len(missing)).format(columns=", ".join(missing)))
    session = _whole_sessions(data)
    if first is None or last is None:
        whole = session.dropna()
        if whole.empty:
            raise InputError(_("No row has a whole session number, so there are no waves for the model."))
        first = int(whole.min()) if first is None else int(first)
        last = int(whole.max()) if last is None else int(last)
    first, last = int(first), int(last)
    if last < first:
        raise InputError(_("The session range {first}-{last} ends before it starts.").format(first=first, last=last))
    n_waves = last - first + 1
    if n_waves > MAX_WAVES:
        raise InputError(_("Sessions {first} to {last} are {n} waves; this model takes at most {max}. Choose fewer "
                           "sessions (for example sessions {first}-{suggested}).").format(
            first=first, last=last, n=n_waves, max=MAX_WAVES, suggested=first + 5))
    inside = session.between(first, last)
    frame = data.loc[inside, ["patient", "alliance", "symptoms"]].copy()
    frame["patient"] = frame["patient"].astype(str)
    frame["wave"] = (session[inside] - first).astype(int).to_numpy()
    frame["alliance"] = pd.to_numeric(frame["alliance"], errors="coerce")
    frame["symptoms"] = pd.to_numeric(frame["symptoms"], errors="coerce")
    dup = frame.duplicated(["patient", "wave"], keep=False)
    if dup.any():
        first_dup = frame.loc[dup].iloc[0]
        raise InputError(_("Patient {patient} has session {session} more than once; keep one row per patient and "
                           "session.").format(patient=first_dup["patient"], session=first + int(first_dup["wave"])))
    scored = frame[["alliance", "symptoms"]].notna().any(axis=1)
    all_patients = pd.Index(pd.unique(data["patient"].astype(str)))
    frame = frame.loc[scored]
    patients = pd.Index(pd.unique(frame["patient"]))
    lost = all_patients.difference(patients, sort=False)
    excluded = pd.DataFrame({"patient": list(lost),
                             "reason": _("no alliance or symptom score in sessions {first}-{last}").format(
                                 first=first, last=last)})
    row = patients.get_indexer(frame["patient"])
    y = np.full((len(patients), 2 * n_waves), np.nan)
    wave = frame["wave"].to_numpy()
    y[row, wave] = frame["alliance"].to_numpy(float)
    y[row, n_waves + wave] = frame["symptoms"].to_numpy(float)
    return PanelData(y=y, patients=tuple(patients), sessions=tuple(range(first, last + 1)),
                     excluded_patients=excluded, n_rows_outside=int((~inside).sum()),
                     n_observations=int(len(frame)))


# ---------------------------------------------------------------------------------------------
# The normal log-likelihood of incomplete data, per missingness pattern
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Pattern:
    observed: np.ndarray  # indices of the variables observed
    n: int
    mean: np.ndarray      # mean of the observed variables over the cases of this pattern
    cov: np.ndarray       # their covariance with divisor n


@dataclass(frozen=True)
class _Group:
    """Patterns with the same number ``k`` of observed variables, stacked for batched algebra."""

    observed: np.ndarray  # (m, k) indices
    n: np.ndarray         # (m,)
    mean: np.ndarray      # (m, k)
    cov: np.ndarray       # (m, k, k)
    flat: np.ndarray      # (m, k * k) indices into a flattened p x p matrix


class Patterns:
    """The cases grouped by which variables are observed, with each group's means and covariance
    (divisor n): the sufficient statistics of the FIML log-likelihood."""

    def __init__(self, items: list[_Pattern], p: int):
        self.items = items
        self.p = p
        self.n = int(sum(pat.n for pat in items))
        self.groups = []
        for k in sorted({len(pat.observed) for pat in items}):
            these = [pat for pat in items if len(pat.observed) == k]
            obs = np.array([pat.observed for pat in these], dtype=int).reshape(len(these), k)
            self.groups.append(_Group(obs, np.array([pat.n for pat in these], dtype=float),
                                      np.array([pat.mean for pat in these]).reshape(len(these), k),
                                      np.array([pat.cov for pat in these]).reshape(len(these), k, k),
                                      (obs[:, :, None] * p + obs[:, None, :]).reshape(len(these), k * k)))

    def __len__(self) -> int:
        return len(self.items)


def missing_patterns(y: np.ndarray) -> Patterns:
    """:class:`Patterns` of the rows of ``y`` (rows with no value are left out, as lavaan does)."""
    seen = ~np.isnan(y)
    keep = seen.any(axis=1)
    y, seen = y[keep], seen[keep]
    codes, inverse = np.unique(seen, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    items = []
    for k, code in enumerate(codes):
        cases = y[inverse == k][:, code]
        mean = cases.mean(axis=0)
        dev = cases - mean
        items.append(_Pattern(np.flatnonzero(code), len(cases), mean, dev.T @ dev / len(cases)))
    return Patterns(items, y.shape[1])


def fiml_loglik(mu: np.ndarray, sigma: np.ndarray, patterns: Patterns, gradient: bool = False):
    """Log-likelihood of the observed scores under ``N(mu, sigma)`` (FIML), and with ``gradient``
    its derivatives ``(d/dmu, d/dSigma)``, where ``d/dSigma`` is the symmetric matrix ``G`` with
    ``dlogL = sum(G * dSigma)`` for a symmetric change ``dSigma``.

    Per pattern: ``-n/2 [p log 2pi + log|S_oo| + tr(S_oo^-1 (C + d d'))]``, ``d = mean - mu_o``,
    ``C`` the pattern's covariance; patterns of equal size are computed as one stack. Returns
    ``-inf`` (and no gradient) when a ``Sigma_oo`` is not positive definite.
    """
    p = len(mu)
    ll = 0.0
    g_mu = np.zeros(p) if gradient else None
    g_sigma = np.zeros(p * p) if gradient else None
    for grp in patterns.groups:
        obs = grp.observed
        k = obs.shape[1]
        s_oo = sigma[obs[:, :, None], obs[:, None, :]]
        try:
            chol = np.linalg.cholesky(s_oo)
        except np.linalg.LinAlgError:
            return (-np.inf, None, None) if gradient else -np.inf
        diag = np.diagonal(chol, axis1=1, axis2=2)
        if not np.all(diag > 0):
            return (-np.inf, None, None) if gradient else -np.inf
        l_inv = np.linalg.inv(chol)
        inv = np.swapaxes(l_inv, 1, 2) @ l_inv
        d = grp.mean - mu[obs]
        m = grp.cov + d[:, :, None] * d[:, None, :]
        ll -= 0.5 * np.sum(grp.n * (k * _LOG2PI + 2 * np.log(diag).sum(axis=1) + np.einsum("mij,mij->m", inv, m)))
        if gradient:
            g_mu += np.bincount(obs.ravel(), weights=(grp.n[:, None] * np.einsum("mij,mj->mi", inv, d)).ravel(),
                                minlength=p)
            g = 0.5 * grp.n[:, None, None] * (inv @ m @ inv - inv)
            g_sigma += np.bincount(grp.flat.ravel(), weights=g.ravel(), minlength=p * p)
    return (ll, g_mu, g_sigma.reshape(p, p)) if gradient else ll


def saturated_moments(y: np.ndarray, patterns: Patterns | None = None, tol: float = 1e-12,
                      max_iter: int = 20000) -> tuple[np.ndarray, np.ndarray, float]:
    """The unrestricted model H1: means and covariances by maximum likelihood from incomplete
    data (EM; Dempster, Laird & Rubin, 1977) until the log-likelihood changes by less than ``tol``
    (relative); should EM not get there in ``max_iter`` steps, BFGS on the exact gradient
    finishes. Returns ``(mu, sigma, logL)``."""
    patterns = missing_patterns(y) if patterns is None else patterns
    p = y.shape[1]
    n = patterns.n
    complete = [pat for pat in patterns.items if len(pat.observed) == p]
    mu = np.nanmean(y, axis=0)
    sigma = np.diag(np.nanvar(y, axis=0))
    if complete and len(patterns) == 1:  # no missing values: the sample moments
        return complete[0].mean, complete[0].cov, fiml_loglik(complete[0].mean, complete[0].cov, patterns)
    ll_old = -np.inf
    converged = False
    for _iteration in range(max_iter):
        # E step per pattern, with W = Sigma[:, o] Sigma_oo^-1: E[y | y_o] = mu + W (y_o - mu_o) and
        # Cov[y | y_o] = Sigma - W Sigma[o, :]; summed over the pattern's cases with its mean and
        # covariance. Patterns of equal size are one stack.
        t1 = np.zeros(p)
        t2 = np.zeros((p, p))
        for grp in patterns.groups:
            obs = grp.observed
            s_po = np.transpose(sigma[:, obs], (1, 0, 2))                    # (m, p, k)
            w = s_po @ np.linalg.inv(sigma[obs[:, :, None], obs[:, None, :]])  # (m, p, k)
            m = mu + np.einsum("mpk,mk->mp", w, grp.mean - mu[obs])
            second = (sigma - w @ np.transpose(s_po, (0, 2, 1)) + m[:, :, None] * m[:, None, :]
                      + w @ grp.cov @ np.transpose(w, (0, 2, 1)))
            t1 += grp.n @ m
            t2 += np.einsum("m,mpq->pq", grp.n, second)
        mu = t1 / n
        sigma = t2 / n - np.outer(mu, mu)
        sigma = (sigma + sigma.T) / 2
        ll = fiml_loglik(mu, sigma, patterns)
        if not np.isfinite(ll):
            break
        if ll - ll_old < tol * max(1.0, abs(ll)):
            converged = True
            break
        ll_old = ll
    if converged:
        return mu, sigma, ll
    # polish: BFGS on (mu, lower triangle of Sigma), exact gradient
    rows, cols = np.tril_indices(p)
    weight = np.where(rows == cols, 1.0, 2.0)

    def unpack(x):
        s = np.zeros((p, p))
        s[rows, cols] = x[p:]
        s[cols, rows] = x[p:]
        return x[:p], s

    def objective(x):
        m, s = unpack(x)
        ll, gm, gs = fiml_loglik(m, s, patterns, gradient=True)
        if not np.isfinite(ll):
            return 1e30, np.zeros_like(x)
        return -ll / n, -np.concatenate([gm, gs[rows, cols] * weight]) / n

    x0 = np.concatenate([mu, sigma[rows, cols]])
    res = optimize.minimize(objective, x0, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 2000})
    if np.isfinite(res.fun) and -res.fun * n >= fiml_loglik(mu, sigma, patterns):
        mu, sigma = unpack(res.x)
    return mu, sigma, fiml_loglik(mu, sigma, patterns)


def baseline_loglik(y: np.ndarray) -> float:
    """The baseline (independence) model of lavaan's ``fitMeasures`` under FIML: free means and
    variances, no covariances. Its likelihood factorises, so each variable's observed scores have
    their own sample mean and variance (divisor n)."""
    ll = 0.0
    for col in y.T:
        x = col[~np.isnan(col)]
        if len(x):
            var = x.var()
            ll -= 0.5 * len(x) * (_LOG2PI + math.log(var) + 1.0)
    return ll


# ---------------------------------------------------------------------------------------------
# The structured model
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Param:
    lhs: str
    op: str
    rhs: str
    label: str
    kind: str              # mean, lag, psi, phi
    cells: tuple           # (i, j) cells of the matrix the parameter fills


class _Structure:
    """Parameter layout and implied moments of the RI-CLPM with ``n_waves`` waves.

    Variables are ordered ``A_1..A_T, S_1..S_T`` (the within components ``wA_t, wS_t`` likewise).
    """

    def __init__(self, n_waves: int, free_lags: bool):
        self.T = T = n_waves
        self.p = 2 * T
        self.free_lags = free_lags
        params: list[_Param] = []
        for m, off in (("A", 0), ("S", T)):
            for t in range(T):
                params.append(_Param(f"{m}{t + 1}", "~1", "", "", "mean", ((off + t, 0),)))
        # lags: wA_t ~ aa wA_{t-1} + sa wS_{t-1};  wS_t ~ ss wS_{t-1} + as wA_{t-1}
        lag_cells: dict[str, list] = {}
        order = []
        for t in range(1, T):
            for label, out, pred in (("aa", "A", "A"), ("sa", "A", "S"), ("ss", "S", "S"), ("as", "S", "A")):
                i = (0 if out == "A" else T) + t
                j = (0 if pred == "A" else T) + t - 1
                key = f"{label}{t + 1}" if free_lags else label
                if key not in lag_cells:
                    lag_cells[key] = []
                    order.append((key, f"w{out}{t + 1}", f"w{pred}{t}"))
                lag_cells[key].append((i, j))
        for key, lhs, rhs in order:
            params.append(_Param(lhs, "~", rhs, key, "lag", tuple(lag_cells[key])))
        for t in range(T):
            a, s = t, T + t
            params.append(_Param(f"wA{t + 1}", "~~", f"wS{t + 1}", "", "psi", ((a, s),)))
        for m, off in (("A", 0), ("S", T)):
            for t in range(T):
                params.append(_Param(f"w{m}{t + 1}", "~~", f"w{m}{t + 1}", "", "psi", ((off + t, off + t),)))
        params += [_Param("RIA", "~~", "RIA", "", "phi", ((0, 0),)),
                   _Param("RIS", "~~", "RIS", "", "phi", ((1, 1),)),
                   _Param("RIA", "~~", "RIS", "", "phi", ((0, 1),))]
        self.params = params
        self.n_params = len(params)
        self.loadings = np.zeros((self.p, 2))
        self.loadings[:T, 0] = 1
        self.loadings[T:, 1] = 1

    def matrices(self, theta: np.ndarray):
        p = self.p
        mu = np.zeros(p)
        beta = np.zeros((p, p))
        psi = np.zeros((p, p))
        phi = np.zeros((2, 2))
        for value, par in zip(theta, self.params):
            target = {"mean": None, "lag": beta, "psi": psi, "phi": phi}[par.kind]
            for i, j in par.cells:
                if par.kind == "mean":
                    mu[i] = value
                else:
                    target[i, j] = value
                    if par.kind != "lag":
                        target[j, i] = value
        return mu, beta, psi, phi

    def implied(self, theta: np.ndarray):
        """``(mu, Sigma, A, Sigma_within, psi, phi)`` with ``A = (I - B)^-1``."""
        mu, beta, psi, phi = self.matrices(theta)
        a = np.linalg.inv(np.eye(self.p) - beta)
        within = a @ psi @ a.T
        sigma = self.loadings @ phi @ self.loadings.T + within
        return mu, sigma, a, within, psi, phi

    def chain(self, theta, g_mu, g_sigma, a, within) -> np.ndarray:
        """The gradient with respect to the parameters from ``d/dmu`` and ``d/dSigma``."""
        d_beta = 2 * a.T @ g_sigma @ within
        d_psi = a.T @ g_sigma @ a
        d_phi = self.loadings.T @ g_sigma @ self.loadings
        out = np.zeros(self.n_params)
        for k, par in enumerate(self.params):
            if par.kind == "mean":
                out[k] = g_mu[par.cells[0][0]]
            elif par.kind == "lag":
                out[k] = sum(d_beta[i, j] for i, j in par.cells)
            else:
                mat = d_psi if par.kind == "psi" else d_phi
                i, j = par.cells[0]
                out[k] = mat[i, i] if i == j else 2 * mat[i, j]
        return out

    def sigma_derivatives(self, a: np.ndarray, within: np.ndarray) -> np.ndarray:
        """``dSigma/dtheta_k`` for every parameter (zeros for the means), shape ``(npar, p, p)``:
        lags ``A E_ij Sigma_w + (.)'``, within (co)variances ``A (E_ij + E_ji) A'`` (variances
        ``A E_ii A'``), random intercepts likewise with the loadings."""
        out = np.zeros((self.n_params, self.p, self.p))
        for k, par in enumerate(self.params):
            if par.kind == "mean":
                continue
            if par.kind == "lag":
                d = sum(np.outer(a[:, i], within[j, :]) for i, j in par.cells)
                out[k] = d + d.T
                continue
            cols = a if par.kind == "psi" else self.loadings
            i, j = par.cells[0]
            d = np.outer(cols[:, i], cols[:, j])
            out[k] = d if i == j else d + d.T
        return out

    def simple_start(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Plain start values: observed means, lags and covariances 0, half of each variance
        within at wave 1 and a quarter later, a quarter of the mean variance for each random
        intercept."""
        T = self.T
        var = np.diag(sigma)
        values = []
        for par in self.params:
            i, j = par.cells[0]
            if par.kind == "mean":
                values.append(mu[i])
            elif par.kind == "phi" and i == j:
                values.append(0.25 * var[:T].mean() if i == 0 else 0.25 * var[T:].mean())
            elif par.kind == "psi" and i == j:
                values.append((0.5 if i % T == 0 else 0.25) * var[i])
            else:
                values.append(0.0)
        return np.array(values, dtype=float)

    def moments(self, theta) -> np.ndarray:
        mu, sigma = self.implied(theta)[:2]
        return np.concatenate([mu, sigma[np.tril_indices(self.p)]])

    def start(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Start values from the unrestricted moments: RI (co)variances from the covariances of
        different sessions, the rest of each variance within, lags 0.2 / 0."""
        T = self.T
        a_block, s_block, as_block = sigma[:T, :T], sigma[T:, T:], sigma[:T, T:]
        off = ~np.eye(T, dtype=bool)
        var_a, var_s = np.diag(a_block), np.diag(s_block)
        ria = float(np.clip(a_block[off].mean(), 0.1 * var_a.mean(), 0.8 * var_a.min()))
        ris = float(np.clip(s_block[off].mean(), 0.1 * var_s.mean(), 0.8 * var_s.min()))
        cov_ri = float(np.clip(as_block[off].mean(), -0.9 * math.sqrt(ria * ris), 0.9 * math.sqrt(ria * ris)))
        values = []
        for par in self.params:
            if par.kind == "mean":
                values.append(mu[par.cells[0][0]])
            elif par.kind == "lag":
                values.append(0.2 if par.label[:2] in ("aa", "ss") else 0.0)
            elif par.kind == "phi":
                values.append({(0, 0): ria, (1, 1): ris, (0, 1): cov_ri}[par.cells[0]])
            else:
                i, j = par.cells[0]
                if i == j:
                    values.append(sigma[i, i] - (ria if i < T else ris))
                else:
                    wa, ws = sigma[i, i] - ria, sigma[j, j] - ris
                    values.append(float(np.clip(sigma[i, j] - cov_ri, -0.9 * math.sqrt(wa * ws),
                                                0.9 * math.sqrt(wa * ws))))
        return np.array(values, dtype=float)


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RiclpmResult:
    """A fitted RI-CLPM (see the module docstring).

    ``parameters``: one row per free parameter, as lavaan's ``parameterEstimates`` with
    ``standardizedSolution``'s ``std_all``: ``lhs, op, rhs, label, estimate, se, z, p, ci_low,
    ci_high, std_all``. ``lagged``: report key -> one dict (equal lags: ``estimate, se, z, p,
    ci_low, ci_high`` and ``std_all`` per session pair) or a list of such dicts per session pair
    (free lags). ``fit``: lavaan's ``fitMeasures`` (``loglik, unrestricted_loglik, chisq, df,
    pvalue, cfi, tli, rmsea, rmsea_ci_low, rmsea_ci_high, aic, bic, npar, ntotal,
    baseline_chisq, baseline_df``).
    """

    sessions: tuple[int, ...]
    free_lags: bool
    n_patients: int
    n_observations: int
    parameters: pd.DataFrame = field(compare=False)
    lagged: dict[str, Any] = field(compare=False)
    random_intercepts: dict[str, Any] = field(compare=False)
    fit: dict[str, Any] = field(compare=False)
    converged: bool = True
    warnings: tuple[str, ...] = ()
    excluded_patients: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["patient", "reason"]),
                                            compare=False)
    n_rows_outside: int = 0
    coverage: pd.DataFrame | None = field(default=None, compare=False)

    @property
    def first(self) -> int:
        return self.sessions[0]

    @property
    def last(self) -> int:
        return self.sessions[-1]

    def lagged_table(self) -> pd.DataFrame:
        """The lagged effects as a table: ``effect, from_session, to_session, estimate, se, z, p,
        ci_low, ci_high, std_all`` (with equal lags one row per effect, ``std_all`` the mean over
        session pairs and its range in ``std_all_min``/``std_all_max``)."""
        rows = []
        for key, entry in self.lagged.items():
            if isinstance(entry, list):
                rows += [{"effect": key, **e} for e in entry]
            else:
                std = entry["std_all"]
                rows.append({"effect": key, "from_session": self.first, "to_session": self.last,
                             **{k: v for k, v in entry.items() if k not in ("std_all", "from_session")},
                             "std_all": float(np.mean(std)), "std_all_min": float(np.min(std)),
                             "std_all_max": float(np.max(std))})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """The report keys of ``python -m core riclpm`` (docs/cli-and-reports.md)."""
        return {
            "model": "riclpm",
            "n_patients": self.n_patients,
            "n_observations": self.n_observations,
            "sessions": len(self.sessions),
            "first_session": self.first,
            "last_session": self.last,
            "session_numbers": list(self.sessions),
            "free_lags": self.free_lags,
            "lagged": self.lagged,
            "random_intercepts": self.random_intercepts,
            "fit": self.fit,
            "converged": self.converged,
            "warnings": list(self.warnings),
            "excluded_patients": self.excluded_patients.to_dict("records"),
            "n_rows_outside_sessions": self.n_rows_outside,
            "parameters": self.parameters.to_dict("records"),
        }


def _entry(row) -> dict[str, Any]:
    return {k: float(row[k]) for k in ("estimate", "se", "z", "p", "ci_low", "ci_high")}


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------

def _expected_information(structure: _Structure, theta: np.ndarray, patterns: Patterns) -> np.ndarray:
    """The FIML expected information: per pattern ``n [dmu_o' K dmu_o + tr(K dS_i K dS_j) / 2]``
    with ``K = Sigma_oo^-1`` (used for Fisher scoring; the SEs use the observed information)."""
    mu, sigma, a, within = structure.implied(theta)[:4]
    deriv = structure.sigma_derivatives(a, within)
    cov_idx = np.array([k for k, par in enumerate(structure.params) if par.kind != "mean"])
    mean_idx = np.array([k for k, par in enumerate(structure.params) if par.kind == "mean"])
    mean_var = np.array([structure.params[k].cells[0][0] for k in mean_idx])
    deriv = deriv[cov_idx]
    p = structure.p
    info = np.zeros((structure.n_params, structure.n_params))
    k_sum = np.zeros((p, p))
    info_cov = np.zeros((len(cov_idx), len(cov_idx)))
    n_cov = len(cov_idx)
    for pat in patterns.items:
        # 0.5 n tr(K D_i K D_j) = 0.5 n vec(Y_i) . vec(Y_j) with Y = L^-1 D L^-T (K = L^-T L^-1):
        # two matrix products over every parameter at once, then one more
        o, k = pat.observed, len(pat.observed)
        l_inv = np.linalg.inv(np.linalg.cholesky(sigma[np.ix_(o, o)]))
        k_sum[np.ix_(o, o)] += pat.n * (l_inv.T @ l_inv)
        x = (deriv[:, o][:, :, o].reshape(n_cov * k, k) @ l_inv.T).reshape(n_cov, k, k)
        z = (np.swapaxes(x, 1, 2).reshape(n_cov * k, k) @ l_inv.T).reshape(n_cov, k * k)
        info_cov += 0.5 * pat.n * (z @ z.T)
    info[np.ix_(cov_idx, cov_idx)] = info_cov
    info[np.ix_(mean_idx, mean_idx)] = k_sum[np.ix_(mean_var, mean_var)]
    return info


def _maximise(structure: _Structure, theta: np.ndarray, patterns: Patterns, max_iter: int = 300):
    """Fisher scoring with step halving from ``theta``, then Newton steps on the observed
    information (central differences of the analytic gradient). Returns ``(theta, logL,
    gradient, hessian of -logL or None, converged)``; not converged when scoring has not settled
    in ``max_iter`` steps (a likelihood ridge: the model is not empirically identified)."""
    def loglik(th, gradient=False):
        mu, sigma, a, within = structure.implied(th)[:4]
        if not gradient:
            return fiml_loglik(mu, sigma, patterns)
        ll, g_mu, g_sigma = fiml_loglik(mu, sigma, patterns, gradient=True)
        if not np.isfinite(ll):
            return ll, None
        return ll, structure.chain(th, g_mu, g_sigma, a, within)

    ll, g = loglik(theta, True)
    if not np.isfinite(ll):
        raise ModelError(_("The model's start values give a covariance matrix that is not positive definite; "
                           "the RI-CLPM cannot be estimated on these data."))
    scale = max(1.0, abs(ll))
    settled = False
    for _iteration in range(max_iter):
        info = _expected_information(structure, theta, patterns)
        try:
            step = np.linalg.solve(info, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(info, g, rcond=None)[0]
        t = 1.0
        while True:
            cand = theta + t * step
            ll_c = loglik(cand)
            if np.isfinite(ll_c) and ll_c >= ll - 1e-12 * scale:
                break
            t /= 2
            if t < 1e-10:
                cand, ll_c = theta, ll
                break
        change = ll_c - ll
        theta = cand
        ll, g = loglik(theta, True)
        if abs(change) < 1e-9 * scale and np.max(np.abs(t * step)) < 1e-5:
            settled = True
            break
    if not settled:
        return theta, ll, g, None, False

    def neg_grad(th):
        value, grad = loglik(th, True)
        return -grad if grad is not None else np.full(len(th), np.nan)

    hess = _hessian(neg_grad, theta)
    moved = 0.0  # how far the estimates moved since the Hessian was computed
    for _step in range(8):  # Newton steps on the observed information: the exact optimum lavaan reports
        try:
            step = np.linalg.solve(hess, -g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        cand = theta - step
        ll_c = loglik(cand)
        if not (np.isfinite(ll_c) and ll_c >= ll - 1e-12 * scale):
            break
        theta = cand
        ll, g = loglik(theta, True)
        size = float(np.max(np.abs(step)))
        moved += size
        if size < 1e-9:
            break
        if size > 1e-4:  # still far: a fresh Hessian for the next step
            hess, moved = _hessian(neg_grad, theta), 0.0
    if moved > 1e-5:  # the SEs need the Hessian where the estimates are (a change below 1e-5 moves no SE)
        hess = _hessian(neg_grad, theta)
    try:  # the Newton decrement g' H^-1 g: free of the parameters' units
        decrement = float(g @ np.linalg.solve(hess, g))
    except np.linalg.LinAlgError:
        decrement = np.inf
    converged = bool(np.isfinite(ll) and abs(decrement) < 1e-8)
    return theta, ll, g, hess, converged


def _admissible(structure: _Structure, theta: np.ndarray) -> bool:
    """Whether the random-intercept and every wave's within (co)variance matrix is positive definite."""
    _lam, _beta, psi, phi = structure.matrices(theta)
    T = structure.T
    blocks = [phi] + [psi[np.ix_([t, T + t], [t, T + t])] for t in range(T)]
    return all(np.linalg.eigvalsh(b)[0] > 0 for b in blocks)


def _check_data(panel: PanelData, structure: _Structure) -> None:
    y, T = panel.y, panel.n_waves
    first, last = panel.sessions[0], panel.sessions[-1]
    if T < MIN_WAVES:
        raise ModelError(_("The RI-CLPM needs at least {min} sessions to be identified; sessions {first}-{last} are "
                           "{n}. Choose a wider session range.").format(min=MIN_WAVES, first=first, last=last, n=T))
    n = len(y)
    n_moments = structure.p + structure.p * (structure.p + 1) // 2
    if structure.n_params > n_moments:
        raise ModelError(_("The RI-CLPM with lagged effects free per session has {n} parameters but sessions "
                           "{first}-{last} give only {moments} means and covariances, so it is not identified. Use "
                           "more sessions or equal lagged effects.").format(
            n=structure.n_params, first=first, last=last, moments=n_moments))
    if n < structure.n_params:
        raise ModelError(_("Only {n} patients have scores in sessions {first}-{last}, fewer than the model's "
                           "{parameters} parameters; the RI-CLPM cannot be estimated. Use fewer sessions, equal "
                           "lagged effects, or more patients.").format(
            n=n, first=first, last=last, parameters=structure.n_params))
    seen = ~np.isnan(y)
    for j in range(structure.p):
        alliance = j < T
        session = first + j % T
        values = y[seen[:, j], j]
        if not len(values):
            raise ModelError((_("No patient has an alliance score in session {session}; every session number from "
                                "{first} to {last} is a wave of the RI-CLPM. Choose a range of sessions that patients "
                                "attended, numbered one after the other.") if alliance else
                              _("No patient has a symptoms score in session {session}; every session number from "
                                "{first} to {last} is a wave of the RI-CLPM. Choose a range of sessions that patients "
                                "attended, numbered one after the other.")).format(session=session, first=first, last=last))
        if len(values) < 2:
            raise ModelError((_("Only 1 patient has an alliance score in session {session}; the RI-CLPM cannot "
                                "estimate that session. Choose a session range where every session has scores.")
                              if alliance else
                              _("Only 1 patient has a symptoms score in session {session}; the RI-CLPM cannot "
                                "estimate that session. Choose a session range where every session has scores."))
                             .format(session=session))
        if np.ptp(values) == 0:
            raise ModelError((_("Every alliance score in session {session} is the same ({value:g}); the model "
                                "needs scores that vary. Choose another session range.") if alliance else
                              _("Every symptoms score in session {session} is the same ({value:g}); the model "
                                "needs scores that vary. Choose another session range.")).format(
                session=session, value=values[0]))
    both = seen.T.astype(int) @ seen.astype(int)
    zero = np.argwhere(np.triu(both == 0, 1))
    if len(zero):
        i, j = zero[0]
        def name(k):
            return (_("alliance in session {session}") if k < T else _("symptoms in session {session}")).format(
                session=first + k % T)
        raise ModelError(_("No patient has both {first} and {second}, so their covariance cannot be "
                           "estimated. Choose a session range that patients attended together.").format(
            first=name(i), second=name(j)))


def n_parameters(n_waves: int, free_lags: bool = False) -> int:
    """The model's free parameters over ``n_waves`` sessions, as lavaan counts them (with the means):
    ``5T + 7`` with equal lagged effects (2T means, 3T within-session variances and covariances, 4
    lags, 3 for the random intercepts); with lags free per session pair, ``4(T − 1)`` lags instead of
    4. An RI-CLPM needs at least as many patients with scores in those sessions.

    >>> n_parameters(8), n_parameters(6), n_parameters(3), n_parameters(4, free_lags=True)
    (47, 37, 22, 35)
    """
    return _Structure(int(n_waves), bool(free_lags)).n_params


def identified_sessions(data: pd.DataFrame, free_lags: bool = False,
                        max_waves: int = MAX_WAVES) -> tuple[int, int] | None:
    """The widest range of consecutive sessions (at most ``max_waves``) on which the RI-CLPM can be
    estimated from ``data`` (long ``patient, session, alliance, symptoms``): at least as many
    patients with scores in the range as the model has parameters (:func:`n_parameters`), every
    session with two different scores of each measure, every pair of sessions observed together —
    the checks :func:`fit_riclpm` makes before it fits, none of the fitting. Among ranges as wide,
    the one with the most patients, then the earliest. ``None`` when no range of at least 3
    sessions qualifies (then :func:`identification_needs` says what is missing).

    A pure function of the data: the dashboard proposes this range, so that its default is never
    refused ("fewer than the model's 47 parameters" for 40 patients over 8 sessions: 6 sessions,
    37 parameters, are proposed instead).
    """
    session = _whole_sessions(data)
    scored = data[["alliance", "symptoms"]].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)
    keep = session.notna() & scored
    if not keep.any():
        return None
    present = pd.crosstab(data.loc[keep, "patient"].astype(str), session[keep].astype(int)) > 0
    numbers = sorted(int(s) for s in present.columns)
    widest = min(int(max_waves), numbers[-1] - numbers[0] + 1)
    for width in range(widest, MIN_WAVES - 1, -1):
        needed = n_parameters(width, free_lags)
        candidates = []
        for first in numbers:
            last = first + width - 1
            if last > numbers[-1]:
                break
            cols = [s for s in range(first, last + 1) if s in present.columns]
            if len(cols) < width:
                continue  # a session number nobody attended: that wave has no scores
            n = int(present[cols].any(axis=1).sum())
            if n >= needed:
                candidates.append((-n, first, last))
        for _n, first, last in sorted(candidates):
            try:
                panel = panel_data(data, first, last)
                _check_data(panel, _Structure(panel.n_waves, free_lags))
            except (InputError, ModelError):
                continue
            return first, last
    return None


def identification_needs(data: pd.DataFrame, free_lags: bool = False) -> str:
    """One sentence on what the data lack for the smallest RI-CLPM (3 consecutive sessions), for a page
    to say before it fits: the patients needed against those there are, or the first check that fails."""
    session = _whole_sessions(data).dropna().astype(int)
    needed = n_parameters(MIN_WAVES, free_lags)
    if session.empty or session.nunique() < MIN_WAVES:
        return _("The RI-CLPM needs scores in at least {min} consecutive sessions; this data set has {n} session "
                 "numbers.").format(min=MIN_WAVES, n=int(session.nunique()))
    n = int(data["patient"].nunique())
    if n < needed:
        return _("The RI-CLPM needs at least {needed} patients with scores in the same {min} consecutive sessions "
                 "(as many as its parameters); this data set has {n} patients.").format(
            needed=needed, min=MIN_WAVES, n=n)
    first = int(session.min())
    try:
        panel = panel_data(data, first, first + MIN_WAVES - 1)
        _check_data(panel, _Structure(panel.n_waves, free_lags))
    except (InputError, ModelError) as err:
        return str(err)
    return _("No range of {min} or more consecutive sessions has scores from {needed} patients in every session, "
             "as the RI-CLPM needs.").format(min=MIN_WAVES, needed=needed)


def _identified(structure: _Structure, theta: np.ndarray) -> bool:
    """Local identification: the Jacobian of the implied means and covariances with respect to
    the parameters has full column rank (checked at a generic point near ``theta``)."""
    rng = np.random.default_rng(12345)
    point = theta * (1 + 0.05 * rng.standard_normal(len(theta))) + 0.01 * rng.standard_normal(len(theta))
    base = structure.moments(point)
    jac = np.empty((len(base), len(point)))
    for k in range(len(point)):
        step = 1e-6 * max(1.0, abs(point[k]))
        up, down = point.copy(), point.copy()
        up[k] += step
        down[k] -= step
        jac[:, k] = (structure.moments(up) - structure.moments(down)) / (2 * step)
    norms = np.linalg.norm(jac, axis=0)
    if not np.all(norms > 0):
        return False
    sv = np.linalg.svd(jac / norms, compute_uv=False)  # columns scaled: the check ignores units
    return bool(sv[-1] > 1e-7 * sv[0])


def _hessian(grad, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Hessian by differences of the analytic gradient, as lavaan's ``lav_model_hessian``: the
    five-point stencil ``(g(x-2h) - 8 g(x-h) + 8 g(x+h) - g(x+2h)) / 12h`` with ``h = 1e-6``,
    symmetrised. (Central differences with a step relative to the parameter were up to 10% off on a
    nearly unidentified model.)"""
    k = len(theta)
    out = np.empty((k, k))
    for j in range(k):
        step = np.zeros(k)
        step[j] = h
        out[:, j] = (grad(theta - 2 * step) - 8 * grad(theta - step) + 8 * grad(theta + step)
                     - grad(theta + 2 * step)) / (12 * h)
    return (out + out.T) / 2


def fit_riclpm(data: pd.DataFrame, first: int | None = None, last: int | None = None,
               free_lags: bool = False) -> RiclpmResult:
    """Fit the RI-CLPM of alliance and symptoms over sessions ``first..last`` by FIML.

    ``data``: long table with ``patient, session, alliance, symptoms`` (one row per patient and
    session; a missing measure may be NaN). ``free_lags``: the four lagged effects free per
    session pair (``--free-lags``) instead of equal over sessions. See the module docstring for
    the model, the estimator and the fit indices (all as lavaan 0.6's).

    Raises :class:`ModelError` (one plain sentence) when the model is not identified: fewer than
    three sessions, more parameters than means and covariances, fewer patients than parameters,
    a session with no scores or no variation, two sessions never observed together.
    """
    panel = panel_data(data, first, last)
    structure = _Structure(panel.n_waves, free_lags)
    _check_data(panel, structure)
    y = panel.y
    n = len(y)
    patterns = missing_patterns(y)
    h1_mu, h1_sigma, h1_ll = saturated_moments(y, patterns)
    eig = np.linalg.eigvalsh(h1_sigma)
    if not np.isfinite(h1_ll) or eig[0] <= 1e-10 * max(eig[-1], 1e-300):
        raise ModelError(_("The scores of sessions {first}-{last} are collinear (their covariance matrix is "
                           "singular), so the RI-CLPM cannot be estimated. Check for sessions with copied scores or "
                           "choose another session range.").format(first=panel.sessions[0], last=panel.sessions[-1]))
    theta0 = structure.start(h1_mu, h1_sigma)
    if not _identified(structure, theta0):
        raise ModelError(_("The RI-CLPM over sessions {first}-{last} is not identified with these options. Use "
                           "more sessions or equal lagged effects.").format(first=panel.sessions[0], last=panel.sessions[-1]))

    theta, ll, g_final, hess, converged = _maximise(structure, theta0, patterns)
    if hess is None or not _admissible(structure, theta):
        # a likelihood with a ridge or an inadmissible optimum may have other maxima: a second,
        # plainer start (lags 0, no covariances); the higher maximum is kept
        other = _maximise(structure, structure.simple_start(h1_mu, h1_sigma), patterns)
        if other[3] is not None and (hess is None or other[1] > ll + 1e-8 * max(1.0, abs(ll))):
            theta, ll, g_final, hess, converged = other
    advice = (_("Use equal lagged effects, fewer sessions or more patients.") if free_lags
              else _("Use fewer sessions or more patients."))
    if hess is None:
        raise ModelError(_("The RI-CLPM did not converge on these data: {n} patients for {parameters} parameters "
                           "leave the likelihood without a clear maximum (the model is not empirically identified). "
                           "{advice}").format(n=n, parameters=structure.n_params, advice=advice))
    warnings: list[str] = []
    try:
        vcov = np.linalg.inv(hess)
        scale = np.sqrt(np.abs(np.diag(hess)))
        eig_h = np.linalg.eigvalsh(hess / np.outer(scale, scale))  # as a correlation: free of units
        if not np.all(np.diag(hess) > 0) or eig_h[0] <= 1e-10 * eig_h[-1]:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        raise ModelError(_("The RI-CLPM is not identified on these data (its information matrix is singular). "
                           "{advice}").format(advice=advice)) from None
    if not converged:
        warnings.append(_("The estimation did not converge; the numbers below are not reliable."))
    se = np.sqrt(np.clip(np.diag(vcov), 0, None))

    mu, sigma, a, within, psi, phi = structure.implied(theta)
    table = _parameter_table(structure, theta, se, sigma, within, psi, phi, panel.sessions[0])
    warnings += _admissibility_warnings(psi, phi, structure.T, panel.sessions[0])
    if np.linalg.eigvalsh(sigma)[0] <= 0:  # possible when no patient has every session
        warnings.append(_("The covariance matrix the model implies for all sessions together is not positive "
                          "definite; read the estimates with caution."))

    npar = structure.n_params
    p = structure.p
    df = p + p * (p + 1) // 2 - npar
    chisq = max(2 * (h1_ll - ll), 0.0)
    base_ll = baseline_loglik(y)
    base_chisq = 2 * (h1_ll - base_ll)
    base_df = p * (p - 1) // 2
    fit = _fit_measures(ll, h1_ll, chisq, df, base_chisq, base_df, npar, n)

    lagged = _lagged(table, free_lags)
    ri = {}
    for key, (lhs, rhs) in {"alliance_variance": ("RIA", "RIA"), "symptoms_variance": ("RIS", "RIS"),
                            "covariance": ("RIA", "RIS")}.items():
        row = table[(table["lhs"] == lhs) & (table["rhs"] == rhs) & (table["op"] == "~~")].iloc[0]
        ri[key] = float(row["estimate"])
        ri[f"{key}_se"] = float(row["se"])
        ri[f"{key}_p"] = float(row["p"])
    ri["correlation"] = float(phi[0, 1] / math.sqrt(phi[0, 0] * phi[1, 1])) if phi[0, 0] > 0 and phi[1, 1] > 0 else None
    coverage = pd.DataFrame({
        "session": list(panel.sessions),
        "alliance": (~np.isnan(y[:, :structure.T])).sum(axis=0),
        "symptoms": (~np.isnan(y[:, structure.T:])).sum(axis=0),
    })
    return RiclpmResult(sessions=panel.sessions, free_lags=free_lags, n_patients=n,
                        n_observations=panel.n_observations, parameters=table, lagged=lagged,
                        random_intercepts=ri, fit=fit, converged=converged, warnings=tuple(warnings),
                        excluded_patients=panel.excluded_patients, n_rows_outside=panel.n_rows_outside,
                        coverage=coverage)


def _root(x: float) -> float:
    """Square root, NaN where it does not exist (an inadmissible variance) or is zero."""
    return math.sqrt(x) if x > 0 else np.nan


def _parameter_table(structure: _Structure, theta, se, sigma, within, psi, phi, first: int) -> pd.DataFrame:
    """lavaan's ``parameterEstimates`` (z-based p and 95% CI) with ``std.all``."""
    T = structure.T
    rows = []
    index = {f"w{m}{t + 1}": off + t for m, off in (("A", 0), ("S", T)) for t in range(T)}
    obs = {f"{m}{t + 1}": off + t for m, off in (("A", 0), ("S", T)) for t in range(T)}
    for k, par in enumerate(structure.params):
        value = theta[k]
        if par.kind == "mean":
            j = obs[par.lhs]
            std = value / _root(sigma[j, j])
        elif par.kind == "lag":
            std = None  # per cell below
        elif par.kind == "psi":
            i, j = index[par.lhs], index[par.rhs]
            std = value / within[i, i] if i == j else value / _root(abs(psi[i, i] * psi[j, j]))
        else:
            i, j = par.cells[0]
            std = 1.0 if i == j else value / _root(abs(phi[0, 0] * phi[1, 1]))
        z = value / se[k] if se[k] > 0 else np.nan
        base = {"label": par.label, "estimate": value, "se": se[k], "z": z,
                "p": 2 * stats.norm.sf(abs(z)) if np.isfinite(z) else np.nan,
                "ci_low": value - _Z975 * se[k], "ci_high": value + _Z975 * se[k]}
        if par.kind == "lag":
            for i, j in par.cells:
                lhs = f"w{'A' if i < T else 'S'}{i % T + 1}"
                rhs = f"w{'A' if j < T else 'S'}{j % T + 1}"
                rows.append({"lhs": lhs, "op": "~", "rhs": rhs, **base,
                             "std_all": value * _root(within[j, j] / within[i, i]),
                             "from_session": first + j % T, "to_session": first + i % T})
        else:
            rows.append({"lhs": par.lhs, "op": par.op, "rhs": par.rhs, **base, "std_all": std,
                         "from_session": None, "to_session": None})
    return pd.DataFrame(rows)


def _lagged(table: pd.DataFrame, free_lags: bool) -> dict[str, Any]:
    """The contract's ``lagged`` entries from the parameter table."""
    lagged: dict[str, Any] = {}
    for key, (label, _from, _to) in LAGS.items():
        rows = table[(table["op"] == "~") & table["label"].str.fullmatch(rf"{label}\d*")]
        rows = rows.sort_values("from_session")
        if free_lags:
            lagged[key] = [{"from_session": int(r["from_session"]), "to_session": int(r["to_session"]),
                            **_entry(r), "std_all": float(r["std_all"])} for _, r in rows.iterrows()]
        else:
            r = rows.iloc[0]
            lagged[key] = {**_entry(r), "std_all": [float(v) for v in rows["std_all"]],
                           "from_session": [int(v) for v in rows["from_session"]]}
    return lagged


def _admissibility_warnings(psi, phi, T: int, first: int) -> list[str]:
    out = []
    if np.linalg.eigvalsh(phi)[0] <= 0:
        out.append(_("The estimated covariance matrix of the random intercepts is not positive definite "
                     "(variances {alliance:.4g} and {symptoms:.4g}, covariance {covariance:.4g}): a variance is "
                     "negative or the correlation is beyond ±1. The model may be misspecified or the data too few; "
                     "read the estimates with caution.").format(alliance=phi[0, 0], symptoms=phi[1, 1],
                                                                 covariance=phi[0, 1]))
    bad = []
    for t in range(T):
        block = psi[np.ix_([t, T + t], [t, T + t])]
        if np.linalg.eigvalsh(block)[0] <= 0:
            bad.append(str(first + t))
    if bad:
        out.append(ngettext("The estimated within-person (residual) covariance matrix is not positive definite in "
                            "session {sessions} (a negative variance or a correlation beyond ±1); read the estimates "
                            "with caution.",
                            "The estimated within-person (residual) covariance matrix is not positive definite in "
                            "sessions {sessions} (a negative variance or a correlation beyond ±1); read the estimates "
                            "with caution.", len(bad)).format(sessions=", ".join(bad)))
    return out


def _fit_measures(ll, h1_ll, chisq, df, base_chisq, base_df, npar, n) -> dict[str, Any]:
    """lavaan's ``fitMeasures`` for ML: chi-square test, CFI, TLI, RMSEA (N, not N - 1) with its
    90% interval, AIC and BIC."""
    pvalue = float(stats.chi2.sf(chisq, df)) if df > 0 else None
    d_model = max(chisq - df, 0.0)
    d_base = max(base_chisq - base_df, 0.0)
    denom = max(d_base, d_model)
    cfi = 1.0 if denom == 0 else 1 - d_model / denom
    if df > 0 and base_df > 0:
        t_base = base_chisq / base_df
        tli = 1.0 if t_base == 1 else (t_base - chisq / df) / (t_base - 1)
    else:
        tli = 1.0
    if df > 0:
        rmsea = math.sqrt(d_model / (df * n))
        ci_low, ci_high = _rmsea_interval(chisq, df, n)
    else:
        rmsea, ci_low, ci_high = 0.0, 0.0, 0.0
    return {"loglik": float(ll), "unrestricted_loglik": float(h1_ll), "chisq": float(chisq), "df": int(df),
            "pvalue": pvalue, "cfi": float(cfi), "tli": float(tli), "rmsea": float(rmsea),
            "rmsea_ci_low": ci_low, "rmsea_ci_high": ci_high,
            "aic": float(-2 * ll + 2 * npar), "bic": float(-2 * ll + npar * math.log(n)),
            "npar": int(npar), "ntotal": int(n),
            "baseline_chisq": float(base_chisq), "baseline_df": int(base_df)}


def _rmsea_interval(chisq: float, df: int, n: int) -> tuple[float, float]:
    """lavaan's 90% RMSEA interval: the noncentrality where the chi-square's CDF is 0.95 (lower)
    and 0.05 (upper), as ``sqrt(lambda / (N df))``."""
    def bound(target: float) -> float:
        def f(lam: float) -> float:
            return (stats.ncx2.cdf(chisq, df, lam) if lam > 0 else stats.chi2.cdf(chisq, df)) - target

        if f(0) < 0:
            return 0.0
        hi = max(chisq, 1.0)
        while f(hi) > 0:
            hi *= 2
        return math.sqrt(optimize.brentq(f, 0, hi, xtol=1e-12) / (n * df))
    return bound(0.95), bound(0.05)
