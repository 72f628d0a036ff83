"""Early alliance → post-treatment outcome (issue 30) against R: stage 1 equal to lm on the same z-scored
variables (1e-6), stage 2 equal to metafor's rma (1e-5), on generated multi-study data and on HSAUR3's BtheB.

References: tests/r/alliance_outcome_reference.R -> tests/expected/alliance_outcome.json (data:
tests/data/alliance_outcome_multistudy.csv from tests/r/make_alliance_outcome_data.py, and
tests/data/btheb_alliance_outcome.csv, BtheB in long form; BtheB has no alliance measure, so the BDI at
2 months stands in for the early predictor: window 2-2, intake bdi.pre, outcome bdi.8m).
"""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.errors import InputError
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_studies, validate_table
from core.stats.alliance_outcome import alliance_outcome, patient_outcomes, stage1_study

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXPECTED = json.loads((ROOT / "tests" / "expected" / "alliance_outcome.json").read_text())
MULTI = DATA / "alliance_outcome_multistudy.csv"
BTHEB = DATA / "btheb_alliance_outcome.csv"
VARIANTS = {"reml": ("reml", False), "reml_knapp_hartung": ("reml", True), "dl": ("dl", False)}
POOL_KEYS = ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q", "q_p", "pi_low", "pi_high")


def near(got, want, tol, where):
    assert got is not None and abs(got - want) <= tol * max(1.0, abs(want)), f"{where}: {got} vs {want}"


