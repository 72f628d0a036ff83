"""`python -m core riclpm` against lavaan (tests/expected/riclpm, from tests/r/riclpm_reference.R),
through the contract's keys (docs/cli-and-reports.md)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXPECTED = ROOT / "tests" / "expected" / "riclpm"
ROLES = ["--patient", "patient", "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms"]
LAGGED = ("alliance_to_symptoms", "symptoms_to_alliance", "alliance_autoregressive", "symptoms_autoregressive")


def run(data, *flags, out=None):
    cmd = [sys.executable, "-m", "core", "riclpm", str(data), *ROLES, *map(str, flags)]
    if out:
        cmd += ["--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def report(tmp_path, data, *flags) -> dict:
    out = tmp_path / "riclpm.json"
    r = run(data, *flags, out=out)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def check_against(rep: dict, ref: dict) -> None:
    assert rep["n_patients"] == ref["n_patients"] and rep["sessions"] == ref["sessions"]
    for key in LAGGED:
        got, want = rep["lagged"][key], ref["lagged"][key]
        pairs = zip(got, want) if isinstance(want, list) else [(got, want)]
        for g, w in pairs:
            assert abs(g["estimate"] - w["estimate"]) <= 0.01 * w["se"], key
            assert g["se"] == pytest.approx(w["se"], rel=0.02), key
            assert abs(g["p"] - w["p"]) <= 0.005, key
    for key in ("alliance_variance", "symptoms_variance", "covariance"):
        assert rep["random_intercepts"][key] == pytest.approx(ref["random_intercepts"][key]["estimate"], rel=0.01)
    f, w = rep["fit"], ref["fit"]
    assert abs(f["loglik"] - w["loglik"]) <= 0.01 and abs(f["chisq"] - w["chisq"]) <= 0.05 and f["df"] == w["df"]
    for key in ("cfi", "rmsea"):
        assert f[key] == pytest.approx(w[key], abs=1e-3)
    for key in ("aic", "bic"):
        assert f[key] == pytest.approx(w[key], abs=0.02)


def test_ans_shaped_data_match_lavaan(tmp_path):
    rep = report(tmp_path, DATA / "paperlike_public.csv", "--sessions", "1-4")
    check_against(rep, json.loads((EXPECTED / "paperlike_1-4.json").read_text()))
    assert rep["excluded_rows"] == [] and rep["partially_used_rows"] == []
    assert rep["first_session"] == 1 and rep["last_session"] == 4 and rep["free_lags"] is False
    assert rep["definitions"]["cross_lagged"].startswith("within-person carry-over")
    # without --sessions: the first to the last session of the file, the same model; --therapist is
    # accepted (the role flags of analyze) and not used
    again = report(tmp_path, DATA / "paperlike_public.csv", "--therapist", "therapist")
    assert again["fit"] == rep["fit"]


def test_free_lags_one_entry_per_session_pair(tmp_path):
    rep = report(tmp_path, DATA / "ipd300.csv", "--sessions", "1-7", "--free-lags")
    check_against(rep, json.loads((EXPECTED / "ipd300_1-7_free.json").read_text()))
    pairs = [(e["from_session"], e["to_session"]) for e in rep["lagged"]["alliance_to_symptoms"]]
    assert pairs == [(s, s + 1) for s in range(1, 7)]


def test_sessions_with_one_questionnaire_are_used_as_lavaan_uses_them(tmp_path):
    """riclpm_gaps.csv has empty alliance or symptom cells; lavaan (FIML) uses the other score of
    that session, and so does the command line (the row is listed in partially_used_rows)."""
    rep = report(tmp_path, DATA / "riclpm_gaps.csv", "--sessions", "1-8")
    check_against(rep, json.loads((EXPECTED / "gaps_1-8.json").read_text()))
    partial = rep["partially_used_rows"]
    text = (DATA / "riclpm_gaps.csv").read_text().splitlines()
    empty = [i + 1 for i, line in enumerate(text) if ",," in line or line.endswith(",")]
    assert sorted(p["row"] for p in partial) == empty and len(empty) == 39
    assert all(p["reason"].endswith("used)") for p in partial)
    assert rep["excluded_rows"] == []


def test_sessions_outside_the_range_and_patients_without_any(tmp_path):
    rep = report(tmp_path, DATA / "riclpm_gaps.csv", "--sessions", "2-6")
    check_against(rep, json.loads((EXPECTED / "gaps_2-6.json").read_text()))
    assert len(rep["excluded_patients"]) == 3
    assert rep["n_rows_outside_sessions"] > 0
    assert any("outside 2-6" in n for n in rep["notes"])
    assert any("no score in sessions 2-6" in n for n in rep["notes"])


def test_unusable_rows_are_listed(tmp_path):
    lines = (DATA / "paperlike_public.csv").read_text().splitlines()
    header, body = lines[0], lines[1:]
    body[0] = body[0].split(",", 1)[0] + ",T05,1,abc,"            # row 2: neither score usable
    body[1] = ",T05,2,6.0,1.4"                                      # row 3: no patient
    body[2] = body[2].rsplit(",", 1)[0] + ",n/a"                    # row 4: symptoms missing
    f = tmp_path / "edited.csv"
    f.write_text("\n".join([header, *body]) + "\n")
    rep = report(tmp_path, f, "--sessions", "1-4")
    excluded = {e["row"]: e["reason"] for e in rep["excluded_rows"]}
    assert excluded[2] == "alliance 'abc' is not a number; symptoms missing"
    assert excluded[3] == "patient ID missing"
    assert rep["partially_used_rows"] == [{"row": 4, "reason": "symptoms missing (alliance used)"}]


@pytest.mark.parametrize("flags,message", [
    (["--sessions", "1-2"], "at least 3 sessions"),
    (["--sessions", "1-x"], "FIRST-LAST"),
    (["--sessions", "3-7"], "session 5"),
])
def test_refusals_are_one_plain_sentence(flags, message):
    r = run(DATA / "paperlike_public.csv", *flags)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_too_few_patients_exit_2(tmp_path):
    lines = (DATA / "paperlike_public.csv").read_text().splitlines()
    f = tmp_path / "few.csv"
    f.write_text("\n".join(lines[:60]) + "\n")
    r = run(f)
    assert r.returncode == 2 and "fewer than the model's 27 parameters" in r.stderr
