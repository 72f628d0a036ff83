"""Clinical indices: Jacobson-Truax status, ruptures and repair, caseload order, sentences."""
import numpy as np
import pandas as pd
import pytest

from core.clinical.indices import (
    caseload,
    describe_session,
    expected_line,
    flag_ruptures,
    jacobson_truax_status,
    patient_sessions,
    reliable_change_from_reliability,
    therapist_icc_sentence,
    therapist_trajectories,
)


@pytest.mark.parametrize("first,last,expected", [
    (80, 60, "recovered"),      # -20 >= 14 and crosses 63.5 from above
    (120, 100, "improved"),     # reliable, still clinical
    (50, 35, "improved"),       # reliable, but started non-clinical: cannot recover
    (80, 70, "unchanged"),      # -10 < 14
    (80, 94, "deteriorated"),   # +14 exactly: reliable
    (80, 93, "unchanged"),
])
def test_jacobson_truax_oq45(first, last, expected):
    assert jacobson_truax_status(first, last, reliable_change=14, cutoff=63.5) == expected


def test_jacobson_truax_higher_is_better_mirrors():
    assert jacobson_truax_status(3.0, 5.0, reliable_change=1.0, cutoff=4.0, higher_is_worse=False) == "recovered"
    assert jacobson_truax_status(5.0, 3.5, reliable_change=1.0, higher_is_worse=False) == "deteriorated"


def test_reliable_change_from_reliability_formula():
    # Jacobson & Truax (1991): 1.96 * sqrt(2) * SD * sqrt(1 - r)
    assert reliable_change_from_reliability(10.0, 0.84) == pytest.approx(1.96 * np.sqrt(2) * 10 * 0.4)
    with pytest.raises(ValueError):
        reliable_change_from_reliability(10.0, 1.0)


def _patient(alliance, symptoms=None, pid="P1", sessions=None):
    sessions = sessions or list(range(1, len(alliance) + 1))
    symptoms = symptoms or [50.0] * len(alliance)
    return pd.DataFrame({"patient": pid, "session": sessions, "alliance": alliance, "symptoms": symptoms})


def test_rupture_and_repair():
    # mean 5.0; SD of [5.5, 5.5, 3.5, 5.5] = 1.0 -> limit 4.0; session 3 is a rupture, session 4 repairs it
    s = flag_ruptures(patient_sessions(_patient([5.5, 5.5, 3.5, 5.5]), ["alliance", "symptoms"]))
    assert s["rupture"].tolist() == [False, False, True, False]
    assert bool(s.loc[s["session"] == 3, "repaired"].iloc[0]) is True


def test_rupture_without_next_session_is_unknown_and_gap_is_not_next():
    s = flag_ruptures(patient_sessions(_patient([5.5, 5.5, 5.5, 3.5]), ["alliance"]))
    assert s["rupture"].iloc[-1] and pd.isna(s["repaired"].iloc[-1])
    g = flag_ruptures(patient_sessions(_patient([5.5, 3.5, 5.5, 5.5], sessions=[1, 2, 4, 5]), ["alliance"]))
    assert g["rupture"].iloc[1] and pd.isna(g["repaired"].iloc[1])  # session 3 missed: repair unknown


def test_threshold_changes_flags():
    data = patient_sessions(_patient([5.5, 4.8, 4.0, 5.5, 5.7]), ["alliance"])
    assert flag_ruptures(data, 0.3)["rupture"].sum() == 2 and flag_ruptures(data, 1.5)["rupture"].sum() == 1


def test_describe_session_sentence():
    row = pd.Series({"session": 3, "alliance_within": -0.8, "symptoms_within": 0.1})
    assert describe_session(row, ["alliance", "symptoms"]) == (
        "In session 3 alliance was 0.80 points below this patient's usual level; "
        "symptoms were 0.10 points above theirs.")


