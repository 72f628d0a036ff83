"""Decomposition (core.stats.decomposition) on small examples computed by hand.

The example: patient a attends sessions 1, 2 and 4 (skips 3); patient b sessions 2 and 3.

    patient session alliance symptoms
    a       1       4        2
    a       2       5        1
    a       4       6        0
    b       2       3        3
    b       3       3        2

By hand: time = session − 1 (the first session in the data). Alliance patient means a = 5,
b = 3; the mean of the patient means is 4 (the mean of the 5 observations would be 4.2), so
between = +1 for a and −1 for b; within = −1, 0, +1 for a and 0, 0 for b; a's own SD is 1 (so
within in SD units is −1, 0, 1) and b's is 0 (no SD units: missing). Symptoms means a = 1,
b = 2.5, mean of means 1.75; b's SD = √0.5. Lag-1 by session: a's session 2 lags session 1;
a's session 4 has no lag (session 3 was not attended, the previous row is session 2); b's
session 2 has no lag (no session 1); b's session 3 lags session 2.
"""
import math

import numpy as np
import pandas as pd
import pytest

from core.stats.decomposition import (
    add_model_terms,
    code_time,
    decompose,
    dropout,
    lag_by_session,
    measure_correlations,
    person_mean_center,
    session_summary,
)

NAN = np.nan


@pytest.fixture
def data() -> pd.DataFrame:
    return pd.DataFrame({
        "patient": ["a", "a", "a", "b", "b"],
        "session": [1, 2, 4, 2, 3],
        "alliance": [4.0, 5.0, 6.0, 3.0, 3.0],
        "symptoms": [2.0, 1.0, 0.0, 3.0, 2.0],
    })


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=0, atol=1e-12, equal_nan=True)


def test_code_time(data):
    assert code_time(data["session"]).tolist() == [0, 1, 3, 1, 2]
    assert code_time(pd.Series([0, 5, 2])).tolist() == [0, 5, 2]
    assert code_time(pd.Series([3.0, 4.5])).tolist() == [0.0, 1.5]


def test_person_mean_center(data):
    p = person_mean_center(data, "alliance")
    assert p.columns.tolist() == ["alliance_mean", "alliance_between", "alliance_within",
                                  "alliance_sd", "alliance_within_sd"]
    close(p["alliance_mean"], [5, 5, 5, 3, 3])
    close(p["alliance_between"], [1, 1, 1, -1, -1])  # centred on the mean of patient means (4)
    close(p["alliance_within"], [-1, 0, 1, 0, 0])
    close(p["alliance_sd"], [1, 1, 1, 0, 0])
    close(p["alliance_within_sd"], [-1, 0, 1, NAN, NAN])  # no variation: no SD units

    s = person_mean_center(data, "symptoms")
    close(s["symptoms_between"], [-0.75, -0.75, -0.75, 0.75, 0.75])
    close(s["symptoms_within"], [1, 0, -1, 0.5, -0.5])
    close(s["symptoms_within_sd"], [1, 0, -1, 0.5 / math.sqrt(0.5), -0.5 / math.sqrt(0.5)])


def test_person_mean_center_single_score_and_missing_values():
    d = pd.DataFrame({"patient": ["a", "a", "a", "c"], "x": [1.0, NAN, 3.0, 10.0]})
    p = person_mean_center(d, "x")
    close(p["x_mean"], [2, 2, 2, 10])
    close(p["x_between"], [-4, -4, -4, 4])  # mean of patient means = 6
    close(p["x_within"], [-1, NAN, 1, 0])
    close(p["x_sd"], [math.sqrt(2), math.sqrt(2), math.sqrt(2), NAN])  # one score: no SD
    close(p["x_within_sd"], [-1 / math.sqrt(2), NAN, 1 / math.sqrt(2), NAN])


def test_lag_by_session_gap_gives_missing_lag(data):
    lags = lag_by_session(data, ["alliance", "symptoms"])
    assert lags.columns.tolist() == ["alliance_lag", "symptoms_lag"]
    close(lags["alliance_lag"], [NAN, 4, NAN, NAN, 3])  # a: session 4 has no session 3
    close(lags["symptoms_lag"], [NAN, 2, NAN, NAN, 3])


def test_lag_by_session_ignores_row_order_and_keeps_the_index(data):
    shuffled = data.iloc[[4, 2, 0, 3, 1]].set_axis([50, 40, 30, 20, 10])
    lags = lag_by_session(shuffled, ["alliance"], suffix="_prev")
    assert lags.index.tolist() == [50, 40, 30, 20, 10]
    close(lags["alliance_prev"], [3, NAN, NAN, NAN, 4])


def test_lag_by_session_does_not_cross_patients():
    d = pd.DataFrame({"patient": ["a", "b"], "session": [1, 2], "x": [1.0, 2.0]})
    close(lag_by_session(d, ["x"])["x_lag"], [NAN, NAN])


