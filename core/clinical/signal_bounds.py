"""The early-warning signal's statistics and their patient-level bounds (pure numbers).

The expected course (:mod:`core.clinical.signal`) is the linear mixed model

    y_ij = z_ij'β + b0_i + b1_i·ln j + e_ij,   (b0, b1) ~ N(0, G),   e ~ N(0, σ²)

with ``z_ij = (1, x_i, ln j, x_i·ln j)``, ``x_i`` the patient's centred intake and ``j`` the
session of the course. For a patient doing as expected, the residuals ``r = y − Zβ`` of their
scored sessions so far (``f0 … t``) are normal with mean 0 and covariance
``V = U G U' + σ² I + Z V_β Z'`` (``U`` rows ``(1, ln j)``; ``V_β`` the fixed effects' covariance).
Everything below is signed so that a positive residual is worse.

**Statistics** (each standard normal at every session for a patient doing as expected):

- ``session``: this session's residual over its prediction SD, ``T = r_t / sd_t`` (the per-session
  rule of OQ-Analyst-style expected recovery curves; Finch, Lambert & Schaalje, 2001).
- ``trend`` (personalised, empirical Bayes): the patient's own course so far, shrunk toward the
  expected course as the mixed model does (the BLUP ``b̂ = G U'V⁻¹r``; Laird & Ware, 1982). Two
  linear statistics ``a'V⁻¹r / sqrt(a'V⁻¹a + c'V_β c)`` with ``a = U h``, ``c = Z'V⁻¹a``:
  ``h = G·(1, ln t)`` (the estimated current deviation from the expected course, in score points)
  and ``h = G·(0, 1)`` (the estimated deviation of the patient's rate of change); ``T`` is the
  larger of the two. Where ``G`` gives no direction (the first refits: no random slope), ``h =
  (1, 0)``: the correlation-weighted mean residual.

With ``M = U'U`` and ``s = U'r`` (sums over the sessions so far), ``V⁻¹U = U(GM + σ²I)⁻¹``, so every
statistic needs only five running sums per patient (``n, Σ ln j, Σ ln² j, Σ y, Σ y ln j``): the
whole clinic is computed with cumulative sums, no per-patient matrices.

**Bounds** (patient level). Bounds ``c_t`` on ``T`` are set so that a patient doing as expected
crosses them at *some* session ``f0 … N`` with probability ``α`` (N = 8; α = 0.10 for not on
track, 0.20 for at risk), spent evenly over the sessions (α-spending: Lan & DeMets, 1983; Kim &
DeMets, 1987): by session t, ``α · (t − f0 + 1) / (N − f0 + 1)``. So little is spent at the first
sessions, where a patient's one or two scores say little, and a patient who is truly worse has
several sessions to show it. Each refit's bound comes from simulating 20,000 patients from that
refit (a fixed seed: the same bound on any machine), judged at the earlier sessions by the earlier
refits and their bounds (:func:`sequential_bounds`); nothing after the refit is used, so a later
session never changes an earlier bound. After session N, each refit's bound is the one that alone
would give α over N sessions.
"""
from __future__ import annotations

import math

import numpy as np

#: Calibration defaults: the share of patients doing as expected ever flagged over the first
#: HORIZON sessions (not on track, at risk or worse).
HORIZON = 8
RATE_NOT_ON_TRACK = 0.10
RATE_AT_RISK = 0.20
METHODS = ("trend", "session")
DEFAULT_METHOD = "trend"
#: Simulated patients per calibration, and the seed (the same bounds on any machine).
DRAWS = 20000
SEED = 20231207


def inverse_2x2(a, b, c, d):
    """Elementwise inverse of [[a, b], [c, d]] (arrays): returns its four entries."""
    det = a * d - b * c
    return d / det, -b / det, -c / det, a / det