def test_caseload_sorted_by_need():
    parts = [
        _patient([5, 5, 5, 5], [70, 80, 85, 90], pid="worse"),          # +20: deteriorated
        _patient([5, 5, 5, 5], [80, 70, 60, 50], pid="recovered"),      # -30 across cut-off
        _patient([5, 5, 5, 5], [80, 78, 76, 75], pid="stuck"),          # no reliable improvement by 4
        _patient([5.5, 5.5, 3.5, 5.5], [40, 40, 40, 40], pid="rupture"),  # rupture repaired; not clinical
    ]
    data = pd.concat(parts, ignore_index=True)
    sessions = flag_ruptures(patient_sessions(data, ["alliance", "symptoms"]))
    table = caseload(sessions, reliable_change=14, cutoff=63.5, improvement_by=4)
    assert table["patient"].tolist()[:2] == ["worse", "stuck"]
    status = dict(zip(table["patient"], table["status"]))
    assert status == {"worse": "deteriorated", "recovered": "recovered", "stuck": "unchanged", "rupture": "unchanged"}
    row = table.set_index("patient").loc["rupture"]
    assert row["ruptures"] == 1 and row["unrepaired"] == 0
    assert "reliable deterioration" in table.set_index("patient").loc["worse", "attention"]


def test_expected_line_band_uses_covariance():
    fixed = pd.DataFrame({"term": ["intercept", "time"], "estimate": [10.0, -1.0]})
    cov = np.array([[1.0, -0.5], [-0.5, 0.5]])
    line = expected_line(fixed, cov, [0, 2])
    assert line["expected"].tolist() == [10.0, 8.0]
    se2 = np.sqrt(1.0 + 4 * 0.5 + 2 * 2 * -0.5)
    assert line["high"].iloc[1] - 8.0 == pytest.approx(1.96 * se2)


def test_therapist_trajectories_ci():
    data = pd.DataFrame({"therapist": ["A"] * 4, "session": [1, 1, 1, 1], "symptoms": [1.0, 2.0, 3.0, 4.0]})
    t = therapist_trajectories(data, "symptoms")
    from scipy import stats
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert t["high"].iloc[0] - 2.5 == pytest.approx(half)


def test_therapist_trajectories_no_ci_below_3_patients():
    """Issue 24: with 2 patients t(1) = 12.7 spans the scale many times over: no interval, the mean and n."""
    data = pd.DataFrame({"therapist": ["A"] * 5, "session": [1, 1, 1, 2, 2], "symptoms": [10.0, 90.0, 50.0, 5.0, 170.0]})
    t = therapist_trajectories(data, "symptoms").set_index("session")
    assert t.loc[1, "n"] == 3 and np.isfinite(t.loc[1, "low"]) and np.isfinite(t.loc[1, "high"])
    assert t.loc[2, "n"] == 2 and t.loc[2, "mean"] == 87.5 and np.isnan(t.loc[2, "low"]) and np.isnan(t.loc[2, "high"])


def test_icc_sentence():
    assert "0.4%" in therapist_icc_sentence(0.004) and "almost none" in therapist_icc_sentence(0.004)
    assert "cannot be estimated" in therapist_icc_sentence(None)


def test_find_patients_exact_first_then_prefix_then_contains():
    from core.clinical.indices import find_patients

    ids = ["A10", "A1", "B-A1", "a100", "C2"]
    assert find_patients(ids, "a1") == (["A1", "A10", "a100", "B-A1"], 4)
    assert find_patients(ids, " c2 ") == (["C2"], 1)
    assert find_patients(ids, "zz") == ([], 0)
    assert find_patients(ids, "", limit=2) == (["A10", "A1"], 5)
    assert find_patients(ids, "a", limit=2) == (["A10", "A1"], 4)


def test_ruptures_so_far_never_use_later_sessions():
    from core.clinical.indices import flag_ruptures_so_far

    full = flag_ruptures_so_far(_patient([5.5, 5.6, 4.0, 5.5, 5.5, 5.4]))
    # session 3: mean so far 5.033, SD so far 0.896 -> limit 4.137; 4.0 is a rupture, 5.5 repairs it
    row = full.set_index("session").loc[3]
    assert row["alliance_mean_so_far"] == pytest.approx(np.mean([5.5, 5.6, 4.0]))
    assert row["alliance_sd_so_far"] == pytest.approx(np.std([5.5, 5.6, 4.0], ddof=1))
    assert bool(row["rupture"]) and bool(row["repaired"])
    assert full["rupture"].tolist() == [False, False, True, False, False, False]
    # cutting later sessions leaves every earlier flag and limit as it was
    for k in range(1, 6):
        part = flag_ruptures_so_far(_patient([5.5, 5.6, 4.0, 5.5, 5.5, 5.4][:k]))
        assert part["rupture"].tolist() == full["rupture"].tolist()[:k]
        np.testing.assert_allclose(part["rupture_limit"], full["rupture_limit"].iloc[:k], equal_nan=True)
    # at the last session the so-far values are the full-course ones
    last = flag_ruptures(patient_sessions(_patient([5.5, 5.6, 4.0, 5.5, 5.5, 5.4]), ["alliance"])).iloc[-1]
    assert full["rupture_limit"].iloc[-1] == pytest.approx(last["rupture_limit"])
    # a rupture in the last session has no repair yet; a missing alliance score is never a rupture
    gap = flag_ruptures_so_far(_patient([5.5, 5.6, 5.4, np.nan, 3.0]))
    assert not gap["rupture"].iloc[3] and gap["rupture"].iloc[4] and pd.isna(gap["repaired"].iloc[4])


