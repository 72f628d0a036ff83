"""Kenward–Roger small-sample inference for the fixed effects of a linear mixed model, as pbkrtest.

Kenward, M. G., & Roger, J. H. (1997). Small sample inference for fixed effects from restricted
maximum likelihood. *Biometrics*, 53, 983–997; Halekoh, U., & Højsgaard, S. (2014). A Kenward–Roger
approximation and parametric bootstrap methods for tests in linear mixed models — the R package
pbkrtest. *J. Stat. Softw.* 59(9). The computation is pbkrtest's ``vcovAdj`` and ``Lb_ddf``
(pbkrtest 0.5.2), written in the space of the random effects instead of pbkrtest's n × n matrices.

The marginal covariance is linear in the variance parameters γ (each random-effect term's variances
and covariances, lower triangle by columns, then σ²): ``Σ = Σ_k γ_k G_k`` with ``G_k = Z E_k Z'``
(``E_k`` the indicator of one entry of the term's covariance, repeated over its groups) and
``G_σ = I``. With ``Φ = (X'Σ⁻¹X)⁻¹`` (lme4's ``vcov``):

- ``P_k = −X'Σ⁻¹G_kΣ⁻¹X``, ``Q_kl = X'Σ⁻¹G_kΣ⁻¹G_lΣ⁻¹X``,
- ``IE2_kl = tr(Σ⁻¹G_kΣ⁻¹G_l) − 2 tr(Φ Q_kl) + tr(Φ P_k Φ P_l)`` (twice the REML expected
  information), ``W = 2 IE2⁻¹`` (the asymptotic covariance of γ̂; a generalised inverse when
  IE2 is singular, as pbkrtest),
- ``U = Σ_kl W_kl (Q_kl − P_k Φ P_l)`` and the adjusted covariance ``Φ_A = Φ + 2 Φ U Φ``;
- for a contrast ``L`` (q rows) the denominator df of the scaled F test (Kenward & Roger, 1997, §4):
  ``Θ = L'(LΦL')⁻¹L``, ``A1 = Σ_kl W_kl tr(ΘΦP_kΦ) tr(ΘΦP_lΦ)``, ``A2 = Σ_kl W_kl tr(ΘΦP_kΦΘΦP_lΦ)``,
  ``B = (A1 + 6A2)/(2q)``, ``g = ((q+1)A1 − (q+4)A2)/((q+2)A2)``, c₁, c₂, c₃, ρ and
  ``df = 4 + (q+2)/(qρ − 1)`` (pbkrtest's ``Lb_ddf``). For one coefficient (q = 1) this is
  ``df = 2/A2`` and the F test is the t test with the adjusted SE ``√Φ_A,jj`` (lmerTest's
  ``ddf = "Kenward-Roger"``).

Every product is written with Woodbury's identity, ``Σ⁻¹ = σ⁻²(I − Z K Z')``, ``K = Λ(Λ'Z'ZΛ + I)⁻¹Λ'``,
so that only Z'Z, Z'X and X'X enter: ``Z'Σ⁻¹Z = σ⁻²(S − SKS)`` (S = Z'Z), ``Z'Σ⁻¹X = σ⁻²(Z'X − SKZ'X)``,
``Σ⁻¹Z = Z R`` with ``R = σ⁻²(I − KS)``, and so on. With one grouping factor every q_total × q_total
matrix is block diagonal and the sums run over the groups' q × q blocks (fast enough for power
simulations); otherwise they are dense in the number of random effects (refused beyond
:data:`MAX_DENSE`, where pbkrtest itself would need an n × n inverse).

It needs numpy and scipy (and :mod:`core.stats.profiled`'s relative factor); the power simulations'
workers run it for every simulated fit.

>>> import numpy as np, scipy.sparse as sp
>>> g = np.repeat(np.arange(6), 4); t = np.tile(np.arange(4.0), 6)
>>> Z = sp.csc_matrix((np.ones(24), (np.arange(24), g)), shape=(24, 6))
>>> X = np.column_stack([np.ones(24), t])
>>> kr = kenward_roger(Z, X, [(1, 6)], np.array([1.0]), 1.0)  # at θ = 1, σ = 1; balanced: the slope has 24 − 6 − 1 = 17 df
>>> [round(float(v), 4) for v in kr.df], [round(float(v), 4) for v in kr.se]
([8.9084, 17.0], [0.5323, 0.1826])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.stats.profiled import _relative_factor

#: The largest number of random effects for the dense computation (designs with more than one
#: grouping factor): a q × q inverse of 4,000² takes about 2 s and 128 MB.
MAX_DENSE = 4000


class KenwardRogerError(ValueError):
    """The design is too large for the dense computation (see :data:`MAX_DENSE`)."""


@dataclass(frozen=True)
class KenwardRoger:
    """``vcov`` (Φ, unadjusted), ``vcov_adjusted`` (Φ_A), ``P`` (list of p × p), ``W`` (the
    covariance of the variance parameters), ``df`` (per coefficient) and ``se`` (adjusted)."""

    vcov: np.ndarray
    vcov_adjusted: np.ndarray
    P: list
    W: np.ndarray
    df: np.ndarray

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.vcov_adjusted), 0.0))

    def ddf(self, L: np.ndarray) -> float:
        """pbkrtest's ``Lb_ddf(L, vcov, vcovAdj)`` for a contrast matrix ``L`` (q × p)."""
        return lb_ddf(np.atleast_2d(np.asarray(L, float)), self.vcov, self.P, self.W)