def fit_parameters(fit, sign: float) -> dict:
    """The numbers of one refit that the statistics need, signed so that positive is worse."""
    return {"beta": sign * np.asarray(fit.fixed, float), "G": np.asarray(fit.patient_cov, float),
            "s2": float(fit.residual), "Vb": np.asarray(fit.fixed_cov, float)}


def statistics(method: str, p: dict, x, lt, n, S1, S2, Y0, Y1, y_t) -> dict:
    """The statistic of ``method`` at the current session of each row (arrays, one row per
    patient-session), for one refit ``p`` (:func:`fit_parameters`).

    ``x``: centred intake; ``lt``: ln of the current course session; ``n, S1, S2``: the number of
    scored sessions so far and the sums of ln j and ln² j over them; ``Y0, Y1``: the sums of the
    (signed) scores and of score·ln j; ``y_t``: the (signed) current score. Returns ``T`` (the
    statistic; ``T_parts`` its linear parts), ``estimate`` (in score points: the current residual for
    ``session``, the estimated current deviation for ``trend``), ``slope`` (``trend``: the estimated
    deviation of the rate of change, points per unit of ln session) and, per linear part, ``(A, B, D)`` with ``T_part = (A + B·r_t) / D``
    — what :func:`score_bound` needs to turn a bound on ``T`` into a bound on this session's score.
    """
    beta, G, s2, Vb = p["beta"], p["G"], p["s2"], p["Vb"]
    x, lt = np.asarray(x, float), np.asarray(lt, float)
    mean_t = beta[0] + beta[1] * x + (beta[2] + beta[3] * x) * lt
    r_t = np.asarray(y_t, float) - mean_t
    # c'V_β c for c = u0·(1, x, 0, 0) + u1·(0, 0, 1, x): a quadratic form in (u0, u1)
    v00 = Vb[0, 0] + 2 * x * Vb[0, 1] + x * x * Vb[1, 1]
    v11 = Vb[2, 2] + 2 * x * Vb[2, 3] + x * x * Vb[3, 3]
    v01 = Vb[0, 2] + x * (Vb[0, 3] + Vb[1, 2]) + x * x * Vb[1, 3]
    if method == "session":
        between = G[0, 0] + 2 * lt * G[0, 1] + lt * lt * G[1, 1]
        fixed = v00 + 2 * lt * v01 + lt * lt * v11           # z'V_β z, z = (1, x, ln t, x ln t)
        sd = np.sqrt(np.maximum(between + s2 + fixed, 0.0))
        T = r_t / sd
        return {"T": T, "T_parts": [T], "estimate": r_t, "slope": np.full_like(r_t, np.nan),
                "parts": [(np.zeros_like(r_t), np.ones_like(r_t), sd)]}
    if method != "trend":
        raise ValueError(f"unknown signal method {method!r}")
    n, S1, S2 = (np.asarray(v, float) for v in (n, S1, S2))
    a0 = beta[0] + beta[1] * x
    a1 = beta[2] + beta[3] * x
    R0 = np.asarray(Y0, float) - n * a0 - S1 * a1      # s = U'r
    R1 = np.asarray(Y1, float) - S1 * a0 - S2 * a1
    # B = (G M + σ² I)⁻¹ with M = [[n, S1], [S1, S2]]
    b00, b01, b10, b11 = inverse_2x2(G[0, 0] * n + G[0, 1] * S1 + s2, G[0, 0] * S1 + G[0, 1] * S2,
                                     G[1, 0] * n + G[1, 1] * S1, G[1, 0] * S1 + G[1, 1] * S2 + s2)
    scale = max(float(np.abs(G).max()), 1e-300)
    parts, stats, estimate, slope = [], [], None, None
    for target in ("now", "slope"):
        if target == "now":
            h0, h1 = G[0, 0] + G[0, 1] * lt, G[1, 0] + G[1, 1] * lt
        else:
            h0, h1 = np.full_like(lt, G[0, 1]), np.full_like(lt, G[1, 1])
        flat = (np.abs(h0) + np.abs(h1)) <= 1e-9 * scale
        h0, h1 = np.where(flat, 1.0, h0), np.where(flat, 0.0, h1)
        # a = U h: V⁻¹a = U q with q = B h, so a'V⁻¹r = q's and a'V⁻¹a = h'M q
        q0, q1 = b00 * h0 + b01 * h1, b10 * h0 + b11 * h1
        num = q0 * R0 + q1 * R1
        u0, u1 = n * q0 + S1 * q1, S1 * q0 + S2 * q1                 # M q
        var = h0 * u0 + h1 * u1
        # the fixed effects' uncertainty: c = Z'V⁻¹a = Z'U q = (u0, x·u0, u1, x·u1), so var += c'V_β c
        var = var + u0 * u0 * v00 + 2 * u0 * u1 * v01 + u1 * u1 * v11
        D = np.sqrt(np.maximum(var, 1e-300))
        coef = q0 + q1 * lt                                         # ∂num/∂r_t (u_t'q)
        parts.append((num - coef * r_t, coef, D))
        stats.append(num / D)
        if target == "now":  # the estimated current deviation (without a direction: the weighted mean residual)
            estimate = np.where(flat, num / np.maximum(u0, 1e-300), num)
        else:
            slope = np.where(flat, np.nan, num)
    return {"T": np.maximum(stats[0], stats[1]), "T_parts": stats, "estimate": estimate, "slope": slope,
            "parts": parts}


