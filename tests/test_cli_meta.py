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
    f.write_text("study;yi;sei\nA;0,1;0,05\nB;0,2;-0,1\nC;abc;0,1\nD;0,15;0,07\nE;0,3;0,1\n", encoding="latin-1")
    out = tmp_path / "p.json"
    r = run("pool", f, "--label", "study", "--estimate", "yi", "--se", "sei", out=out)
    assert r.returncode == 0, r.stderr
    rep = no_nan(out.read_text())
    assert rep["k"] == 3
    assert [e["row"] for e in rep["excluded_rows"]] == [3, 4]
    assert "negative" in rep["excluded_rows"][0]["reason"]
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


# --- issue 27: meta-regression, leave-one-out, influence, Egger's test, SE = 0 (tests/expected/meta_metafor.json)

META = json.loads((ROOT / "tests" / "expected" / "meta_metafor.json").read_text())


def near(ours, ref, where=""):
    assert ours is not None and abs(ours - ref) <= 1e-6 * max(1.0, abs(ref)), f"{where}: {ours} vs {ref}"


@pytest.mark.parametrize("case,flags", [("ablat_alloc_reml_knha", ["--mods", "ablat,alloc", "--knapp-hartung"]),
                                        ("ablat_dl", ["--mods", "ablat", "--method", "dl"])])
def test_pool_mods_matches_metafor(tmp_path, case, flags):
    out = tmp_path / "mods.json"
    r = run("pool", DATA / "meta_bcg.csv", "--label", "study", "--estimate", "estimate", "--se", "se", *flags,
            "--leave-one-out", out=out)
    assert r.returncode == 0, r.stderr
    ours, ref = no_nan(out.read_text()), META["mods"][case]
    stat = "t" if ref["knapp_hartung"] else "z"
    assert list(ours["moderators"]) == list(ref["coefficients"])
    for term, want in ref["coefficients"].items():
        for key in ("estimate", "se", "p", "ci_low", "ci_high"):
            near(ours["moderators"][term][key], want[key], f"{term} {key}")
        near(ours["moderators"][term][stat], want["stat"], f"{term} {stat}")
    for key in ("qm", "qm_p", "tau2", "r2", "i2", "q", "q_p"):
        near(ours[key], ref[key], key)
    assert ours["qm_df"] == ref["qm_df"] and ours["estimate"] is None
    near(ours["regtest"]["z"], ref["regtest"]["z"], "regtest z")
    for got, want in zip(ours["influence"], ref["influence"]):
        near(got["cook_d"], want["cook_d"], "cook_d")
        near(got["dffits"], want["dffits"], "dffits")
        assert got["influential"] is want["influential"]
    # leave1out is metafor's for models without moderators: of the model without them, said so
    assert ours["leave_one_out_model"] == "without_moderators" and len(ours["leave_one_out"]) == 13


def test_pool_leave_one_out_and_regtest_match_metafor(tmp_path):
    out = tmp_path / "loo.json"
    r = run("pool", DATA / "meta_bcg.csv", "--label", "study", "--estimate", "estimate", "--se", "se",
            "--knapp-hartung", "--leave-one-out", out=out)
    assert r.returncode == 0, r.stderr
    ours, ref = no_nan(out.read_text()), META["plain"]["reml_knha"]
    assert [row["label"] for row in ours["leave_one_out"]] == [row["label"] for row in ref["leave_one_out"]]
    for got, want in zip(ours["leave_one_out"], ref["leave_one_out"]):
        assert set(got) >= {"label", "estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2", "t"}
        for key in ("estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2"):
            near(got[key], want[key], f"{want['label']} {key}")
        near(got["t"], want["stat"])
    near(ours["regtest"]["z"], ref["regtest"]["z"])
    near(ours["regtest"]["p"], ref["regtest"]["p"])
    assert ours["regtest"]["df"] == ref["regtest"]["df"] == 11


