"""Instrument definitions and scoring from item columns (core.intake.instruments)."""
import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.intake.instruments import (
    N_MISSING,
    REASON,
    TOTAL,
    available_instruments,
    cronbach_alpha,
    definition_from_dict,
    definition_from_json,
    definition_to_dict,
    definition_to_json,
    generic_likert,
    guess_item_columns,
    item_column_map,
    keyed_items,
    load_instrument,
    recode_items,
    save_instrument,
    score_items,
)

OQ_REVERSED = (1, 12, 13, 20, 21, 24, 31, 37, 43)


def oq_frame(rows):
    return pd.DataFrame(rows, columns=[f"oq{i}" for i in range(1, 46)], dtype=float)


# ---- shipped definitions -------------------------------------------------------------------

def test_shipped_definitions_load_and_validate():
    ids = [d.id for d in available_instruments()]
    assert ids == ["ans", "likert", "oq45"]
    for d in available_instruments():
        # every shipped file round-trips through validation and says where its facts come from
        assert definition_from_dict(definition_to_dict(d)) == d
        assert d.source or d.unsourced


def test_oq45_facts():
    oq = load_instrument("oq45")
    assert oq.measures == "symptoms" and oq.higher_is == "worse"
    assert (oq.n_items, oq.item_min, oq.item_max) == (45, 0, 4)
    assert oq.reverse_keyed == OQ_REVERSED
    assert oq.score_range == (0, 180)
    assert oq.clinical_cutoff == 63.5 and oq.reliable_change == 14
    assert oq.scoring == "sum"
    assert set(oq.subscales) == {"Symptom Distress", "Interpersonal Relations", "Social Role"}
    # subscale items could not be sourced: they are null and said so, never invented
    assert all(v is None for v in oq.subscales.values())
    assert any("subscale" in s.lower() for s in oq.unsourced)
    assert any("Lambert" in s and "2001" in s for s in oq.source)


def test_ans_facts_and_unsourced_keys():
    ans = load_instrument("ans")
    assert (ans.n_items, ans.item_min, ans.item_max, ans.measures) == (12, 1, 7, "alliance")
    assert set(ans.subscales) == {"Comfort with Negative Feelings",
                                  "Flexible and Negotiable Stance"}
    assert ans.reverse_keyed is None and not ans.keys_sourced
    assert all(v is None for v in ans.subscales.values())
    assert any("reverse-keyed" in s for s in ans.unsourced)
    assert {r["value"] for r in ans.reference_alpha} >= {0.70}
    assert any(r["value"] == 0.94 for r in load_instrument("oq45").reference_alpha)
    # unsourced keys: scoring refuses until the user marks them
    items = pd.DataFrame(np.full((2, 12), 5.0))
    with pytest.raises(InputError, match="reverse-keyed"):
        score_items(items, ans)
    res = score_items(items, ans.with_changes(reverse_keyed=[]))
    assert res.total.tolist() == [5.0, 5.0]