def _entries(q: int) -> list[tuple[int, int]]:
    """The (row, column) of each variance parameter of a q × q covariance: lower triangle by columns
    (R's ``lower.tri(, diag = TRUE)`` order, pbkrtest's)."""
    return [(i, j) for j in range(q) for i in range(j, q)]


def _solve_sym(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    try:
        c = np.linalg.cholesky(A)
        return np.linalg.solve(c.T, np.linalg.solve(c, B))
    except np.linalg.LinAlgError:
        return np.linalg.solve(A, B)


def _grouped(S, Sx, XtX, n, q, G, T, sigma):
    """The pieces for one grouping factor: per-group q × q blocks (arrays (G, q, q))."""
    s2 = sigma * sigma
    M = np.einsum("ai,gab,bj->gij", T, S, T) + np.eye(q)
    Minv = np.linalg.inv(M)
    K = np.einsum("ia,gab,jb->gij", T, Minv, T)                     # Λ M⁻¹ Λ'
    KS = K @ S
    B = (S - S @ KS) / s2                                           # Z'Σ⁻¹Z
    H = K @ Sx                                                      # K Z'X   (G, q, p)
    A = (Sx - S @ H) / s2                                           # Z'Σ⁻¹X
    F = (XtX - np.einsum("gap,gaq->pq", Sx, H)) / s2                # X'Σ⁻¹X
    R = (np.eye(q) - KS) / s2                                       # Σ⁻¹Z = Z R
    RtA = np.einsum("gba,gbp->gap", R, A)                           # Z'Σ⁻²X
    ZS2Z = np.einsum("gba,gbc,gcd->gad", R, S, R)                   # Z'Σ⁻²Z
    XS2X = (XtX - 2 * np.einsum("gap,gaq->pq", Sx, H) + np.einsum("gap,gab,gbq->pq", H, S, H)) / s2 ** 2
    HtA = np.einsum("gap,gaq->pq", H, A)
    XS3X = (F - HtA - HtA.T + np.einsum("gap,gab,gbq->pq", H, B, H)) / s2 ** 2
    trS2 = (n - 2 * np.trace(KS, axis1=1, axis2=2).sum() + np.einsum("gab,gba->", KS, KS)) / s2 ** 2
    Phi = np.linalg.inv(F)
    entries = _entries(q)
    Y = []
    for (i, j) in entries:
        E = np.zeros((q, q))
        E[i, j] = E[j, i] = 1.0
        Y.append((E, np.einsum("ab,gbp->gap", E, A)))
    m = len(entries) + 1
    P = [-np.einsum("gap,gaq->pq", A, y) for _, y in Y] + [-XS2X]
    Q = {}
    Kt = np.zeros((m, m))
    for r in range(m):
        for s in range(r, m):
            if s < m - 1:
                (Er, Yr), (Es, Ys) = Y[r], Y[s]
                Q[r, s] = np.einsum("gap,gab,gbq->pq", Yr, B, Ys)
                Kt[r, s] = np.einsum("gab,bc,gcd,da->", B, Er, B, Es)
            elif r < m - 1:
                Er, Yr = Y[r]
                Q[r, s] = np.einsum("gap,gaq->pq", Yr, RtA)
                Kt[r, s] = np.einsum("ab,gba->", Er, ZS2Z)
            else:
                Q[r, s] = XS3X
                Kt[r, s] = trS2
            Kt[s, r] = Kt[r, s]
    return Phi, P, Q, Kt


def _dense(S, Sx, XtX, n, structure, theta, sigma):
    """The pieces for any random-effects structure, dense in the number of random effects."""
    Qn = S.shape[0]
    if Qn > MAX_DENSE:
        raise KenwardRogerError(f"{Qn} random effects")
    S = S.toarray() if hasattr(S, "toarray") else np.asarray(S)
    s2 = sigma * sigma
    Lam = np.zeros((Qn, Qn))
    params = []                                                      # per parameter: index pairs
    off = k = 0
    for q, G in structure:
        width = q * (q + 1) // 2
        T = _relative_factor(theta[k:k + width], q)
        for g in range(G):
            Lam[off + g * q: off + (g + 1) * q, off + g * q: off + (g + 1) * q] = T
        base = off + np.arange(G) * q
        for (i, j) in _entries(q):
            params.append((base + i, base + j))
        off += q * G
        k += width
    M = Lam.T @ S @ Lam + np.eye(Qn)
    K = Lam @ _solve_sym(M, Lam.T)
    KS = K @ S
    B = (S - S @ KS) / s2
    H = K @ Sx
    A = (Sx - S @ H) / s2
    F = (XtX - Sx.T @ H) / s2
    R = (np.eye(Qn) - KS) / s2
    RtA = R.T @ A
    ZS2Z = R.T @ S @ R
    XS2X = (XtX - 2 * Sx.T @ H + H.T @ S @ H) / s2 ** 2
    HtA = H.T @ A
    XS3X = (F - HtA - HtA.T + H.T @ B @ H) / s2 ** 2
    trS2 = (n - 2 * np.trace(KS) + np.sum(KS * KS.T)) / s2 ** 2
    Phi = np.linalg.inv(F)

    def scatter_rows(M_, a, b):   # E M for E = Σ e_a e_b' (+ e_b e_a' when a ≠ b)
        out = np.zeros_like(M_)
        np.add.at(out, a, M_[b])
        if not np.array_equal(a, b):
            np.add.at(out, b, M_[a])
        return out

    m = len(params) + 1
    Y = [scatter_rows(A, a, b) for a, b in params]
    BE = [scatter_rows(B, a, b).T for a, b in params]               # B E (B symmetric)
    P = [-(A.T @ y) for y in Y] + [-XS2X]
    Q = {}
    Kt = np.zeros((m, m))
    for r in range(m):
        for s in range(r, m):
            if s < m - 1:
                Q[r, s] = Y[r].T @ B @ Y[s]
                Kt[r, s] = np.sum(BE[r] * BE[s].T)
            elif r < m - 1:
                a, b = params[r]
                Q[r, s] = Y[r].T @ RtA
                Kt[r, s] = ZS2Z[b, a].sum() + (ZS2Z[a, b].sum() if not np.array_equal(a, b) else 0.0)
            else:
                Q[r, s] = XS3X
                Kt[r, s] = trS2
            Kt[s, r] = Kt[r, s]
    return Phi, P, Q, Kt


def kenward_roger(Z, X: np.ndarray, structure: list[tuple[int, int]], theta: np.ndarray,
                  sigma: float) -> KenwardRoger:
    """pbkrtest's ``vcovAdj`` and per-coefficient ``Lb_ddf`` of a REML fit.

    ``Z``: the random-effects model matrix (scipy sparse, n × Σ qₜGₜ; lme4's column order: term by
    term, group by group, the term's effects within a group); ``structure``: (qₜ, Gₜ) of each term;
    ``theta``: lme4's θ; ``sigma``: the residual SD. Raises :class:`KenwardRogerError` for a
    design with more than one term and more than :data:`MAX_DENSE` random effects.
    """
    X = np.asarray(X, float)
    n, p = X.shape
    theta = np.asarray(theta, float)
    Zc = Z.tocsc()
    S = (Zc.T @ Zc).tocsr()
    Sx = np.asarray(Zc.T @ X)
    XtX = X.T @ X
    if len(structure) == 1:
        q, G = structure[0]
        coo = S.tocoo()
        blocks = np.zeros((G, q, q))
        same = (coo.row // q) == (coo.col // q)
        np.add.at(blocks, (coo.row[same] // q, coo.row[same] % q, coo.col[same] % q), coo.data[same])
        Phi, P, Q, Kt = _grouped(blocks, Sx.reshape(G, q, p), XtX, n, q, G, _relative_factor(theta, q), sigma)
    else:
        Phi, P, Q, Kt = _dense(S, Sx, XtX, n, structure, theta, sigma)
    m = len(P)
    IE2 = np.empty((m, m))
    for r in range(m):
        PhiPr = Phi @ P[r]
        for s in range(r, m):
            IE2[r, s] = IE2[s, r] = Kt[r, s] - 2 * np.sum(Phi * Q[r, s]) + np.sum(PhiPr * (P[s] @ Phi))
    eig = np.linalg.eigvalsh((IE2 + IE2.T) / 2)
    W = 2 * (np.linalg.inv(IE2) if np.min(np.abs(eig)) > 1e-10 else np.linalg.pinv(IE2))
    W = (W + W.T) / 2
    U = np.zeros((p, p))
    for r in range(m - 1):
        for s in range(r + 1, m):
            U += W[r, s] * (Q[r, s] - P[r] @ Phi @ P[s])
    U = U + U.T
    for r in range(m):
        U += W[r, r] * (Q[r, r] - P[r] @ Phi @ P[r])
    PhiA = Phi + 2 * Phi @ U @ Phi
    df = np.array([lb_ddf(np.eye(p)[[j]], Phi, P, W) for j in range(p)])
    return KenwardRoger(vcov=Phi, vcov_adjusted=PhiA, P=P, W=W, df=df)


def lb_ddf(L: np.ndarray, V0: np.ndarray, P: list, W: np.ndarray) -> float:
    """pbkrtest's ``Lb_ddf``: the denominator df of the Kenward–Roger F test of ``L β = 0``."""
    Theta = L.T @ np.linalg.solve(L @ V0 @ L.T, L)
    TV0 = Theta @ V0
    u = [TV0 @ Pk @ V0 for Pk in P]
    tr = [np.trace(x) for x in u]
    A1 = A2 = 0.0
    m = len(P)
    for i in range(m):
        for j in range(i, m):
            e = 1.0 if i == j else 2.0
            A1 += e * W[i, j] * tr[i] * tr[j]
            A2 += e * W[i, j] * np.sum(u[i] * u[j].T)
    q = L.shape[0]
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    c1 = g / (3 * q + 2 * (1 - g))
    c2 = (q - g) / (3 * q + 2 * (1 - g))
    c3 = (q + 2 - g) / (3 * q + 2 * (1 - g))
    v0 = 1 + c1 * B
    v1 = 1 - c2 * B
    v2 = 1 - c3 * B
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    x = 1 - A2 / q
    ratio = 1.0 if abs(x) < 1e-14 and abs(v1) < 1e-14 else x / v1      # pbkrtest's .divZero
    rho = (1 / q) * ratio ** 2 * v0 / v2
    return float(4 + (q + 2) / (q * rho - 1))
