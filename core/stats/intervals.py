"""95% intervals for every parameter of a linear mixed model, as lme4's ``confint``.

``confint(fit, oldNames = FALSE)`` rows, in lme4's order and names: for each random-effect term its
standard deviations and correlations (``sd_(Intercept)|patient``, ``cor_time.(Intercept)|patient``,
``sd_time|patient``: the lower triangle of the term's SD/correlation matrix by columns), then
``sigma``, then the fixed effects (``(Intercept)``, ``time``, …). Three methods (Bates et al., 2015,
§5.1; lme4's ``?confint.merMod``):

- ``wald``: β̂ ± z₀.₉₇₅ SE for the fixed effects (lme4 gives no Wald interval for the variance
  parameters: their ``low`` and ``high`` are null).
- ``profile``: the likelihood profile of the **ML** fit (lme4 profiles ``refitML(fit)``). For a
  parameter ψ, ζ(ψ) = sign(ψ − ψ̂) √(d(ψ) − d(ψ̂)) with d the ML deviance minimised over every
  other parameter (for a variance parameter: the other SDs, correlations and σ, on lme4's SD/cor
  scale, the fixed effects profiled out; for a fixed effect βⱼ: the model with the offset βⱼ xⱼ,
  minimised over θ with σ and the other β profiled out, as ``lme4:::profile.merMod``); the interval
  is where ζ = ±z₀.₉₇₅. lme4 interpolates ζ with splines over the profile it tabulated; here each end
  is found by root finding on ζ itself (Brent's method). An SD whose profile stays above −z₀.₉₇₅ down
  to 0 has 0 as its lower end, a correlation ±1 at its bound, as in lme4.
- ``boot``: the parametric bootstrap of ``bootMer`` (``use.u = FALSE``): B outcomes simulated from
  the fitted REML model (new random effects and residuals), each refitted by REML; the percentile
  interval of each parameter with ``boot``'s interpolation on the normal quantile scale
  (``boot:::norm.inter``, which ``confint(method = "boot")`` uses). Bootstrap sample i draws from
  ``numpy.random.default_rng([seed, N, i])`` and runs on this machine's cores or a Dask cluster as
  the power simulations do (:mod:`core.stats.power_run`): the same seed gives the same interval
  however the samples are spread over processes.

>>> import numpy as np
>>> [round(float(v), 4) for v in percentile_interval(np.arange(1.0, 1001.0))]   # boot's norm.inter
[25.0254, 975.9746]
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from core.errors import ModelError
from core.i18n import _
from core.stats.profiled import _psd_cholesky, _relative_factor, sdcor_to_theta, theta_to_sdcor  # noqa: F401 (re-exported)

METHODS = ("wald", "profile", "boot")
Z975 = 1.959963984540054


@dataclass(frozen=True)
class Intervals:
    """``rows``: ``[{parameter, low, high}]`` in lme4's order; ``method``; ``warnings``."""

    rows: tuple
    method: str
    warnings: tuple[str, ...] = ()
    nboot: int | None = None
    n_failed: int = 0
    extra: dict = field(default_factory=dict)

    def records(self) -> list[dict]:
        return [dict(r) for r in self.rows]


# ---------------------------------------------------------------------------- names and scales

def parameter_names(design) -> list[str]:
    """lme4's ``confint(oldNames = FALSE)`` row names for a design: SDs/correlations per term, sigma,
    the fixed effects."""
    names = []
    for b in design.blocks:
        q = len(b.names)
        for j in range(q):
            for i in range(j, q):
                names.append(f"sd_{b.names[i]}|{b.group}" if i == j else f"cor_{b.names[i]}.{b.names[j]}|{b.group}")
    return names + ["sigma"] + list(design.names)


# ---------------------------------------------------------------------------- the ML deviance