def test_load_by_path_and_unknown_id(tmp_path):
    p = save_instrument(load_instrument("oq45"), tmp_path / "my_oq.json")
    assert load_instrument(p) == load_instrument("oq45")
    assert load_instrument(str(p)).id == "oq45"
    with pytest.raises(InputError, match="choose one of"):
        load_instrument("bdi")
    with pytest.raises(InputError, match="no instrument definition file"):
        load_instrument(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ \"id\": ", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_instrument(bad)


# ---- validation ----------------------------------------------------------------------------

def base_dict(**over):
    d = definition_to_dict(generic_likert(5, 1, 5))
    d.update(over)
    return d


@pytest.mark.parametrize("over, msg", [
    ({"reverse_keyed": [2, 6]}, "item 6"),
    ({"reverse_keyed": [0]}, "item 0"),
    ({"reverse_keyed": [2, 2]}, "more than once"),
    ({"reverse_keyed": [1.5]}, "whole item numbers"),
    ({"subscales": {"A": [1, 2, 9]}}, "item 9"),
    ({"subscales": {"A": [1, 1]}}, "more than once"),
    ({"subscales": {"A": []}}, "no items"),
    ({"subscales": {"total": [1]}}, "cannot be called"),
    ({"item_min": 5, "item_max": 1}, "lower to a higher"),
    ({"scoring": "median"}, "'sum' or 'mean'"),
    ({"measures": "mood"}, "'alliance' or 'symptoms'"),
    ({"missing_rule": {"method": "impute", "max_missing_fraction": 0.1}}, "prorate"),
    ({"missing_rule": {"method": "prorate", "max_missing_fraction": 1.5}}, "below 1"),
    ({"clinical_cutoff": 9}, "outside its score range"),
    ({"reliable_change": -1}, "positive"),
    ({"score_range": [0, 100]}, "score range"),
    ({"reverse_kyed": [1]}, "unknown field"),
    ({"n_items": 0}, "at least 1"),
])
def test_invalid_definitions_are_rejected(over, msg):
    with pytest.raises(InputError, match=msg):
        definition_from_dict(base_dict(**over))


def test_with_changes_validates():
    d = generic_likert(4, 1, 5)
    assert d.with_changes(reverse_keyed=[4, 2]).reverse_keyed == (2, 4)
    with pytest.raises(InputError, match="item 5"):
        d.with_changes(reverse_keyed=[5])
    with pytest.raises(InputError, match="not a field"):
        d.with_changes(score_range=(0, 1))


def test_json_round_trip(tmp_path):
    oq = load_instrument("oq45").with_changes(
        subscales={"Symptom Distress": [2, 3], "Interpersonal Relations": None,
                   "Social Role": None})
    text = definition_to_json(oq)
    assert json.loads(text)["score_range"] == [0, 180]
    assert definition_from_json(text) == oq
    p = save_instrument(oq, tmp_path / "oq.json")
    assert load_instrument(p) == oq
    assert hash(load_instrument(p)) == hash(oq)


def test_generic_likert_marks_reverse_items():
    d = generic_likert(3, 1, 5, reverse_keyed=[2], scoring="sum", measures="symptoms")
    assert d.higher_is == "worse" and d.score_range == (3, 15)
    res = score_items(pd.DataFrame({"a": [5.0], "b": [5.0], "c": [5.0]}), d)
    assert res.total.iloc[0] == 5 + 1 + 5
    tmpl = load_instrument("likert")
    assert tmpl.reverse_keyed == () and tmpl.unsourced


# ---- scoring -------------------------------------------------------------------------------

def test_oq_reverse_keying_all_zero_row():
    oq = load_instrument("oq45")
    res = score_items(oq_frame([[0] * 45]), oq)
    # the nine reverse-keyed items score 4 - 0 = 4 each
    assert res.total.iloc[0] == 9 * 4 == 36
    assert res.scores[N_MISSING].iloc[0] == 0 and res.scores[REASON].iloc[0] == ""


def test_oq_range_0_to_180():
    oq = load_instrument("oq45")
    worst = [0 if i in OQ_REVERSED else 4 for i in range(1, 46)]
    best = [4 if i in OQ_REVERSED else 0 for i in range(1, 46)]
    res = score_items(oq_frame([worst, best]), oq)
    assert res.total.tolist() == [180, 0]
    assert res.clinical_cutoff == 63.5 and res.reliable_change == 14
    assert list(res.scores.columns) == [TOTAL, N_MISSING, REASON]
    assert any("Symptom Distress" in m and "not scored" in m for m in res.messages)


def test_prorating_within_the_missing_rule():
    d = generic_likert(12, 1, 7, scoring="sum")
    row = [float(v) for v in [1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, np.nan]]
    res = score_items(pd.DataFrame([row]), d)
    answered = [v for v in row if not np.isnan(v)]
    # prorated sum = mean of the 11 answered items x 12
    assert res.total.iloc[0] == pytest.approx(np.mean(answered) * 12)
    assert res.scores[N_MISSING].iloc[0] == 1 and res.n_prorated == 1
    mean = score_items(pd.DataFrame([row]), d, scoring="mean")
    assert mean.total.iloc[0] == pytest.approx(np.mean(answered))


def test_too_many_missing_gives_missing_score_with_reason():
    d = generic_likert(12, 1, 7)
    rows = [[4.0] * 10 + [np.nan, np.nan], [np.nan] * 12, [4.0] * 12]
    res = score_items(pd.DataFrame(rows), d)
    assert np.isnan(res.total.iloc[0]) and np.isnan(res.total.iloc[1])
    assert res.total.iloc[2] == 4
    assert res.scores[REASON].tolist() == ["2 of 12 items missing (more than 10%)",
                                          "all 12 items missing", ""]
    assert res.scores[N_MISSING].tolist() == [2, 12, 0]


def test_oq_reason_text_and_limit():
    oq = load_instrument("oq45")
    row4 = [1.0] * 41 + [np.nan] * 4   # 4 of 45 = 8.9% -> prorated
    row5 = [1.0] * 40 + [np.nan] * 5   # 5 of 45 = 11% -> missing
    res = score_items(oq_frame([row4, row5]), oq)
    assert not np.isnan(res.total.iloc[0])
    assert np.isnan(res.total.iloc[1])
    assert res.scores[REASON].iloc[1] == "5 of 45 items missing (more than 10%)"


def test_out_of_range_and_text_values_are_missing_and_reported():
    d = generic_likert(10, 1, 5, scoring="sum")
    df = pd.DataFrame([[3] * 10, [3] * 10], columns=[f"i{k}" for k in range(1, 11)], dtype=object)
    df.iloc[0, 2] = 9
    df.iloc[1, 4] = "n/a"
    res = score_items(df, d)
    assert res.invalid_counts == {"i3": 1, "i5": 1}
    assert res.total.tolist() == [30.0, 30.0]  # one item of ten missing: prorated
    assert res.scores[N_MISSING].tolist() == [1, 1]
    assert any("'i3'" in m and "9" in m for m in res.messages)


def test_one_to_five_coding_recoded_gives_same_total():
    oq = load_instrument("oq45")
    rng = np.random.default_rng(3)
    items04 = oq_frame(rng.integers(0, 5, size=(20, 45)))
    items15 = items04 + 1
    a = score_items(items04, oq)
    b = score_items(items15, oq, coding_min=1, coding_max=5)
    assert b.recoded and b.input_coding == (1, 5) and b.coding == (0, 4)
    pd.testing.assert_frame_equal(a.scores, b.scores)
    pd.testing.assert_frame_equal(recode_items(items15, 1, 5, 0, 4), items04)
    # scoring 1-5 data as if they were 0-4: every row has too many "invalid" 5s
    with pytest.raises(InputError, match="coded the items 1-5"):
        score_items(items15, oq)
    # a single stray 5 is reported with the same hint but the scores are kept
    one = items04.copy()
    one.iloc[0, 1] = 5
    res = score_items(one, oq)
    assert res.invalid_counts == {"oq2": 1} and not np.isnan(res.total.iloc[0])


def test_recode_items_rejects_values_outside_stated_coding():
    with pytest.raises(InputError, match="outside the stated coding"):
        recode_items(pd.DataFrame({"oq1": [0, 4]}), 1, 5, 0, 4)


def test_mean_versus_sum_and_converted_cutoff():
    oq = load_instrument("oq45")
    rng = np.random.default_rng(5)
    items = oq_frame(rng.integers(0, 5, size=(10, 45)))
    s = score_items(items, oq)
    m = score_items(items, oq, scoring="mean")
    assert m.scoring == "mean"
    np.testing.assert_allclose(m.total, s.total / 45)
    assert m.clinical_cutoff == pytest.approx(63.5 / 45)
    assert m.reliable_change == pytest.approx(14 / 45)
    assert oq.with_scoring("mean").score_range == (0, 4)
    assert oq.with_scoring("mean").with_scoring("sum").clinical_cutoff == pytest.approx(63.5)


def test_with_coding_converts_cutoff():
    oq15 = load_instrument("oq45").with_coding(1, 5)
    assert oq15.score_range == (45, 225)
    assert oq15.clinical_cutoff == pytest.approx(108.5)
    assert oq15.reliable_change == pytest.approx(14)
    assert load_instrument("oq45").with_scoring("mean").with_coding(1, 5).clinical_cutoff \
        == pytest.approx(1 + 63.5 / 45)


def test_subscales_scored_when_items_given():
    d = generic_likert(4, 1, 5, scoring="sum").with_changes(
        subscales={"A": [1, 2], "B": [3, 4]}, reverse_keyed=[4])
    df = pd.DataFrame({"q1": [1.0, 2.0], "q2": [2.0, np.nan], "q3": [3.0, 3.0],
                       "q4": [1.0, 5.0]})
    res = score_items(df, d)
    assert list(res.scores.columns) == [TOTAL, "A", "B", N_MISSING, REASON]
    assert res.scores["B"].tolist() == [3 + 5, 3 + 1]
    assert res.scores["A"].iloc[0] == 3 and np.isnan(res.scores["A"].iloc[1])
    # 1 of 4 items missing is 25%, more than 10%: total and subscale A are missing
    assert np.isnan(res.total.iloc[1])
    assert res.scores[REASON].iloc[1] == ("1 of 4 items missing (more than 10%); "
                                          "A: 1 of 2 items missing (more than 10%)")


def test_item_columns_mapping_and_errors():
    d = generic_likert(3, 1, 5, scoring="sum", reverse_keyed=[1])
    df = pd.DataFrame({"id": ["a"], "x3": [3.0], "x1": [1.0], "x2": [2.0]})
    r1 = score_items(df, d, item_columns={1: "x1", 2: "x2", 3: "x3"})
    r2 = score_items(df, d, item_columns=["x1", "x2", "x3"])
    assert r1.total.iloc[0] == r2.total.iloc[0] == 5 + 2 + 3
    with pytest.raises(InputError, match="item 3"):
        score_items(df, d, item_columns={1: "x1", 2: "x2"})
    with pytest.raises(InputError, match="not in the data"):
        score_items(df, d, item_columns=["x1", "x2", "nope"])
    with pytest.raises(InputError, match="more than one item"):
        score_items(df, d, item_columns=["x1", "x1", "x3"])
    with pytest.raises(InputError, match="3 items but the item table has 4"):
        score_items(df, d)
    with pytest.raises(InputError, match="both"):
        score_items(df, d, item_columns=["x1", "x2", "x3"], coding_min=1)


def test_keyed_items_reverse_and_recode():
    d = generic_likert(2, 0, 4, reverse_keyed=[2])
    k = keyed_items(pd.DataFrame({"a": [1, 5], "b": [1, 2]}), d, coding_min=1, coding_max=5)
    assert k[1].tolist() == [0, 4] and k[2].tolist() == [4, 3]


def test_decimal_comma_text_cells():
    d = generic_likert(2, 1, 7)
    res = score_items(pd.DataFrame({"a": ["5,5", "6"], "b": ["6,5", ""]}), d, decimal=",")
    assert res.total.iloc[0] == pytest.approx(6.0)
    assert np.isnan(res.total.iloc[1]) and res.scores[N_MISSING].iloc[1] == 1


# ---- Cronbach's alpha ----------------------------------------------------------------------

def test_alpha_hand_computed():
    # 4 respondents x 3 items. item variances (ddof=1): 5/3, 11/12, 1 (sum 43/12);
    # totals 4, 7, 9, 11 -> variance 107/12; alpha = 3/2 * (1 - 43/107) = 96/107 = 0.897196
    x = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 2, 3, 4], "c": [1, 3, 3, 3]})
    expected = 96 / 107
    assert cronbach_alpha(x) == pytest.approx(expected)
    assert cronbach_alpha(x) == pytest.approx(0.897196, abs=1e-6)
    # listwise: a row with a missing item is dropped
    y = pd.concat([x, pd.DataFrame({"a": [np.nan], "b": [1], "c": [5]})], ignore_index=True)
    assert cronbach_alpha(y) == pytest.approx(expected)


