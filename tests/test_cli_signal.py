"""``python -m core signal`` as a user runs it: the contract's keys, both directions of "worse",
the reliable-change fallback, excluded rows and plain refusals."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLINIC = ROOT / "tests" / "data" / "signal_clinic.csv"
WELLBEING = ROOT / "tests" / "data" / "signal_wellbeing_intake.csv"
ROLES = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms"]


def no_nan(name):
    raise AssertionError(f"the report holds {name}, which is not plain JSON")


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "signal", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def signal(tmp_path, data, *args) -> dict:
    out = tmp_path / "signal.json"
    proc = run(data, *ROLES, *args, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text(encoding="utf-8"), parse_constant=no_nan)


def test_contract_keys_and_statuses(tmp_path):
    report = signal(tmp_path, CLINIC, "--therapist", "therapist")
    assert isinstance(report["definition"], str) and "REML" in report["definition"]
    assert "OQ-45.2 total" in report["definition"]  # the published values it assumed, said so
    patients = report["patients"]
    assert len(patients) == 150
    for pid, p in patients.items():
        assert p["status"] in ("on_track", "at_risk", "not_on_track", "unknown")
        assert p["status"] == p["sessions"][-1]["status"]
        for s in p["sessions"]:
            assert {"session", "observed", "expected", "lower", "upper", "status"} <= set(s)
            if s["status"] == "not_on_track":  # upper: the score beyond which this session is not on track
                assert s["observed"] > s["upper"]
            if s["status"] in ("on_track", "at_risk"):
                assert s["observed"] <= s["upper"]
                assert s["lower"] + s["upper"] == pytest.approx(2 * s["expected"])
    assert report["definition"].startswith("1 in 10 patients who are doing as expected will be flagged not on track")
    assert report["rule"] == "trend" and report["norm"]["kind"] == "own"
    cal = report["calibration"]
    assert cal["target_ever_flagged"] == 0.1 and 0 < cal["achieved_ever_flagged"] <= 0.11
    assert cal["at_risk"]["target_ever_flagged"] == 0.2
    v = report["validation"]
    assert set(v["outcomes"]) == {"deterioration", "no_reliable_improvement"} and v["sentences"]
    assert [row["session"] for row in v["outcomes"]["deterioration"]["by_session"]] == [4, 6]
    assert set(v["methods"]) == {"trend", "session"} and "value" in v["false_alarm"]
    assert report["excluded_rows"] == []


def test_lower_is_worse_with_an_intake_column(tmp_path):
    report = signal(tmp_path, WELLBEING, "--lower-is-worse", "--intake", "intake", "--reliable-change", "0.5")
    assert "lower scores are worse" in report["definition"]
    assert report["settings"]["higher_is_worse"] is False
    reds = [s for p in report["patients"].values() for s in p["sessions"] if s["status"] == "not_on_track"]
    assert reds and all(s["observed"] < s["lower"] for s in reds)
    first = [p["sessions"][0] for p in report["patients"].values()]
    assert all(s["status"] != "unknown" for s in first)  # with an intake column the first session is judged


def test_small_clinic_falls_back_to_reliable_change_and_lists_excluded_rows(tmp_path):
    rows = [("A", 1, 80), ("A", 2, 95), ("B", 1, 70), ("B", 2, 60), ("B", 3, "n/a"), ("C", 1, 60), ("C", 2, 69)]
    path = tmp_path / "small.csv"
    pd.DataFrame(rows, columns=["patient", "session", "symptoms"]).to_csv(path, index=False)
    report = signal(tmp_path, path)
    assert report["method"] == "reliable_change"
    assert "reliable-change rule" in report["definition"] and "completed course" in report["definition"]
    assert report["patients"]["A"]["status"] == "not_on_track"   # +15 >= 14
    assert report["patients"]["B"]["status"] == "on_track"
    assert report["patients"]["C"]["status"] == "at_risk"        # +9 >= 7
    assert report["excluded_rows"] == [{"row": 6, "reason": report["excluded_rows"][0]["reason"]}]


def test_refusals_are_one_plain_sentence(tmp_path):
    proc = run(CLINIC, *ROLES, "--intake", "nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope" in proc.stderr
    proc = run(CLINIC, "--patient", "patient", "--session", "session", "--symptoms", "missing")
    assert proc.returncode == 2 and "missing" in proc.stderr


def test_save_a_norm_and_judge_against_it(tmp_path):
    norm = tmp_path / "norm.json"
    own = signal(tmp_path, CLINIC, "--save-norm", norm, "--no-validation")
    assert own["saved_norm"] == str(norm)
    doc = json.loads(norm.read_text(encoding="utf-8"))
    assert doc["format"] == "alliance-dashboard signal norm" and doc["n_patients"] == 150
    judged = signal(tmp_path, CLINIC, "--norm", norm)
    assert judged["norm"]["kind"] == "file" and judged["norm"]["name"] == "norm.json"
    assert "outside norm" in judged["definition"] and "outside norm" in judged["validation"]["method"]
    assert "comparison" in judged["norm"] and judged["norm"]["comparison"]["session"] == 8
    same = [(a["status"], b["status"]) for p in own["patients"]
            for a, b in zip(own["patients"][p]["sessions"], judged["patients"][p]["sessions"])]
    assert all(a == b for a, b in same)  # the clinic's own norm flags exactly as its own model


def test_the_session_rule_and_stricter_rates(tmp_path):
    strict = signal(tmp_path, CLINIC, "--rule", "session", "--rate", "0.05", "--rate-at-risk", "0.1",
                    "--horizon", "10", "--no-validation")
    assert strict["rule"] == "session" and strict["settings"]["horizon"] == 10
    assert strict["definition"].startswith("1 in 20 patients") and "first 10 sessions" in strict["definition"]
    assert strict["calibration"]["target_ever_flagged"] == 0.05


def test_unusable_norms_and_rates_are_refused_in_one_sentence(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}', encoding="utf-8")
    for args, words in ((("--norm", bad), "not a signal norm"), (("--norm", tmp_path / "missing.json"), "cannot be read"),
                        (("--rate", "0.3"), "--rate"), (("--horizon", "1"), "--horizon"),
                        (("--date", "nope"), "nope")):
        proc = run(CLINIC, *ROLES, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and words in proc.stderr, proc.stderr
