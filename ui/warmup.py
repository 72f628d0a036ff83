"""Import the heavy analysis modules in the background once the server starts.

The first page that needs SciPy, mixedlm or Plotly Express would otherwise pay their import
(about 1.5–2 s on the benchmark machine) while the user waits; ``bench/bench_pages.py`` measures
the overview's first render with and without it.
"""
from __future__ import annotations

import importlib
import threading

import streamlit as st

MODULES = ("scipy.stats", "scipy.optimize", "plotly.express", "mixedlm.models", "core.stats.models",
           "core.stats.meta", "core.reporting.figures", "core.clinical.indices", "core.reporting.tables")


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