def test_alpha_published_value_pingouin_dataset():
    # pingouin's 'cronbach_alpha' dataset (15 subjects x 10 items); its documented result,
    # checked by pingouin against R psych::alpha, is 0.591719.
    q = {
        "Q1": [3, 5, 7, 2, 6, 1, 4, 2, 6, 5, 4, 4, 5, 6, 4],
        "Q2": [2, 4, 3, 4, 5, 2, 3, 4, 5, 4, 3, 2, 5, 5, 3],
        "Q3": [4, 6, 5, 3, 6, 3, 5, 4, 5, 6, 5, 3, 6, 5, 5],
        "Q4": [1, 3, 5, 3, 5, 4, 3, 3, 5, 4, 2, 2, 2, 4, 5],
        "Q5": [4, 5, 6, 2, 4, 2, 5, 7, 1, 3, 5, 5, 3, 2, 3],
        "Q6": [5, 1, 4, 2, 4, 5, 2, 2, 6, 5, 3, 3, 3, 2, 1],
        "Q7": [1, 2, 3, 2, 4, 2, 1, 2, 5, 3, 2, 4, 2, 1, 3],
        "Q8": [4, 5, 3, 6, 6, 3, 2, 4, 2, 1, 3, 2, 4, 4, 2],
        "Q9": [3, 5, 6, 6, 7, 5, 4, 6, 3, 7, 4, 3, 4, 6, 3],
        "Q10": [2, 5, 5, 3, 5, 2, 3, 5, 2, 2, 1, 4, 5, 5, 4],
    }
    assert round(cronbach_alpha(pd.DataFrame(q)), 6) == 0.591719