def score_bound(parts, c) -> np.ndarray:
    """The residual ``r_t`` at this session beyond which ``T > c`` (the other sessions as they
    are): the smallest ``(c·D − A) / B`` over the linear parts with ``B > 0`` (NaN if none)."""
    out = None
    for A, B, D in parts:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(B > 0, (c * D - A) / B, np.nan)
        out = r if out is None else np.fmin(out, r)
    return out


def simulate_statistics(method: str, p: dict, judges: list[dict], first: int, draws: int = DRAWS,
                        seed: int = SEED) -> np.ndarray:
    """The statistic at sessions ``first, first + 1, …`` (one per entry of ``judges``: the refit
    that judges that session) for ``draws`` simulated patients doing as expected under refit ``p``
    (at the mean intake; each draw includes the fixed effects' uncertainty, as the prediction SD
    does). Returns a ``draws × len(judges)`` array."""
    k = len(judges)
    lt = np.log(np.arange(first, first + k, dtype=float))
    rng = np.random.default_rng(seed)
    G, s2, Vb = p["G"], p["s2"], p["Vb"]
    # residuals r = U b + e + Z δ  (x = 0: Z δ = δ0 + δ2 ln j, so only (δ0, δ2) are drawn)
    b = rng.standard_normal((draws, 2)) @ cov_root(G).T
    e = rng.standard_normal((draws, k)) * math.sqrt(s2)
    d = rng.standard_normal((draws, 2)) @ cov_root(Vb[np.ix_([0, 2], [0, 2])]).T
    r = b[:, :1] + b[:, 1:] * lt + e + d[:, :1] + d[:, 1:] * lt
    beta = p["beta"]
    y = beta[0] + beta[2] * lt + r        # signed scores at x = 0
    n = np.arange(1, k + 1, dtype=float)
    S1, S2 = np.cumsum(lt), np.cumsum(lt * lt)
    Y0, Y1 = np.cumsum(y, axis=1), np.cumsum(y * lt, axis=1)
    out = np.empty((draws, k))
    zero = np.zeros(draws)
    for i, q in enumerate(judges):
        out[:, i] = statistics(method, q, zero, zero + lt[i], zero + n[i], zero + S1[i], zero + S2[i], Y0[:, i],
                               Y1[:, i], y[:, i])["T"]
    return out


