"""The early-warning signal as one JSON report (``python -m core signal``; the HTML report's section).

Keys (the contract's, ``docs/cli-and-reports.md``): ``definition`` (plain words, with what the rates
mean: "1 in 10 patients who are doing as expected will be flagged at some point"), ``method``
(``mixed_model`` or the ``reliable_change`` fallback), ``rule``, ``settings``, ``model``, ``norm``
(where the expected course came from, and — for an outside norm — how this data set compares with
it), ``calibration`` (``target_ever_flagged``, ``achieved_ever_flagged``: by simulation,
:func:`core.clinical.signal.calibration`), ``patients.<id>: {status, session, reason, sessions:
[{session, observed, expected, lower, upper, at_risk_bound, z, status, reason}]}``, ``current`` and
``validation`` (:func:`core.clinical.signal_validation.validate_signal`).
"""
from __future__ import annotations

import pandas as pd

from core.clinical.signal import (
    STATUSES,
    SignalModel,
    SignalSettings,
    calibration,
    calibration_summary,
    clean,
    compute_signal,
    session_number,
)
from core.clinical.signal_norm import compare_with_norm, norm_summary
from core.clinical.signal_validation import validate_signal


def signal_report(data: pd.DataFrame, settings: SignalSettings = SignalSettings(), *,
                  model: SignalModel | None = None, validation: bool = True, patient: str = "patient") -> dict:
    """The signal as the contract's JSON (module docstring). ``model``: an outside norm (or an
    expected course fitted elsewhere); else fitted on ``data``."""
    result = compute_signal(data, settings, model=model, patient=patient)
    sessions = result.sessions
    patients: dict[str, dict] = {}
    keys = ("observed", "expected", "lower", "upper", "at_risk_bound", "z", "status", "reason")
    ordered = sessions.sort_values(["patient", "session"], kind="stable")
    # plain lists, row by row (a DataFrame's itertuples per patient takes seconds for 5,000 patients)
    columns = {k: ordered[k].tolist() for k in ("patient", "session", *keys)}
    rows_of: dict[str, list] = {}
    for i, pid in enumerate(columns["patient"]):
        rows_of.setdefault(str(pid), []).append(
            {"session": session_number(columns["session"][i]), **{k: columns[k][i] for k in keys}})
    current = result.patients
    for pid, status, session, reason in zip(current["patient"].tolist(), current["status"].tolist(),
                                            current["session"].tolist(), current["reason"].tolist()):
        patients[str(pid)] = {"status": status, "session": session_number(session), "reason": reason,
                              "sessions": rows_of.get(str(pid), [])}
    patients = dict(sorted(patients.items()))
    counts = sessions.groupby("patient")["status"].last().value_counts()
    fitted = result.model
    comparison = compare_with_norm(data, fitted, settings, patient=patient) if fitted.outside else None
    cal = calibration(data, fitted, settings, patient=patient)
    cal["sentence"] = calibration_summary(cal)
    report = {
        "definition": result.definition,
        "method": fitted.method,
        "rule": settings.rule,
        "settings": {"higher_is_worse": settings.higher_is_worse, "reliable_change": settings.reliable_change,
                     "cutoff": settings.cutoff, "intake": settings.intake, "rule": settings.rule,
                     "horizon": int(settings.horizon),
                     "rates": {"not_on_track": settings.rate_not_on_track, "at_risk": settings.rate_at_risk}},
        "model": fitted.as_dict(),
        "norm": norm_summary(fitted, comparison),
        "calibration": cal,
        "n_patients": int(sessions["patient"].nunique()),
        "current": {s: int(counts.get(s, 0)) for s in STATUSES},
        "patients": patients,
    }
    if validation:
        report["validation"] = validate_signal(data, settings, model=fitted if fitted.outside else None,
                                               patient=patient)
    return clean(report)
