"""Intervals as lme4's confint (core/stats/intervals.py, ``fit --confint``) against lme4 1.1-31.

R references: tests/r/kr_confint_cases.R (``confint(method = "profile")`` with the tabulated profile, and
``confint(method = "boot", nsim = 1000, boot.type = "perc")``), models fitted with BOBYQA's
rhoend = 1e-12. Tolerances: profile ends within 1e-3 (the issue's), except where lme4 itself warns "bad
spline fit … falling back to linear interpolation": there lme4's end is a straight line between two
tabulated points of a curved profile (messy_random_slope's correlation: 0.5708 where the profile crosses
1.96 at 0.5626), and the check is on ζ at lme4's tabulated points (within 2e-3, every parameter).
Bootstrap ends within Monte Carlo error of two independent runs of B = 1,000: the SD of a 2.5% or
97.5% percentile is about 0.085 SE (√(α(1−α)/B) / φ(1.96)), of a difference 0.12 SE; allowed 0.5 SE,
with SE = (R's interval width) / 3.92."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.stats.formula import fit_formula
from core.stats.intervals import confint, parameter_names, percentile_interval, profile_zetas
from core.stats.power_run import LocalRunner
from tests.test_fit_formula import CASES, validated

HERE = Path(__file__).parent
EXPECTED = {p.stem: json.loads(p.read_text()) for p in (HERE / "expected" / "kr").glob("*.json")}
PROFILED = sorted(n for n, e in EXPECTED.items() if "profile" in e)
BOOTED = sorted(n for n, e in EXPECTED.items() if "boot" in e)


def fitted(name):
    case = CASES[name]
    v = validated(case)
    return fit_formula(v.data, case["formula"], cell_reasons=v.cell_reasons)


def spline_fallbacks(exp) -> set[str]:
    """The parameters (confint row names) whose profile lme4 interpolated linearly."""
    order = [r["parameter"] for r in exp["profile"]]
    out = set()
    for w in exp.get("profile_warnings", []):
        if w.startswith("bad spline fit for "):
            par = w.split("bad spline fit for ")[1].split(":")[0]
            out.add(order[int(par[4:]) - 1] if par.startswith(".sig") and par[4:].isdigit() else par)
    return out


@pytest.mark.parametrize("name", PROFILED)
def test_profile_intervals_as_lme4(name):
    exp = EXPECTED[name]
    fit = fitted(name)
    got = confint(fit, "profile")
    assert got.method == "profile"
    assert [r["parameter"] for r in got.rows] == [r["parameter"] for r in exp["profile"]]
    linear = spline_fallbacks(exp)
    for g, e in zip(got.rows, exp["profile"]):
        if g["parameter"] in linear:
            continue
        assert g["low"] == pytest.approx(e["low"], abs=1e-3), (name, g, e)
        assert g["high"] == pytest.approx(e["high"], abs=1e-3), (name, g, e)


def test_profile_zeta_on_lme4s_tabulated_profile():
    """Where lme4's ends come from linear interpolation, its tabulated ζ is the check: ours agrees at
    lme4's points, so the interval ends differ by lme4's interpolation only."""
    name = "messy_random_slope"
    exp = EXPECTED[name]
    assert spline_fallbacks(exp) == {"cor_time.(Intercept)|patient"}
    names, zetas, hat, facts = profile_zetas(fitted(name))
    k = facts["k"]
    tables = exp["profile_table"]
    checked = 0
    for table in tables.values():
        par = table["par"]
        w = int(par[4:]) - 1 if par.startswith(".sig") and par[4:].isdigit() else k if par == ".sigma" \
            else k + 1 + names[k + 1:].index(par)
        values, zs = np.asarray(table["value"], float), np.asarray(table["zeta"], float)
        pick = [i for i in range(len(zs)) if 1.0 <= abs(zs[i]) <= 2.5][:3]
        for i in pick:
            zetas[w].reset()
            assert zetas[w](values[i]) == pytest.approx(zs[i], abs=2e-3), (par, values[i])
            checked += 1
    assert checked >= 10


def test_wald_intervals_as_lme4():
    fit = fitted("messy_hybrid")
    got = confint(fit, "wald")
    names = parameter_names(fit.design)
    assert [r["parameter"] for r in got.rows] == names == ["sd_(Intercept)|patient", "sigma", "(Intercept)",
                                                            "alliance_between", "alliance_within"]
    assert got.rows[0]["low"] is None and got.rows[1]["high"] is None
    se = math.sqrt(fit.fixed_cov[2, 2])  # Satterthwaite's fit: lme4's vcov
    assert got.rows[4]["low"] == pytest.approx(fit.fixed["estimate"].iloc[2] - 1.959964 * se, rel=1e-6)


def test_percentile_interval_is_boots():
    """boot:::norm.inter: (R+1)α = 25.025 → between the 25th and 26th order statistics on the normal scale;
    with two values, the extremes (R: 1 and 2)."""
    low, high = percentile_interval(np.arange(1.0, 1001.0))
    assert low == pytest.approx(25.02540507, abs=1e-8) and high == pytest.approx(975.97459493, abs=1e-8)  # R: boot:::norm.inter(1:1000, c(.025, .975))
    assert percentile_interval(np.array([1.0, 2.0, np.nan])) == (1.0, 2.0)


def test_bootstrap_same_seed_same_interval_whatever_the_workers():
    fit = fitted("sleepstudy_slope")
    one = confint(fit, "boot", nboot=16, seed=7, runner=LocalRunner(1))
    two = confint(fit, "boot", nboot=16, seed=7, runner=LocalRunner(2))
    assert one.rows == two.rows and one.nboot == 16 and one.n_failed == 0
    other = confint(fit, "boot", nboot=16, seed=8, runner=LocalRunner(1))
    assert other.rows != one.rows


@pytest.mark.slow
@pytest.mark.parametrize("name", BOOTED)
def test_bootstrap_intervals_within_monte_carlo_error_of_lme4(name):
    exp = EXPECTED[name]
    got = confint(fitted(name), "boot", nboot=1000, seed=2027)
    assert [r["parameter"] for r in got.rows] == [r["parameter"] for r in exp["boot"]]
    for g, e in zip(got.rows, exp["boot"]):
        se = (e["high"] - e["low"]) / 3.92
        assert abs(g["low"] - e["low"]) <= 0.5 * se, (name, g, e)
        assert abs(g["high"] - e["high"]) <= 0.5 * se, (name, g, e)
