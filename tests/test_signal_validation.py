"""The signal's validation (core/clinical/signal_validation.py): two outcomes counted apart, every
share with its counts, both rules side by side, no patient judging themselves, the calendar split."""
import numpy as np
import pandas as pd
import pytest
from signal_simulator import simulate_clinic

from core.clinical import signal as S
from core.clinical.signal_validation import (
    rules_table,
    cross_validated_statuses,
    outcome_figures,
    validate_signal,
    validation_table,
)

SETTINGS = S.SignalSettings(reliable_change=14)


def _statuses(rows):
    """Hand-made statuses: (patient, course session, observed, status); intake = session 1's score."""
    frame = pd.DataFrame(rows, columns=["patient", "course_session", "observed", "status"])
    frame["intake"] = frame.groupby("patient")["observed"].transform("first")
    return frame


def test_outcome_figures_count_by_hand():
    rows = []
    # A: deteriorates (+20), flagged at session 3; B: improves (−30), flagged at 5 (a false alarm);
    # C: unchanged (−5), never flagged; D: deteriorates (+15), flagged only at session 7; E: improves, never flagged
    for pid, scores, red in (("A", [80, 85, 95, 97, 99, 100, 100], {3}), ("B", [80, 75, 70, 65, 66, 55, 50], {5}),
                             ("C", [80, 79, 78, 77, 76, 75, 75], set()), ("D", [80, 82, 84, 86, 88, 90, 95], {7}),
                             ("E", [80, 70, 65, 60, 55, 52, 50], set())):
        for j, y in enumerate(scores, start=1):
            rows.append((pid, j, y, "unknown" if j == 1 else "not_on_track" if j in red else "on_track"))
    fig = outcome_figures(_statuses(rows), SETTINGS, by_sessions=(4, 6), horizon=8)
    det = fig["outcomes"]["deterioration"]
    assert det["n_outcome"] == 2
    by4, by6 = det["by_session"]
    assert by4["sensitivity"] == {"value": 0.5, "n": 1, "of": 2}          # A yes, D not yet
    assert by4["specificity"] == {"value": 1.0, "n": 3, "of": 3}          # B flagged only at 5
    assert by6["specificity"] == {"value": 2 / 3, "n": 2, "of": 3}
    assert by6["ppv"] == {"value": 0.5, "n": 1, "of": 2} and by6["npv"] == {"value": 2 / 3, "n": 2, "of": 3}
    assert det["first_flag"] == {"median_session": 5.0, "n_flagged": 2, "of": 2}   # sessions 3 and 7
    noimp = fig["outcomes"]["no_reliable_improvement"]
    assert noimp["n_outcome"] == 3                                          # A, C, D
    assert noimp["by_session"][1]["sensitivity"] == {"value": 1 / 3, "n": 1, "of": 3}
    assert fig["false_alarm"] == {"value": 0.5, "n": 1, "of": 2}             # B of B and E
    assert fig["false_alarm_within_horizon"]["n"] == 1


@pytest.mark.slow
def test_validation_keys_counts_and_no_leak_of_a_patients_outcome():
    data = simulate_clinic(n_patients=250, seed=31)
    v = validate_signal(data, SETTINGS)
    assert "cross-validation by patient" in v["method"] and v["rule"] == "trend"
    assert set(v["methods"]) == {"trend", "session"} and v["fold_methods"] == ["mixed_model"] * 5
    for name in ("deterioration", "no_reliable_improvement"):
        fig = v["outcomes"][name]
        for row in fig["by_session"]:
            sens, spec, ppv, npv = row["sensitivity"], row["specificity"], row["ppv"], row["npv"]
            assert sens["of"] == row["n_outcome"] and spec["of"] == row["n_patients"] - row["n_outcome"]
            assert ppv["of"] == row["n_flagged"] == sens["n"] + (spec["of"] - spec["n"])
            assert npv["of"] == row["n_patients"] - row["n_flagged"]
    det6 = v["outcomes"]["deterioration"]["by_session"][1]
    assert det6["session"] == 6 and det6["sensitivity"]["value"] > 0.7 and det6["ppv"]["value"] > 0.4
    assert v["false_alarm"]["of"] > 50 and v["false_alarm"]["value"] < 0.15
    assert v["calendar"] == {"reason": "The sessions have no dates, so there is no calendar split."}
    assert any("Reliable deterioration" in s for s in v["sentences"]) and \
        any("The two rules on these patients" in s for s in v["sentences"])
    table = validation_table(v)
    assert len(table) == 4 and set(table["outcome"]) == {"reliable deterioration", "no reliable improvement"}
    assert table["sensitivity"].str.match(r"\d+ of \d+ \(\d+%\)").all()
    assert len(rules_table(v)) == 2
    # The flags of a patient come from a model fitted without them: changing that patient's later
    # scores (their outcome) leaves their cross-validated flags at earlier sessions as they were.
    cv, _methods = cross_validated_statuses(data, SETTINGS)
    pid = "P0007"
    changed = data.copy()
    later = (changed["patient"] == pid) & (changed["session"] > 4)
    changed.loc[later, "symptoms"] = changed.loc[later, "symptoms"] + 60
    cv2, _ = cross_validated_statuses(changed, SETTINGS)
    for rule in ("trend", "session"):
        a = cv[rule][(cv[rule]["patient"] == pid) & (cv[rule]["course_session"] <= 4)]
        b = cv2[rule][(cv2[rule]["patient"] == pid) & (cv2[rule]["course_session"] <= 4)]
        assert a["status"].tolist() == b["status"].tolist()


@pytest.mark.slow
def test_calendar_split_fits_on_the_first_half_and_checks_the_second():
    data = simulate_clinic(n_patients=300, seed=32)
    start = pd.Timestamp("2025-01-06")
    offset = {p: int(i) * 2 for i, p in enumerate(sorted(data["patient"].unique()))}  # patients start 2 days apart
    data["date"] = [start + pd.Timedelta(days=offset[p] + 7 * (s - 1)) for p, s in zip(data["patient"], data["session"])]
    v = validate_signal(data, S.SignalSettings(reliable_change=14, date="date"))
    cal = v["calendar"]
    assert cal["model"] == "mixed_model" and 100 < cal["n_tested"] < 200
    assert "fitted on the sessions up to" in cal["method"]
    assert set(cal["methods"]) == {"trend", "session"}
    assert cal["methods"]["trend"]["outcomes"]["deterioration"]["n_outcome"] > 5


def test_validation_needs_a_reliable_change_value():
    v = validate_signal(simulate_clinic(n_patients=100, seed=33), S.SignalSettings())
    assert v["outcomes"] == {} and "reliable-change value" in v["sentences"][0]


def test_an_outside_norm_is_checked_on_every_patient_without_folds():
    from core.clinical.signal_norm import model_from_norm, norm_document

    norm = model_from_norm(norm_document(simulate_clinic(n_patients=300, seed=34), SETTINGS), SETTINGS)
    data = simulate_clinic(n_patients=120, seed=35)
    v = validate_signal(data, SETTINGS, model=norm)
    assert "outside norm" in v["method"] and "fold_methods" not in v and v["calendar"] is None
    statuses = S.compute_signal(data, SETTINGS, model=norm).sessions
    direct = outcome_figures(statuses, SETTINGS, horizon=8)
    assert v["false_alarm"] == direct["false_alarm"]
    assert np.isclose(v["outcomes"]["deterioration"]["by_session"][1]["sensitivity"]["value"],
                      direct["outcomes"]["deterioration"]["by_session"][1]["sensitivity"]["value"])
