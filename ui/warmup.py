"""Ready the server process for the first clinician page: the heavy analysis modules imported in
the background once the server starts (:func:`start_warm_up`), and freed memory kept for reuse
(:func:`keep_freed_memory`). The first page would otherwise pay both while the user waits;
``bench/bench_pages.py`` measures the overview's first render.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import os
import threading

import streamlit as st

#: What the clinician pages (overview, patient) need: no scipy.stats, scipy.optimize or mixedlm (the
#: profiled engine fits their models; the research pages load those when they are opened). Importing
#: SciPy's stats module here (0.5 s of Python) held the interpreter while the first page was drawn.
MODULES = ("scipy.special", "core.stats.profiled", "core.stats.models", "core.clinical.signal",
           "core.clinical.indices", "core.reporting.figures", "core.reporting.tables", "core.reporting.exports")


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a failed import shows up where the module is used
            pass


@st.cache_resource(show_spinner=False)
def start_warm_up() -> threading.Thread:
    """Start (once per server process) a daemon thread importing :data:`MODULES`."""
    thread = threading.Thread(target=_import_all, name="alliance-warm-up", daemon=True)
    thread.start()
    return thread


#: glibc's ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD and M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Arrays up to this size come from malloc's heaps (glibc's largest allowed value) …
MMAP_THRESHOLD = 32 * 1024 * 1024
#: … and up to this much freed memory stays with the process for the next arrays.
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Let the server process reuse the memory of freed arrays instead of returning it to the system
    at once (glibc ``mallopt``; Linux only; ``ALLIANCE_KEEP_FREED_MEMORY=0`` turns it off). Returns
    whether it was set.

    A million-row page builds dozens of new 8 MB arrays (one per column of every session's signal).
    By default glibc gives each one fresh pages from the system and takes them back when it is freed,
    and touching fresh pages costs: 40 new 8 MB arrays took 0.59 s on this 2-core AMD EPYC virtual
    machine, 0.01 s in reused memory. With freed memory kept, the computations of the 1M-row
    overview's first render took 1.8 s instead of 2.8 s (bench/README.md). The price: the process
    keeps up to :data:`TRIM_THRESHOLD` of freed memory (its resident size stays near its peak).
    """
    if os.environ.get("ALLIANCE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
