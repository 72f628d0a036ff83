"""Validation that loses nothing (core.intake.validation): one test per awkward input.

Each test checks the exact spreadsheet row number (header = row 1, first data row = row 2) and
the reason loosely (its key words), and that usable rows are kept.
"""
import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.intake.mapping import ColumnMapping, propose_mapping
from core.intake.reading import ROW, read_table
from core.intake.validation import (
    MISSING_TEXTS,
    parse_numbers,
    parse_sessions,
    validate_long,
    validate_table,
)

MAP = ColumnMapping(patient="patient", session="session", alliance="alliance", symptoms="symptoms")
MAP_T = ColumnMapping(patient="patient", therapist="therapist", session="session",
                      alliance="alliance", symptoms="symptoms")


def check(text: str, mapping: ColumnMapping = MAP, **kwargs):
    """Validate CSV text (``\\n`` lines, first line the header)."""
    raw = read_table(text.encode("utf-8"), filename="test.csv")
    return validate_table(raw, mapping, **kwargs)


def reasons(result) -> dict[int, str]:
    """Rows a model that needs every measure leaves out, as {row: reason}: the excluded rows and
    the kept rows with a measure missing (each row once in a long file)."""
    ex = result.excluded_for()
    records = [{"row": int(r), "reason": t} for r, t in zip(ex["row"], ex["reason"])]
    assert len({r["row"] for r in records}) == len(records)
    return {r["row"]: r["reason"] for r in records}


def complete(result):
    """The sessions with every measure (what a model of all measures uses)."""
    return result.data.dropna(subset=result.measures).reset_index(drop=True)


def has_words(text: str, *words: str) -> bool:
    return all(w.lower() in text.lower() for w in words)


HEADER = "patient,session,alliance,symptoms\n"


# ------------------------------------------------------------------------------ out of range

def test_out_of_range_from_a_range_the_user_gives():
    result = check(HEADER + "A,1,5,1.2\nA,2,8,1.1\nA,3,0.5,1.0\nA,4,7,0.9\n",
                   ranges={"alliance": (1, 7)})
    r = reasons(result)
    assert set(r) == {3, 4}
    assert has_words(r[3], "alliance", "8", "outside", "1 to 7")
    assert has_words(r[4], "alliance", "0.5", "outside", "1 to 7")
    assert complete(result)["alliance"].tolist() == [5.0, 7.0]  # the bounds are allowed


def test_out_of_range_symptoms_with_decimal_range():
    result = check(HEADER + "A,1,5,4.5\nA,2,5,1.5\n", ranges={"symptoms": (0, 4)})
    assert has_words(reasons(result)[2], "symptoms", "4.5", "outside", "0 to 4")


# ------------------------------------------------------------------------------ non-numeric

def test_non_numeric_cell():
    result = check(HEADER + "A,1,5,1.2\nA,2,muy bien,1.1\nA,3,5,1\n")
    r = reasons(result)
    assert list(r) == [3]
    assert has_words(r[3], "alliance", "'muy bien'", "not a number")
    assert len(complete(result)) == 2


def test_several_problems_in_one_row_are_all_named():
    result = check(HEADER + "A,1,5,1\n,x,abc,\n")
    reason = reasons(result)[3]
    for words in (("patient", "missing"), ("session 'x'",), ("alliance 'abc'", "not a number"),
                  ("symptoms", "missing")):
        assert has_words(reason, *words), reason
    assert reason.count("; ") == 3


def test_decimal_comma_in_a_decimal_point_file_is_a_number():
    result = check('patient,session,alliance,symptoms\nA,1,"4,5",1.5\n')
    assert complete(result)["alliance"].tolist() == [4.5]


def test_infinite_and_odd_numbers():
    result = check(HEADER + "A,1,inf,1\nA,2,1e400,1\nA,3,+5,.5\nA,4,5.,1e0\n")
    r = reasons(result)
    assert set(r) == {2, 3}
    assert "not a number" in r[2] and "not a number" in r[3]
    assert complete(result)[["alliance", "symptoms"]].values.tolist() == [[5.0, 0.5], [5.0, 1.0]]


# --------------------------------------------------------------------------- missing values

@pytest.mark.parametrize("cell", ["", "n/a", "N/A", "NA", "na", " ", "-", "?", ".", "sin dato",
                                  "#N/A", "NaN", "null", "missing"])
def test_missing_texts_and_empty_cells(cell):
    result = check(HEADER + f"A,1,5,1\nA,2,{cell},1\n")
    r = reasons(result)
    assert list(r) == [3]
    assert has_words(r[3], "alliance missing")
    assert "not a number" not in r[3]


