"""Kenward–Roger (core/stats/kenward_roger.py, ``fit --df kr``) against pbkrtest 0.5.2 / lmerTest 3.1-3.

R references: tests/r/kr_confint_cases.R on the cases of tests/r/fit_cases.json (random intercept,
random slope, two terms on one factor, therapist level, nested (1 | therapist/patient), a random
factor slope for therapists, sleepstudy, BtheB), fitted in R with BOBYQA's rhoend = 1e-12 so that
both sides stand at the same optimum (measured.md: default lme4 stops up to 1e-4 short). The issue
asks for df within 1%; the computation is pbkrtest's, so the tolerances are those of two optimisers
at the same optimum: df and SE within 1e-4 relative, p within 1e-3 relative."""
import json
from pathlib import Path

import numpy as np
import pytest

from core.stats.formula import fit_formula, random_effects_matrix
from core.stats.kenward_roger import _dense, _grouped, _relative_factor, kenward_roger
from tests.test_fit_formula import CASES, validated

HERE = Path(__file__).parent
KR_CASES = sorted(p.stem for p in (HERE / "expected" / "kr").glob("*.json"))


@pytest.fixture(scope="module", params=KR_CASES)
def kr_fit(request):
    name = request.param
    case = CASES[name]
    v = validated(case)
    fit = fit_formula(v.data, case["formula"], cell_reasons=v.cell_reasons, df_method="kr")
    return name, fit, json.loads((HERE / "expected" / "kr" / f"{name}.json").read_text())


def test_kenward_roger_df_se_and_p_as_pbkrtest(kr_fit):
    name, fit, exp = kr_fit
    assert fit.df_method == "kr" and fit.to_dict()["df_method"] == "kr"
    rep = fit.to_dict()["fixed"]
    assert list(rep) == list(exp["kenward_roger"])
    for term, e in exp["kenward_roger"].items():
        g = rep[term]
        assert g["df"] == pytest.approx(e["df"], rel=1e-4), (name, term)
        assert g["se"] == pytest.approx(e["se"], rel=1e-4), (name, term)
        assert g["p"] == pytest.approx(e["p"], rel=1e-3, abs=1e-12), (name, term)
        # simr's test (pbkrtest::KRmodcomp of the one coefficient) has the same p and df
        assert g["p"] == pytest.approx(e["F_p"], rel=1e-3, abs=1e-12), (name, term)
        assert g["df"] == pytest.approx(e["F_ddf"], rel=1e-4), (name, term)


def test_kenward_roger_differs_from_satterthwaite_where_pbkrtest_does(kr_fit):
    """Not a relabelled Satterthwaite: where lmerTest's two df differ by more than 1%, ours do too."""
    name, fit, exp = kr_fit
    kr = np.array([e["df"] for e in exp["kenward_roger"].values()])
    satt = np.asarray(exp["satterthwaite_df"], float)
    ours = fit.fixed["df"].to_numpy()
    differs = np.abs(kr / satt - 1) > 0.01
    for k in np.flatnonzero(differs):
        assert abs(ours[k] / kr[k] - 1) < 1e-4 and abs(ours[k] / satt[k] - 1) > 0.005, (name, k)


@pytest.mark.parametrize("name", ["messy_random_slope", "sleepstudy_slope", "messy_hybrid"])
def test_grouped_and_dense_computations_agree(name):
    """One grouping factor runs per group (the fast path); the dense path gives the same pieces."""
    case = CASES[name]
    v = validated(case)
    fit = fit_formula(v.data, case["formula"])
    Z, structure = random_effects_matrix(fit.design)
    X = fit.design.X
    theta, sigma = np.asarray(fit.reml.theta), float(fit.reml.sigma)
    q, G = structure[0]
    S = (Z.T @ Z).tocsr()
    Sx = np.asarray(Z.T @ X)
    blocks = np.stack([S[g * q:(g + 1) * q, g * q:(g + 1) * q].toarray() for g in range(G)])
    a = _grouped(blocks, Sx.reshape(G, q, X.shape[1]), X.T @ X, len(X), q, G, _relative_factor(theta, q), sigma)
    b = _dense(S, Sx, X.T @ X, len(X), structure, theta, sigma)
    assert np.allclose(a[0], b[0], rtol=1e-9)
    for Pa, Pb in zip(a[1], b[1]):
        assert np.allclose(Pa, Pb, rtol=1e-8, atol=1e-14)
    assert np.allclose(a[3], b[3], rtol=1e-8)
    kr = kenward_roger(Z, X, structure, theta, sigma)
    assert np.all(kr.df > 0) and np.allclose(kr.vcov, fit.fixed_cov, rtol=1e-6)
