"""Where power simulations run: this machine's cores, or a Dask cluster.

Both runners cut each design's ``nsim`` simulations into chunks of consecutive indices, run
:func:`core.stats.power_sim.simulate_chunk` on them and put the results back by index. Since
simulation *i* draws from its own generator (``default_rng([seed, N, i])``), the result does not
depend on the runner, the number of workers or the chunk size.

- :class:`LocalRunner` (the default): a pool of ``workers`` processes (default: every core;
  ``workers=1`` runs in this process). Processes are started with ``spawn`` (safe beside the
  dashboard's threads, and beside the native thread pools of the engine, which ``fork`` is not)
  and kept for the next run. ``spawn`` normally re-runs the main script in every new process; a
  Streamlit page *is* the main script while it runs, so new processes are started with a stand-in
  ``__main__`` (:func:`_no_main_script`).
- :class:`DaskRunner`: a ``dask.distributed`` cluster at ``address`` (``tcp://host:8786``).
  The scheduler and the workers run this project's code (they unpickle
  :func:`core.stats.power_sim.simulate_chunk`): start them with the virtual environment into which
  ``scripts/venv.sh`` installs the project (``.venv/bin/dask``, from any folder), one single-threaded
  worker process per core (``dask worker ADDRESS --nthreads 1 --nworkers N``; see the README).
"""
from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from core.errors import InputError, ModelError
from core.i18n import _
from core.stats import power_sim
from core.stats.power_sim import SimulationDesign, exit_with_parent, simulate_chunk

#: ``progress(done, total, seconds_left)``: simulations done, simulations in all, and the estimated
#: seconds left (None until two chunks have finished).
Progress = Callable[[int, int, "float | None"], None]

MAX_CHUNK = 50


class Runner(Protocol):
    def run(self, designs: list[SimulationDesign], nsim: int,
            progress: Progress | None = None) -> dict[int, np.ndarray]:
        """``{N: array (nsim, 3) of (estimate, p, singular)}`` (for a bootstrap design, one column per
        parameter: ``SimulationDesign.width``), rows in simulation order."""

    def describe(self) -> str:
        """In words, where the simulations ran."""


