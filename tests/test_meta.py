"""Meta-analysis (core.stats.meta) against metafor 3.8-1 and lme4 1.1-31 results computed in R.

Reference JSON files were written by /work/shared/reference/tools/reference_pool.R and
reference_ipd.R. Tolerances: estimates, SEs and interval bounds within 1% of the SE, tau2
within 1% (relative), I2 within 0.1 percentage points.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from core.errors import InputError
from core.stats.meta import (
    IPDMetaResult,
    PoolResult,
    ipd_meta_analysis,
    lagged_within_effects,
    pool_effects,
    pool_stage1,
    prepare_lagged,
)

HERE = Path(__file__).parent
DATA = HERE / "data"
EXPECTED = HERE / "expected"

VARIANTS = {"reml": ("reml", False), "reml_knapp_hartung": ("reml", True), "dl": ("dl", False)}
SE_SCALED = ("estimate", "se", "ci_low", "ci_high", "pi_low", "pi_high")
DIRECTIONS = ("alliance_to_symptoms", "symptoms_to_alliance")


def assert_pool_matches(got: dict, want: dict, where: str) -> None:
    """Compare a PoolResult.to_dict() with a metafor result."""
    tol = 0.01 * want["se"]
    for key in SE_SCALED:
        assert abs(got[key] - want[key]) <= tol, f"{where} {key}: {got[key]} vs {want[key]}"
    assert got["tau2"] == pytest.approx(want["tau2"], rel=0.01, abs=1e-10), f"{where} tau2"
    assert abs(got["i2"] - want["i2"]) <= 0.1, f"{where} i2: {got['i2']} vs {want['i2']}"
    assert got["q"] == pytest.approx(want["q"], rel=1e-6), f"{where} q"
    assert got["q_p"] == pytest.approx(want["q_p"], rel=1e-4, abs=1e-12), f"{where} q_p"
    assert got["p"] == pytest.approx(want["p"], rel=1e-3, abs=1e-10), f"{where} p"


def reml_loglik(tau2, y, v):
    w = 1 / (v + tau2)
    mu = np.sum(w * y) / np.sum(w)
    return -0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2))


# ---------------------------------------------------------------------------------------------
# pool_effects
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bcg():
    return pd.read_csv(DATA / "pool_bcg.csv"), json.loads((EXPECTED / "pool_bcg.json").read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_pool_bcg_matches_metafor(bcg, variant):
    data, expected = bcg
    method, knha = VARIANTS[variant]
    result = pool_effects(data["estimate"], data["se"], data["study"], method=method,
                          knapp_hartung=knha)
    assert isinstance(result, PoolResult)
    got = result.to_dict()
    assert got["k"] == expected["k"] == 13
    assert got["method"] == method and got["knapp_hartung"] is knha
    assert_pool_matches(got, expected[variant], variant)


def test_pool_study_weights_are_random_effects_percentages(bcg):
    data, _ = bcg
    result = pool_effects(data["estimate"], data["se"], data["study"], method="reml")
    studies = result.studies
    assert list(studies.columns) == ["label", "estimate", "se", "weight"]
    assert studies["label"].tolist() == data["study"].tolist()
    w = 1 / (data["se"].to_numpy() ** 2 + result.tau2)
    np.testing.assert_allclose(studies["weight"], 100 * w / w.sum())
    assert studies["weight"].sum() == pytest.approx(100)


def test_knapp_hartung_is_not_truncated_like_metafor(bcg):
    """metafor's default knha multiplies the SE by sqrt(s2w) even when s2w < 1."""
    rng = np.random.default_rng(3)
    se = rng.uniform(0.1, 0.3, 8)
    y = rng.normal(0, 0.02, 8)  # far less spread than the SEs: tau2 = 0 and s2w < 1
    plain = pool_effects(y, se, knapp_hartung=False)
    knha = pool_effects(y, se, knapp_hartung=True)
    w = 1 / se ** 2
    s2w = np.sum(w * (y - plain.estimate) ** 2) / 7
    assert s2w < 1
    assert knha.se == pytest.approx(plain.se * math.sqrt(s2w))
    assert knha.ci_high - knha.estimate == pytest.approx(stats.t.ppf(0.975, 7) * knha.se)