@pytest.mark.parametrize("code", ["-99", "99", "999", "-9", "-999", "99.0", "-99,0"])
def test_missing_value_codes_outside_the_values_are_missing(code):
    cell = f'"{code}"' if "," in code else code
    result = check(HEADER + f"A,1,5,1\nA,2,{cell},1\nA,3,6,1\nA,4,1,1\n")
    r = reasons(result)
    assert list(r) == [3]
    assert has_words(r[3], "alliance", "missing", f"code {code}")
    assert any("missing-value code" in n for n in result.notes)
    assert complete(result)["alliance"].tolist() == [5.0, 6.0, 1.0]


def test_code_99_in_oq_total_column_up_to_150_is_a_score():
    rows = "".join(f"P{i},1,5,{v}\n" for i, v in enumerate([20, 45, 99, 120, 150, -99]))
    result = check(HEADER + rows)
    r = reasons(result)
    assert list(r) == [7]  # -99, row 7
    assert has_words(r[7], "symptoms", "code -99")
    assert sorted(complete(result)["symptoms"]) == [20.0, 45.0, 99.0, 120.0, 150.0]


def test_code_inside_the_given_range_is_a_score_outside_is_missing():
    result = check(HEADER + "A,1,5,99\nA,2,5,999\nA,3,5,181\n", ranges={"symptoms": (0, 180)})
    r = reasons(result)
    assert complete(result)["symptoms"].tolist() == [99.0]
    assert has_words(r[3], "symptoms", "missing", "code 999")
    assert has_words(r[4], "symptoms", "181", "outside", "0 to 180")


# ------------------------------------------------------------------------------- duplicates

def test_identical_duplicates_keep_one_and_say_so():
    result = check(HEADER + "A,1,5,1\nA,1,5,1\nA,2,5.0,1.00\nA,2,5,1\nB,1,4,2\n")
    r = reasons(result)
    assert set(r) == {3, 5}
    assert has_words(r[3], "identical", "duplicate", "row 2")
    assert has_words(r[5], "identical", "duplicate", "row 4")  # 5.0 and 5 are the same value
    assert complete(result)[ROW].tolist() == [2, 4, 6]
    assert any("identical" in n and "2 rows" in n for n in result.notes)


def test_conflicting_duplicates_list_both_rows():
    result = check(HEADER + "A,1,5,1\nA,2,5,1\nB,1,4,2\nA,2,6,1\n")
    r = reasons(result)
    assert set(r) == {3, 5}
    for row in (3, 5):
        assert has_words(r[row], "conflicting", "patient A", "session 2", "rows 3, 5")
    assert complete(result)[ROW].tolist() == [2, 4]


def test_same_session_written_differently_is_a_duplicate():
    result = check(HEADER + "A,3,5,1\nA,Session 3,5,1\nA,S3,6,1\nA,4,6,1\n")
    r = reasons(result)
    assert set(r) == {2, 3, 4}
    assert "rows 2, 3, 4" in r[2]
    assert all("conflicting" in reason for reason in r.values())


def test_duplicates_among_excluded_rows_do_not_count():
    result = check(HEADER + "A,1,abc,1\nA,1,5,1\n")
    r = reasons(result)
    assert list(r) == [2] and "not a number" in r[2]
    assert complete(result)[ROW].tolist() == [3]


# ---------------------------------------------------------------------------- session labels

@pytest.mark.parametrize("label, number", [
    ("3", 3), ("3.0", 3), ("3,0", 3), (" 3 ", 3), ("Session 3", 3), ("session 3", 3), ("S3", 3),
    ("s03", 3), ("Sesión 3", 3), ("Sesion 3", 3), ("Ses. 3", 3), ("#3", 3), ("Nº 3", 3),
    ("Sesión número 12", 12), ("Week 2", 2), ("T1", 1), ("sesion_4", 4),
])
def test_session_labels(label, number):
    assert parse_sessions(pd.Series([label])).tolist() == [number]
    cell = f'"{label}"' if "," in label else label
    result = check(HEADER + f"A,{cell},5,1\n")
    assert complete(result)["session"].tolist() == [number]
    assert complete(result)["session"].dtype == np.int64


@pytest.mark.parametrize("label", ["x", "first", "2023-01-05", "3b", "S"])
def test_unreadable_session_label(label):
    result = check(HEADER + f"A,1,5,1\nA,{label},5,1\n")
    r = reasons(result)
    assert list(r) == [3]
    assert has_words(r[3], f"session '{label}'", "not a session number")