def test_no_reliable_improvement_clears_once_the_patient_improved():
    from core.clinical.indices import flag_ruptures_so_far

    data = pd.concat([
        _patient([5] * 6, [80, 78, 79, 78, 60, 44], pid="late_improver"),   # -36 by session 6
        _patient([5] * 6, [80, 78, 79, 78, 77, 76], pid="stuck"),
        _patient([5] * 3, [80, 79, 78], pid="early"),                       # has not reached session 4
    ], ignore_index=True)
    table = caseload(flag_ruptures_so_far(data), reliable_change=14, cutoff=63.5, improvement_by=4).set_index("patient")
    assert not table.loc["late_improver", "no_reliable_improvement"]
    assert table.loc["stuck", "no_reliable_improvement"]
    assert not table.loc["early", "no_reliable_improvement"]
    assert table.index[0] == "stuck" and table.index[-1] == "late_improver"


def test_caseload_orders_by_signal_then_rupture_then_the_rest():
    from core.clinical.indices import flag_ruptures_so_far, therapist_table

    data = pd.concat([
        _patient([5, 5, 5, 5], [70, 80, 85, 90], pid="worse").assign(therapist="A"),       # deteriorated, not red
        _patient([5, 5, 5, 5], [80, 70, 60, 50], pid="red").assign(therapist="A"),
        _patient([5, 5, 5, 5], [80, 70, 60, 50], pid="yellow").assign(therapist="B"),
        _patient([5.5, 5.6, 5.4, 3.0], [40, 40, 40, 40], pid="rupture").assign(therapist="B"),
        _patient([5, 5, 5, 5], [40, 38, 30, 20], pid="fine").assign(therapist="B"),
    ], ignore_index=True)
    signal = pd.DataFrame({"patient": ["worse", "red", "yellow", "rupture", "fine"],
                           "status": ["on_track", "not_on_track", "at_risk", "on_track", "on_track"],
                           "session": [4, 4, 4, 4, 4], "reason": ["", "score 50 is 20 points worse", "a bit worse", "", ""]})
    table = caseload(flag_ruptures_so_far(data), reliable_change=14, cutoff=63.5, signal=signal)
    assert table["patient"].tolist()[:4] == ["red", "yellow", "rupture", "worse"]
    assert list(table.columns[:4]) == ["patient", "therapist", "signal", "attention"]
    reasons = table.set_index("patient")["attention"]
    assert reasons["red"].startswith("not on track at session 4: score 50 is 20 points worse")
    assert "rupture in session 4 not repaired" in reasons["rupture"]
    assert "reliable deterioration" in reasons["worse"] and reasons["fine"] == ""
    per = therapist_table(table).set_index("therapist")
    assert per.loc["A", "patients"] == 2 and per.loc["A", "not on track now"] == 1
    assert per.loc["A", "not on track now (%)"] == 50.0 and per.loc["A", "deteriorated"] == 1
    assert per.loc["B", "unrepaired rupture"] == 1 and per.loc["B", "unrepaired rupture (%)"] == pytest.approx(33.3)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_caseload_reasons_of_a_page_are_those_of_the_whole_table(lang):
    """Issue 28: the overview's cached caseload has no reasons in words (``reasons=False``); the page
    writes those of the rows it shows (``caseload_reasons``), and they read exactly as the whole
    table's (the scores' decimals of every session, the language), patients shuffled."""
    from core.clinical.indices import caseload_reasons, flag_ruptures_so_far, patient_sessions
    from core.clinical.signal import SignalSettings, fit_signal_model, patient_signal, session_signal
    from core.demo import demo_clinic
    from core.i18n import language

    data = demo_clinic(n_patients=120, seed=8).sample(frac=1, random_state=2)
    sig = SignalSettings(reliable_change=14.0, cutoff=63.5)
    model = fit_signal_model(data, sig)
    with language(lang):
        signal = session_signal(data, model, sig, reasons=False)
        ruptures = flag_ruptures_so_far(patient_sessions(data, ["alliance", "symptoms"]))
        whole = caseload(ruptures, reliable_change=14.0, cutoff=63.5, improvement_by=5,
                         signal=patient_signal(session_signal(data, model, sig)))
        bare = caseload(ruptures, reliable_change=14.0, cutoff=63.5, improvement_by=5,
                        signal=patient_signal(signal, summaries=False), reasons=False)
        assert (bare["attention"] == "").all()
        pd.testing.assert_frame_equal(bare.drop(columns="attention"), whole.drop(columns="attention"))
        page = bare.iloc[7:40]
        written = caseload_reasons(page, signal, improvement_by=5)
        assert written["attention"].tolist() == whole["attention"].iloc[7:40].tolist()
        assert written["attention"].str.len().gt(0).sum() > 10
        assert caseload_reasons(bare, signal, improvement_by=5)["attention"].tolist() == whole["attention"].tolist()