def simulate_max(method: str, p: dict, first: int, horizon: int, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """``max_t T_t`` over sessions ``first … horizon``, every session judged by refit ``p``, for
    ``draws`` simulated patients doing as expected under ``p``."""
    judges = [p] * (max(horizon, first) - first + 1)
    return simulate_statistics(method, p, judges, first, draws, seed).max(axis=1)


def cov_root(cov: np.ndarray) -> np.ndarray:
    """A square root ``L`` with ``L L' = cov`` for a covariance that may be singular."""
    cov = np.asarray(cov, float)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def bounds(method: str, p: dict, first: int, horizon: int = HORIZON, rates=(RATE_NOT_ON_TRACK, RATE_AT_RISK),
           draws: int = DRAWS, seed: int = SEED) -> tuple[float, ...]:
    """The bounds on ``T`` such that a patient doing as expected under refit ``p`` crosses each at
    some session ``first … horizon`` with the given probabilities (the ``1 − rate`` quantiles of
    the simulated ``max_t T_t``)."""
    m = simulate_max(method, p, first, horizon, draws, seed)
    return tuple(float(np.quantile(m, 1 - rate)) for rate in rates)


#: The spending function's power: the share of the rate spent by session t of the horizon is
#: ((t − first + 1) / (horizon − first + 1))^SPENDING (Kim & DeMets, 1987; Lan & DeMets, 1983).
SPENDING = 1.0
#: Where the rate is already spent (the refits before disagreed), the bound still flags this share.
FLOOR = 0.001


def spent(t: float, first: int, horizon: int, power: float = SPENDING) -> float:
    """The share of the rate spent by session ``t`` (1 from the horizon on)."""
    return min(1.0, max(0.0, (t - first + 1) / (horizon - first + 1))) ** power


def sequential_bounds(method: str, refits: list[tuple[float, dict]], first: int, horizon: int = HORIZON,
                      rates=(RATE_NOT_ON_TRACK, RATE_AT_RISK), draws: int = DRAWS, seed: int = SEED,
                      power: float = SPENDING) -> list[tuple[float, ...]]:
    """The bounds of each refit (``refits``: ``(up_to, parameters)`` in order), spending each rate
    over the first ``horizon`` sessions (:func:`spent`: little at first, when a patient's few scores
    say little).

    Refit k judges sessions ``up_to_k … up_to_{k+1} − 1``. Its bound c is set under refit k's own
    model (the sessions so far, as the time split allows): simulated patients doing as expected
    are judged at the earlier sessions by the earlier refits and their bounds, and at session
    ``up_to_k`` by refit k; c is such that the share flagged at some session up to ``up_to_k`` is
    ``rate · spent(up_to_k)``. Refits after the horizon: the bound that refit alone would need over
    sessions ``first … horizon``. Nothing here looks beyond refit k (not even whether a later refit
    exists), so a later session never changes an earlier bound. ``refits``' parameters are signed
    (positive = worse): the earlier refits' fixed effects judge the simulated patients too."""
    out: list[tuple[float, ...]] = []
    ups = [u for u, _ in refits]
    for k, (up, p) in enumerate(refits):
        start = max(int(math.ceil(up)), first)
        if start > horizon:
            m = simulate_max(method, p, first, horizon, draws, seed)
            out.append(tuple(float(np.quantile(m, 1 - rate)) for rate in rates))
            continue
        judges = [refits[max(i for i, u in enumerate(ups) if u <= s)][1] if s < start else p
                  for s in range(first, start + 1)]
        T = simulate_statistics(method, p, judges, first, draws, seed)
        earlier, window = T[:, : start - first], T[:, start - first]
        levels = []
        for level, rate in enumerate(rates):
            crossed = np.zeros(draws, dtype=bool)
            for s in range(first, start):
                i = max(i for i, u in enumerate(ups) if u <= s)
                crossed |= earlier[:, s - first] > out[i][level]
            left = rate * spent(start, first, horizon, power) - crossed.mean()
            alive = window[~crossed]
            share = max(left, FLOOR * rate) / max(alive.size / draws, 1e-12)
            levels.append(float(np.quantile(alive, 1 - min(share, 1.0))) if alive.size else float("inf"))
        out.append(tuple(levels))
    return out