def chunk_ranges(nsim: int, slots: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` covering ``0 … nsim − 1``: about four chunks per slot (for the
    progress bar and load balance), at most :data:`MAX_CHUNK` simulations each.

    >>> chunk_ranges(10, 1)
    [(0, 3), (3, 6), (6, 9), (9, 10)]
    """
    size = max(1, min(MAX_CHUNK, math.ceil(nsim / (4 * max(1, slots)))))
    return [(start, min(start + size, nsim)) for start in range(0, nsim, size)]


def time_left(seconds: float | None) -> str:
    """``"about 1 min 30 s left"`` (empty when not yet known).

    >>> time_left(90.4), time_left(0.2), time_left(None)
    ('about 1 min 30 s left', 'less than a second left', '')
    """
    if seconds is None:
        return ""
    if seconds < 1:
        return _("less than a second left")
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return _("about {hours} h {minutes} min left").format(hours=hours, minutes=minutes)
    if minutes:
        return _("about {minutes} min {seconds} s left").format(minutes=minutes, seconds=secs)
    return _("about {seconds} s left").format(seconds=secs)


def progress_text(done: int, total: int, seconds_left: float | None) -> str:
    """``"250 of 1,000 simulations, about 1 min 30 s left"``."""
    left = time_left(seconds_left) if 0 < done < total else ""
    if left:
        return _("{done:,} of {total:,} simulations, {left}").format(done=done, total=total, left=left)
    return _("{done:,} of {total:,} simulations").format(done=done, total=total)


class _Collector:
    """Puts chunk results back in simulation order and reports progress. The time left is
    estimated from the rate since the first chunk finished (which also paid for starting the
    worker processes)."""

    def __init__(self, designs: list[SimulationDesign], nsim: int, progress: Progress | None):
        self.out = {d.n_patients: np.full((nsim, d.width), np.nan) for d in designs}
        self.total = nsim * len(designs)
        self.done = 0
        self.progress = progress
        self.first: tuple[float, int] | None = None
        if progress:
            progress(0, self.total, None)

    def add(self, result: tuple[int, int, np.ndarray]) -> None:
        n_patients, start, values = result
        self.out[n_patients][start:start + len(values)] = values
        self.done += len(values)
        now = time.perf_counter()
        left = None
        if self.first is None:
            self.first = (now, self.done)
        elif self.done > self.first[1]:
            left = (now - self.first[0]) / (self.done - self.first[1]) * (self.total - self.done)
        if self.progress:
            self.progress(self.done, self.total, left)


def _tasks(designs, nsim, slots):
    return [(design, start, stop) for design in designs for start, stop in chunk_ranges(nsim, slots)]


# ------------------------------------------------------------------------------- this machine

_POOLS: dict[int, object] = {}
_POOLS_LOCK = threading.Lock()


@contextmanager
def _no_main_script():
    """While processes start: a ``__main__`` with no file, so ``spawn`` imports no main script in them.

    ``spawn`` runs the parent's main script (``sys.modules["__main__"].__file__``) in each new
    process. Streamlit makes the script being run (app.py and the page) the ``__main__`` module,
    so a new process would run the dashboard again (its warm-up thread even deadlocks the
    process). The simulation code needs nothing from ``__main__``.
    """
    main = sys.modules.get("__main__")
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = None
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _pool(workers: int):
    """A process pool of ``workers`` processes, kept for the next run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=exit_with_parent)
            _POOLS[workers] = pool
        return pool


@atexit.register
def _shut_down_pools() -> None:
    """Stop the kept worker processes before the interpreter tears its modules down."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def _drop_pool(workers: int) -> None:
    with _POOLS_LOCK:
        pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


class LocalRunner:
    """This machine: ``workers`` processes (default: every core; 1 = in this process)."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, int(workers or os.cpu_count() or 1))

    def describe(self) -> str:
        return _("1 process") if self.workers == 1 else \
            _("{n} processes on this machine").format(n=self.workers)

    def run(self, designs, nsim, progress=None):
        collector = _Collector(designs, nsim, progress)
        tasks = _tasks(designs, nsim, self.workers)
        if self.workers == 1:
            for design, start, stop in tasks:
                collector.add(simulate_chunk(design, start, stop))
            return collector.out
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        pool = _pool(self.workers)
        futures = []
        try:
            with _no_main_script():  # a submit may start a process
                futures = [pool.submit(simulate_chunk, design, start, stop) for design, start, stop in tasks]
            for future in as_completed(futures):
                collector.add(future.result())
        except BrokenProcessPool:
            _drop_pool(self.workers)
            raise ModelError(_("A simulation process stopped unexpectedly (out of memory?). Try fewer "
                               "simulations, fewer patients, or fewer worker processes.")) from None
        finally:
            for future in futures:
                future.cancel()
        return collector.out


# ------------------------------------------------------------------------------- a Dask cluster

class DaskRunner:
    """A Dask cluster: the scheduler at ``address`` (``tcp://host:8786``)."""

    def __init__(self, address: str, timeout: float = 15.0):
        self.address = address
        self.timeout = timeout
        self._slots = None

    def describe(self) -> str:
        if self._slots:
            return _("the Dask cluster at {address} ({n} worker threads)").format(address=self.address, n=self._slots)
        return _("the Dask cluster at {address}").format(address=self.address)

    def _client(self):
        try:
            from distributed import Client
        except ImportError:
            raise InputError(_("--scheduler needs Dask: pip install 'dask[distributed]'.")) from None
        try:
            return Client(self.address, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise InputError(_("Cannot reach the Dask scheduler at {address} ({error}). Start it with "
                               "'dask scheduler' and pass the address it prints.").format(
                address=self.address, error=str(err))) from None

    def _check_code(self, client) -> None:
        """Refuse in plain words when the scheduler or a worker cannot import the simulation code
        (checked with the built-in ``eval``, which needs nothing of this project to unpickle)."""
        find = "__import__('importlib.util').util.find_spec"
        probe = f"{find}('core') is not None and {find}({power_sim.__name__!r}) is not None"
        if not client.run_on_scheduler(eval, probe):
            raise InputError(_("The scheduler cannot import this project's code ({module}). Start the scheduler "
                               "and the workers with the project's virtual environment, e.g. .venv/bin/dask "
                               "scheduler (any folder; see the README, Power).").format(module=power_sim.__name__))
        lacking = [w for w, ok in client.run(eval, probe).items() if not ok]
        if lacking:
            raise InputError(_("The worker at {address} cannot import this project's code ({module}). Start the "
                               "scheduler and the workers with the project's virtual environment, e.g. .venv/bin/dask "
                               "worker (any folder; see the README, Power).").format(address=lacking[0], module=power_sim.__name__))

    def run(self, designs, nsim, progress=None):
        from distributed import as_completed

        client = self._client()
        futures = []
        try:
            if not client.nthreads():
                client.wait_for_workers(1, timeout=self.timeout)
            self._check_code(client)
            self._slots = sum(client.nthreads().values())
            collector = _Collector(designs, nsim, progress)
            shipped = {d.key: client.scatter(d, hash=False) for d in designs}
            futures = [client.submit(simulate_chunk, shipped[design.key], start, stop, pure=False)
                       for design, start, stop in _tasks(designs, nsim, self._slots)]
            for future in as_completed(futures, loop=client.loop):
                collector.add(future.result())
            return collector.out
        except (TimeoutError, OSError) as err:
            raise InputError(_("The Dask cluster at {address} has no worker or stopped answering ({error}). "
                               "Start workers with 'dask worker ADDRESS --nthreads 1'.").format(
                address=self.address, error=str(err))) from None
        except (ImportError, RuntimeError) as err:
            raise ModelError(_("The Dask cluster at {address} could not run the simulations ({error}). Start "
                               "the scheduler and the workers with the project's virtual environment (see the "
                               "README, Power).").format(address=self.address, error=str(err))) from None
        finally:
            for future in futures:
                future.cancel()
            client.close()