def run(*args, out=None):
    cmd = [sys.executable, "-m", "core", "alliance-outcome", *map(str, args)] + (["--out", str(out)] if out else [])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def check(report, want, variant="reml"):
    assert report["n_patients"] == want["n_patients"]
    assert report["early_sessions"] == want["early_sessions"]
    assert list(report["stage1"]) == list(want["stage1"])
    for study, exp in want["stage1"].items():
        got = report["stage1"][study]
        assert got["n_patients"] == exp["n_patients"] and got["df"] == exp["df"]
        for key in ("estimate", "se", "t", "p", "ci_low", "ci_high", "r"):
            near(got[key], exp[key], 1e-6, f"{study} {key}")
    if want["pool"] is None:
        assert report["pooled"] is None and report["pooled_r"] is None
        return
    exp = want["pool"][variant]
    for key in POOL_KEYS:
        near(report["pooled"][key], exp["pooled"][key], 1e-5, f"pooled {key}")
    for key in ("r", "ci_low", "ci_high", "tau2", "i2"):
        near(report["pooled_r"][key], exp["pooled_r"][key], 1e-5, f"pooled_r {key}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_multistudy_with_post_column_matches_lm_and_metafor(tmp_path, variant):
    method, knha = VARIANTS[variant]
    out = tmp_path / "ao.json"
    r = run(MULTI, "--patient", "patient", "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms",
            "--study", "study", "--post", "post", "--method", method, *(["--knapp-hartung"] if knha else []), out=out)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    check(report, EXPECTED["multistudy_post"], variant)
    assert report["outcome"] == "post" and report["outcome_column"] == "post"
    assert set(report["pooled"]) >= {"k", "estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q", "q_p",
                                     "pi_low", "pi_high", "studies", "regtest"}
    # every patient left out is listed at their first row, with the reason
    missing = [e for e in report["excluded_rows"] if "no post-treatment score" in e["reason"]]
    assert len(missing) == 23 and all(isinstance(e["row"], int) for e in missing)
    assert "Early alliance" in report["methods_sentence"] and "6 studies" in report["methods_sentence"]


def test_multistudy_without_post_uses_the_last_symptom_score_after_the_window(tmp_path):
    out = tmp_path / "ao.json"
    r = run(MULTI, "--patient", "patient", "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms",
            "--study", "study", out=out)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    check(report, EXPECTED["multistudy_last"])
    assert report["outcome"] == "last_after_window" and "after session 4" in report["outcome_definition"]
    assert any("no symptom score after session 4" in e["reason"] for e in report["excluded_rows"])


def test_other_window_and_one_study(tmp_path):
    data = validate_studies(read_table(MULTI), ColumnMapping(patient="patient", session="session",
                                                             alliance="alliance", symptoms="symptoms", post="post"),
                            "study").data
    result = alliance_outcome(data, early="2-5", post="post", study="study")
    check(result.to_dict(), EXPECTED["multistudy_post_2_5"])
    one = alliance_outcome(data[data["study"] == "C"], post="post")
    report = one.to_dict()
    check(report, EXPECTED["one_study_post"])
    assert list(report["stage1"]) == ["all"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_btheb_matches_lm_and_metafor(tmp_path, variant):
    """A real data set with a post score: HSAUR3's BtheB, bdi.pre the intake, bdi.8m the outcome."""
    method, knha = VARIANTS[variant]
    out = tmp_path / "btheb.json"
    r = run(BTHEB, "--patient", "patient", "--session", "session", "--alliance", "early_bdi", "--symptoms", "bdi",
            "--study", "treatment", "--post", "bdi_8m", "--early-sessions", "2-2", "--method", method,
            *(["--knapp-hartung"] if knha else []), out=out)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    check(report, EXPECTED["btheb_post"], variant)
    assert report["outcome_column"] == "bdi_8m"


def test_btheb_last_score_and_one_study(tmp_path):
    out = tmp_path / "btheb.json"
    r = run(BTHEB, "--patient", "patient", "--session", "session", "--alliance", "early_bdi", "--symptoms", "bdi",
            "--study", "treatment", "--early-sessions", "2-2", out=out)
    assert r.returncode == 0, r.stderr
    check(json.loads(out.read_text()), EXPECTED["btheb_last"])
    r = run(BTHEB, "--patient", "patient", "--session", "session", "--alliance", "early_bdi", "--symptoms", "bdi",
            "--post", "bdi_8m", "--early-sessions", "2-2", out=out)
    assert r.returncode == 0, r.stderr
    check(json.loads(out.read_text()), EXPECTED["btheb_one_study"])


def test_refusals_are_one_sentence(tmp_path):
    common = ["--patient", "patient", "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms"]
    for flags, words in ((["--early-sessions", "4-1"], "FIRST-LAST"), (["--early-sessions", "x"], "FIRST-LAST"),
                         (["--post", "nope"], "nope"), (["--early-sessions", "20-30"], "sessions 20–30")):
        r = run(MULTI, *common, *flags)
        assert r.returncode == 2, (flags, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr


def test_patients_left_out_and_conflicting_post_scores():
    data = pd.DataFrame({
        "patient": ["P1"] * 5 + ["P2"] * 3 + ["P3"] * 2 + ["P4"] * 2,
        "session": [1, 2, 3, 4, 6, 1, 2, 5, 5, 6, 1, 2],
        "alliance": [5, 5.5, None, 6, 6, 4, 4.5, 4, 5, 5, 6, 6],
        "symptoms": [80, 75, 70, 68, 60, 90, 85, 80, 70, 60, 70, 65],
        "post": [58, 58, None, None, None, 85, 86, None, 50, 50, None, None],
        "row": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    })
    table, excluded = patient_outcomes(data, (1, 4), post="post")
    assert table["patient"].tolist() == ["P1"]
    assert table.loc[0, "early_alliance"] == pytest.approx((5 + 5.5 + 6) / 3) and table.loc[0, "n_early"] == 3
    assert table.loc[0, "intake"] == 80 and table.loc[0, "post"] == 58
    assert [(e["row"], e["patient"]) for e in excluded] == [(7, "P2"), (10, "P3"), (12, "P4")]
    assert "differ" in excluded[0]["reason"]
    assert "no alliance score in sessions 1–4" in excluded[1]["reason"]
    assert "no post-treatment score" in excluded[2]["reason"]
    # without a post column: the last symptom score after the window
    table, excluded = patient_outcomes(data, (1, 4))
    assert table.set_index("patient").loc["P1", "post"] == 60 and table.set_index("patient").loc["P2", "post"] == 80
    assert any(e["patient"] == "P4" and "after session 4" in e["reason"] for e in excluded)
    with pytest.raises(InputError, match="at least 4"):
        stage1_study(pd.DataFrame({"early_alliance": [1.0, 2, 3], "intake": [1.0, 3, 2], "post": [3.0, 1, 2]}))


def test_validation_reads_the_post_role_and_names_the_patients_without_it(tmp_path):
    """The upload's post-treatment score role: one value per patient; the validation report names who lacks it."""
    f = tmp_path / "long.csv"
    f.write_text("paciente,sesion,ans,oq,oq_post\nP1,1,5,80,60\nP1,2,5.5,75,60\nP2,1,4,90,\nP2,2,4.2,88,\n"
                 "P3,1,6,70,50\nP3,2,6,66,52\nP4,1,5,70,abc\nP5,1,5,70,500\nP6,1,5,70,999\n")
    raw = read_table(f)
    mapping = ColumnMapping(patient="paciente", session="sesion", alliance="ans", symptoms="oq", post="oq_post")
    v = validate_table(raw, mapping, ranges={"symptoms": (0, 180)})
    posts = v.data.groupby("patient")["post"].first()
    assert posts["P1"] == 60 and pd.isna(posts["P2"]) and pd.isna(posts["P3"])
    lacking = v.post_missing.set_index("patient")
    assert lacking.index.tolist() == ["P2", "P3", "P4", "P5", "P6"]
    assert lacking.loc["P2", "row"] == 4 and lacking.loc["P2", "reason"] == "no post-treatment score"
    assert "different" in lacking.loc["P3", "reason"] and "not a number" in lacking.loc["P4", "reason"]
    assert "outside the allowed range" in lacking.loc["P5", "reason"]
    assert lacking.loc["P6", "reason"] == "no post-treatment score"  # 999: a missing-value code
    assert any("5 patients have no usable post-treatment score (P2, P3, P4, P5, P6)" in n for n in v.notes)
    assert len(v.excluded) == 0  # a missing post-treatment score leaves no session out
    # a wide file's oq_post
    w = tmp_path / "wide.csv"
    w.write_text("id,ans_s1,ans_s2,oq_s1,oq_s2,oq_post\nA,5,6,80,70,55\nB,4,4,90,92,\n")
    from core.intake.mapping import detect_wide_layout, propose_mapping

    raw = read_table(w)
    v = validate_table(raw, propose_mapping(raw.columns), wide=detect_wide_layout(raw.columns))
    assert v.data.groupby("patient")["post"].first()["A"] == 55 and v.post_missing["patient"].tolist() == ["B"]
    assert sorted(v.data["session"].unique()) == [1, 2]


def test_html_report_has_the_section_and_its_json(tmp_path):
    """The HTML report (Model explorer's download, ``python -m core report``) carries the section and the
    same numbers as ``alliance-outcome`` in its embedded analysis JSON."""
    import html as _html
    import re

    out = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "core", "report", str(BTHEB), "--patient", "patient", "--session", "session",
           "--alliance", "early_bdi", "--symptoms", "bdi", "--post", "bdi_8m", "--early-sessions", "2-2",
           "--no-signal", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert "id='alliance-outcome'" in page and "In this clinic, patients whose alliance in sessions 2–2" in page
    analysis = json.loads(_html.unescape(re.search(r"<script type='application/json' id='analysis-json'>(.*?)</script>",
                                                   page, re.S).group(1)))
    got = analysis["alliance_outcome"]
    want = EXPECTED["btheb_one_study"]["stage1"]["all"]
    assert got["outcome_column"] == "bdi_8m" and got["stage1"]["all"]["n_patients"] == want["n_patients"]
    near(got["stage1"]["all"]["estimate"], want["estimate"], 1e-6, "report estimate")
