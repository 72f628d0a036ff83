"""Import the heavy analysis modules in the background once the server starts.

The first clinician page would otherwise pay these imports while the user waits;
``bench/bench_pages.py`` measures the overview's first render.
"""
from __future__ import annotations

import importlib
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