def test_sorted_and_shuffled_rows_give_the_same_tables():
    """Issue 28: rows already in patient and session order are grouped as runs (no sort, no ID
    hashing); any other order is sorted once. The tables are the same either way."""
    from core.clinical.indices import flag_ruptures_so_far, patient_sessions
    from core.clinical.signal import SignalSettings, fit_signal_model, patient_signal, session_signal
    from core.demo import demo_clinic
    from core.stats.decomposition import dropout, patient_runs, sort_by_patient

    ordered = demo_clinic(n_patients=90, seed=12).sort_values(["patient", "session"]).reset_index(drop=True)
    shuffled = ordered.sample(frac=1, random_state=5)
    assert patient_runs(ordered) is not None and patient_runs(shuffled) is None
    again, runs = sort_by_patient(shuffled)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), ordered)
    assert runs.tolist() == pd.factorize(ordered["patient"])[0].tolist()
    sig = SignalSettings(reliable_change=14.0, cutoff=63.5)
    model = fit_signal_model(ordered, sig)
    tables = []
    for data in (ordered, shuffled):
        signal = session_signal(data, model, sig)
        ruptures = flag_ruptures_so_far(patient_sessions(data, ["alliance", "symptoms"]))
        tables.append((signal, patient_signal(signal), ruptures.reset_index(drop=True),
                       caseload(ruptures, reliable_change=14.0, cutoff=63.5, signal=patient_signal(signal)),
                       dropout(data)))
    for one, other in zip(*tables):
        if isinstance(one, dict):
            assert one == other
        else:
            pd.testing.assert_frame_equal(one, other)


def test_rows_without_a_patient_are_left_out_of_the_per_patient_tables():
    """As grouping by the patient ID did before rows were grouped as runs: a row without a patient
    belongs to no patient's caseload row or status (and does not break the tables)."""
    from core.clinical.indices import flag_ruptures_so_far
    from core.clinical.signal import patient_signal

    data = pd.DataFrame({"patient": ["a"] * 4 + [None] * 2 + ["b"] * 3, "session": [1, 2, 3, 4, 1, 2, 1, 2, 3],
                         "alliance": [5, 5, 3, 5, 4, 4, 5, 5, 5.0], "symptoms": [80, 70, 90, 95, 60, 60, 50, 40, 30.0],
                         "therapist": "T"})
    table = caseload(flag_ruptures_so_far(data), reliable_change=14, cutoff=63.5).set_index("patient")
    assert sorted(table.index) == ["a", "b"]
    assert table.loc["a", "sessions"] == 4 and table.loc["a", "ruptures"] == 1 and table.loc["b", "sessions"] == 3
    signal = pd.DataFrame({"patient": ["a", None, "b"], "session": [4, 2, 3],
                           "status": ["at_risk", "on_track", "on_track"], "reason": "", "observed": [95.0, 60, 30],
                           "expected": [80.0, 60, 40], "deviation": [15.0, 0, -10]})
    now = patient_signal(signal).set_index("patient")
    assert sorted(now.index) == ["a", "b"] and now.loc["a", "n_at_risk"] == 1