def test_pool_regtest_in_every_report_from_three_studies(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("study,yi,sei\nA,0.1,0.05\nB,0.3,0.1\n")
    out = tmp_path / "two.json"
    assert run("pool", f, "--label", "study", "--estimate", "yi", "--se", "sei", out=out).returncode == 0
    assert no_nan(out.read_text())["regtest"] is None  # k = 2: metafor's regtest cannot be fitted
    f.write_text("study,yi,sei\nA,0.1,0.05\nB,0.3,0.1\nC,0.2,0.2\n")
    assert run("pool", f, "--label", "study", "--estimate", "yi", "--se", "sei", out=out).returncode == 0
    rep = no_nan(out.read_text())
    assert set(rep["regtest"]) >= {"z", "p"} and rep["regtest"]["z"] is not None


def test_pool_se_zero_kept_by_reml_with_a_warning_refused_by_dl(tmp_path):
    """Issue 27: a study with SE = 0 was dropped from pooling without a word."""
    data = (DATA / "meta_bcg.csv").read_text().splitlines()
    cells = data[3].split(",")
    cells[-4] = "0"  # the se of Rosenthal et al 1960
    data[3] = ",".join(cells)
    f = tmp_path / "se0.csv"
    f.write_text("\n".join(data) + "\n")
    out = tmp_path / "se0.json"
    r = run("pool", f, "--label", "study", "--estimate", "estimate", "--se", "se", out=out)
    assert r.returncode == 0, r.stderr
    rep, ref = no_nan(out.read_text()), META["se0"]["reml"]
    assert rep["k"] == 13 and rep["excluded_rows"] == []
    assert rep["q"] is None and rep["i2"] is None
    assert any("Rosenthal et al 1960" in w and "is 0" in w for w in rep["warnings"])
    for key in ("estimate", "se", "tau2", "ci_low", "ci_high", "p"):
        near(rep[key], ref[key], key)
    r = run("pool", f, "--label", "study", "--estimate", "estimate", "--se", "se", "--method", "dl")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Rosenthal et al 1960" in r.stderr and "REML" in r.stderr


@pytest.fixture
def multistudy_mods(tmp_path):
    """tests/data/multistudy_public.csv with the study-level moderators of tests/data/multistudy_moderators.csv."""
    import pandas as pd

    data = pd.read_csv(DATA / "multistudy_public.csv").merge(pd.read_csv(DATA / "multistudy_moderators.csv"),
                                                            on="study")
    path = tmp_path / "multistudy_mods.csv"
    data.to_csv(path, index=False)
    return path, data


def test_ipd_meta_mods_matches_metafor(tmp_path, multistudy_mods):
    out = tmp_path / "ipd_mods.json"
    r = run("ipd-meta", multistudy_mods[0], "--study", "study", "--patient", "patient", "--session", "session",
            "--alliance", "alliance", "--symptoms", "symptoms", "--mods", "year,setting", "--knapp-hartung",
            "--leave-one-out", out=out)
    assert r.returncode == 0, r.stderr
    ours = no_nan(out.read_text())
    for direction in ("alliance_to_symptoms", "symptoms_to_alliance"):
        got, ref = ours["pooled"][direction], META["ipd"][direction]["year_setting_reml_knha"]
        for term, want in ref["coefficients"].items():
            # stage 1 agrees with lme4 to about 1e-8 here, so stage 2 does to 1e-6
            near(got["moderators"][term]["estimate"], want["estimate"], f"{direction} {term}")
            near(got["moderators"][term]["se"], want["se"], f"{direction} {term} se")
        near(got["qm"], ref["qm"]), near(got["tau2"], ref["tau2"])
        assert len(got["leave_one_out"]) == 8 and len(got["influence"]) == 8


def test_ipd_meta_mods_refuses_a_column_that_varies_within_a_study_and_leaves_out_a_study_without_one(
        tmp_path, multistudy_mods):
    path, data = multistudy_mods
    common = ["--study", "study", "--patient", "patient", "--session", "session", "--alliance", "alliance",
              "--symptoms", "symptoms"]
    r = run("ipd-meta", path, *common, "--mods", "alliance")
    assert r.returncode == 2 and "one value per study" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    data.loc[data["study"] == "S04", "year"] = None
    data.to_csv(path, index=False)
    out = tmp_path / "lacking.json"
    r = run("ipd-meta", path, *common, "--mods", "year", out=out)
    assert r.returncode == 0, r.stderr
    rep = no_nan(out.read_text())
    assert [e["study"] for e in rep["excluded_studies"]] == ["S04"] and "year" in rep["excluded_studies"][0]["reason"]
    assert rep["pooled"]["alliance_to_symptoms"]["k"] == 7