class _Dense:
    """The profiled quantities of any random-effects structure, dense in the random effects."""

    def __init__(self, y, X, Z, sizes_groups):
        self.n, self.p = X.shape
        Zd = Z.tocsc()
        self.ZtZ = (Zd.T @ Zd).toarray()
        self.ZtX = np.asarray(Zd.T @ X)
        self.Zty = np.asarray(Zd.T @ y).ravel()
        self.XtX, self.Xty, self.yty = X.T @ X, X.T @ y, float(y @ y)
        self.structure = sizes_groups

    def __call__(self, theta):
        Q = self.ZtZ.shape[0]
        Lam = np.zeros((Q, Q))
        off = k = 0
        for q, G in self.structure:
            width = q * (q + 1) // 2
            T = _relative_factor(theta[k:k + width], q)
            for g in range(G):
                Lam[off + g * q: off + (g + 1) * q, off + g * q: off + (g + 1) * q] = T
            off += q * G
            k += width
        M = Lam.T @ self.ZtZ @ Lam + np.eye(Q)
        L = np.linalg.cholesky(M)
        cu = np.linalg.solve(L, Lam.T @ self.Zty)
        RZX = np.linalg.solve(L, Lam.T @ self.ZtX)
        RXtRX = self.XtX - RZX.T @ RZX
        rhs = self.Xty - RZX.T @ cu
        beta = np.linalg.solve(RXtRX, rhs) if self.p else np.zeros(0)
        r2 = self.yty - float(cu @ cu) - float(rhs @ beta)
        return 2.0 * float(np.log(np.diag(L)).sum()), r2, beta


def _evaluator(y, X, design_blocks, Z=None, structure=None):
    """θ → (log|L_θ|², r²(θ), β̂(θ)) for the design (per-group sums where the design allows)."""
    from core.stats.profiled import grouped_sums, profile

    sums = grouped_sums(y, X, design_blocks)
    if sums is not None:
        def fun(theta):
            prof = profile(sums, np.asarray(theta, float))
            beta = prof.beta.copy()
            if sums.intercept is not None and sums.p:
                beta[sums.intercept] += sums.y_shift
            return prof.log_det_L, prof.r2, beta
        return fun
    if Z is None:
        raise ValueError("a dense evaluator needs Z")
    return _Dense(np.asarray(y, float), np.asarray(X, float), Z, structure)


def _ml_deviance_theta(evaluate, n):
    """θ → the ML deviance with σ and β profiled out: log|L|² + n (1 + log(2π r²/n))."""
    def fun(theta):
        try:
            ldl, r2, _beta = evaluate(theta)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return math.inf
        if not r2 > 0:
            return math.inf
        return ldl + n * (1.0 + math.log(2 * math.pi * r2 / n))
    return fun


def _minimise(fun, x0, bounds=None):
    """A small minimisation for the profile's inner fits: bounds removed by a change of variables
    (x = s² for [0, ∞), x = tanh(u) for [−1, 1]; a minimum on the bound is then a stationary point)
    and the trust-region Newton method of :func:`core.stats.profiled.minimize_trust`, which ends
    at a gradient of about 1e-10 (a quasi-Newton method with a stopping rule on the deviance ends
    up to 1e-3 short on these flat profiles)."""
    from core.stats.profiled import minimize_trust

    x0 = np.asarray(x0, float)
    if len(x0) == 0:
        return x0, float(fun(x0))
    kinds = []
    for lo, hi in (bounds or [(None, None)] * len(x0)):
        kinds.append("free" if lo is None and hi is None else "pos" if hi is None else "unit")

    def to_x(z):
        return np.array([v * v + (lo or 0.0) if k == "pos" else math.tanh(v) if k == "unit" else v
                         for v, k, (lo, _hi) in zip(z, kinds, bounds or [(None, None)] * len(z))])

    z0 = np.array([math.sqrt(max(v - (lo or 0.0), 0.0)) if k == "pos" else
                   math.atanh(min(max(v, -1 + 1e-9), 1 - 1e-9)) if k == "unit" else v
                   for v, k, (lo, _hi) in zip(x0, kinds, bounds or [(None, None)] * len(x0))])
    z, f = minimize_trust(lambda z: float(fun(to_x(z))), z0)[:2]
    return to_x(z), float(f)


