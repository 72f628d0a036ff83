"""The benchmarks' simulated data: ``tests/data/simulate_reference.py`` imported from its path
(``tests/data`` is not a package)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_simulator():
    """The module ``tests/data/simulate_reference.py`` (``simulate``, ``multi_study``)."""
    path = ROOT / "tests" / "data" / "simulate_reference.py"
    spec = importlib.util.spec_from_file_location("simulate_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
