"""One chunk of power simulations: what a worker process or a Dask worker runs.

This module needs numpy, scipy, mixedlm and :mod:`core.stats.kenward_roger` (itself numpy and scipy
only); the Dask workers run this project's code (see :mod:`core.stats.power_run`).

A :class:`SimulationDesign` holds one design (the model frame for N patients) and the generating
parameters; :func:`simulate_chunk` runs simulations ``start … stop − 1`` of it. Simulation ``i``
draws every random number from its own generator, ``numpy.random.default_rng([seed, N, i])``
(a ``SeedSequence`` of the seed, the number of patients and the index), so its result does not
depend on which process or machine runs it, nor on how the simulations are cut into chunks.

One simulation (as ``simr::powerSim`` with lme4's ``simulate``; Green & MacLeod, 2016):

1. new random effects for every group of the design, ``b = σ Λ(θ) u`` with ``u ~ N(0, I)``, and
   ``y = X β + Z b + e`` with ``e ~ N(0, σ² I)``, where ``β``, ``θ``, ``σ`` are the generating
   parameters (the fitted model's, with the tested coefficient set to the chosen effect);
2. the model refitted to ``y`` by REML (lme4's ``refit``: same design matrices, the optimiser
   started from the generating ``θ``);
3. the tested coefficient's test: Kenward–Roger (``test = "kr"``, simr's default for a fixed
   effect of an lmer model: pbkrtest's ``KRmodcomp``, which for one coefficient is the t test with
   the adjusted SE and Kenward–Roger's df; :mod:`core.stats.kenward_roger`) or the t-test with
   Satterthwaite degrees of freedom (``test = "satterthwaite"``, lmerTest's ``summary``):
   ``t = β̂ / SE``, ``p = 2 P(T_df > |t|)``.

A refit that raises an error, or whose estimate, standard error, df or p is not a finite number,
counts as failed (``p`` is NaN); as in simr, warnings (a singular fit, a convergence message) do not.
A singular refit (lme4's ``isSingular``, tolerance 1e-4) is counted.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SimulationDesign:
    """One design and the generating model, ready to simulate.

    ``matrices`` are mixedlm's model matrices of the design for ``n_patients`` patients (built
    with the fitted model's encoding of factors and its dropped columns, no data frame);
    ``formula`` the parsed mixedlm formula; ``beta`` the generating fixed effects in the order of
    ``matrices.fixed_names`` (the tested one, ``term``, possibly set to the chosen effect),
    ``theta`` the relative covariance factor and ``sigma`` the residual SD of the fitted model;
    ``term`` is tested at level ``alpha``; ``key`` identifies the design (a worker builds its
    template once per key).
    """

    formula: Any
    matrices: Any
    beta: tuple[float, ...]
    theta: tuple[float, ...]
    sigma: float
    term: str
    alpha: float
    seed: int
    n_patients: int
    key: str
    test: str = "kr"

    @property
    def width(self) -> int:
        """Columns of one simulation's result: (estimate, p, singular), or for the bootstrap
        (``test = "boot"``) every parameter: SDs and correlations, σ, the fixed effects."""
        if self.test != "boot":
            return 3
        return sum(s.n_terms * (s.n_terms + 1) // 2 for s in self.matrices.random_structures) + 1 + \
            int(self.matrices.n_fixed)


def simulation_rng(seed: int, n_patients: int, index: int) -> np.random.Generator:
    """The generator of simulation ``index`` for ``n_patients`` patients under ``seed``.

    >>> a = simulation_rng(1, 96, 0).standard_normal(); b = simulation_rng(1, 96, 0).standard_normal()
    >>> bool(a == b), bool(a == simulation_rng(1, 96, 1).standard_normal())
    (True, False)
    """
    return np.random.default_rng([int(seed), int(n_patients), int(index)])


# A worker keeps the templates of the designs it has seen (a few: one per N of a curve).
_TEMPLATES: dict[str, Any] = {}
_TEMPLATE_LIMIT = 8


def template_model(design: SimulationDesign):
    """A mixedlm ``LmerResult`` on the design's matrices carrying the generating parameters
    (no fit: ``simulate`` draws from it and ``refit`` refits it to a simulated response)."""
    cached = _TEMPLATES.get(design.key)
    if cached is not None:
        return cached
    from mixedlm.models.lmer import LmerResult

    theta = np.asarray(design.theta, float)
    model = LmerResult(formula=design.formula, matrices=design.matrices, theta=theta.copy(),
                       beta=np.asarray(design.beta, float), sigma=float(design.sigma),
                       u=np.zeros(design.matrices.n_random), deviance=float("nan"), REML=True,
                       converged=True, n_iter=0)
    if len(_TEMPLATES) >= _TEMPLATE_LIMIT:
        _TEMPLATES.pop(next(iter(_TEMPLATES)))
    _TEMPLATES[design.key] = model
    return model


def satterthwaite_test(fit, term: str) -> tuple[float, float]:
    """``(estimate, p)`` of ``term`` by the Satterthwaite t-test (lmerTest's), NaN p when undefined."""
    from mixedlm.inference.ddf import satterthwaite_df
    from scipy import stats

    index = list(fit.matrices.fixed_names).index(term)
    estimate = float(fit.beta[index])
    se = float(np.sqrt(fit.vcov()[index, index]))
    df = float(satterthwaite_df(fit).df[index])
    if not (np.isfinite(estimate) and np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):
        return estimate, float("nan")
    p = float(2.0 * stats.t.sf(abs(estimate / se), df))
    return estimate, p if np.isfinite(p) else float("nan")


def kenward_roger_test(fit, term: str) -> tuple[float, float]:
    """``(estimate, p)`` of ``term`` by Kenward–Roger (pbkrtest's ``KRmodcomp`` of the one coefficient:
    the t test with the adjusted SE and Kenward–Roger's df), NaN p when undefined."""
    from scipy.special import stdtr

    from core.stats.kenward_roger import kenward_roger

    m = fit.matrices
    index = list(m.fixed_names).index(term)
    estimate = float(fit.beta[index])
    structure = [(s.n_terms, s.n_levels) for s in m.random_structures]
    kr = kenward_roger(m.Z, m.X, structure, np.asarray(fit.theta, float), float(fit.sigma))
    se, df = float(kr.se[index]), float(kr.df[index])
    if not (np.isfinite(estimate) and np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):
        return estimate, float("nan")
    p = float(2.0 * stdtr(df, -abs(estimate / se)))
    return estimate, p if np.isfinite(p) else float("nan")


TESTS = {"kr": kenward_roger_test, "satterthwaite": satterthwaite_test}


def boot_parameters(fit) -> np.ndarray:
    """A refit's parameters as lme4's ``confint(method = "boot")`` collects them: each term's SDs and
    correlations (lower triangle by columns), σ, the fixed effects."""
    from core.stats.profiled import theta_to_sdcor

    sizes = [s.n_terms for s in fit.matrices.random_structures]
    sdcor = theta_to_sdcor(np.asarray(fit.theta, float), float(fit.sigma), sizes)
    return np.concatenate([sdcor, [float(fit.sigma)], np.asarray(fit.beta, float)])


def simulate_one(design: SimulationDesign, index: int):
    """Simulation ``index`` of ``design``: ``(estimate, p, singular)``; p is NaN when the refit
    failed; ``singular`` is 1.0 for a singular refit (lme4's ``isSingular``), NaN when it failed."""
    model = template_model(design)
    y = model.simulate(seed=simulation_rng(design.seed, design.n_patients, index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = model.refit(y, start=np.asarray(design.theta, float))
            if design.test == "boot":
                return boot_parameters(fit)
            estimate, p = TESTS[design.test](fit, design.term)
            return estimate, p, float(bool(fit.isSingular(1e-4)))
        except (ArithmeticError, ValueError, RuntimeError, np.linalg.LinAlgError):
            return np.full(design.width, np.nan) if design.test == "boot" else (float("nan"),) * 3


def exit_with_parent() -> None:
    """In a worker process: exit as soon as the process that started it ends (also when it is
    killed, e.g. a dashboard stopped with SIGTERM, where no exit handler runs): the pool's queues
    keep a worker waiting forever otherwise."""
    import multiprocessing
    import os
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_ONE_BLAS_THREAD = False


def _one_blas_thread() -> None:
    """Once per process: one BLAS thread. The matrices are small, and a pool of BLAS threads
    competing with the other simulation processes is several times slower (15 ms instead of 66 ms
    per simulation on a loaded 2-core machine). Dask workers already start with one thread."""
    global _ONE_BLAS_THREAD
    if _ONE_BLAS_THREAD:
        return
    _ONE_BLAS_THREAD = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


def simulate_chunk(design: SimulationDesign, start: int, stop: int) -> tuple[int, int, np.ndarray]:
    """Simulations ``start … stop − 1`` of ``design``: ``(n_patients, start, array)`` where the
    array has one row per simulation, columns ``(estimate, p, singular)``."""
    _one_blas_thread()
    out = np.empty((stop - start, design.width))
    for row, index in enumerate(range(start, stop)):
        out[row] = simulate_one(design, index)
    return design.n_patients, start, out
