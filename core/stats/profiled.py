"""lme4's profiled (RE)ML for one grouping factor, or two nested ones, from per-group sums.

A linear mixed model ``y = Xβ + Zb + ε``, ``b = Λ_θ u``, ``u ~ N(0, σ²I)``, ``ε ~ N(0, σ²I)`` is
fitted as lme4 fits it (Bates, Mächler, Bolker & Walker, 2015, *J. Stat. Softw.* 67(1), sections
3.2–3.4): for given relative covariance factors θ, the sparse Cholesky factor ``L_θ`` of
``Λ'Z'ZΛ + I``, the blocks ``R_ZX``, ``R_X`` and ``c_u``, ``c_β`` give β̂(θ), the penalised residual
sum of squares ``r²(θ)`` and the profiled deviance

- ML:   ``log|L|² + n (1 + log(2π r²/n))``
- REML: ``log|L|² + log|R_X|² + (n−p) (1 + log(2π r²/(n−p)))``,

which is minimised over θ (diagonal elements of each relative factor ≥ 0). When the random effects
have one grouping factor (``(1 | patient)``, ``(time | patient)``) ``L_θ`` is block diagonal with one
q × q block per group, and every quantity above is a sum over groups of terms that need only the
group's ``Z_i'Z_i``, ``Z_i'X_i`` and ``Z_i'y_i`` (and the totals ``X'X``, ``X'y``, ``y'y``). With a second
grouping factor in which the first is nested (patients within therapists: every patient's rows name
one therapist) the outer groups' blocks of ``L_θ`` are the Schur complements ``Λ₂'Z₂'Z₂Λ₂ + I −
Σ_{i ∈ h} G_i'G_i``, again one small block per outer group. So a model on 10 million rows and 1.4
million patients costs a few passes over the rows (the sums) and then vector operations over the
patients per evaluation, instead of factorising a sparse matrix with a row per observation.

The numbers are lme4's: the same criterion, minimised to a tighter tolerance than lme4's default
(BOBYQA), with lme4's θ parametrisation, lower bounds, singularity rule and convergence checks
(``lme4:::checkConv``: gradient and Hessian of the deviance by central differences, done by the
caller). Degrees of freedom are Satterthwaite's as lmerTest (Kuznetsova, Brockhoff & Christensen,
2017) approximates them and as ``mixedlm`` (the engine for every other model) computes them: the
Jacobian of ``vcov(β̂)`` in θ by central differences and the covariance of θ from the Hessian of the
profiled deviance.

Designs it does not cover (crossed factors, two terms on the same factor such as ``(1 | patient) +
(0 + time | patient)``, a patient seen by two therapists in a therapist-and-patient model, more than
eight random effects per group) return ``None`` from :func:`grouped_sums`, and the caller uses the
``mixedlm`` engine. So does a fit whose optimisation does not end at a clean optimum
(:class:`ProfiledFit` ``.clean`` is False).

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> g = np.repeat(np.arange(30), 5)
>>> y = 2 + rng.normal(0, 1, 30)[g] + rng.normal(0, 0.5, 150)
>>> sums = grouped_sums(y, np.ones((150, 1)), [(g, [np.ones(150)])])
>>> fit = fit_profiled(sums, reml=True)
>>> round(float(fit.beta[0]), 4), round(float(y.mean()), 4), fit.clean   # balanced groups: the grand mean
(1.8965, 1.8965, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: The most random effects per group this module handles (a q × q block per group).
MAX_TERMS = 8
#: A fit whose deviance Hessian in θ has its smallest eigenvalue below this fraction of the largest,
#: or below :data:`FLAT_ABSOLUTE`, is left to mixedlm: the likelihood is (nearly) flat in some
#: direction, the optimum is not determined, and where an optimiser stops on the ridge decides
#: lme4's Hessian check (ordinary fits have a ratio of 1e-2 or more and eigenvalues of 0.1 or more).
FLAT_RATIO = 1e-4
FLAT_ABSOLUTE = 1e-2
_LOG_2PI = math.log(2 * math.pi)


# ============================================================================== sufficient sums

@dataclass
class Block:
    """One random-effect term's per-group sums (arrays indexed ``[j, k, group]``)."""

    n_groups: int
    q: int
    codes: np.ndarray             # group of each row (0 … n_groups−1)
    ZtZ: np.ndarray               # (q, q, G)
    ZtX: np.ndarray               # (q, p, G)
    Zty: np.ndarray               # (q, G)