# ---------------------------------------------------------------------------- profile

def _root(zeta, start, target, step, lower=-math.inf, upper=math.inf, scale=1.0):
    """The x beyond ``start`` (in the direction of ``step``) where ζ(x) = ``target``; the bound when
    ζ does not reach it there."""
    from scipy.optimize import brentq

    a, za = start, 0.0
    x = start
    for _i in range(60):
        x = min(max(a + step, lower), upper)
        z = zeta(x)
        if not math.isfinite(z):
            step /= 2
            continue
        if (z - target) * (za - target) <= 0:
            return brentq(lambda v: zeta(v) - target, a, x, xtol=1e-9 * max(scale, 1e-12), rtol=1e-12)
        if x in (lower, upper):
            return x
        a, za = x, z
        step *= 1.6
    return math.nan


def profile_zetas(fit) -> tuple[list[str], list, np.ndarray, dict]:
    """The signed square-root profiles ζ of every parameter of ``fit`` (lme4's ``profile``): the
    names, one function x → ζ(x) per parameter, the ML estimates, and facts for finding the ends."""
    from core.stats.formula import random_effects_matrix

    design = fit.design
    y, X = design.y, design.X
    n, p = X.shape
    blocks = [(b.codes, b.columns) for b in design.blocks]
    Z, structure = random_effects_matrix(design)
    sizes = [q for q, _g in structure]
    evaluate = _evaluator(y, X, blocks, Z, structure)
    dev_theta = _ml_deviance_theta(evaluate, n)
    ml = fit.ml
    theta0 = np.asarray(ml.theta, float) if ml is not None else np.asarray(fit.reml.theta, float)
    theta_hat, base = _minimise(dev_theta, theta0, bounds=_theta_bounds(sizes))
    _ldl, r2, beta_hat = evaluate(theta_hat)
    sigma_hat = math.sqrt(r2 / n)
    sdcor_hat = theta_to_sdcor(theta_hat, sigma_hat, sizes)
    k = len(sdcor_hat)
    kinds = _sdcor_kinds(sizes)

    def dd(pars):  # lme4's devfun2: the ML deviance at (SDs/cors, σ), β profiled out
        sigma = pars[-1]
        if not sigma > 0:
            return math.inf
        theta = sdcor_to_theta(pars[:-1], sigma, sizes)
        if theta is None:
            return math.inf
        try:
            ldl_, r2_, _b = evaluate(theta)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return math.inf
        return ldl_ + r2_ / sigma ** 2 + n * math.log(2 * math.pi * sigma ** 2)

    vp_hat = np.append(sdcor_hat, sigma_hat)
    vp_bounds = [(0.0, None) if kind == "sd" else (-1.0, 1.0) for kind in kinds] + [(1e-12, None)]
    zetas = []
    for w in range(k + 1):
        others = [i for i in range(k + 1) if i != w]
        memo = {"start": vp_hat[others]}

        def zeta(x, w=w, others=others, memo=memo):
            def f(z):
                pars = vp_hat.copy()
                pars[w] = x
                pars[others] = z
                return dd(pars)
            z, fmin = _minimise(f, memo["start"], bounds=[vp_bounds[i] for i in others])
            memo["start"] = z
            d = max(fmin - base, 0.0)
            return math.copysign(math.sqrt(d), x - vp_hat[w]) if x != vp_hat[w] else 0.0
        zeta.reset = (lambda memo=memo, others=others: memo.update(start=vp_hat[others]))
        zetas.append(zeta)
    for j in range(p):
        xj = X[:, j]
        rest = np.delete(X, j, axis=1)
        memo = {"start": theta_hat}

        def zeta_b(b, j=j, xj=xj, rest=rest, memo=memo):
            ev = _evaluator(y - b * xj, rest, blocks, Z, structure)
            t, fmin = _minimise(_ml_deviance_theta(ev, n), memo["start"], bounds=_theta_bounds(sizes))
            memo["start"] = t
            d = max(fmin - base, 0.0)
            return math.copysign(math.sqrt(d), b - beta_hat[j]) if b != beta_hat[j] else 0.0
        zeta_b.reset = (lambda memo=memo: memo.update(start=theta_hat))
        zetas.append(zeta_b)
    facts = {"k": k, "kinds": kinds, "bounds": vp_bounds, "sigma": sigma_hat}
    return parameter_names(design), zetas, np.concatenate([vp_hat, beta_hat]), facts