def test_pool_to_dict_is_plain_json(bcg):
    data, _ = bcg
    got = pool_effects(data["estimate"], data["se"], data["study"]).to_dict()
    text = json.dumps(got, allow_nan=False)
    assert set(json.loads(text)) == {"k", "estimate", "se", "ci_low", "ci_high", "p", "tau2", "i2",
                                     "q", "q_p", "pi_low", "pi_high", "method", "knapp_hartung",
                                     "studies", "regtest", "warnings"}
    assert set(got["regtest"]) >= {"z", "p"} and got["warnings"] == []
    first = got["studies"][0]
    assert set(first) == {"label", "estimate", "se", "weight"}
    assert first["label"] == "Aronson 1948"
    assert first["estimate"] == pytest.approx(-0.8893113) and first["se"] == pytest.approx(0.5706004)
    assert all(type(v) in (float, int) for k, v in got.items()
               if k not in ("method", "knapp_hartung", "studies", "regtest", "warnings"))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("method", ["reml", "dl"])
@pytest.mark.parametrize("knha", [False, True])
def test_pool_homogeneous_gives_zero_tau2(method, knha):
    y = np.array([0.30, 0.3001, 0.2999, 0.30, 0.3002])
    se = np.array([0.10, 0.12, 0.08, 0.15, 0.11])
    got = pool_effects(y, se, method=method, knapp_hartung=knha).to_dict()
    assert got["tau2"] == 0 and got["i2"] == 0
    assert all(v is not None for v in got.values())
    assert got["q"] < 0.01 and got["q_p"] > 0.99
    # tau2 = 0: prediction interval = confidence interval
    assert got["pi_low"] == pytest.approx(got["ci_low"]) and got["pi_high"] == pytest.approx(got["ci_high"])
    w = 1 / se ** 2
    assert got["estimate"] == pytest.approx(np.sum(w * y) / np.sum(w))


@pytest.mark.filterwarnings("error")
def test_pool_identical_estimates_with_knapp_hartung_stays_finite():
    got = pool_effects([0.5, 0.5, 0.5], [0.1, 0.2, 0.3], knapp_hartung=True).to_dict()
    assert got["tau2"] == 0 and got["se"] == 0 and got["p"] == 0
    json.dumps(got, allow_nan=False)


def test_pool_two_studies_closed_form():
    """k = 2 with equal SEs: REML = DL = sum((y - ybar)^2) - v, everything in closed form."""
    y, se = [0.0, 1.0], [0.1, 0.1]
    for method in ("reml", "dl"):
        r = pool_effects(y, se, labels=["A", "B"], method=method)
        assert r.tau2 == pytest.approx(0.49)
        assert r.estimate == pytest.approx(0.5)
        assert r.se == pytest.approx(0.5)  # sqrt((0.49 + 0.01) / 2)
        assert r.ci_high == pytest.approx(0.5 + stats.norm.ppf(0.975) * 0.5)
        assert r.pi_high == pytest.approx(0.5 + stats.norm.ppf(0.975) * math.sqrt(0.25 + 0.49))
        assert r.i2 == pytest.approx(98.0)
        assert r.q == pytest.approx(50.0)
        assert r.studies["weight"].tolist() == pytest.approx([50.0, 50.0])
    kh = pool_effects(y, se, method="reml", knapp_hartung=True)
    assert kh.se == pytest.approx(0.5)  # s2w = 1 here
    t1 = stats.t.ppf(0.975, 1)
    assert kh.ci_low == pytest.approx(0.5 - t1 * 0.5)
    assert kh.pi_low == pytest.approx(0.5 - t1 * math.sqrt(0.25 + 0.49))
    assert kh.p == pytest.approx(2 * stats.t.sf(1.0, 1))