def test_session_missing():
    result = check(HEADER + "A,1,5,1\nA,,5,1\nA,n/a,5,1\n")
    r = reasons(result)
    assert list(r) == [3, 4]
    assert all(has_words(v, "session missing") for v in r.values())


# ------------------------------------------------------------------------------ IDs as text

def test_ids_keep_leading_zeros_and_differ_from_numbers():
    result = check(HEADER + "007,1,5,1\n7,1,4,1\n007,2,6,1\n 007 ,3,6,1\n")
    assert result.excluded.empty  # "007" and "7" are two patients, so no duplicate
    assert complete(result)["patient"].tolist() == ["007", "007", "007", "7"]
    assert complete(result)["patient"].dtype != np.int64


def test_patient_id_missing():
    result = check(HEADER + "A,1,5,1\n,2,5,1\n")
    assert has_words(reasons(result)[3], "patient ID missing")


def test_initials_that_look_like_missing_codes_are_ids():
    """Regression: a therapist with initials "SD" (or patient "NA") was read as missing."""
    text = "patient,therapist,session,alliance,symptoms\nNA,SD,1,5,1\nB,SD,1,5,1\nC,,1,5,1\n"
    result = check(text, MAP_T)
    assert complete(result)["therapist"].tolist() == ["SD", "SD"]
    assert complete(result)["patient"].tolist() == ["B", "NA"]
    assert has_words(reasons(result)[4], "therapist missing")


# ----------------------------------------------------------------------- two therapists

def test_patient_seen_by_two_therapists_keeps_rows_with_a_note():
    text = ("patient,therapist,session,alliance,symptoms\n"
            "A,T1,1,5,1\nA,T1,2,5,1\nA,T2,3,5,1\nB,T1,1,4,2\n")
    result = check(text, MAP_T)
    assert result.excluded.empty
    assert complete(result)["therapist"].tolist() == ["T1", "T1", "T2", "T1"]
    notes = [n for n in result.notes if "more than one therapist" in n]
    assert len(notes) == 1 and "(A)" in notes[0] and notes[0].startswith("1 patient was")


# ------------------------------------------------------------------- unusable: one sentence

def test_no_usable_row_is_one_plain_sentence():
    with pytest.raises(InputError) as err:
        check(HEADER + "A,1,abc,\nB,1,xyz,\nC,1,q,\n")
    text = str(err.value)
    assert "None of the 3 rows" in text and "alliance is not a number (3 rows)" in text
    assert "\n" not in text and "Traceback" not in text


def test_wrong_column_name():
    with pytest.raises(InputError, match="no column 'Alianza'.*patient, session, alliance, symptoms"):
        check(HEADER + "A,1,5,1\n", ColumnMapping(patient="patient", session="session", alliance="Alianza"))


def test_header_only():
    with pytest.raises(InputError, match="header but no data rows"):
        check(HEADER)


# ----------------------------------------------------------------------- shape of the result

def test_validated_table_shape_and_order():
    text = ("patient,session,alliance,symptoms,fecha,row\n"
            "B,2,5,1,2024-01-02,x\nB,1,4,2,2024-01-01,y\nA,1,6,1,2024-01-03,z\n")
    result = check(text)
    d = complete(result)
    assert d.columns.tolist() == ["patient", "session", "alliance", "symptoms", ROW, "fecha", "row (file)"]
    assert d[["patient", "session"]].values.tolist() == [["A", 1], ["B", 1], ["B", 2]]
    assert d[ROW].tolist() == [4, 3, 2]
    assert d["fecha"].tolist() == ["2024-01-03", "2024-01-01", "2024-01-02"]
    assert result.n_rows_read == 3 and result.measures == ["alliance", "symptoms"]
    assert not result.has_therapist


def test_excluded_records_are_plain_json_types():
    result = check(HEADER + "A,1,5,1\nA,2,abc,\n")
    records = result.excluded_records()
    assert records == [{"row": 3, "reason": "alliance 'abc' is not a number; symptoms missing"}]
    assert type(records[0]["row"]) is int and type(records[0]["reason"]) is str


def test_one_measure_is_enough_and_unmapped_role_names_are_renamed():
    """Regression: an unmapped column called "alliance" came along as text under that name,
    so ``measures`` listed it as the alliance measure."""
    text = "patient,therapist,session,alliance,symptoms\nA,T1,1,5,1\nA,T1,2,,1\n"
    result = check(text, ColumnMapping(patient="patient", session="session", symptoms="symptoms"))
    assert result.excluded.empty and result.measures == ["symptoms"] and not result.has_therapist
    assert complete(result)["alliance (file)"].tolist() == ["5", ""]  # comes along as text
    assert complete(result)["therapist (file)"].tolist() == ["T1", "T1"]