def profile_intervals(fit, level: float = 0.95) -> list[dict]:
    """lme4's ``confint(fit, method = "profile")`` (see the module docstring)."""
    names, zetas, hat, facts = profile_zetas(fit)
    cutoff = _z(level)
    k = facts["k"]
    se_beta = np.sqrt(np.diag(np.asarray(fit.fixed_cov, float))) if len(hat) > k + 1 else np.zeros(0)
    rows = []
    for w, (name, zeta) in enumerate(zip(names, zetas)):
        if w <= k:
            lo_b, hi_b = facts["bounds"][w]
            hi_b = math.inf if hi_b is None else hi_b
            scale = max(abs(hat[w]), 1e-3 * max(facts["sigma"], 1e-12))
            step = 0.25 * scale if w == k or facts["kinds"][w] == "sd" else 0.1
        else:
            lo_b, hi_b = -math.inf, math.inf
            scale = se_beta[w - k - 1] if se_beta[w - k - 1] > 0 else max(abs(hat[w]), 1.0)
            step = 0.5 * scale
        zeta.reset()
        high = _root(zeta, hat[w], cutoff, step, lo_b, hi_b, scale)
        zeta.reset()
        low = lo_b if hat[w] <= lo_b + 1e-12 else _root(zeta, hat[w], -cutoff, -step, lo_b, hi_b, scale)
        rows.append({"parameter": name, "low": float(low), "high": float(high)})
    return rows


def _theta_bounds(sizes):
    out = []
    for q in sizes:
        for j in range(q):
            out += [(0.0, None)] + [(None, None)] * (q - j - 1)
    return out


def _sdcor_kinds(sizes):
    out = []
    for q in sizes:
        for j in range(q):
            out += ["sd"] + ["cor"] * (q - j - 1)
    return out


def _z(level: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2))


# ---------------------------------------------------------------------------- bootstrap

