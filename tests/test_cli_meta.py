"""`python -m core pool` and `python -m core ipd-meta` against metafor/lme4 (tests/expected)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.intake.mapping import ColumnMapping
from core.intake.reading import read_table
from core.intake.validation import validate_studies

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
KEYS = ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "q", "q_p", "pi_low", "pi_high")


def run(*args, out=None):
    cmd = [sys.executable, "-m", "core", *map(str, args)] + (["--out", str(out)] if out else [])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def no_nan(text):
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def close(ours, ref, se):
    assert abs(ours["estimate"] - ref["estimate"]) <= 0.01 * se
    assert abs(ours["se"] / ref["se"] - 1) <= 0.01
    for k in ("ci_low", "ci_high", "pi_low", "pi_high"):
        assert abs(ours[k] - ref[k]) <= 0.01 * se, k
    assert abs(ours["tau2"] - ref["tau2"]) <= 0.01 * max(ref["tau2"], 1e-12) + 1e-10
    assert abs(ours["i2"] - ref["i2"]) <= 0.1
    assert ours["q"] == pytest.approx(ref["q"], rel=1e-6)


@pytest.mark.parametrize("variant,flags", [("reml", ["--method", "reml"]),
                                           ("reml_knapp_hartung", ["--method", "reml", "--knapp-hartung"]),
                                           ("dl", ["--method", "dl"])])
def test_pool_matches_metafor(tmp_path, variant, flags):
    out = tmp_path / "pool.json"
    r = run("pool", DATA / "pool_bcg.csv", "--label", "study", "--estimate", "estimate", "--se", "se", *flags, out=out)
    assert r.returncode == 0, r.stderr
    ours = no_nan(out.read_text())
    ref = json.loads((ROOT / "tests" / "expected" / "pool_bcg.json").read_text())[variant]
    close(ours, ref, ref["se"])
    assert ours["k"] == 13 and len(ours["studies"]) == 13
    assert set(KEYS) <= set(ours)


def test_pool_lists_unusable_rows_and_fails_plainly(tmp_path):
    f = tmp_path / "effects.csv"
    f.write_text("study;yi;sei\nA;0,1;0,05\nB;0,2;0\nC;abc;0,1\nD;0,15;0,07\nE;0,3;0,1\n", encoding="latin-1")
    out = tmp_path / "p.json"
    r = run("pool", f, "--label", "study", "--estimate", "yi", "--se", "sei", out=out)
    assert r.returncode == 0, r.stderr
    rep = no_nan(out.read_text())
    assert rep["k"] == 3
    assert [e["row"] for e in rep["excluded_rows"]] == [3, 4]
    bad = run("pool", f, "--label", "study", "--estimate", "effect", "--se", "sei")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "effect" in bad.stderr


def test_ipd_meta_matches_reference(tmp_path):
    out = tmp_path / "ipd.json"
    r = run("ipd-meta", DATA / "multistudy_public.csv", "--study", "study", "--patient", "patient",
            "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms", "--method", "dl", out=out)
    assert r.returncode == 0, r.stderr
    ours = no_nan(out.read_text())
    ref = json.loads((ROOT / "tests" / "expected" / "multistudy_public_meta.json").read_text())
    for study, s in ref["stage1"].items():
        for direction in ("alliance_to_symptoms", "symptoms_to_alliance"):
            o, e = ours["stage1"][study][direction], s[direction]
            assert abs(o["estimate"] - e["estimate"]) <= 0.01 * e["se"]
            assert abs(o["se"] / e["se"] - 1) <= 0.01
        assert ours["stage1"][study]["n_observations"] == s["n_observations"]
    for direction in ("alliance_to_symptoms", "symptoms_to_alliance"):
        close(ours["pooled"][direction], ref["pooled"][direction]["dl"], ref["pooled"][direction]["dl"]["se"])


def test_validate_studies_keeps_ids_apart_and_lists_missing_study(tmp_path):
    f = tmp_path / "two.csv"
    f.write_text("study,patient,session,alliance,symptoms\n"
                 "A,P1,1,5,2\nA,P1,2,6,1.5\nB,P1,1,4,3\nB,P1,2,4.5,2.5\n,P9,1,5,2\n")
    v = validate_studies(read_table(f), ColumnMapping(patient="patient", session="session",
                                                      alliance="alliance", symptoms="symptoms"), "study")
    assert sorted(v.data["patient"].unique()) == ["A / P1", "B / P1"]
    assert v.excluded.to_dict("records") == [{"row": 6, "reason": "study missing"}]
    assert any("more than one study" in n for n in v.notes)


def test_ipd_meta_exclude_study_and_stage1_diagnostics(tmp_path):
    out = tmp_path / "ipd.json"
    r = run("ipd-meta", DATA / "multistudy_public.csv", "--study", "study", "--patient", "patient",
            "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms",
            "--exclude-study", "S03", "--exclude-study", "S05", out=out)
    assert r.returncode == 0, r.stderr
    ours = no_nan(out.read_text())
    assert "S03" not in ours["stage1"] and ours["pooled"]["alliance_to_symptoms"]["k"] == 6
    assert [e["study"] for e in ours["excluded_studies"]] == ["S03", "S05"]
    for entry in ours["stage1"].values():
        assert entry["converged"] is True and entry["singular"] is False and entry["warnings"] == []
    r = run("ipd-meta", DATA / "multistudy_public.csv", "--study", "study", "--patient", "patient",
            "--session", "session", "--alliance", "alliance", "--symptoms", "symptoms", "--exclude-study", "X9")
    assert r.returncode == 2 and "X9" in r.stderr and len(r.stderr.strip().splitlines()) == 1