@dataclass
class GroupedSums:
    """Everything the profiled deviance needs: totals and per-group sums.

    ``inner`` is the grouping factor with more levels (lme4's first random-effect term); ``outer``
    (optional) the factor it is nested in, with ``parent`` giving each inner group's outer group and
    ``cross`` the sums ``Z₁_i'Z₂_i`` (q₁ × q₂ per inner group). ``y_shift`` was subtracted from y
    (the mean, when X has an intercept column ``intercept``) to keep the sums of squares well
    conditioned; it is added back to the intercept.
    """

    n: int
    p: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    inner: Block
    outer: Block | None = None
    parent: np.ndarray | None = None
    cross: np.ndarray | None = None
    y_shift: float = 0.0
    intercept: int | None = None

    @property
    def n_theta(self) -> int:
        return sum(b.q * (b.q + 1) // 2 for b in self.blocks)

    @property
    def blocks(self) -> list[Block]:
        return [self.inner] if self.outer is None else [self.inner, self.outer]

    def lower_bounds(self) -> np.ndarray:
        """lme4's lower bounds of θ: 0 for the diagonal of each relative factor, −∞ below it."""
        out = []
        for b in self.blocks:
            for j in range(b.q):
                out += [0.0] + [-np.inf] * (b.q - j - 1)
        return np.array(out)

    def start(self) -> np.ndarray:
        """lme4's start: identity relative factors."""
        out = []
        for b in self.blocks:
            for j in range(b.q):
                out += [1.0] + [0.0] * (b.q - j - 1)
        return np.array(out)


def _group_sum(codes: np.ndarray, weights: np.ndarray | None, n_groups: int) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=n_groups).astype(float, copy=False)


def _block_sums(codes, columns, X, y, n_groups) -> Block:
    q, p = len(columns), X.shape[1]
    ones = [c is None for c in columns]
    ZtZ = np.empty((q, q, n_groups))
    ZtX = np.empty((q, p, n_groups))
    Zty = np.empty((q, n_groups))
    for j in range(q):
        for k in range(j + 1):
            w = None if ones[j] and ones[k] else columns[k] if ones[j] else columns[j] if ones[k] \
                else columns[j] * columns[k]
            ZtZ[j, k] = ZtZ[k, j] = _group_sum(codes, w, n_groups)
        for m in range(p):
            ZtX[j, m] = _group_sum(codes, X[:, m] if ones[j] else columns[j] * X[:, m], n_groups)
        Zty[j] = _group_sum(codes, y if ones[j] else columns[j] * y, n_groups)
    return Block(n_groups, q, codes, ZtZ, ZtX, Zty)


def _is_ones(column: np.ndarray) -> bool:
    return bool(len(column)) and bool(np.all(column == 1.0))


def grouped_sums(y: np.ndarray, X: np.ndarray, blocks: list[tuple[np.ndarray, list[np.ndarray]]]) -> GroupedSums | None:
    """The sums of a design, or None when the design is not one this module covers.

    ``blocks``: lme4's random-effect terms in lme4's order, each as (group codes 0 … G−1 per row,
    the term's columns of Z). Covered: one term; or two terms on different factors with the first
    (more levels) nested in the second.
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    n, p = X.shape
    if not 1 <= len(blocks) <= 2 or n == 0:
        return None
    prepared = []
    for codes, columns in blocks:
        if not 1 <= len(columns) <= MAX_TERMS:
            return None
        codes = np.asarray(codes)
        n_groups = int(codes.max()) + 1 if len(codes) else 0
        cols = [None if _is_ones(c) else np.asarray(c, float) for c in columns]
        prepared.append((codes.astype(np.intp, copy=False), cols, n_groups))
    parent = None
    if len(prepared) == 2:
        (c1, _, g1), (c2, _, g2) = prepared
        if g2 > g1:
            return None
        parent = np.zeros(g1, dtype=np.intp)
        parent[c1] = c2
        if not np.array_equal(parent[c1], c2):  # an inner group under two outer groups: crossed
            return None
    intercept = next((j for j in range(p) if _is_ones(X[:, j])), None)
    shift = float(y.mean()) if intercept is not None else 0.0
    yc = y - shift if shift else y
    inner = _block_sums(prepared[0][0], prepared[0][1], X, yc, prepared[0][2])
    outer = cross = None
    if parent is not None:
        c1, cols1, g1 = prepared[0]
        c2, cols2, g2 = prepared[1]
        outer = _block_sums(c2, cols2, X, yc, g2)
        cross = np.empty((len(cols1), len(cols2), g1))
        for j, a in enumerate(cols1):
            for k, b in enumerate(cols2):
                w = None if a is None and b is None else b if a is None else a if b is None else a * b
                cross[j, k] = _group_sum(c1, w, g1)
    return GroupedSums(n=n, p=p, XtX=X.T @ X, Xty=X.T @ yc, yty=float(yc @ yc), inner=inner, outer=outer,
                       parent=parent, cross=cross, y_shift=shift, intercept=intercept)


# ======================================================================= small batched algebra
# Arrays of q × q matrices are stored as (q, q, G): each element is a contiguous vector over groups.

def _relative_factor(theta: np.ndarray, q: int) -> np.ndarray:
    """lme4's Λ block: θ fills the lower triangle column by column."""
    T = np.zeros((q, q))
    k = 0
    for j in range(q):
        for i in range(j, q):
            T[i, j] = theta[k]
            k += 1
    return T


def _tt_a(T: np.ndarray, A: np.ndarray, U: np.ndarray | None = None) -> np.ndarray:
    """T' A (U or T) for A (a, b, G): T (a × q), U (b × r) → (q, r, G)."""
    U = T if U is None else U
    AU = np.tensordot(A, U, axes=([1], [0]))          # (a, G, r)
    return np.einsum("aq,agr->qrg", T, AU)


def _tt_v(T: np.ndarray, B: np.ndarray) -> np.ndarray:
    """T' B for B (a, m, G) or (a, G)."""
    return np.tensordot(T.T, B, axes=([1], [0]))