def test_alpha_equals_hoyt_anova_form():
    # Hoyt (1941): alpha = 1 - MS_residual / MS_persons from the persons x items ANOVA
    rng = np.random.default_rng(11)
    true = rng.normal(size=(60, 1))
    x = np.clip(np.round(3 + true + rng.normal(scale=0.8, size=(60, 6))), 1, 5)
    n, k = x.shape
    grand = x.mean()
    ss_p = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_i = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_res = ((x - grand) ** 2).sum() - ss_p - ss_i
    hoyt = 1 - (ss_res / ((n - 1) * (k - 1))) / (ss_p / (n - 1))
    assert cronbach_alpha(pd.DataFrame(x)) == pytest.approx(hoyt)


def test_alpha_edge_cases():
    with pytest.raises(InputError, match="two item columns"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2]}))
    assert np.isnan(cronbach_alpha(pd.DataFrame({"a": [1], "b": [2]})))
    assert np.isnan(cronbach_alpha(pd.DataFrame({"a": [2, 2], "b": [3, 3]})))


def test_score_result_alpha_uses_keyed_items():
    # simulated OQ answers driven by one trait; reverse-keyed items answered the other way.
    rng = np.random.default_rng(7)
    trait = rng.normal(size=(200, 1))
    raw = np.clip(np.round(2 + trait + rng.normal(scale=0.7, size=(200, 45))), 0, 4)
    rev = [i - 1 for i in OQ_REVERSED]
    raw[:, rev] = 4 - raw[:, rev]
    oq = load_instrument("oq45")
    res = score_items(oq_frame(raw), oq)
    keyed = raw.copy()
    keyed[:, rev] = 4 - keyed[:, rev]
    assert res.alpha[TOTAL] == pytest.approx(cronbach_alpha(pd.DataFrame(keyed)))
    assert res.alpha[TOTAL] > 0.9 and res.n_alpha[TOTAL] == 200
    assert cronbach_alpha(pd.DataFrame(raw)) < res.alpha[TOTAL]


