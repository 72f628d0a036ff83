"""The early-warning signal (core/clinical/signal.py, signal_bounds.py): lme4's numbers and the
statistics straight from the matrices (tests/r/signal_reference.R), the patient-level bounds, the
must-show targets on simulated clinics with planted deteriorating patients, prospective statuses,
the patients left out of the expected course, the fallback, and a model free of sentences."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from signal_simulator import flag_rates, simulate_clinic

from core.clinical import signal as S
from core.clinical import signal_bounds as B
from core.i18n import language

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXPECTED = ROOT / "tests" / "expected"


# ------------------------------------------------------------------ same numbers as lme4

@pytest.mark.parametrize("case,reference,intake,higher_is_worse,rc", [
    ("signal_clinic", "signal_clinic", None, True, None),                  # OQ-45 totals, intake = first session
    ("signal_clinic", "signal_clinic_left_out", None, True, 14.0),         # deteriorated patients left out
    ("signal_wellbeing_intake", "signal_wellbeing_intake", "intake", False, None),  # lower is worse, intake column
])
def test_expected_course_and_statistics_match_lme4_and_the_matrices(case, reference, intake, higher_is_worse, rc):
    data = pd.read_csv(DATA / f"{case}.csv", dtype={"patient": str})
    ref = json.loads((EXPECTED / f"{reference}.json").read_text())
    for rule in B.METHODS:
        settings = S.SignalSettings(higher_is_worse=higher_is_worse, intake=intake, reliable_change=rc, rule=rule)
        model = S.fit_signal_model(data, settings)
        assert model.local
        assert model.intake_mean == pytest.approx(ref["intake_mean"], rel=1e-12)
        assert [f.up_to for f in model.fits] == [f["up_to"] for f in ref["fits"]]
        assert [f.kind for f in model.fits] == [f["kind"] for f in ref["fits"]]
        assert [f.n_left_out for f in model.fits] == [f["n_left_out"] for f in ref["fits"]]
        for ours, theirs in zip(model.fits, ref["fits"]):
            assert ours.fixed == pytest.approx(np.array(theirs["fixed"]), rel=1e-5, abs=1e-5)
            assert ours.residual == pytest.approx(theirs["residual"], rel=1e-4)
            scale = max(abs(np.array(theirs["patient_cov"])).max(), 1e-3)
            assert np.abs(ours.patient_cov - np.array(theirs["patient_cov"])).max() < 1e-3 * scale
            assert ours.fixed_cov == pytest.approx(np.array(theirs["fixed_cov"]), rel=1e-3, abs=1e-8)
        rows = S.session_signal(data, model, settings)
        expected = pd.DataFrame(ref["rows"]).astype({"patient": str})
        merged = expected.merge(rows, on=["patient", "session"], suffixes=("_r", ""))
        assert len(merged) == len(expected) > 500
        np.testing.assert_allclose(merged["expected"], merged["expected_r"], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(merged["sd"], merged["sd_r"], rtol=1e-4)
        # the statistic from running sums = from each patient's matrices (R, solve(V))
        z_ref = np.maximum(merged["z_now"], merged["z_slope"]) if rule == "trend" else merged["z_session"]
        np.testing.assert_allclose(merged["z"], z_ref, atol=2e-4)
        if rule == "session":  # the bound on this session's score: expected ± bound · sd
            sign = 1 if higher_is_worse else -1
            worse_edge = merged["upper"] if higher_is_worse else merged["lower"]
            np.testing.assert_allclose(worse_edge, merged["expected"] + sign * merged["bound"] * merged["sd"], rtol=1e-9)


# ------------------------------------------------------------------ the statistics

def _matrices(p, intake_c, sessions, y):
    lt = np.log(sessions)
    U = np.stack([np.ones_like(lt), lt], 1)
    Z = np.stack([np.ones_like(lt), np.full_like(lt, intake_c), lt, intake_c * lt], 1)
    V = U @ p["G"] @ U.T + p["s2"] * np.eye(len(lt))
    return U, Z, V, y - Z @ p["beta"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_trend_statistic_is_the_blup_standardised(seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((2, 2))
    p = {"beta": np.array([70.0, 0.8, -9.0, -0.1]), "G": A @ A.T * 20, "s2": 40.0,
         "Vb": np.diag([1.0, 0.5, 0.8, 0.1]) * 0.3}
    sessions = np.array([2.0, 3.0, 5.0, 6.0, 9.0])  # with gaps
    y = rng.normal(60, 10, len(sessions))
    x = 4.0
    U, Z, V, r = _matrices(p, x, sessions, y)
    blup = p["G"] @ U.T @ np.linalg.solve(V, r)
    lt = np.log(sessions)
    out = B.statistics("trend", p, [x], [lt[-1]], [len(lt)], [lt.sum()], [(lt ** 2).sum()], [y.sum()],
                       [(y * lt).sum()], [y[-1]])
    assert out["estimate"][0] == pytest.approx(np.array([1, lt[-1]]) @ blup, rel=1e-10)
    assert out["slope"][0] == pytest.approx(blup[1], rel=1e-10)
    for part, h in zip(out["T_parts"], (p["G"] @ np.array([1, lt[-1]]), p["G"][:, 1])):
        a = U @ h
        w = np.linalg.solve(V, a)
        c = Z.T @ w
        assert part[0] == pytest.approx((w @ r) / np.sqrt(a @ w + c @ p["Vb"] @ c), rel=1e-10)
    # the bound on this session's score: the residual at which the statistic reaches c
    c = 1.7
    r_star = B.score_bound(out["parts"], c)[0]
    again = B.statistics("trend", p, [x], [lt[-1]], [len(lt)], [lt.sum()], [(lt ** 2).sum()],
                         [y[:-1].sum() + Z[-1] @ p["beta"] + r_star],
                         [(y[:-1] * lt[:-1]).sum() + (Z[-1] @ p["beta"] + r_star) * lt[-1]],
                         [Z[-1] @ p["beta"] + r_star])
    assert again["T"][0] == pytest.approx(c, abs=1e-9)


def test_without_a_random_slope_the_trend_is_the_weighted_mean_residual():
    p = {"beta": np.array([50.0, 0.5, -5.0, 0.0]), "G": np.array([[30.0, 0.0], [0.0, 0.0]]), "s2": 20.0,
         "Vb": np.zeros((4, 4))}
    sessions, y = np.array([2.0, 3.0, 4.0]), np.array([52.0, 47.0, 49.0])
    U, Z, V, r = _matrices(p, 0.0, sessions, y)
    one = np.ones(3)
    w = np.linalg.solve(V, one)
    lt = np.log(sessions)
    out = B.statistics("trend", p, [0.0], [lt[-1]], [3], [lt.sum()], [(lt ** 2).sum()], [y.sum()],
                       [(y * lt).sum()], [y[-1]])
    assert out["T"][0] == pytest.approx((w @ r) / np.sqrt(w @ one), rel=1e-10)


def test_bounds_are_deterministic_and_hold_the_rate_under_the_model():
    p = {"beta": np.array([80.0, 0.7, -10.0, -0.1]), "G": np.array([[120.0, -20.0], [-20.0, 40.0]]), "s2": 42.0,
         "Vb": np.eye(4) * 0.05}
    red, amber = B.bounds("trend", p, 2, 8)
    assert (red, amber) == B.bounds("trend", p, 2, 8)  # a fixed seed: the same bounds every time
    assert 1.5 < amber < red < 2.6
    # an independent simulation (another seed) crosses the bounds at the stated rates
    m = B.simulate_max("trend", p, 2, 8, draws=40000, seed=99)
    assert (m > red).mean() == pytest.approx(0.10, abs=0.006)
    assert (m > amber).mean() == pytest.approx(0.20, abs=0.008)
    # a longer horizon (more chances) needs a higher bound; a single session needs the plain quantile
    assert B.bounds("trend", p, 2, 16)[0] > red
    assert B.bounds("session", p, 2, 2, rates=(0.1, 0.2))[0] == pytest.approx(1.2816, abs=0.03)


# ------------------------------------------------------------------ the targets

@pytest.mark.parametrize("kwargs,higher_is_worse,rc", [
    ({"seed": 1}, True, 14),
    ({"seed": 2, "scale": "oq_item"}, True, 14 / 45),
    ({"seed": 3, "scale": "wellbeing"}, False, 14 / 30),   # lower is worse
    ({"seed": 4, "shape": "linear"}, True, 14),           # straight-line courses: the model's shape is wrong
])
def test_planted_deteriorating_patients_are_flagged_and_typical_ones_rarely(kwargs, higher_is_worse, rc):
    data = simulate_clinic(n_patients=400, **kwargs)
    result = S.compute_signal(data, S.SignalSettings(higher_is_worse=higher_is_worse, reliable_change=rc))
    assert result.model.local
    r = flag_rates(data, result.sessions)
    assert r["n_det"] >= 30
    assert r["det"] >= 0.80, r              # deteriorating patients with 6 sessions, flagged by session 6
    assert r["typical"] <= 0.13, r          # on the expected course, ever flagged in 8 sessions (1 in 10; 2 SE)
    assert r["quartile_gap"] <= 0.12, r     # the intake quartiles alike


def test_per_session_bounds_would_flag_a_third_of_typical_patients():
    # the old rule (the one-sided 90% bound at every session) on the same clinic: the 28.5%
    data = simulate_clinic(n_patients=400, seed=1, share_deteriorating=0.0)
    result = S.compute_signal(data, S.SignalSettings(reliable_change=14, rule="session"))
    s = result.sessions
    old = s.assign(status=np.where(s["deviation"] / s["sd"] > 1.2816, "not_on_track", "on_track"))
    assert flag_rates(data, old)["typical"] > 0.2
    assert flag_rates(data, s)["typical"] <= 0.13


def test_statuses_survive_cutting_later_sessions():
    data = simulate_clinic(n_patients=400, seed=11)
    settings = S.SignalSettings(reliable_change=14)
    full = S.compute_signal(data, settings).sessions
    rng = np.random.default_rng(11)
    keep = data["patient"].map({p: int(rng.integers(2, 11)) for p in data["patient"].unique()})
    cut = S.compute_signal(data[data["session"] <= keep], settings).sessions
    both = cut.merge(full, on=["patient", "session"], suffixes=("_cut", ""))
    assert len(both) == len(cut)
    early = both["course_session"] <= 3
    assert (both.loc[early, "status_cut"] == both.loc[early, "status"]).mean() >= 0.99
    assert (both["status_cut"] == both["status"]).mean() >= 0.98
    # one patient's later sessions cut: that patient's earlier statuses are exactly the same
    pid = full.loc[full["status"].eq("not_on_track"), "patient"].iloc[0]
    shorter = data[(data["patient"] != pid) | (data["session"] <= 4)]
    again = S.compute_signal(shorter, settings).sessions
    mine = again[again["patient"] == pid].merge(full, on=["patient", "session"], suffixes=("_cut", ""))
    assert len(mine) == 4 and (mine["status_cut"] == mine["status"]).all()
    np.testing.assert_allclose(mine["expected_cut"], mine["expected"], equal_nan=True)


def test_later_scores_of_anyone_do_not_change_earlier_statuses():
    # The time split: adding sessions 7+ to every patient changes no status at sessions 1-6.
    data = simulate_clinic(n_patients=200, seed=12)
    settings = S.SignalSettings(reliable_change=14)
    early = S.compute_signal(data[data["session"] <= 6], settings).sessions
    full = S.compute_signal(data, settings).sessions
    both = early.merge(full, on=["patient", "session"], suffixes=("_early", ""))
    assert (both["status_early"] == both["status"]).all()
    np.testing.assert_allclose(both["z_early"], both["z"], equal_nan=True, rtol=1e-9)
    np.testing.assert_allclose(both["bound_early"], both["bound"], equal_nan=True)


# ------------------------------------------------------------------ patients left out of the expected course

def test_patients_left_out_need_two_bad_sessions_running():
    codes = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    change = np.array([15, 3, 16, 8, 15, 20, 15, 15.0])   # patient 0: one bad day, then another; 1: two running
    left = S.left_out_rows(codes, change, 1.0, 14.0)
    assert left.tolist() == [False, False, False, False, True, True, False, True]
    assert not S.left_out_rows(codes, -change, 1.0, 14.0).any()       # better, not worse
    assert S.left_out_rows(codes, -change, -1.0, 14.0).tolist() == left.tolist()  # lower is worse: mirrored
    assert not S.left_out_rows(codes, change, 1.0, None).any()


def test_leaving_out_deteriorating_patients_keeps_the_expected_course_theirs():
    data = simulate_clinic(n_patients=400, seed=5, share_deteriorating=0.2)
    kept = S.fit_signal_model(data, S.SignalSettings(reliable_change=14))
    every = S.fit_signal_model(data, S.SignalSettings())
    assert max(f.n_left_out for f in kept.fits) > 40 and max(f.n_left_out for f in every.fits) == 0
    # with them the course is worse and wider at session 8: deteriorating patients hide in it
    e_kept, sd_kept = kept.predict(80.0, 8)
    e_all, sd_all = every.predict(80.0, 8)
    assert e_all > e_kept + 2 and sd_all > sd_kept * 1.1
    assert "reliable deterioration" in S.definition(kept, S.SignalSettings(reliable_change=14))


# ------------------------------------------------------------------ statuses and rules

def _course(pid, scores, start=1):
    return pd.DataFrame({"patient": pid, "session": range(start, start + len(scores)), "symptoms": scores})


def test_reliable_change_fallback_with_few_courses():
    data = pd.concat([_course("worse", [80, 94, 90]), _course("half", [80, 87, 86]),
                      _course("better", [80, 60]), _course("one", [70])], ignore_index=True)
    settings = S.SignalSettings(reliable_change=14)
    result = S.compute_signal(data, settings)
    assert result.model.method == "reliable_change"
    assert "completed courses" in result.definition and "Jacobson & Truax" in result.definition
    got = result.sessions.set_index(["patient", "session"])["status"]
    assert got[("worse", 2)] == "not_on_track"   # +14: a reliable deterioration
    assert got[("worse", 3)] == "at_risk"        # +10 >= 7 (half the RC)
    assert got[("half", 2)] == "at_risk" and got[("half", 3)] == "on_track"
    assert got[("better", 2)] == "on_track"
    assert got[("one", 1)] == "unknown" and got[("worse", 1)] == "unknown"
    bounds = result.sessions.set_index(["patient", "session"]).loc[("worse", 2)]
    assert (bounds["expected"], bounds["lower"], bounds["upper"]) == (80, 66, 94)
    table = S.status_table(S.courses(data), result.model, settings)
    assert table["status"].tolist() == result.sessions["status"].tolist()
    # lower is worse: the same rule mirrored
    mirrored = data.assign(symptoms=200 - data["symptoms"])
    flipped = S.compute_signal(mirrored, S.SignalSettings(reliable_change=14, higher_is_worse=False)).sessions
    assert flipped["status"].tolist() == result.sessions["status"].tolist()
    # without a reliable-change value there is nothing to fall back on: unknown, and said so
    bare = S.compute_signal(data, S.SignalSettings()).sessions
    assert set(bare["status"]) == {"unknown"}
    assert "no reliable-change value" in bare["reason"].iloc[1]


@pytest.mark.parametrize("rule", B.METHODS)
def test_lower_is_worse_mirrors_the_model_statuses(rule):
    data = simulate_clinic(n_patients=200, seed=21)
    up = S.compute_signal(data, S.SignalSettings(reliable_change=14, rule=rule)).sessions
    down = S.compute_signal(data.assign(symptoms=-data["symptoms"]),
                            S.SignalSettings(higher_is_worse=False, reliable_change=14, rule=rule)).sessions
    assert (up["status"] == down["status"]).all()
    assert (up["status"] == "not_on_track").sum() > 10
    np.testing.assert_allclose(-down["upper"], up["lower"], rtol=1e-6)
    np.testing.assert_allclose(down["z"], up["z"], rtol=1e-6)


@pytest.mark.parametrize("rule", B.METHODS)
def test_status_follows_the_statistic_and_the_score_bound(rule):
    data = simulate_clinic(n_patients=200, seed=22)
    s = S.compute_signal(data, S.SignalSettings(reliable_change=14, rule=rule)).sessions
    known = s[s["status"] != "unknown"]
    assert ((known["z"] > known["bound"]) == (known["status"] == "not_on_track")).all()
    amber = (known["z"] > known["bound_at_risk"]) & (known["z"] <= known["bound"])
    assert (amber == (known["status"] == "at_risk")).all()
    assert (known["bound_at_risk"] < known["bound"]).all()
    # the score bound: this session's score beyond it (given the earlier ones) ⇔ not on track
    beyond = known["observed"] > known["upper"]
    assert (beyond == (known["status"] == "not_on_track")).mean() > 0.999
    red = known[known["status"] == "not_on_track"].iloc[0]
    assert "not-on-track bound" in red["reason"]
    first = s[s["course_session"] == 1]
    assert (first["status"] == "unknown").all() and first["reason"].str.contains("starting point").all()
    now = S.patient_signal(s).set_index("patient")["status"]
    assert (now == s.groupby("patient")["status"].last()).all()


def test_missing_scores_and_sessions_beyond_the_data_are_unknown():
    data = simulate_clinic(n_patients=120, seed=23, n_sessions=6)
    gap = data.index[(data["patient"] == "P0003") & (data["session"] == 3)]
    data.loc[gap, "symptoms"] = np.nan
    late = _course("LATE", [80] + [70] * 14)  # one patient reaches session 15; the clinic's data end at 6
    s = S.compute_signal(pd.concat([data, late], ignore_index=True),
                         S.SignalSettings(reliable_change=14)).sessions.set_index(["patient", "session"])
    assert s.loc[("P0003", 3), "status"] == "unknown" and "no score" in s.loc[("P0003", 3), "reason"]
    assert s.loc[("P0003", 4), "status"] != "unknown"   # the gap is skipped, not fatal
    assert s.loc[("LATE", 9), "status"] != "unknown"     # up to 1.5 x the last refit session (6)
    assert s.loc[("LATE", 10), "status"] == "unknown" and "too little data" in s.loc[("LATE", 10), "reason"]


def test_intake_column_gives_the_first_session_a_status():
    data = pd.read_csv(DATA / "signal_wellbeing_intake.csv", dtype={"patient": str})
    s = S.compute_signal(data, S.SignalSettings(higher_is_worse=False, intake="intake")).sessions
    assert (s.loc[s["course_session"] == 1, "status"] != "unknown").all()
    assert "intake score (column 'intake')" in S.definition(S.fit_signal_model(data, S.SignalSettings(intake="intake")),
                                                              S.SignalSettings(intake="intake"))
    text = data.assign(intake=data["intake"].map(lambda v: f"{v:.2f}".replace(".", ",")))  # decimal commas, as text
    s2 = S.compute_signal(text, S.SignalSettings(higher_is_worse=False, intake="intake")).sessions
    assert (s2["status"] == s["status"]).all()


def test_fit_sessions_grid():
    assert S.fit_sessions(2, 14) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert S.fit_sessions(1, 40)[-6:] == [12, 15, 18, 22, 27, 33]


# ------------------------------------------------------------------ the definition, the calibration

def test_definition_says_the_rates_in_words():
    assert S.share_in_words(0.1) == "1 in 10" and S.share_in_words(0.2) == "1 in 5"
    assert S.share_in_words(0.15) == "15 in 100"
    text = S.calibration_sentence(S.SignalSettings(horizon=12, rate_not_on_track=0.05))
    assert text.startswith("1 in 20 patients who are doing as expected will be flagged not on track at some point "
                           "in their first 12 sessions")
    with language("es"):
        assert "1 de cada 10" in S.calibration_sentence(S.SignalSettings())


def test_calibration_by_simulation_reaches_the_target():
    data = simulate_clinic(n_patients=400, seed=41, share_deteriorating=0.0)
    settings = S.SignalSettings(reliable_change=14)
    model = S.fit_signal_model(data, settings)
    cal = S.calibration(data, model, settings)
    assert cal == S.calibration(data, model, settings)             # the same numbers every time
    assert cal["target_ever_flagged"] == 0.10 and cal["horizon"] == 8
    assert 0.06 <= cal["achieved_ever_flagged"] <= 0.11
    assert cal["at_risk"]["achieved_ever_flagged"] <= 0.21 and \
        cal["at_risk"]["achieved_ever_flagged"] > cal["achieved_ever_flagged"]
    assert cal["over_the_course"]["not_on_track"] >= cal["achieved_ever_flagged"]
    assert "target at most 10%" in S.calibration_summary(cal)
    # a stricter rate moves the bounds out and halves the flags
    strict = S.SignalSettings(reliable_change=14, rate_not_on_track=0.05, rate_at_risk=0.1)
    tight = S.calibration(data, S.with_bounds(model, strict), strict)
    assert tight["achieved_ever_flagged"] < 0.7 * cal["achieved_ever_flagged"]
    fallback = S.calibration(data.iloc[:20], S.fit_signal_model(data.iloc[:20], settings), settings)
    assert fallback["achieved_ever_flagged"] is None and "not calibrated" in fallback["note"]


def test_the_model_holds_no_sentence_in_any_language():
    small = pd.concat([_course(f"P{i}", [80, 90, 85]) for i in range(5)], ignore_index=True)
    with language("en"):
        model = S.fit_signal_model(small, S.SignalSettings())
    assert model.method == "reliable_change"
    with language("es"):
        assert model.reason.startswith("Tratamientos completos")  # translated when read, not when fitted
    with language("en"):
        assert model.reason.startswith("This clinic's completed courses")
    import pickle

    assert pickle.loads(pickle.dumps(model)).reason == model.reason


@pytest.mark.parametrize("rule", ["trend", "session"])
@pytest.mark.parametrize("item_scores", [False, True])
def test_reasons_written_for_a_few_patients_read_as_in_the_whole_table(rule, item_scores):
    """Issue 28: the clinic-wide table without reasons (``reasons=False``: the same numbers and
    statuses, every reason "") and one patient's rows with ``decimals`` of the whole table give the
    sentences the whole table gives, in both languages; mean item scores with a patient whose scores
    are all whole numbers included (the whole table's decimals, not hers)."""
    data = simulate_clinic(n_patients=150, seed=11)
    if item_scores:
        data["symptoms"] = data["symptoms"] / 45
        whole = data["patient"] == data["patient"].iloc[0]
        data.loc[whole, "symptoms"] = data.loc[whole, "symptoms"].round()
    settings = S.SignalSettings(reliable_change=14 / 45 if item_scores else 14, rule=rule)
    model = S.fit_signal_model(data, settings)
    for lang in ("en", "es"):
        with language(lang):
            full = S.session_signal(data, model, settings)
            bare = S.session_signal(data, model, settings, reasons=False)
            numbers = [c for c in full.columns if c != "reason"]
            pd.testing.assert_frame_equal(bare[numbers], full[numbers])
            assert (bare["reason"] == "").all() and (full["reason"] != "").all()
            decimals = S.decimals_for(bare["observed"])
            for patient in data["patient"].drop_duplicates().iloc[:12]:
                one = S.session_signal(data[data["patient"] == patient], model, settings, decimals=decimals)
                expected = full[full["patient"] == patient]
                assert one["reason"].tolist() == expected["reason"].tolist()
                assert one["status"].tolist() == expected["status"].tolist()