def test_add_model_terms(data):
    out = add_model_terms(data)
    close(out["time"], [0, 1, 3, 1, 2])
    close(out["between"], [1, 1, 1, -1, -1])
    close(out["within"], [-1, 0, 1, 0, 0])
    assert "between" not in add_model_terms(data.drop(columns="alliance")).columns
    assert "time" not in data.columns  # the input is not changed


def test_decompose(data):
    out = decompose(data, ["alliance", "symptoms"])
    assert len(out) == 5
    close(out["time"], [0, 1, 3, 1, 2])
    close(out["alliance_between"], [1, 1, 1, -1, -1])
    close(out["symptoms_within"], [1, 0, -1, 0.5, -0.5])
    close(out["alliance_lag"], [NAN, 4, NAN, NAN, 3])
    close(out["alliance_within_lag"], [NAN, -1, NAN, NAN, 0])
    close(out["symptoms_within_lag"], [NAN, 1, NAN, NAN, 0.5])


def test_decompose_with_repeated_index_labels(data):
    """Regression: joining on an index with repeated labels (as pd.concat leaves) multiplied rows."""
    stacked = pd.concat([data.iloc[:3], data.iloc[3:].reset_index(drop=True)])
    assert stacked.index.tolist() == [0, 1, 2, 0, 1]
    out = decompose(stacked, ["alliance", "symptoms"])
    assert len(out) == 5
    close(out["alliance_within"], [-1, 0, 1, 0, 0])
    close(out["alliance_lag"], [NAN, 4, NAN, NAN, 3])
    terms = add_model_terms(stacked)
    close(terms["between"], [1, 1, 1, -1, -1])


def test_session_summary(data):
    s = session_summary(data, ["alliance", "symptoms"])
    assert s.columns.tolist() == ["session", "measure", "n", "mean", "sd"]
    a = s[s["measure"] == "alliance"].set_index("session")
    assert a["n"].tolist() == [1, 2, 1, 1]
    close(a["mean"], [4, 4, 3, 6])
    close(a["sd"], [NAN, math.sqrt(2), NAN, NAN])  # session 2: 5 and 3, SD (ddof=1) = √2
    y = s[s["measure"] == "symptoms"].set_index("session")
    close(y["mean"], [2, 2, 2, 0])
    close(y.loc[2, "sd"], math.sqrt(2))


def test_session_summary_counts_only_present_values():
    d = pd.DataFrame({"session": [1, 1, 1], "x": [1.0, NAN, 3.0]})
    s = session_summary(d, ["x"])
    assert s["n"].tolist() == [2]
    close(s["mean"], [2])


def test_measure_correlations(data):
    r = measure_correlations(data, ["alliance", "symptoms"]).set_index("level")
    # Observations: Σdxdy = −5.6, Σdx² = 6.8, Σdy² = 5.2.
    close(r.loc["observations", "r"], -5.6 / math.sqrt(6.8 * 5.2))
    assert r.loc["observations", "n"] == 5
    # Within: deviations (−1, 0, 1, 0, 0) and (1, 0, −1, .5, −.5): r = −2 / √(2 · 2.5).
    close(r.loc["within", "r"], -2 / math.sqrt(5))
    # Between: only two patients, so no correlation is given.
    assert r.loc["between", "n"] == 2 and np.isnan(r.loc["between", "r"])
    close(r["r"].loc[["observations"]], [np.corrcoef(data["alliance"], data["symptoms"])[0, 1]])


def test_measure_correlations_between_patients():
    d = pd.DataFrame({"patient": ["p", "p", "q", "r"], "a": [0.0, 2.0, 2.0, 3.0],
                      "s": [3.0, 3.0, 2.0, 2.0]})
    r = measure_correlations(d, ["a", "s"]).set_index("level")
    # Patient means a = 1, 2, 3; s = 3, 2, 2: r = −1 / √(2 · 2/3).
    close(r.loc["between", "r"], -1 / math.sqrt(4 / 3))
    assert r.loc["between", "n"] == 3


def test_measure_correlations_needs_two_measures(data):
    assert measure_correlations(data, ["alliance"]).empty


def test_dropout(data):
    assert dropout(data, k=3) == {"k": 3, "n_patients": 2, "n_dropout": 1, "share": 0.5}
    assert dropout(data, k=4)["n_dropout"] == 2
    assert dropout(data, k=2)["n_dropout"] == 0
    # Distinct sessions count: a repeated session is one session.
    d = pd.DataFrame({"patient": ["a", "a", "a"], "session": [1, 1, 2]})
    assert dropout(d, k=3)["n_dropout"] == 1
    assert np.isnan(dropout(d.iloc[:0], k=3)["share"])