def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of ``boot.ci(type = "perc")``: the (R + 1)α-th order statistics,
    interpolated on the normal quantile scale (``boot:::norm.inter``)."""
    from scipy.special import ndtri

    t = np.sort(np.asarray(values, float)[np.isfinite(values)])
    R = len(t)
    if R == 0:
        return math.nan, math.nan
    out = []
    for alpha in ((1 - level) / 2, (1 + level) / 2):
        rk = (R + 1) * alpha
        k = int(math.trunc(rk))
        if k == rk and 1 <= k <= R:
            out.append(float(t[k - 1]))
        elif k <= 0:
            out.append(float(t[0]))
        elif k >= R:
            out.append(float(t[-1]))
        else:
            z1, z2, z3 = ndtri(alpha), ndtri(k / (R + 1)), ndtri((k + 1) / (R + 1))
            out.append(float(t[k - 1] + (z1 - z2) / (z3 - z2) * (t[k] - t[k - 1])))
    return out[0], out[1]


def bootstrap_intervals(fit, nboot: int = 1000, seed: int = 1, runner=None, progress=None,
                        level: float = 0.95) -> tuple[list[dict], int]:
    """lme4's ``confint(fit, method = "boot", nsim = nboot, boot.type = "perc")`` (see the module
    docstring). Returns the rows and the number of bootstrap refits that failed (left out)."""
    import mixedlm

    from core.stats.formula import engine_inputs
    from core.stats.power_run import LocalRunner
    from core.stats.power_sim import SimulationDesign, template_model

    design = fit.design
    engine_data, engine_formula = engine_inputs(design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = mixedlm.lFormula(engine_formula, engine_data, REML=True)
    from dataclasses import replace

    matrices = replace(parsed.matrices, frame=None)
    reml = fit.reml
    theta = tuple(np.asarray(reml.theta, float).tolist())
    beta = tuple(np.asarray(reml.beta, float).tolist())
    key = f"boot:{engine_formula}:{hash((theta, beta, float(reml.sigma), len(design.y), int(seed)))}"
    n_groups = int(design.blocks[0].n_levels)
    sim = SimulationDesign(formula=reml.formula, matrices=matrices, beta=beta, theta=theta, sigma=float(reml.sigma),
                           term="", alpha=0.0, seed=int(seed), n_patients=n_groups, key=key, test="boot")
    template_model(sim)
    runner = runner or LocalRunner()
    values = runner.run([sim], int(nboot), progress=progress)[n_groups]
    ok = np.all(np.isfinite(values), axis=1)
    names = parameter_names(design)
    rows = []
    for c, name in enumerate(names):
        low, high = percentile_interval(values[ok, c], level)
        rows.append({"parameter": name, "low": low, "high": high})
    return rows, int(len(values) - ok.sum())


# ---------------------------------------------------------------------------- the entry point

def wald_intervals(fit, level: float = 0.95) -> list[dict]:
    """lme4's ``confint(fit, method = "Wald")``: β̂ ± z SE; null for the variance parameters."""
    names = parameter_names(fit.design)
    k = len(names) - len(fit.design.names)
    z = _z(level)
    beta = np.asarray(fit.reml.beta, float)
    se = np.sqrt(np.diag(np.asarray(fit.reml.vcov(), float)))  # lme4's vcov (not Kenward–Roger's adjusted one)
    rows = [{"parameter": nm, "low": None, "high": None} for nm in names[:k]]
    rows += [{"parameter": nm, "low": float(b - z * s), "high": float(b + z * s)}
             for nm, b, s in zip(names[k:], beta, se)]
    return rows


def confint(fit, method: str = "profile", *, nboot: int = 1000, seed: int = 1, workers: int | None = None,
            runner=None, progress=None, level: float = 0.95) -> Intervals:
    """95% intervals of a :class:`core.stats.formula.FormulaFit` by ``method`` (``wald``, ``profile``
    or ``boot``), rows named as lme4's ``confint(oldNames = FALSE)``.

    >>> parameter_names.__doc__.split(":")[0]
    "lme4's ``confint(oldNames = FALSE)`` row names for a design"
    """
    if method not in METHODS:
        raise ModelError(_("The interval method must be wald, profile or boot."))
    if method == "wald":
        return Intervals(rows=tuple(wald_intervals(fit, level)), method=method)
    if method == "profile":
        if fit.ml is None:
            raise ModelError(_("Profile intervals need the model's ML fit."))
        rows = profile_intervals(fit, level)
        notes = []
        if any(not (math.isfinite(r["low"]) and math.isfinite(r["high"])) for r in rows):
            notes.append(_("The likelihood profile did not reach the interval's end for some parameter; its end "
                           "is missing."))
        return Intervals(rows=tuple(rows), method=method, warnings=tuple(notes))
    from core.stats.power_run import LocalRunner

    if nboot < 1:
        raise ModelError(_("The number of bootstrap samples must be at least 1."))
    rows, failed = bootstrap_intervals(fit, nboot=nboot, seed=seed, runner=runner or LocalRunner(workers),
                                       progress=progress, level=level)
    notes = [_("{n} of {total} bootstrap refits failed and were left out.").format(n=failed, total=nboot)] \
        if failed else []
    return Intervals(rows=tuple(rows), method=method, warnings=tuple(notes), nboot=int(nboot), n_failed=failed)
