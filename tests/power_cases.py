"""The power reference cases: the data (tests/data/paperlike_public.csv, 96 patients, 4 sessions) and
the cases of tests/r/power_cases.json (simr's method in R, tests/expected/power_paperlike_public.json)
and of the one-refit cross-check (tests/r/make_power_refit_cases.py, tests/expected/power_refit.json).
Shared by tests/test_power*.py and bench/bench_power.py."""
from __future__ import annotations

import json
from pathlib import Path

from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_table

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "paperlike_public.csv"
MAPPING = ColumnMapping(patient="patient", therapist="therapist", session="session",
                        alliance="alliance", symptoms="symptoms")
HYBRID = "symptoms ~ alliance_between + alliance_within + (1 | patient)"
INTERACTION = "symptoms ~ alliance_between * alliance_within + (1 | patient)"
SLOPE = "symptoms ~ alliance_within + time + (time | patient)"
THERAPIST = "symptoms ~ alliance_between + alliance_within + time + (1 | therapist) + (1 | patient)"

#: One refit per simulated data set, checked against lme4 + lmerTest on the same numbers.
REFIT_CASES = {
    "hybrid_within_120": {"formula": HYBRID, "term": "alliance_within", "effect": -0.05, "n": 120, "seed": 7, "k": 12},
    "interaction_96": {"formula": INTERACTION, "term": "alliance_between:alliance_within", "effect": None,
                       "n": 96, "seed": 7, "k": 12},
    "slope_time_60": {"formula": SLOPE, "term": "time", "effect": -0.02, "n": 60, "seed": 7, "k": 12},
    "therapist_within_96": {"formula": THERAPIST, "term": "alliance_within", "effect": -0.05, "n": 96, "seed": 7,
                            "k": 12},
}


def paperlike():
    """The validated long data of tests/data/paperlike_public.csv."""
    return validate_table(read_table(DATA), MAPPING).data


def r_power_reference() -> dict:
    """simr's method in R (tests/r/reference_power.R) on the paper-like data, by case."""
    return json.loads((ROOT / "tests" / "expected" / "power_paperlike_public.json").read_text())
