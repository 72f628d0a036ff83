"""Meta-regression, leave-one-out, influence, Egger's test and studies with SE = 0 against metafor 3.8-1.

References: tests/r/meta_reference.R -> tests/expected/meta_metafor.json (data: tests/data/meta_bcg.csv,
dat.bcg's log risk ratios with latitude, year and allocation as study-level moderators). Agreement: every
number within 1e-6 (absolute, or relative for numbers above 1), as issue 27 asks.
"""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.stats.meta import influence, leave_one_out, meta_regression, pool_effects

HERE = Path(__file__).parent
EXPECTED = json.loads((HERE / "expected" / "meta_metafor.json").read_text())
BCG = pd.read_csv(HERE / "data" / "meta_bcg.csv")
TOL = 1e-6


def close(got, want, where):
    """Equal within 1e-6 (relative above 1); None (R's NA) only where ours does not exist either."""
    if want is None:
        assert got is None or not math.isfinite(got), f"{where}: {got} vs NA"
        return
    assert got is not None and math.isfinite(got), f"{where}: {got} vs {want}"
    assert abs(got - want) <= TOL * max(1.0, abs(want)), f"{where}: {got} vs {want}"


def mods_of(case):
    mods = case["mods"]
    return [mods] if isinstance(mods, str) else list(mods)


def fit_case(data, case):
    if case.get("mods") is None:
        return pool_effects(data["estimate"], data["se"], data["study"], method=case["method"],
                            knapp_hartung=case["knapp_hartung"])
    return meta_regression(data["estimate"], data["se"], data[mods_of(case)], data["study"], method=case["method"],
                           knapp_hartung=case["knapp_hartung"])


def check_influence(result, want, where):
    table = influence(result)
    assert table["label"].tolist() == [row["label"] for row in want]
    for got, exp in zip(table.to_dict("records"), want):
        for key in ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "qe_del", "hat", "weight"):
            close(got[key], exp[key], f"{where} influence {exp['label']} {key}")
        for term, value in exp["dfbs"].items():
            close(got[f"dfbs_{term}"], value, f"{where} dfbs {exp['label']} {term}")
        assert got["influential"] is exp["influential"], f"{where} influential {exp['label']}"


def check_regtest(result, want, where):
    got = result.regtest
    close(got["z"], want["z"], f"{where} regtest z")
    close(got["p"], want["p"], f"{where} regtest p")
    assert got["df"] == want["df"]
    for key in ("limit_estimate", "limit_ci_low", "limit_ci_high"):
        if want[key] is not None:
            close(got[key], want[key], f"{where} regtest {key}")


@pytest.mark.parametrize("name", sorted(EXPECTED["mods"]))
def test_meta_regression_matches_metafor(name):
    want = EXPECTED["mods"][name]
    result = meta_regression(BCG["estimate"], BCG["se"], BCG[mods_of(want)], BCG["study"], method=want["method"],
                             knapp_hartung=want["knapp_hartung"])
    got = result.to_dict()
    assert list(got["moderators"]) == list(want["coefficients"])
    stat = "t" if want["knapp_hartung"] else "z"
    for term, exp in want["coefficients"].items():
        g = got["moderators"][term]
        for key in ("estimate", "se", "p", "ci_low", "ci_high"):
            close(g[key], exp[key], f"{name} {term} {key}")
        close(g[stat], exp["stat"], f"{name} {term} {stat}")
    for key in ("tau2", "i2", "q", "q_p", "qm", "qm_p", "r2"):
        close(got[key], want[key], f"{name} {key}")
    assert got["qm_df"] == want["qm_df"] and got["qm_df2"] == want["qm_df2"]
    np.testing.assert_allclose([s["weight"] for s in got["studies"]], want["weights"], rtol=TOL)
    np.testing.assert_allclose(result.fit.hat(), want["hat"], rtol=TOL, atol=TOL)
    check_regtest(result, want["regtest"], name)
    check_influence(result, want["influence"], name)
    assert got["estimate"] is None and got["without_moderators"]["k"] == 13


@pytest.mark.parametrize("name", sorted(EXPECTED["plain"]))
def test_leave_one_out_influence_and_egger_match_metafor(name):
    want = EXPECTED["plain"][name]
    result = pool_effects(BCG["estimate"], BCG["se"], BCG["study"], method=want["method"],
                          knapp_hartung=want["knapp_hartung"])
    for key in ("estimate", "se", "ci_low", "ci_high", "p", "pi_low", "pi_high", "tau2", "i2", "q", "q_p"):
        close(getattr(result, key), want[key], f"{name} {key}")
    check_regtest(result, want["regtest"], name)
    check_influence(result, want["influence"], name)
    table = leave_one_out(result)
    assert table["label"].tolist() == [row["label"] for row in want["leave_one_out"]]
    for got, exp in zip(table.to_dict("records"), want["leave_one_out"]):
        for key in ("estimate", "se", "stat", "p", "ci_low", "ci_high", "q", "q_p", "tau2", "i2", "h2"):
            close(got[key], exp[key], f"{name} leave-one-out {exp['label']} {key}")