# ---- finding item columns ------------------------------------------------------------------

@pytest.mark.parametrize("header, prefixes, expected", [
    (["patient", "session"] + [f"oq{i}" for i in range(1, 46)], ["oq"],
     [f"oq{i}" for i in range(1, 46)]),
    (["id", "OQ_02", "OQ_10", "OQ_01"], ["oq"], ["OQ_01", "OQ_02", "OQ_10"]),
    (["ans_12", "ans_2", "ans_1", "ans_total", "ans_s1"], ["ans"], ["ans_1", "ans_2", "ans_12"]),
    (["Item 3", "item1", "ítem 2", "score"], ["item"], ["item1", "ítem 2", "Item 3"]),
    (["OQ-45_1", "oq45.2", "OQ45_3"], ["oq45", "oq"], ["OQ-45_1", "oq45.2", "OQ45_3"]),
    (["ANS-item-01", "ans_item_02"], ["ans"], ["ANS-item-01", "ans_item_02"]),
    (["paciente", "sesion", "oq_total", "ans"], ["oq", "ans"], []),
])
def test_guess_item_columns(header, prefixes, expected):
    assert guess_item_columns(header, prefixes) == expected


def test_guess_item_columns_picks_best_prefix_and_limits():
    header = ["oq45"] + [f"ans{i}" for i in range(1, 13)]
    assert guess_item_columns(header, ["oq", "ans"]) == [f"ans{i}" for i in range(1, 13)]
    assert item_column_map(["q1", "q3", "q14"], ["q"], n_items=12) == {1: "q1", 3: "q3"}
    oq = load_instrument("oq45")
    cols = [f"OQ45_{i:02d}" for i in range(1, 46)]
    assert guess_item_columns(cols, oq.column_prefixes, n_items=oq.n_items) == cols