def test_non_integer_sessions_stay_numbers():
    result = check(HEADER + "A,1,5,1\nA,1.5,5,1\n")
    assert complete(result)["session"].tolist() == [1.0, 1.5]


def test_validate_long_any_index():
    frame = pd.DataFrame({ROW: [2, 3, 4], "patient": ["A", "A", "B"], "session": ["1", "2", "1"],
                          "oq": ["1", "x", "3"]}, index=[10, 10, 5])
    result = validate_long(frame, ColumnMapping(patient="patient", session="session", symptoms="oq"))
    assert result.excluded_records() == [{"row": 3, "reason": "symptoms 'x' is not a number"}]
    assert complete(result)[ROW].tolist() == [2, 4]


def test_explanations_name_why_a_score_is_missing():
    raw = read_table((HEADER + "A,1,5,1\nA,2,5,\nA,3,5,\n").encode(), filename="x.csv")
    why = pd.Series(["", "2 of 12 items missing (more than 10%)", ""], index=raw.frame.index)
    result = validate_table(raw, MAP, explanations={"symptoms": why})
    r = reasons(result)
    assert r[3] == "symptoms missing: 2 of 12 items missing (more than 10%)"
    assert r[4] == "symptoms missing"


# ----------------------------------------------------------------------------- parse helpers

def test_parse_numbers_flags():
    values, missing, bad = parse_numbers(pd.Series(["1", "2,5", "", "n/a", "abc", " 3 "]), ",")
    assert values.tolist()[:2] == [1.0, 2.5] and values.iloc[5] == 3.0
    assert missing.tolist() == [False, False, True, True, False, False]
    assert bad.tolist() == [False, False, False, False, True, False]


def test_missing_texts_are_lower_case():
    assert all(t == t.lower().strip() for t in MISSING_TEXTS)


def test_large_clean_column_parses_like_pandas():
    rng = np.random.default_rng(3)
    numbers = rng.normal(0, 100, 20_000).round(4)
    cells = pd.Series([repr(float(x)) for x in numbers], dtype="str")
    values, missing, bad = parse_numbers(cells)
    np.testing.assert_array_equal(values.to_numpy(), numbers)
    assert not missing.any() and not bad.any()


def test_awkward_file_end_to_end():
    """Everything at once, in one ';' decimal-comma Latin-1 export with Spanish headers."""
    text = ("Paciente;Terapeuta;Sesión;Alianza;Síntomas\n"
            "007;Dra. Núñez;Sesión 1;5,5;99\n"       # 2 ok (99 inside the OQ values)
            "007;Dra. Núñez;S2;6;120\n"              # 3 ok
            "007;Lic. Pérez;3;6,5;n/a\n"             # 4 symptoms missing
            "007;Lic. Pérez;4;-99;80\n"              # 5 alliance code
            "008;Lic. Pérez;1;9;150\n"               # 6 out of range 1-7
            "008;Lic. Pérez;1;9;150\n"               # 7 identical to 6, but 6 is excluded: same reason
            "008;Lic. Pérez;2;4;30\n"                # 8 ok
            "008;Lic. Pérez;2;4,5;30\n"              # 9 conflicts with 8
            ";;;;\n"                                 # 10 empty: skipped
            "009;Lic. Pérez;dos;5;40\n")             # 11 session unreadable
    raw = read_table(text.encode("cp1252"), filename="clinica.csv")
    result = validate_table(raw, propose_mapping(raw.columns), ranges={"alliance": (1, 7)})
    r = reasons(result)
    assert sorted(r) == [4, 5, 6, 7, 8, 9, 11]
    assert has_words(r[4], "symptoms missing")
    assert has_words(r[5], "alliance", "code -99")
    assert has_words(r[6], "alliance 9", "outside", "1 to 7") and has_words(r[7], "identical", "row 6")
    assert has_words(r[8], "conflicting", "rows 8, 9") and has_words(r[9], "conflicting", "rows 8, 9")
    assert has_words(r[11], "session 'dos'", "not a session number")
    d = complete(result)
    assert d[["patient", "therapist", "session", "alliance", "symptoms", ROW]].values.tolist() == [
        ["007", "Dra. Núñez", 1, 5.5, 99.0, 2],
        ["007", "Dra. Núñez", 2, 6.0, 120.0, 3],
    ]
    # 007 keeps sessions 3 and 4 (one measure missing each) with Lic. Pérez: two therapists
    assert any("more than one therapist" in n and "(007)" in n for n in result.notes)
    assert any("1 completely empty row" in n for n in result.notes)