@pytest.mark.parametrize("name", ["reml", "reml_knha", "ablat_reml"])
def test_study_with_se_zero_is_kept_by_reml_as_metafor_keeps_it(name):
    """Issue 27: a study with SE = 0 was dropped from pooling without a word. metafor's REML keeps it
    (weight 1/tau2; no Q, I2, H2) and warns; so does this project, with a warning naming the study."""
    want = EXPECTED["se0"][name]
    data = BCG.copy()
    data.loc[2, "se"] = 0.0
    result = fit_case(data, want)
    got = result.to_dict()
    assert got["k"] == 13
    assert got["q"] is None and got["i2"] is None and got["q_p"] is None
    assert any(data.loc[2, "study"] in w and "is 0" in w for w in got["warnings"])
    assert any("non-positive" in w for w in want["r_warnings"])
    close(result.tau2, want["tau2"], f"se0 {name} tau2")
    for term, exp in want["coefficients"].items():
        row = (result.coefficients.set_index("term").loc[term] if hasattr(result, "coefficients")
               else pd.Series({"estimate": result.estimate, "se": result.se, "p": result.p,
                               "ci_low": result.ci_low, "ci_high": result.ci_high}))
        for key in ("estimate", "se", "p", "ci_low", "ci_high"):
            close(float(row[key]), exp[key], f"se0 {name} {term} {key}")
    np.testing.assert_allclose(result.studies["weight"], want["weights"], rtol=TOL)
    check_regtest(result, want["regtest"], f"se0 {name}")
    check_influence(result, want["influence"], f"se0 {name}")
    if "leave_one_out" in want:
        for got_row, exp in zip(leave_one_out(result).to_dict("records"), want["leave_one_out"]):
            for key in ("estimate", "se", "p", "tau2", "q", "i2"):
                close(got_row[key], exp[key], f"se0 {name} leave-one-out {exp['label']} {key}")


def test_study_with_se_zero_is_refused_by_dl_as_metafor_refuses_it():
    assert "DL estimator cannot be used" in EXPECTED["se0"]["dl"]["error"]
    data = BCG.copy()
    data.loc[2, "se"] = 0.0
    with pytest.raises(InputError, match=r"DerSimonian.*Rosenthal|DerSimonian.*0 \(Rosenthal"):
        pool_effects(data["estimate"], data["se"], data["study"], method="dl")


def test_study_with_se_zero_and_no_heterogeneity_is_refused_as_metafor_refuses_it():
    assert "Division by zero" in EXPECTED["se0"]["homogeneous_reml"]["error"]
    y, se = [0.30, 0.31, 0.29, 0.30, 0.305], [0.10, 0.12, 0, 0.15, 0.11]
    with pytest.raises(InputError, match="Study 3.*infinite weight"):
        pool_effects(y, se)


@pytest.mark.parametrize("direction", ["alliance_to_symptoms", "symptoms_to_alliance"])
@pytest.mark.parametrize("name", ["year_reml", "year_setting_reml_knha", "year_dl"])
def test_ipd_stage2_meta_regression_matches_metafor(direction, name):
    want = EXPECTED["ipd"][direction][name]
    stage1 = json.loads((HERE / "expected" / "multistudy_public_meta.json").read_text())["stage1"]
    moderators = pd.read_csv(HERE / "data" / "multistudy_moderators.csv").set_index("study")
    labels = sorted(stage1)
    result = meta_regression([stage1[s][direction]["estimate"] for s in labels],
                             [stage1[s][direction]["se"] for s in labels],
                             moderators.loc[labels, mods_of(want)], labels, method=want["method"],
                             knapp_hartung=want["knapp_hartung"])
    for term, exp in want["coefficients"].items():
        row = result.coefficients.set_index("term").loc[term]
        for key in ("estimate", "se", "stat", "p", "ci_low", "ci_high"):
            close(float(row[key]), exp[key], f"{direction} {name} {term} {key}")
    for key in ("tau2", "i2", "q", "qm", "qm_p", "r2"):
        close(getattr(result, key), want[key], f"{direction} {name} {key}")
