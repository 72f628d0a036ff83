"""The model ladder against lme4 1.1-31 / lmerTest 3.1-3 (tests/expected/*.json, made by
shared/reference/tools/reference.R), with the tolerances the issue sets:
fixed effects within 1% of their SE, SEs within 1%, df within 2%, log-likelihoods no worse
than lme4's by more than 0.001, LRT chi-square within 0.01, ICCs within 0.005."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import ModelError
from core.intake.reading import read_table
from core.intake.validation import validate_table
from core.stats.decomposition import add_model_terms
from core.stats.models import (
    BuilderOptions,
    build_model,
    fit_custom_model,
    fit_ladder,
    fit_model,
    likelihood_ratio_test,
)
from tests.reference_cases import LADDER_CASES as CASES
from tests.reference_cases import VAR_KEYS

HERE = Path(__file__).parent
@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    name = request.param
    filename, mapping = CASES[name]
    validated = validate_table(read_table(HERE / "data" / filename), mapping)
    expected = json.loads((HERE / "expected" / f"{name}.json").read_text())
    return name, fit_ladder(validated.data), expected


def test_counts(case):
    _, ladder, expected = case
    assert ladder.n_observations == expected["n_observations"]
    assert ladder.n_patients == expected["n_patients"]
    assert set(ladder.models) == set(expected["models"])


def test_fixed_effects_reml(case):
    _, ladder, expected = case
    for key, ref in expected["models"].items():
        fixed = ladder.models[key].fixed.set_index("term")
        assert set(fixed.index) == set(ref["reml"]["fixed"]), key
        for term, r in ref["reml"]["fixed"].items():
            ours = fixed.loc[term]
            assert abs(ours["estimate"] - r["estimate"]) <= 0.01 * r["se"], (key, term)
            assert abs(ours["se"] / r["se"] - 1) <= 0.01, (key, term)
            assert abs(ours["df"] / r["df"] - 1) <= 0.02, (key, term)
            assert abs(ours["t"] - r["t"]) <= 0.01 * max(1, abs(r["t"])), (key, term)
            # p from t(df): compare on the log scale for tiny p-values
            assert np.isclose(np.log10(max(ours["p"], 1e-300)), np.log10(max(r["p"], 1e-300)), atol=0.02), (key, term)
            # 95% CI from the t distribution with Satterthwaite df (the contract's rule)
            half = ours["ci_high"] - ours["estimate"]
            from scipy import stats
            assert np.isclose(half, stats.t.ppf(0.975, ours["df"]) * ours["se"])


def test_loglik_and_variance(case):
    _, ladder, expected = case
    for key, ref in expected["models"].items():
        m = ladder.models[key]
        assert m.loglik_reml >= ref["reml"]["loglik"] - 0.001, key
        assert m.loglik_ml >= ref["ml"]["loglik"] - 0.001, key
        assert m.n_params_ml == ref["n_ml_params"], key
        for rkey, value in ref["reml"]["variance"].items():
            ours = m.variance[VAR_KEYS[rkey.replace("Subject", "patient")]]
            assert abs(ours - value) <= 1e-3 * max(1.0, abs(value)), (key, rkey)
        assert m.singular == bool(ref["reml"]["singular"]), key
        assert m.converged


def test_icc_and_comparisons(case):
    _, ladder, expected = case
    assert abs(ladder.icc["patient"] - expected["icc"]["patient"]) <= 0.005
    if "icc3" in expected:
        assert abs(ladder.icc["therapist"] - expected["icc3"]["therapist"]) <= 0.005
        assert abs(ladder.icc["patient_3level"] - expected["icc3"]["patient"]) <= 0.005
    for name, ref in expected["comparisons"].items():
        ours = ladder.comparisons[name]
        assert abs(ours.chisq - ref["chisq"]) <= 0.01, name
        assert ours.df == ref["df"], name
        assert abs(ours.p - ref["p"]) <= 1e-3 + 0.01 * ref["p"], name


def test_singular_fit_is_reported_in_words():
    validated = validate_table(read_table(HERE / "data" / "paperlike_public.csv"), CASES["paperlike_public"][1])
    ladder = fit_ladder(validated.data)
    m = ladder.models["unconditional_3level"]
    assert m.singular and any("Singular fit" in w for w in m.warnings)
    assert "two-level" in ladder.advice[0]


def test_singular_detection_does_not_depend_on_units():
    """Multiplying the outcome by 1000 changes no verdict (theta is relative to sigma)."""
    validated = validate_table(read_table(HERE / "data" / "paperlike_public.csv"), CASES["paperlike_public"][1])
    scaled = validated.data.assign(symptoms=validated.data["symptoms"] * 1000)
    a, b = fit_ladder(validated.data), fit_ladder(scaled)
    for key in a.models:
        assert a.models[key].singular == b.models[key].singular, key
        assert a.models[key].converged == b.models[key].converged, key


def _small(n_patients=10, sessions=4, seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        level = rng.normal()
        for s in range(1, sessions + 1):
            rows.append({"patient": f"P{i}", "therapist": f"T{i % 3}", "session": s,
                         "alliance": 5 + rng.normal(0, .5), "symptoms": 2 + level + rng.normal(0, .3)})
    return pd.DataFrame(rows)


def test_one_session_per_patient_gives_plain_message():
    data = _small(sessions=1)
    ladder = fit_ladder(data)
    assert not ladder.models
    assert "only one session" in ladder.errors["unconditional"]


def test_constant_outcome_gives_plain_message():
    data = _small().assign(symptoms=3.0)
    ladder = fit_ladder(data)
    assert "same value in every row" in ladder.errors["unconditional"]


def test_single_therapist_skips_three_level_model_with_reason():
    data = _small().assign(therapist="T1")
    ladder = fit_ladder(data)
    assert "unconditional_3level" not in ladder.models
    assert "two therapists" in ladder.errors["unconditional_3level"]
    assert ladder.icc["therapist"] is None
    assert "unconditional" in ladder.models


def test_two_patients_fit_with_a_warning_or_reason():
    data = _small(n_patients=2)
    ladder = fit_ladder(data)
    assert "unconditional" in ladder.models
    assert any("Few groups" in w for w in ladder.models["unconditional"].warnings)


def test_builder_reverse_direction_and_covariates():
    data = _small(n_patients=30)
    data["gender"] = np.where(data["patient"].str[-1].astype(int) % 2 == 0, "f", "m")
    options = BuilderOptions(direction="symptoms_to_alliance", detrend=True, covariates=("gender",),
                             random_slope_within=True, therapist_level=True)
    result = fit_custom_model(data, options)
    assert result.formula == "alliance ~ between + within + time + gender + (1 | therapist) + (within | patient)"
    assert set(result.fixed["term"]) == {"intercept", "between", "within", "time", "genderm"}
    assert dict(result.spec.labels)["genderm"] == "gender = m (vs f)"
    assert "patient_slope" in result.variance and "therapist_intercept" in result.variance


def test_random_slope_requires_fixed_term():
    with pytest.raises(ModelError):
        build_model("symptoms", "alliance", random_slope="time")


def test_lrt_uses_ml_likelihoods():
    validated = validate_table(read_table(HERE / "data" / "sleepstudy.csv"), CASES["sleepstudy"][1])
    ladder = fit_ladder(validated.data)
    c = likelihood_ratio_test(ladder.models["unconditional"], ladder.models["time"])
    assert c.chisq == pytest.approx(2 * (ladder.models["time"].loglik_ml - ladder.models["unconditional"].loglik_ml))
    assert c.df == 3


def test_random_effects_are_labelled_by_patient():
    """BLUPs are aligned with patient IDs: they track each patient's mean residual."""
    validated = validate_table(read_table(HERE / "data" / "paperlike_public.csv"), CASES["paperlike_public"][1])
    ladder = fit_ladder(validated.data)
    m = ladder.models["unconditional"]
    mean_dev = (validated.data.groupby("patient")["symptoms"].mean() - m.fixed["estimate"].iloc[0])
    merged = m.random_effects.set_index("patient").join(mean_dev.rename("dev"))
    assert merged["intercept"].corr(merged["dev"]) > 0.99


def test_reml_only_fit_matches_the_full_fit_and_refuses_a_likelihood_ratio_test():
    data = add_model_terms(validate_table(read_table(HERE / "data" / "paperlike_public.csv"),
                                          CASES["paperlike_public"][1]).data)
    spec = build_model("symptoms", None, therapist_level=True, key="unconditional_3level")
    full, quick = fit_model(data, spec), fit_model(data, spec, ml=False)
    assert quick.loglik_ml is None and quick.n_params_ml is None
    assert quick.variance == full.variance and quick.loglik_reml == full.loglik_reml
    pd.testing.assert_frame_equal(quick.fixed, full.fixed)
    with pytest.raises(ValueError, match="ML fit"):
        likelihood_ratio_test(quick, full)