@pytest.mark.parametrize("seed", range(6))
def test_reml_tau2_maximises_restricted_likelihood(seed):
    """Independent check of the Fisher scoring: a bounded optimiser on the REML likelihood."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 25))
    v = rng.uniform(0.005, 0.3, k)
    y = rng.normal(0, math.sqrt(rng.uniform(0, 0.2)), k) + rng.normal(0, np.sqrt(v))
    got = pool_effects(y, np.sqrt(v), method="reml").tau2
    best = optimize.minimize_scalar(lambda t: -reml_loglik(t, y, v), bounds=(0, 10),
                                    method="bounded", options={"xatol": 1e-12})
    want = best.x if reml_loglik(best.x, y, v) > reml_loglik(0, y, v) else 0.0
    # metafor stops Fisher scoring once a step changes tau2 by less than 1e-5
    assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("estimates, ses, message", [
    ([0.2], [0.1], "at least 2 studies"),
    ([], [], "at least 2 studies"),
    ([0.2, 0.3], [0.1, 0.0], "infinite weight"),  # SE 0 and tau2 = 0: metafor stops too
    ([0.2, 0.3], [0.1, -0.2], "positive"),
    ([0.2, 0.3], [0.1, None], "positive"),
    ([0.2, 0.3], [0.1, float("nan")], "positive"),
    ([0.2, "x"], [0.1, 0.1], "estimate"),
    ([0.2, 0.3, 0.4], [0.1, 0.1], "standard errors"),
])
def test_pool_bad_input(estimates, ses, message):
    with pytest.raises(InputError, match=message):
        pool_effects(estimates, ses)


def test_pool_bad_method_and_labels():
    with pytest.raises(InputError, match="method"):
        pool_effects([0.1, 0.2], [0.1, 0.1], method="pm")
    with pytest.raises(InputError, match="label"):
        pool_effects([0.1, 0.2], [0.1, 0.1], labels=["only one"])
    with pytest.raises(InputError, match="B"):
        pool_effects([0.1, 0.2], [0.1, 0.0], labels=["A", "B"])


# ---------------------------------------------------------------------------------------------
# Stage 1 and the two-stage IPD meta-analysis
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def multistudy():
    return pd.read_csv(DATA / "multistudy_public.csv")


@pytest.fixture(scope="module")
def multistudy_expected():
    return json.loads((EXPECTED / "multistudy_public_meta.json").read_text())


@pytest.fixture(scope="module")
def multistudy_result(multistudy):
    return ipd_meta_analysis(multistudy)


def test_stage1_matches_lme4(multistudy_result, multistudy_expected):
    got = multistudy_result.to_dict()["stage1"]
    want = multistudy_expected["stage1"]
    assert list(got) == sorted(want)
    for study, w in want.items():
        g = got[study]
        assert g["n_patients"] == w["n_patients"], study
        assert g["n_observations"] == w["n_observations"], study
        for direction in DIRECTIONS:
            tol = 0.01 * w[direction]["se"]
            assert abs(g[direction]["estimate"] - w[direction]["estimate"]) <= tol, (study, direction)
            assert abs(g[direction]["se"] - w[direction]["se"]) <= tol, (study, direction)


@pytest.mark.parametrize("variant", VARIANTS)
def test_ipd_pooled_matches_metafor(multistudy_result, multistudy_expected, variant):
    method, knha = VARIANTS[variant]
    pooled = pool_stage1(multistudy_result.stage1, method=method, knapp_hartung=knha)
    assert set(pooled) == set(DIRECTIONS)
    for direction in DIRECTIONS:
        assert_pool_matches(pooled[direction].to_dict(),
                            multistudy_expected["pooled"][direction][variant],
                            f"{direction} {variant}")


@pytest.mark.parametrize("variant", ["reml_knapp_hartung", "dl"])
def test_ipd_meta_analysis_method_options(multistudy, multistudy_expected, variant):
    method, knha = VARIANTS[variant]
    result = ipd_meta_analysis(multistudy, method=method, knapp_hartung=knha)
    for direction in DIRECTIONS:
        assert result.pooled[direction].method == method
        assert_pool_matches(result.pooled[direction].to_dict(),
                            multistudy_expected["pooled"][direction][variant], variant)


def test_ipd_result_shapes(multistudy_result):
    assert isinstance(multistudy_result, IPDMetaResult)
    stage1 = multistudy_result.stage1
    assert list(stage1.columns) == ["study", "direction", "estimate", "se", "n_patients",
                                    "n_observations", "converged", "singular", "warnings"]
    assert len(stage1) == 8 * 2
    assert stage1["study"].tolist() == sorted(stage1["study"].tolist())
    got = multistudy_result.to_dict()
    json.dumps(got, allow_nan=False)
    assert set(got) == {"stage1", "pooled", "excluded_studies"} and got["excluded_studies"] == []
    for entry in got["stage1"].values():
        assert entry["converged"] is True and entry["singular"] is False and entry["warnings"] == []
        assert set(entry["alliance_to_symptoms"]) == {"estimate", "se", "converged", "singular", "warnings"}
    assert set(got["pooled"]) == set(DIRECTIONS)
    assert got["pooled"]["alliance_to_symptoms"]["k"] == 8
    assert [s["label"] for s in got["pooled"]["alliance_to_symptoms"]["studies"]] == sorted(got["stage1"])


def test_stage1_does_not_depend_on_row_order(multistudy):
    study = multistudy[multistudy["study"] == "S03"]
    shuffled = study.sample(frac=1, random_state=11)
    a = lagged_within_effects(study)
    b = lagged_within_effects(shuffled)
    assert a["n_observations"] == b["n_observations"]
    for direction in DIRECTIONS:
        assert b[direction]["estimate"] == pytest.approx(a[direction]["estimate"], abs=1e-7)
        assert b[direction]["se"] == pytest.approx(a[direction]["se"], abs=1e-7)


def test_stage1_custom_column_names(multistudy, multistudy_expected):
    study = multistudy[multistudy["study"] == "S01"].rename(columns={
        "patient": "client", "session": "visit", "alliance": "wai", "symptoms": "oq"})
    got = lagged_within_effects(study, patient="client", session="visit", alliance="wai",
                                symptoms="oq")
    want = multistudy_expected["stage1"]["S01"]
    assert got["n_observations"] == want["n_observations"]
    assert got["alliance_to_symptoms"]["estimate"] == pytest.approx(
        want["alliance_to_symptoms"]["estimate"], abs=0.01 * want["alliance_to_symptoms"]["se"])


def test_session_gap_gives_no_lag():
    frame = pd.DataFrame({
        "patient": ["A", "A", "A", "A", "B", "B", "B"],
        "session": [1, 2, 4, 5, 3, 1, 2],  # A misses session 3; B is not in session order
        "alliance": [5.0, 6.0, 4.0, 5.5, 3.0, 4.0, 6.5],
        "symptoms": [2.0, 1.5, 1.8, 1.0, 2.5, 2.2, 2.0],
    })
    x = prepare_lagged(frame)
    assert x["patient"].tolist() == ["A", "A", "A", "A", "B", "B", "B"]
    assert x["session"].tolist() == [1, 2, 4, 5, 1, 2, 3]
    has_lag = x["aw_l"].notna().tolist()
    assert has_lag == [False, True, False, True, False, True, True]
    # the lag is the deviation of the session just before
    assert x.loc[1, "aw_l"] == pytest.approx(x.loc[0, "aw"])
    assert x.loc[3, "sw_l"] == pytest.approx(x.loc[2, "sw"])
    assert x.loc[6, "aw_l"] == pytest.approx(x.loc[5, "aw"])
    # z-scores use the sample SD over all rows; patient means use all that patient's rows
    z = (frame["alliance"] - frame["alliance"].mean()) / frame["alliance"].std(ddof=1)
    assert sorted(x["az"]) == pytest.approx(sorted(z))
    assert x.loc[0, "ab"] == pytest.approx(x.loc[x["patient"] == "A", "az"].mean())
    np.testing.assert_allclose(x["aw"] + x["ab"], x["az"])


def test_session_gap_not_bridged_in_model_rows():
    """Patients whose sessions are all two apart contribute no lagged observations."""
    rng = np.random.default_rng(5)
    rows = []
    for p in range(12):
        sessions = [1, 3, 5, 7] if p < 4 else [1, 2, 3, 4]
        for s in sessions:
            rows.append((f"P{p}", s, rng.normal(5, 1), rng.normal(2, 0.5)))
    frame = pd.DataFrame(rows, columns=["patient", "session", "alliance", "symptoms"])
    got = lagged_within_effects(frame)
    assert got["n_patients"] == 8
    assert got["n_observations"] == 8 * 3


def test_interaction_adds_cross_level_terms(multistudy):
    study = multistudy[multistudy["study"] == "S02"]
    plain = lagged_within_effects(study)
    with_ix = lagged_within_effects(study, interaction=True)
    for direction in DIRECTIONS:
        ix = with_ix[direction + "_interaction"]
        assert math.isfinite(ix["estimate"]) and ix["se"] > 0
        assert with_ix[direction]["estimate"] != plain[direction]["estimate"]
    assert with_ix["n_observations"] == plain["n_observations"]

    import mixedlm
    y = prepare_lagged(study)
    y = y[y["aw_l"].notna()]
    fit = mixedlm.lmer("sz ~ aw_l + sw_l + ab + ab:aw_l + (1 | patient)", y, REML=True)
    tidy = fit.tidy().set_index("term")
    assert with_ix["alliance_to_symptoms_interaction"]["estimate"] == pytest.approx(
        tidy.loc["ab:aw_l", "estimate"])
    assert with_ix["alliance_to_symptoms_interaction"]["se"] == pytest.approx(
        tidy.loc["ab:aw_l", "std.error"])


def test_ipd_interaction_pools_interaction_directions(multistudy):
    two = multistudy[multistudy["study"].isin(["S01", "S02", "S03"])]
    result = ipd_meta_analysis(two, interaction=True)
    assert set(result.pooled) == {"alliance_to_symptoms", "symptoms_to_alliance",
                                  "alliance_to_symptoms_interaction",
                                  "symptoms_to_alliance_interaction"}
    assert len(result.stage1) == 3 * 4
    json.dumps(result.to_dict(), allow_nan=False)


def test_progress_called_once_per_study(multistudy):
    calls = []
    subset = multistudy[multistudy["study"].isin(["S05", "S02", "S07"])]
    ipd_meta_analysis(subset, progress=lambda i, n, label: calls.append((i, n, label)))
    assert calls == [(1, 3, "S02"), (2, 3, "S05"), (3, 3, "S07")]


def test_study_of_two_patients_is_fitted_as_lme4_fits_it(multistudy):
    """lme4 fits a study of 2 patients (tests/r/ipd_small_study.R); it must not abort the analysis,
    and its degenerate fit is reported in stage 1."""
    expected = json.loads((EXPECTED / "ipd_two_patient_study.json").read_text())
    small = multistudy[multistudy["patient"].isin(["S1-P0000", "S1-P0001"])]
    frame = pd.concat([multistudy[multistudy["study"].isin(["S02", "S03"])], small])
    result = ipd_meta_analysis(frame)
    entry = result.to_dict()["stage1"]["S01"]
    assert entry["n_patients"] == 2 and entry["n_observations"] == expected["n_observations"]
    for direction in DIRECTIONS:
        got, exp = entry[direction], expected[direction]
        assert abs(got["estimate"] - exp["estimate"]) < 0.01 * exp["se"]
        assert got["se"] == pytest.approx(exp["se"], rel=0.01)
        assert got["singular"] == exp["singular"]
        assert got["converged"] is False and any("Hessian" in w for w in got["warnings"])
    assert entry["converged"] is False
    assert result.pooled["alliance_to_symptoms"].k == 3


def test_study_that_cannot_be_fitted_is_left_out_with_its_reason(multistudy):
    one = multistudy[multistudy["patient"] == "S1-P0000"]
    frame = pd.concat([multistudy[multistudy["study"].isin(["S02", "S03"])], one])
    result = ipd_meta_analysis(frame)
    assert set(result.excluded_studies) == {"S01"} and "too few patients" in result.excluded_studies["S01"]
    assert result.pooled["alliance_to_symptoms"].k == 2
    assert result.to_dict()["excluded_studies"][0]["study"] == "S01"
    with pytest.raises(InputError, match="S01.*too few patients"):
        ipd_meta_analysis(pd.concat([multistudy[multistudy["study"] == "S02"], one]))


def test_exclude_study_by_name(multistudy):
    subset = multistudy[multistudy["study"].isin(["S01", "S02", "S03"])]
    result = ipd_meta_analysis(subset, exclude=["S02"])
    assert sorted(result.stage1["study"].unique()) == ["S01", "S03"]
    assert "user" in result.excluded_studies["S02"]
    with pytest.raises(InputError, match="no study S09"):
        ipd_meta_analysis(subset, exclude=["S09"])


def test_study_without_consecutive_sessions_names_the_study(multistudy):
    gappy = multistudy[(multistudy["study"] == "S01") & (multistudy["session"] % 2 == 1)]
    frame = pd.concat([multistudy[multistudy["study"] == "S02"], gappy])
    with pytest.raises(InputError, match="S01.*consecutive"):
        ipd_meta_analysis(frame)  # S01 left out, one study is left to pool


def test_ipd_bad_input(multistudy):
    with pytest.raises(InputError, match="at least 2 studies"):
        ipd_meta_analysis(multistudy[multistudy["study"] == "S01"])
    with pytest.raises(InputError, match="'site'"):
        ipd_meta_analysis(multistudy, study="site")
    with pytest.raises(InputError, match="'wai'"):
        ipd_meta_analysis(multistudy, alliance="wai")
    with pytest.raises(InputError, match="method"):
        ipd_meta_analysis(multistudy, method="fe")
    broken = multistudy[multistudy["study"].isin(["S01", "S02"])].copy()
    broken.loc[broken["study"] == "S01", "alliance"] = np.nan
    with pytest.raises(InputError, match="S01.*alliance"):
        ipd_meta_analysis(broken)
    constant = multistudy[multistudy["study"].isin(["S01", "S02"])].copy()
    constant.loc[constant["study"] == "S02", "symptoms"] = 2.0
    with pytest.raises(InputError, match="S02.*symptoms"):
        ipd_meta_analysis(constant)


def test_core_meta_does_not_import_streamlit():
    code = "import sys, core.stats.meta; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HERE.parent)


def test_reml_falls_back_to_direct_maximisation(bcg, monkeypatch):
    """If Fisher scoring has not converged (metafor would stop with an error), the REML
    likelihood is maximised directly and gives the same tau2."""
    import core.stats.meta
    data, expected = bcg
    monkeypatch.setattr(core.stats.meta, "_FISHER_MAXITER", 1)
    got = pool_effects(data["estimate"], data["se"], method="reml")
    assert got.tau2 == pytest.approx(expected["reml"]["tau2"], rel=1e-4)


def test_blank_cell_leaves_out_only_the_rows_that_need_it(multistudy):
    """A missing alliance score removes that session and the next one's lag from the models,
    not the study (lme4's na.omit on the stage-1 variables)."""
    two = multistudy[multistudy["study"].isin(["S01", "S02"])].copy()
    full = ipd_meta_analysis(two).to_dict()["stage1"]["S01"]["n_observations"]
    row = two.index[(two["study"] == "S01") & (two["session"] == 3)][0]
    two.loc[row, "alliance"] = np.nan
    result = ipd_meta_analysis(two).to_dict()["stage1"]["S01"]
    assert result["n_observations"] == full - 2  # session 3 (no aw) and session 4 (no lag)
