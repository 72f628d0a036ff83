"""`python -m core analyze` end to end, as the independent checks run it: the command line on each
reference file, its JSON report against lme4/lmerTest's results (tests/expected/, made by
../shared/reference/tools/reference.R), with the tolerances of issue 3."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent
CASES = {
    "paperlike_public": ("paperlike_public.csv", ["--patient", "patient", "--session", "session", "--symptoms",
                                                  "symptoms", "--alliance", "alliance", "--therapist", "therapist"]),
    "multistudy_public_ladder": ("multistudy_public.csv", ["--patient", "patient", "--session", "session",
                                                           "--symptoms", "symptoms", "--alliance", "alliance",
                                                           "--therapist", "therapist"]),
    "sleepstudy": ("sleepstudy.csv", ["--patient", "Subject", "--session", "Days", "--symptoms", "Reaction"]),
}
VAR_KEYS = {
    "patient:(Intercept):NA": "patient_intercept",
    "patient:time:NA": "patient_slope",
    "patient:(Intercept):time": "patient_intercept_slope_cov",
    "therapist:(Intercept):NA": "therapist_intercept",
    "Residual:NA:NA": "residual",
}


@pytest.fixture(scope="module", params=sorted(CASES))
def reports(request, tmp_path_factory):
    name = request.param
    filename, flags = CASES[name]
    out = tmp_path_factory.mktemp(name) / "report.json"
    run = subprocess.run([sys.executable, "-m", "core", "analyze", str(HERE / "data" / filename), *flags,
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    expected = json.loads((HERE / "expected" / f"{name}.json").read_text())
    return name, json.loads(out.read_text()), expected


def test_counts_and_models_present(reports):
    name, ours, ref = reports
    assert ours["n_observations"] == ref["n_observations"] and ours["n_patients"] == ref["n_patients"]
    assert ours["excluded_rows"] == []
    assert set(ref["models"]) <= set(ours["models"])


def test_fixed_effects_variances_and_logliks(reports):
    name, ours, ref = reports
    for key, model in ref["models"].items():
        got = ours["models"][key]
        for term, r in model["reml"]["fixed"].items():
            g = got["fixed"][term]
            assert abs(g["estimate"] - r["estimate"]) <= 0.01 * r["se"], (name, key, term)
            assert abs(g["se"] - r["se"]) <= 0.01 * r["se"], (name, key, term)
            assert abs(g["df"] - r["df"]) <= 0.02 * r["df"], (name, key, term)
        for var, value in model["reml"]["variance"].items():
            assert got["variance"][VAR_KEYS[var]] == pytest.approx(value, rel=1e-3, abs=1e-6), (name, key, var)
        assert got["loglik_reml"] >= model["reml"]["loglik"] - 0.001, (name, key)
        assert got["loglik_ml"] >= model["ml"]["loglik"] - 0.001, (name, key)
        assert got["singular"] == model["reml"]["singular"], (name, key)


def test_iccs_and_likelihood_ratio_tests(reports):
    name, ours, ref = reports
    assert ours["icc"]["patient"] == pytest.approx(ref["icc"]["patient"], abs=0.005)
    if "icc3" in ref:
        assert ours["icc"]["therapist"] == pytest.approx(ref["icc3"]["therapist"], abs=0.005)
    for comparison, r in ref["comparisons"].items():
        g = ours["comparisons"][comparison]
        assert g["chisq"] == pytest.approx(r["chisq"], abs=0.01) and g["df"] == r["df"], (name, comparison)