def _cholesky(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of symmetric positive definite (q, q, G) matrices."""
    q = M.shape[0]
    L = np.zeros_like(M)
    for j in range(q):
        s = M[j, j] - np.einsum("kg,kg->g", L[j, :j], L[j, :j]) if j else M[j, j].copy()
        d = np.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, q):
            t = M[i, j] - np.einsum("kg,kg->g", L[i, :j], L[j, :j]) if j else M[i, j].copy()
            L[i, j] = t / d
    return L


def _forward(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L X = B for B (q, m, G) or (q, G)."""
    vec = B.ndim == 2
    B = B[:, None, :] if vec else B
    X = np.empty_like(B)
    for i in range(L.shape[0]):
        acc = B[i].copy()
        for k in range(i):
            acc -= L[i, k] * X[k]
        X[i] = acc / L[i, i]
    return X[:, 0, :] if vec else X


def _backward(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L' X = B for B (q, G)."""
    q = L.shape[0]
    X = np.empty_like(B)
    for i in reversed(range(q)):
        acc = B[i].copy()
        for k in range(i + 1, q):
            acc -= L[k, i] * X[k]
        X[i] = acc / L[i, i]
    return X


def _by_parent(values: np.ndarray, parent: np.ndarray, n_outer: int) -> np.ndarray:
    """Sum (…, G) arrays over the inner groups of each outer group → (…, H)."""
    flat = values.reshape(-1, values.shape[-1])
    out = np.empty((flat.shape[0], n_outer))
    for r in range(flat.shape[0]):
        out[r] = np.bincount(parent, weights=flat[r], minlength=n_outer)
    return out.reshape(values.shape[:-1] + (n_outer,))


# ============================================================================ the deviance

@dataclass
class Profile:
    """The profiled quantities at one θ (Bates et al. 2015, eqs. 30–41)."""

    theta: np.ndarray
    log_det_L: float          # log|L_θ|²
    log_det_RX: float         # log|R_X|²
    RXtRX: np.ndarray         # R_X'R_X = X'V⁻¹X σ²
    beta: np.ndarray          # β̂(θ), for the shifted y (intercept without y_shift)
    r2: float                 # penalised residual sum of squares
    factors: tuple = field(repr=False, default=())

    def deviance(self, n: int, p: int, reml: bool) -> float:
        """The profiled deviance; −∞ where r² is zero or below (the terms reproduce y exactly, to
        rounding: the likelihood has no maximum, see :func:`core.stats.formula.fit_formula`)."""
        if not self.r2 > 0:
            return -math.inf
        if reml:
            k = n - p
            return self.log_det_L + self.log_det_RX + k * (1.0 + _LOG_2PI + math.log(self.r2 / k))
        return self.log_det_L + n * (1.0 + _LOG_2PI + math.log(self.r2 / n))

    def sigma(self, n: int, p: int, reml: bool) -> float:
        return math.sqrt(max(self.r2, 0.0) / (n - p if reml else n))


def _terms_q1(sums: GroupedSums, theta: np.ndarray):
    """One random intercept-like term (q = 1): M = θ²a + 1, s = θ²/M; R_ZX'R_ZX = Σ s wwᵀ,
    R_ZX'c_u = Σ s w v, |c_u|² = Σ s v² (w = Z'X, v = Z'y, a = Z'Z of each group)."""
    b = sums.inner
    t2 = theta[0] * theta[0]
    M = t2 * b.ZtZ[0, 0] + 1.0
    s = t2 / M
    w = b.ZtX[0]
    ws = w * s
    v = b.Zty[0]
    return float(np.log(M).sum()), ws @ w.T, ws @ v, float(s @ (v * v))


def _terms_q2(sums: GroupedSums, theta: np.ndarray):
    """One term with two random effects per group, the 2 × 2 algebra written out per group."""
    b = sums.inner
    t0, t1, t2 = theta
    a00, a01, a11 = b.ZtZ[0, 0], b.ZtZ[0, 1], b.ZtZ[1, 1]
    at10 = a01 * t0 + a11 * t1
    at11 = a11 * t2
    m00 = t0 * (a00 * t0 + a01 * t1) + t1 * at10 + 1.0
    m01 = t0 * (a01 * t2) + t1 * at11
    m11 = t2 * at11 + 1.0
    l00 = np.sqrt(m00)
    l10 = m01 / l00
    d11 = m11 - l10 * l10
    l11 = np.sqrt(d11)
    X0, X1 = b.ZtX[0], b.ZtX[1]
    R0 = (t0 * X0 + t1 * X1) / l00
    R1 = (t2 * X1 - l10 * R0) / l11
    v0, v1 = b.Zty[0], b.Zty[1]
    c0 = (t0 * v0 + t1 * v1) / l00
    c1 = (t2 * v1 - l10 * c0) / l11
    log_det = float(np.log(m00 * d11).sum())
    return log_det, R0 @ R0.T + R1 @ R1.T, R0 @ c0 + R1 @ c1, float(c0 @ c0 + c1 @ c1)


def _terms_nested11(sums: GroupedSums, theta: np.ndarray):
    """Two nested terms with one random effect each (patients in therapists): inner groups as in
    :func:`_terms_q1`; each outer group h has M₂ = θ₂²(a₂ − Σ_{i∈h} s_i c_i²) + 1 and the
    sums W = w₂ − Σ_{i∈h} s_i c_i w_i, V = v₂ − Σ s_i c_i v_i (c_i = Z₁ᵢ'Z₂ᵢ)."""
    b1, b2 = sums.inner, sums.outer
    t1sq, t2sq = theta[0] * theta[0], theta[1] * theta[1]
    M1 = t1sq * b1.ZtZ[0, 0] + 1.0
    s1 = t1sq / M1
    w1, v1 = b1.ZtX[0], b1.Zty[0]
    ws1 = w1 * s1
    c = sums.cross[0, 0]
    sc = s1 * c
    H = b2.n_groups
    par = sums.parent
    M2 = t2sq * (b2.ZtZ[0, 0] - np.bincount(par, weights=sc * c, minlength=H)) + 1.0
    W = b2.ZtX[0] - np.stack([np.bincount(par, weights=sc * w1[m], minlength=H) for m in range(w1.shape[0])]) \
        if w1.shape[0] else b2.ZtX[0]
    V = b2.Zty[0] - np.bincount(par, weights=sc * v1, minlength=H)
    s2 = t2sq / M2
    Ws = W * s2
    log_det = float(np.log(M1).sum() + np.log(M2).sum())
    return (log_det, ws1 @ w1.T + Ws @ W.T, ws1 @ v1 + Ws @ V, float(s1 @ (v1 * v1) + s2 @ (V * V)))


def profile(sums: GroupedSums, theta: np.ndarray, keep: bool = False) -> Profile:
    """The profiled quantities at ``theta`` (``keep``: also the factors, for the random effects)."""
    theta = np.asarray(theta, float)
    kernel = None
    if not keep:
        if sums.outer is None:
            kernel = {1: _terms_q1, 2: _terms_q2}.get(sums.inner.q)
        elif sums.inner.q == 1 and sums.outer.q == 1:
            kernel = _terms_nested11
    if kernel is not None:
        log_det, RtR, Rtc, cu_sq = kernel(sums, theta)
        return _finish(sums, theta, log_det, RtR, Rtc, cu_sq, ())
    b1 = sums.inner
    T1 = _relative_factor(theta[: b1.q * (b1.q + 1) // 2], b1.q)
    M1 = _tt_a(T1, b1.ZtZ)
    for j in range(b1.q):
        M1[j, j] += 1.0
    L1 = _cholesky(M1)
    RZX1 = _forward(L1, _tt_v(T1, b1.ZtX))            # (q1, p, G)
    cu1 = _forward(L1, _tt_v(T1, b1.Zty))              # (q1, G)
    log_det = 2.0 * float(sum(np.log(L1[j, j]).sum() for j in range(b1.q)))
    p = sums.p
    RtR = np.zeros((p, p))
    Rtc = np.zeros(p)
    for j in range(b1.q):
        RtR += RZX1[j] @ RZX1[j].T
        Rtc += RZX1[j] @ cu1[j]
    cu_sq = float(np.einsum("jg,jg->", cu1, cu1))
    factors: tuple = (T1, L1, RZX1, cu1)
    if sums.outer is not None:
        b2 = sums.outer
        T2 = _relative_factor(theta[b1.q * (b1.q + 1) // 2:], b2.q)
        G = _forward(L1, _tt_a(T1, sums.cross, T2))    # (q1, q2, Gi)
        GtG = np.einsum("jag,jbg->abg", G, G)
        M2 = _tt_a(T2, b2.ZtZ) - _by_parent(GtG, sums.parent, b2.n_groups)
        for j in range(b2.q):
            M2[j, j] += 1.0
        L2 = _cholesky(M2)
        RZX2 = _forward(L2, _tt_v(T2, b2.ZtX) - _by_parent(np.einsum("jag,jmg->amg", G, RZX1),
                                                          sums.parent, b2.n_groups))
        cu2 = _forward(L2, _tt_v(T2, b2.Zty) - _by_parent(np.einsum("jag,jg->ag", G, cu1),
                                                         sums.parent, b2.n_groups))
        log_det += 2.0 * float(sum(np.log(L2[j, j]).sum() for j in range(b2.q)))
        for j in range(b2.q):
            RtR += RZX2[j] @ RZX2[j].T
            Rtc += RZX2[j] @ cu2[j]
        cu_sq += float(np.einsum("jg,jg->", cu2, cu2))
        factors = factors + (T2, L2, RZX2, cu2, G)
    return _finish(sums, theta, log_det, RtR, Rtc, cu_sq, factors if keep else ())


def _finish(sums, theta, log_det, RtR, Rtc, cu_sq, factors) -> Profile:
    """R_X, β̂ and r² from the sums over groups (Bates et al. 2015, eqs. 33–36)."""
    p = sums.p
    RXtRX = sums.XtX - RtR
    RXtRX = (RXtRX + RXtRX.T) / 2
    rhs = sums.Xty - Rtc
    if p:
        RX = np.linalg.cholesky(RXtRX)
        cb = np.linalg.solve(RX, rhs)
        beta = np.linalg.solve(RX.T, cb)
        log_det_RX = 2.0 * float(np.log(np.diag(RX)).sum())
        cb_sq = float(cb @ cb)
    else:
        beta, log_det_RX, cb_sq = np.zeros(0), 0.0, 0.0
    r2 = sums.yty - cu_sq - cb_sq
    return Profile(theta=theta, log_det_L=log_det, log_det_RX=log_det_RX, RXtRX=RXtRX, beta=beta,
                   r2=r2, factors=factors)


def deviance_function(sums: GroupedSums, reml: bool):
    """θ → the profiled deviance (``inf`` where it cannot be evaluated)."""

    def fun(theta) -> float:
        try:
            with np.errstate(all="raise"):
                prof = profile(sums, theta)
                value = prof.deviance(sums.n, sums.p, reml)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError, ZeroDivisionError):
            return math.inf
        return value if math.isfinite(value) else math.inf
    return fun


# ============================================================================ the optimiser

def _derivatives(fun, x: np.ndarray, free: np.ndarray, f0: float, h: np.ndarray):
    """Gradient and Hessian of ``fun`` at ``x`` in the free coordinates by central differences."""
    idx = np.flatnonzero(free)
    k = len(idx)
    g = np.zeros(len(x))
    H = np.zeros((len(x), len(x)))
    plus, minus = {}, {}
    for a in idx:
        e = np.zeros(len(x))
        e[a] = h[a]
        plus[a], minus[a] = fun(x + e), fun(x - e)
        g[a] = (plus[a] - minus[a]) / (2 * h[a])
        H[a, a] = (plus[a] - 2 * f0 + minus[a]) / h[a] ** 2
    for ii in range(k):
        for jj in range(ii):
            a, b = idx[ii], idx[jj]
            ea, eb = np.zeros(len(x)), np.zeros(len(x))
            ea[a], eb[b] = h[a], h[b]
            H[a, b] = H[b, a] = (fun(x + ea + eb) - fun(x + ea - eb) - fun(x - ea + eb) + fun(x - ea - eb)) \
                / (4 * h[a] * h[b])
    return g, H


def _trust_step(g: np.ndarray, H: np.ndarray, radius: float) -> np.ndarray:
    """The step minimising g'p + p'Hp/2 within ‖p‖ ≤ radius (Moré & Sorensen, 1983, by the
    eigendecomposition of the small H; the "hard case" moves along the lowest eigenvector)."""
    w, V = np.linalg.eigh((H + H.T) / 2)
    gt = V.T @ g
    if w[0] > 0:
        p = -V @ (gt / w)
        if np.linalg.norm(p) <= radius:
            return p

    def norm_at(lam):
        return float(np.linalg.norm(gt / (w + lam)))

    lo = max(0.0, -float(w[0]))
    if abs(gt[0]) <= 1e-12 * max(1.0, float(np.linalg.norm(gt))) and norm_at(lo + 1e-12 * max(1.0, abs(lo))) <= radius:
        # hard case: the gradient has no part along the lowest eigenvector
        safe = np.where(np.abs(w + lo) > 1e-300, w + lo, np.inf)
        p = -V @ (gt / safe)
        tau = math.sqrt(max(radius ** 2 - float(p @ p), 0.0))
        return p + tau * V[:, 0]
    hi = lo + 1.0
    while norm_at(hi) > radius:
        hi = lo + 2 * (hi - lo)
    lo_b = lo + 1e-300
    for _ in range(200):
        mid = 0.5 * (lo_b + hi)
        if norm_at(mid) > radius:
            lo_b = mid
        else:
            hi = mid
        if hi - lo_b <= 1e-14 * max(1.0, hi):
            break
    return -V @ (gt / (w + hi))


def minimize_trust(fun, x0: np.ndarray, *, max_iter: int = 100,
                   step_tol: float = 1e-10) -> tuple[np.ndarray, float, bool, str, int, np.ndarray]:
    """Minimise a smooth function of a few parameters (a trust-region Newton method with the
    gradient and Hessian by central differences, steps 1e-4·max(1, |x|)).

    Returns ``(x, f(x), converged, message, evaluations, hessian)``. Converged: the Hessian is
    positive (semi)definite and the last accepted step moved every coordinate by less than
    ``step_tol`` relative to max(1, |x|), or the model predicts no decrease beyond rounding.
    """
    count = [0]

    def f(x):
        count[0] += 1
        return fun(x)

    x = np.asarray(x0, float).copy()
    fx = f(x)
    if not math.isfinite(fx):
        return x, fx, False, "the deviance cannot be evaluated at the start", count[0], np.full((len(x), len(x)), np.nan)
    n = len(x)
    radius = max(1.0, float(np.linalg.norm(x)))
    need_derivatives = True
    g = H = None
    for _ in range(max_iter):
        if need_derivatives:
            h = 1e-4 * np.maximum(1.0, np.abs(x))
            g, H = _derivatives(f, x, np.ones(n, bool), fx, h)
            if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
                return x, fx, False, "the deviance is not finite near the current point", count[0], H
            w_min = float(np.linalg.eigvalsh((H + H.T) / 2)[0])
            scale = max(1.0, float(np.max(np.abs(np.diag(H)))))
            convex = w_min >= -1e-8 * scale
        p = _trust_step(g, H, radius)
        predicted = -(float(g @ p) + 0.5 * float(p @ H @ p))
        moved = float(np.max(np.abs(p) / np.maximum(1.0, np.abs(x)))) if n else 0.0
        if convex and (moved < step_tol or predicted <= 1e-15 * max(1.0, abs(fx))):
            return x, fx, True, "converged", count[0], H
        trial = x + p
        ft = f(trial)
        actual = fx - ft if math.isfinite(ft) else -math.inf
        rho = actual / predicted if predicted > 0 else -math.inf
        if rho < 0.25:
            radius = 0.25 * float(np.linalg.norm(p))
        elif rho > 0.75 and float(np.linalg.norm(p)) >= 0.99 * radius:
            radius *= 2.0
        if actual > 0 and rho > 1e-4:
            x, fx = trial, ft
            need_derivatives = True
            if convex and moved < step_tol:
                return x, fx, True, "converged", count[0], H
        else:
            need_derivatives = False
            if radius <= 1e-14 * max(1.0, float(np.linalg.norm(x))):
                return x, fx, convex, "converged (no decrease within rounding)" if convex else \
                    "the trust region shrank to nothing", count[0], H
    return x, fx, False, f"no convergence after {max_iter} Newton steps", count[0], H


def canonical_theta(theta: np.ndarray, sums: "GroupedSums") -> np.ndarray:
    """θ with every relative factor's diagonal made non-negative (flipping the sign of a column of
    Λ leaves ΛΛ', and so the model, unchanged): lme4's parametrisation."""
    theta = np.asarray(theta, float).copy()
    k = 0
    for b in sums.blocks:
        for j in range(b.q):
            width = b.q - j
            if theta[k] < 0:
                theta[k:k + width] = -theta[k:k + width]
            k += width
    return theta


# ============================================================================ the fit

@dataclass
class LogLik:
    """A log-likelihood with its number of parameters (as mixedlm's and R's ``logLik``)."""

    value: float
    df: int


@dataclass
class ProfiledFit:
    """A fitted model with the parts of mixedlm's result the project reads.

    ``theta``, ``beta`` (lme4's fixed effects, intercept on the original scale of y), ``sigma``,
    ``REML``, ``converged``, ``message``, ``deviance``; methods ``logLik()``, ``vcov()``,
    ``ranef()`` (``{"g<b>": {term: values by group in the order of the group codes}}``), ``fitted()``
    and ``residuals()`` (on the rows of the design). ``clean``: converged at an interior optimum
    or a boundary the gradient confirms (the caller refits with mixedlm when it is not).
    """

    sums: GroupedSums = field(repr=False)
    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    REML: bool
    converged: bool
    message: str
    deviance: float
    evaluations: int
    clean: bool
    profile_at: Profile = field(repr=False)
    design_rows: tuple = field(repr=False, default=())   # (y, X, blocks) for fitted values
    engine_formula: str = ""

    @property
    def n_params(self) -> int:
        return self.sums.p + self.sums.n_theta + 1

    def logLik(self) -> LogLik:
        return LogLik(-0.5 * self.deviance, self.n_params)

    def vcov(self) -> np.ndarray:
        """σ² (R_X'R_X)⁻¹: the covariance of the fixed effects."""
        if not self.sums.p:
            return np.zeros((0, 0))
        return self.sigma ** 2 * np.linalg.inv(self.profile_at.RXtRX)

    def _spherical(self) -> list[np.ndarray]:
        """u of each block (q, G), from L'u = c_u − R_ZX β̂ (outer block first)."""
        prof = profile(self.sums, self.theta, keep=True)
        beta = prof.beta
        T1, L1, RZX1, cu1 = prof.factors[:4]
        if self.sums.outer is None:
            return [_backward(L1, cu1 - np.einsum("jmg,m->jg", RZX1, beta))]
        T2, L2, RZX2, cu2, G = prof.factors[4:]
        u2 = _backward(L2, cu2 - np.einsum("jmg,m->jg", RZX2, beta))
        rhs = cu1 - np.einsum("jmg,m->jg", RZX1, beta) - np.einsum("jag,ag->jg", G, u2[:, self.sums.parent])
        return [_backward(L1, rhs), u2]

    def ranef_arrays(self) -> list[np.ndarray]:
        """The conditional modes b = Λu of each block, (q, G)."""
        prof = profile(self.sums, self.theta, keep=True)
        us = self._spherical()
        Ts = [prof.factors[0]] + ([prof.factors[4]] if len(us) > 1 else [])
        return [T @ u for T, u in zip(Ts, us)]

    def ranef(self, names: list[list[str]] | None = None) -> dict:
        out = {}
        for b, values in enumerate(self.ranef_arrays()):
            labels = names[b] if names else [f"z{j}" for j in range(values.shape[0])]
            out[f"g{b}"] = {labels[j]: values[j] for j in range(values.shape[0])}
        return out

    def fitted(self) -> np.ndarray:
        y, X, blocks = self.design_rows
        out = X @ self.beta
        for (codes, columns), values in zip(blocks, self.ranef_arrays()):
            for j, col in enumerate(columns):
                out = out + np.asarray(col, float) * values[j][codes]
        return out

    def residuals(self) -> np.ndarray:
        return np.asarray(self.design_rows[0], float) - self.fitted()

    def _theta_lower_bounds(self) -> np.ndarray:
        return self.sums.lower_bounds()

    def isSingular(self, tol: float = 1e-4) -> bool:  # noqa: N802 - mixedlm's (and lme4's) name
        lower = self.sums.lower_bounds()
        return bool(np.any(self.theta[lower == 0] < tol))

    @property
    def formula(self):
        """mixedlm's parsed engine formula (for code that builds mixedlm objects from a fit)."""
        from mixedlm.formula import parse_formula

        return parse_formula(self.engine_formula)


def fit_profiled(sums: GroupedSums, reml: bool, start: np.ndarray | None = None,
                 design_rows: tuple = (), engine_formula: str = "") -> ProfiledFit:
    """Minimise the profiled (RE)ML deviance over θ and return the fit.

    The deviance depends on θ only through ΛΛ', which does not change when a column of a relative
    factor changes sign; so θ is optimised without bounds (a variance at zero is then a point
    where the gradient vanishes by symmetry, not a corner) and reported with non-negative
    diagonal elements, lme4's parametrisation and bounds. Start: lme4's (identity factors).
    """
    fun = deviance_function(sums, reml)
    x0 = sums.start() if start is None else np.asarray(start, float)
    theta, dev, converged, message, evals, hessian = minimize_trust(fun, x0)
    theta = canonical_theta(theta, sums)
    # a direction in which the deviance is (nearly) flat: the optimum is not determined, and where
    # the optimiser stops on that ridge decides lme4's Hessian check; such fits go to mixedlm
    eig = np.linalg.eigvalsh((hessian + hessian.T) / 2) if len(theta) and np.all(np.isfinite(hessian)) else None
    well_determined = eig is None or (eig[-1] > 0 and eig[0] >= FLAT_RATIO * eig[-1] and eig[0] >= FLAT_ABSOLUTE)
    prof = profile(sums, theta)
    dev = prof.deviance(sums.n, sums.p, reml)
    beta = prof.beta.copy()
    if sums.intercept is not None and sums.p:
        beta[sums.intercept] += sums.y_shift
    sigma = prof.sigma(sums.n, sums.p, reml)
    clean = bool(converged and well_determined and math.isfinite(dev) and prof.r2 > 0)
    return ProfiledFit(sums=sums, theta=theta, beta=beta, sigma=sigma, REML=reml, converged=converged,
                       message=message, deviance=dev, evaluations=evals, clean=clean, profile_at=prof,
                       design_rows=design_rows, engine_formula=engine_formula)


def block_covariances(fit: ProfiledFit) -> list[np.ndarray]:
    """σ² ΛΛ' of each block (lme4's ``VarCorr``), in the order of the blocks."""
    out, k = [], 0
    for b in fit.sums.blocks:
        width = b.q * (b.q + 1) // 2
        T = _relative_factor(fit.theta[k:k + width], b.q)
        out.append(fit.sigma ** 2 * (T @ T.T))
        k += width
    return out


# ============================================================================ Satterthwaite

def _richardson_steps(x: float, d: float = 0.1, eps: float = 1e-4, zero_tol: float = 1.7817e-5) -> float:
    """numDeriv's first step: a tenth of |x|, or ``eps`` for x near zero."""
    return d * abs(x) + eps * (abs(x) < zero_tol)


def _richardson(values: list[float], order: int = 2) -> float:
    """Richardson extrapolation of estimates at steps h, h/2, h/4, … (error in h², h⁴, …)."""
    a = list(values)
    for m in range(1, len(a)):
        a = [(4 ** m * a[i + 1] - a[i]) / (4 ** m - 1) for i in range(len(a) - 1)]
    return a[0]


def _jacobian(fun, x: np.ndarray, r: int = 4) -> np.ndarray:
    """Jacobian of an array-valued ``fun`` by central differences with Richardson extrapolation
    (numDeriv's ``jacobian(method = "Richardson")``: steps 0.1·|x| halved ``r`` times)."""
    x = np.asarray(x, float)
    f0 = np.asarray(fun(x), float)
    out = np.empty(f0.shape + (len(x),))
    for k in range(len(x)):
        h = _richardson_steps(x[k])
        estimates = []
        for i in range(r):
            e = np.zeros(len(x))
            e[k] = h / 2 ** i
            estimates.append((np.asarray(fun(x + e), float) - np.asarray(fun(x - e), float)) / (2 * e[k]))
        a = estimates
        for m in range(1, r):
            a = [(4 ** m * a[i + 1] - a[i]) / (4 ** m - 1) for i in range(len(a) - 1)]
        out[..., k] = a[0]
    return out


def _hessian(fun, x: np.ndarray, r: int = 4) -> np.ndarray:
    """Hessian by central differences with Richardson extrapolation (numDeriv's ``hessian``:
    ``genD`` with steps 0.1·|x| halved ``r`` times; off-diagonal terms from f(x ± (hᵢeᵢ + hⱼeⱼ)))."""
    x = np.asarray(x, float)
    k = len(x)
    f0 = fun(x)
    h0 = np.array([_richardson_steps(v) for v in x])
    H = np.zeros((k, k))
    for i in range(k):
        est = []
        for s in range(r):
            e = np.zeros(k)
            e[i] = h0[i] / 2 ** s
            est.append((fun(x + e) - 2 * f0 + fun(x - e)) / e[i] ** 2)
        H[i, i] = _richardson(est)
    for i in range(k):
        for j in range(i):
            est = []
            for s in range(r):
                e = np.zeros(k)
                e[i], e[j] = h0[i] / 2 ** s, h0[j] / 2 ** s
                est.append((fun(x + e) - 2 * f0 + fun(x - e) - H[i, i] * e[i] ** 2 - H[j, j] * e[j] ** 2)
                           / (2 * e[i] * e[j]))
            H[i, j] = H[j, i] = _richardson(est)
    return H


def _varpar_deviance(sums: GroupedSums, reml: bool):
    """lmerTest's ``devfun_vp``: the (RE)ML deviance at (θ, σ), β profiled out:
    log|L|² + r²/σ² + n log(2πσ²) [+ log|R_X|² − p log(2πσ²) for REML]."""

    def fun(varpar) -> float:
        theta, sigma2 = np.asarray(varpar[:-1], float), float(varpar[-1]) ** 2
        prof = profile(sums, theta)
        dev = prof.log_det_L + prof.r2 / sigma2 + sums.n * math.log(2 * math.pi * sigma2)
        if reml:
            dev += prof.log_det_RX - sums.p * math.log(2 * math.pi * sigma2)
        return dev
    return fun


def satterthwaite_df(fit: ProfiledFit) -> np.ndarray:
    """Satterthwaite df of each fixed effect as lmerTest computes them (Kuznetsova et al., 2017,
    ``lmerTest:::as_lmerModLT`` and ``contest1D``): with varpar = (θ, σ), A the Hessian of
    lmerTest's ``devfun_vp`` at the optimum, C = 2 A⁺ (eigenvalues above 1e-6) the covariance of
    varpar, and g the gradient of a coefficient's variance v(varpar) = [σ² (R_X'R_X)⁻¹]ⱼⱼ,
    ``df = 2 v² / (gᵀ C g)``. Derivatives as numDeriv's (Richardson extrapolation)."""
    sums = fit.sums
    p = sums.p
    if p == 0:
        return np.empty(0)
    varpar = np.append(np.asarray(fit.theta, float), fit.sigma)
    H = _hessian(_varpar_deviance(sums, fit.REML), varpar)
    w, V = np.linalg.eigh((H + H.T) / 2)
    pos = w > 1e-6
    C = 2 * (V[:, pos] / w[pos]) @ V[:, pos].T

    def covbeta(vp):
        prof = profile(sums, np.asarray(vp[:-1], float))
        return float(vp[-1]) ** 2 * np.linalg.inv(prof.RXtRX)

    J = _jacobian(covbeta, varpar)                     # (p, p, k)
    vcov = covbeta(varpar)
    df = np.empty(p)
    for j in range(p):
        g = J[j, j, :]
        denom = float(g @ C @ g)
        df[j] = 2 * vcov[j, j] ** 2 / denom if denom > 0 else np.inf
    return df


def _psd_cholesky(A: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semidefinite matrix (zero columns where a pivot is 0)."""
    q = A.shape[0]
    L = np.zeros_like(A)
    for j in range(q):
        d = A[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10 * max(1.0, abs(A[j, j])):
            return None
        d = math.sqrt(max(d, 0.0))
        L[j, j] = d
        for i in range(j + 1, q):
            t = A[i, j] - L[i, :j] @ L[j, :j]
            if d > 0:
                L[i, j] = t / d
            elif abs(t) > 1e-10 * max(1.0, math.sqrt(abs(A[i, i] * A[j, j]))):
                return None
    return L


def theta_to_sdcor(theta: np.ndarray, sigma: float, sizes: list[int]) -> np.ndarray:
    """lme4's ``Cv_to_Sv``: θ and σ → the SDs and correlations of each term (lower triangle by columns)."""
    out, k = [], 0
    for q in sizes:
        width = q * (q + 1) // 2
        T = _relative_factor(np.asarray(theta[k:k + width], float), q)
        cov = sigma ** 2 * (T @ T.T)
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
        for j in range(q):
            for i in range(j, q):
                out.append(sd[i] if i == j else (cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else 0.0))
        k += width
    return np.array(out)


def sdcor_to_theta(sdcor: np.ndarray, sigma: float, sizes: list[int]) -> np.ndarray:
    """lme4's ``Sv_to_Cv``: SDs and correlations → θ (the Cholesky factor of cov/σ², by columns);
    None when a correlation matrix is not positive semidefinite."""
    out, k = [], 0
    for q in sizes:
        width = q * (q + 1) // 2
        S = np.zeros((q, q))
        m = k
        for j in range(q):
            for i in range(j, q):
                S[i, j] = S[j, i] = sdcor[m]
                m += 1
        sd = np.diag(S).copy()
        C = S.copy()
        np.fill_diagonal(C, 1.0)
        cov = C * np.outer(sd, sd) / sigma ** 2
        T = _psd_cholesky(cov)
        if T is None:
            return None
        out += [T[i, j] for j in range(q) for i in range(j, q)]
        k += width
    return np.array(out)
