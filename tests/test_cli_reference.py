"""`python -m core analyze` end to end, as the independent checks run it: the command line on each
reference file, its JSON report against lme4/lmerTest's results (tests/expected/, made by
../shared/reference/tools/reference.R), with the tolerances of issue 3."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reference_cases import LADDER_CASES as CASES
from tests.reference_cases import VAR_KEYS, cli_flags

HERE = Path(__file__).parent
ROOT = HERE.parent
@pytest.fixture(scope="module", params=sorted(CASES))
def reports(request, tmp_path_factory):
    name = request.param
    filename, mapping = CASES[name]
    out = tmp_path_factory.mktemp(name) / "report.json"
    run = subprocess.run([sys.executable, "-m", "core", "analyze", str(HERE / "data" / filename), *cli_flags(mapping),
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
