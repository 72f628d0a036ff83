"""The R reference cases (tests/data + tests/expected, made by ../shared/reference/tools/reference.R):
which data file and column mapping each ladder case uses, and how lme4's ``VarCorr`` names map to
the report's variance keys. Shared by tests/test_models.py, tests/test_cli_reference.py and
bench/bench_models.py."""
from core.intake.mapping import ColumnMapping

#: case name (tests/expected/<name>.json) -> (tests/data file, column mapping)
LADDER_CASES = {
    "paperlike_public": ("paperlike_public.csv", ColumnMapping(
        patient="patient", session="session", symptoms="symptoms", alliance="alliance", therapist="therapist")),
    "multistudy_public_ladder": ("multistudy_public.csv", ColumnMapping(
        patient="patient", session="session", symptoms="symptoms", alliance="alliance", therapist="therapist")),
    "sleepstudy": ("sleepstudy.csv", ColumnMapping(patient="Subject", session="Days", symptoms="Reaction")),
}

#: lme4 VarCorr name (group:var1:var2) -> the report's key under ``models.<key>.variance``
VAR_KEYS = {
    "patient:(Intercept):NA": "patient_intercept",
    "patient:time:NA": "patient_slope",
    "patient:(Intercept):time": "patient_intercept_slope_cov",
    "therapist:(Intercept):NA": "therapist_intercept",
    "Residual:NA:NA": "residual",
}


def cli_flags(mapping: ColumnMapping) -> list[str]:
    """``python -m core analyze`` flags for the mapping's roles (``--patient COL`` …)."""
    flags = []
    for role in ("patient", "session", "symptoms", "alliance", "therapist"):
        column = getattr(mapping, role)
        if column:
            flags += [f"--{role}", column]
    return flags
