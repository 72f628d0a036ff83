"""The early-warning signal (core/clinical/signal.py): lme4's numbers, the must-show targets on
simulated clinics with planted deteriorating patients, prospective statuses, fallback, validation."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from signal_simulator import flag_rates, simulate_clinic

from core.clinical import signal as S

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXPECTED = ROOT / "tests" / "expected"


# ------------------------------------------------------------------ same numbers as lme4

@pytest.mark.parametrize("case,intake,higher_is_worse", [
    ("signal_clinic", None, True),                  # OQ-45 totals, intake = first session
    ("signal_wellbeing_intake", "intake", False),   # 1-7 well-being, an intake column, singular refits
])
def test_expected_course_and_prediction_sd_match_lme4(case, intake, higher_is_worse):
    data = pd.read_csv(DATA / f"{case}.csv", dtype={"patient": str})
    ref = json.loads((EXPECTED / f"{case}.json").read_text())
    settings = S.SignalSettings(higher_is_worse=higher_is_worse, intake=intake)
    model = S.fit_signal_model(data, settings)
    assert model.local
    assert model.intake_mean == pytest.approx(ref["intake_mean"], rel=1e-12)
    assert [f.up_to for f in model.fits] == [f["up_to"] for f in ref["fits"]]
    assert [f.kind for f in model.fits] == [f["kind"] for f in ref["fits"]]
    for ours, theirs in zip(model.fits, ref["fits"]):
        assert ours.fixed == pytest.approx(np.array(theirs["fixed"]), rel=1e-5, abs=1e-6)
        assert ours.residual == pytest.approx(theirs["residual"], rel=1e-4)
        scale = max(abs(np.array(theirs["patient_cov"])).max(), 1e-3)
        assert np.abs(ours.patient_cov - np.array(theirs["patient_cov"])).max() < 1e-3 * scale
        assert ours.fixed_cov == pytest.approx(np.array(theirs["fixed_cov"]), rel=1e-3, abs=1e-8)
    rows = S.session_signal(data, model, settings)
    expected = pd.DataFrame(ref["rows"]).astype({"patient": str})
    merged = expected.merge(rows, on=["patient", "session"], suffixes=("_r", ""))
    assert len(merged) == len(expected) > 500
    np.testing.assert_allclose(merged["expected"], merged["expected_r"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(merged["sd"], merged["sd_r"], rtol=1e-4)
    z = S.Z_NOT_ON_TRACK
    np.testing.assert_allclose(merged["upper"], merged["expected_r"] + z * merged["sd_r"], rtol=1e-5)


# ------------------------------------------------------------------ the targets

@pytest.mark.parametrize("kwargs,higher_is_worse", [
    ({"seed": 1}, True),
    ({"seed": 2, "scale": "oq_item"}, True),
    ({"seed": 3, "scale": "wellbeing"}, False),         # lower is worse
    ({"seed": 4, "shape": "linear"}, True),             # straight-line courses: the model's shape is wrong
])
def test_planted_deteriorating_patients_are_flagged_and_typical_ones_rarely(kwargs, higher_is_worse):
    data = simulate_clinic(n_patients=400, **kwargs)
    result = S.compute_signal(data, S.SignalSettings(higher_is_worse=higher_is_worse))
    assert result.model.local
    r = flag_rates(data, result.sessions)
    assert r["n_det"] >= 30
    assert r["det"] >= 0.80, r           # at least 80% of deteriorating patients with 6 sessions, by session 6
    assert r["typical"] <= 0.20 and r["typical_6"] <= 0.20, r  # at most 20% of typical patients ever
    assert abs(r["high"] - r["low"]) <= 0.20, r  # starting high or low: the same chance of a false alarm


def test_statuses_survive_cutting_later_sessions():
    data = simulate_clinic(n_patients=400, seed=11)
    full = S.compute_signal(data, S.SignalSettings()).sessions
    rng = np.random.default_rng(11)
    keep = data["patient"].map({p: int(rng.integers(2, 11)) for p in data["patient"].unique()})
    cut = S.compute_signal(data[data["session"] <= keep], S.SignalSettings()).sessions
    both = cut.merge(full, on=["patient", "session"], suffixes=("_cut", ""))
    assert len(both) == len(cut)
    assert (both["status_cut"] == both["status"]).mean() >= 0.98
    # one patient's later sessions cut: that patient's earlier statuses are exactly the same
    pid = full.loc[full["status"].eq("not_on_track"), "patient"].iloc[0]
    shorter = data[(data["patient"] != pid) | (data["session"] <= 4)]
    again = S.compute_signal(shorter, S.SignalSettings()).sessions
    mine = again[again["patient"] == pid].merge(full, on=["patient", "session"], suffixes=("_cut", ""))
    assert len(mine) == 4 and (mine["status_cut"] == mine["status"]).all()
    np.testing.assert_allclose(mine["expected_cut"], mine["expected"], equal_nan=True)


def test_later_scores_of_anyone_do_not_change_earlier_statuses():
    # The time split: adding sessions 7+ to every patient changes no status at sessions 1-6.
    data = simulate_clinic(n_patients=200, seed=12)
    early = S.compute_signal(data[data["session"] <= 6], S.SignalSettings()).sessions
    full = S.compute_signal(data, S.SignalSettings()).sessions
    both = early.merge(full, on=["patient", "session"], suffixes=("_early", ""))
    assert (both["status_early"] == both["status"]).all()
    np.testing.assert_allclose(both["sd_early"], both["sd"], equal_nan=True)


# ------------------------------------------------------------------ statuses and rules

def _course(pid, scores, start=1):
    return pd.DataFrame({"patient": pid, "session": range(start, start + len(scores)), "symptoms": scores})


def test_reliable_change_fallback_with_few_courses():
    data = pd.concat([_course("worse", [80, 94, 90]), _course("half", [80, 87, 86]),
                      _course("better", [80, 60]), _course("one", [70])], ignore_index=True)
    settings = S.SignalSettings(reliable_change=14)
    result = S.compute_signal(data, settings)
    assert result.model.method == "reliable_change"
    assert "completed course" in result.definition and "Jacobson & Truax" in result.definition
    got = result.sessions.set_index(["patient", "session"])["status"]
    assert got[("worse", 2)] == "not_on_track"   # +14: a reliable deterioration
    assert got[("worse", 3)] == "at_risk"        # +10 >= 7 (half the RC)
    assert got[("half", 2)] == "at_risk" and got[("half", 3)] == "on_track"
    assert got[("better", 2)] == "on_track"
    assert got[("one", 1)] == "unknown" and got[("worse", 1)] == "unknown"
    bounds = result.sessions.set_index(["patient", "session"]).loc[("worse", 2)]
    assert (bounds["expected"], bounds["lower"], bounds["upper"]) == (80, 66, 94)
    # lower is worse: the same rule mirrored
    mirrored = data.assign(symptoms=200 - data["symptoms"])
    flipped = S.compute_signal(mirrored, S.SignalSettings(reliable_change=14, higher_is_worse=False)).sessions
    assert flipped["status"].tolist() == result.sessions["status"].tolist()
    # without a reliable-change value there is nothing to fall back on: unknown, and said so
    bare = S.compute_signal(data, S.SignalSettings()).sessions
    assert set(bare["status"]) == {"unknown"}
    assert "no reliable-change value" in bare["reason"].iloc[1]


def test_lower_is_worse_mirrors_the_model_statuses():
    data = simulate_clinic(n_patients=200, seed=21)
    up = S.compute_signal(data, S.SignalSettings()).sessions
    down = S.compute_signal(data.assign(symptoms=-data["symptoms"]), S.SignalSettings(higher_is_worse=False)).sessions
    assert (up["status"] == down["status"]).all()
    assert (up["status"] == "not_on_track").sum() > 10
    np.testing.assert_allclose(-down["upper"], up["lower"], rtol=1e-6)


def test_status_thresholds_and_reasons():
    data = simulate_clinic(n_patients=200, seed=22)
    s = S.compute_signal(data, S.SignalSettings()).sessions
    known = s[s["status"] != "unknown"]
    d = known["deviation"] / known["sd"]
    assert (known.loc[d > S.Z_NOT_ON_TRACK, "status"] == "not_on_track").all()
    assert (known.loc[(d > S.Z_AT_RISK) & (d <= S.Z_NOT_ON_TRACK), "status"] == "at_risk").all()
    assert (known.loc[d <= S.Z_AT_RISK, "status"] == "on_track").all()
    assert ((known["observed"] > known["upper"]) == (known["status"] == "not_on_track")).all()
    red = known[known["status"] == "not_on_track"].iloc[0]
    assert "worse than the expected" in red["reason"] and "90% of them" in red["reason"]
    first = s[s["course_session"] == 1]
    assert (first["status"] == "unknown").all() and first["reason"].str.contains("starting point").all()
    # the latest session's status is the patient's
    now = S.patient_signal(s).set_index("patient")["status"]
    assert (now == s.groupby("patient")["status"].last()).all()


def test_missing_scores_and_sessions_beyond_the_data_are_unknown():
    data = simulate_clinic(n_patients=120, seed=23, n_sessions=6)
    gap = data.index[(data["patient"] == "P0003") & (data["session"] == 3)]
    data.loc[gap, "symptoms"] = np.nan
    late = _course("LATE", [80] + [70] * 14)  # one patient reaches session 15; the clinic's data end at 6
    s = S.compute_signal(pd.concat([data, late], ignore_index=True), S.SignalSettings()).sessions.set_index(["patient", "session"])
    assert s.loc[("P0003", 3), "status"] == "unknown" and "no score" in s.loc[("P0003", 3), "reason"]
    assert s.loc[("LATE", 9), "status"] != "unknown"   # up to 1.5 x the last refit session (6)
    assert s.loc[("LATE", 10), "status"] == "unknown" and "too little data" in s.loc[("LATE", 10), "reason"]


def test_intake_column_gives_the_first_session_a_status():
    data = pd.read_csv(DATA / "signal_wellbeing_intake.csv", dtype={"patient": str})
    s = S.compute_signal(data, S.SignalSettings(higher_is_worse=False, intake="intake")).sessions
    assert (s.loc[s["course_session"] == 1, "status"] != "unknown").all()
    assert "intake score (column 'intake')" in S.definition(S.fit_signal_model(data, S.SignalSettings(intake="intake")),
                                                              S.SignalSettings(intake="intake"))
    text = data.assign(intake=data["intake"].map(lambda v: f"{v:.2f}".replace(".", ",")))  # decimal commas, as text
    s2 = S.compute_signal(text, S.SignalSettings(higher_is_worse=False, intake="intake")).sessions
    assert (s2["status"] == s["status"]).all()


def test_fit_sessions_grid():
    assert S.fit_sessions(2, 14) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert S.fit_sessions(1, 40)[-6:] == [12, 15, 18, 22, 27, 33]


# ------------------------------------------------------------------ validation

@pytest.mark.slow
def test_validation_counts_and_no_leak_of_a_patients_outcome():
    data = simulate_clinic(n_patients=250, seed=31)
    settings = S.SignalSettings(reliable_change=14)
    v = S.validate_signal(data, settings)
    assert "cross-validation by patient" in v["method"] and len(v["by_session"]) == 4
    for row in v["by_session"]:
        red, yellow, green = row["not_on_track"], row["at_risk"], row["on_track"]
        assert red["n"] + yellow["n"] + green["n"] == row["n_patients"]
        assert red["poor"] + yellow["poor"] + green["poor"] == row["n_poor"]
        assert row["sensitivity"]["of"] == row["n_poor"] and row["sensitivity"]["n"] == red["poor"]
        assert row["specificity"]["of"] == row["n_patients"] - row["n_poor"]
        assert row["ppv"]["of"] == red["n"]
        assert row["ppv"]["value"] == pytest.approx(red["poor"] / red["n"])
        assert row["npv"]["of"] == yellow["n"] + green["n"]
    assert v["by_session"][-1]["sensitivity"]["value"] > 0.3 and v["by_session"][-1]["ppv"]["value"] > 0.5
    assert len(v["sentences"]) == 4 and "sensitivity" in v["sentences"][0]
    # The flags of a patient come from a model fitted without them: changing that patient's later
    # scores (their outcome) leaves their cross-validated flags at earlier sessions as they were.
    cv, methods = S.cross_validated_sessions(data, settings)
    assert methods == ["mixed_model"] * 5
    pid = "P0007"
    changed = data.copy()
    later = (changed["patient"] == pid) & (changed["session"] > 4)
    changed.loc[later, "symptoms"] = changed.loc[later, "symptoms"] + 60
    cv2, _ = S.cross_validated_sessions(changed, settings)
    a = cv[(cv["patient"] == pid) & (cv["session"] <= 4)]
    b = cv2[(cv2["patient"] == pid) & (cv2["session"] <= 4)]
    np.testing.assert_allclose(a["sd"], b["sd"], equal_nan=True)
    assert a["status"].tolist() == b["status"].tolist()


def test_validation_needs_a_reliable_change_value():
    v = S.validate_signal(simulate_clinic(n_patients=100, seed=32), S.SignalSettings())
    assert v["by_session"] == [] and "reliable-change value" in v["sentences"][0]


# ------------------------------------------------------------------ the JSON report

def test_report_keys_and_plain_json():
    data = pd.read_csv(DATA / "signal_clinic.csv", dtype={"patient": str})
    report = S.signal_report(data, S.SignalSettings(reliable_change=14, cutoff=63.5))
    text = json.dumps(report, allow_nan=False)
    assert "NaN" not in text
    assert {"definition", "patients", "validation", "method", "model"} <= set(report)
    p = report["patients"]["P0000"]
    assert p["status"] == p["sessions"][-1]["status"]
    assert set(p["sessions"][0]) >= {"session", "observed", "expected", "lower", "upper", "status"}
    assert p["sessions"][0]["expected"] is None and p["sessions"][0]["status"] == "unknown"
    assert all(isinstance(s["session"], int) for s in p["sessions"])
    assert report["method"] == "mixed_model" and "REML" in report["definition"]
    assert sum(report["current"].values()) == report["n_patients"] == 150
    assert all(math.isfinite(f["variance"]["residual"]) for f in report["model"]["fits"])
