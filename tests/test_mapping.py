"""Column mapping (core.intake.mapping) and wide files (core.intake.reshape, validation of wide files)."""
import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.intake.mapping import (
    ColumnMapping,
    SavedMapping,
    WideLayout,
    detect_wide_layout,
    matching_saved_mapping,
    saved_mapping_from_record,
    saved_mapping_record,
    normalise_header,
    propose_mapping,
    session_from_token,
)
from core.intake.reading import ROW, read_table
from core.intake.reshape import wide_to_long
from core.intake.validation import validate_table

# ------------------------------------------------------------------------------ proposals

@pytest.mark.parametrize("columns, expected", [
    (["patient", "therapist", "session", "alliance", "symptoms"],
     ("patient", "therapist", "session", "alliance", "symptoms")),
    (["Paciente", "Terapeuta", "Sesión", "Alianza", "Síntomas"],
     ("Paciente", "Terapeuta", "Sesión", "Alianza", "Síntomas")),
    (["PACIENTE", "TERAPEUTA", "SESION", "ANS", "OQ-45"],
     ("PACIENTE", "TERAPEUTA", "SESION", "ANS", "OQ-45")),
    (["ID paciente", "Nº sesión", "ANS total", "OQ-45 total", "terapeuta"],
     ("ID paciente", "terapeuta", "Nº sesión", "ANS total", "OQ-45 total")),
    (["client_id", "therapist_id", "session_number", "wai_total", "oq_total"],
     ("client_id", "therapist_id", "session_number", "wai_total", "oq_total")),
    (["Código", "Psicóloga", "Semana", "Alianza terapéutica", "BDI-II"],
     ("Código", "Psicóloga", "Semana", "Alianza terapéutica", "BDI-II")),
    (["caso", "visita", "srs", "ors"], ("caso", None, "visita", "srs", "ors")),
    (["Patient ID", "Therapist", "Session", "Alliance (ANS)", "Symptoms (OQ-45)"],
     ("Patient ID", "Therapist", "Session", "Alliance (ANS)", "Symptoms (OQ-45)")),
])
def test_propose_mapping_english_and_spanish(columns, expected):
    m = propose_mapping(columns)
    assert (m.patient, m.therapist, m.session, m.alliance, m.symptoms) == expected


def test_propose_mapping_leaves_unknown_roles_empty_and_other_columns_alone():
    m = propose_mapping(["fecha", "paciente", "sesion", "notas", "oq"])
    assert m == ColumnMapping(patient="paciente", session="sesion", symptoms="oq")


def test_exact_names_win_over_prefixes_and_each_column_is_used_once():
    m = propose_mapping(["session_date", "session", "id", "patient"])
    assert m.session == "session" and m.patient == "patient"
    # A record number "ID" left of "Paciente": the more specific name wins.
    assert propose_mapping(["ID", "Paciente", "Sesión", "OQ"]).patient == "Paciente"
    assert propose_mapping(["ID", "Sesión", "OQ"]).patient == "ID"
    cols = list(m.used().values())
    assert len(cols) == len(set(cols))


def test_normalise_header():
    assert normalise_header("Sesión Nº") == "sesionno"
    assert propose_mapping(["Paciente", "Sesión Nº", "OQ"]).session == "Sesión Nº"
    assert normalise_header(" Síntomas (OQ-45) ") == "sintomasoq45"


def test_check_names_what_is_missing():
    cols = ["a", "b", "c"]
    with pytest.raises(InputError, match="patient and the session.*a, b, c"):
        ColumnMapping(alliance="a").check(cols)
    with pytest.raises(InputError, match="at least one measure"):
        ColumnMapping(patient="a", session="b").check(cols)
    with pytest.raises(InputError, match="no column 'x' for the symptoms"):
        ColumnMapping(patient="a", session="b", symptoms="x").check(cols)
    with pytest.raises(InputError, match="'c' is chosen for two roles"):
        ColumnMapping(patient="a", session="b", alliance="c", symptoms="c").check(cols)


def test_saved_mappings_round_trip_and_match_the_header_set():
    """A saved mapping as the clinic database stores it (plain JSON values) and back; found by its
    header set (the database's saved mappings: core/store/mappings.py, tests/test_storage.py)."""
    saved = SavedMapping(name="Clínica BA", headers=("Paciente", "Sesión", "Alianza"),
                         mapping=ColumnMapping(patient="Paciente", session="Sesión", alliance="Alianza"),
                         ranges={"alliance": (1.0, 7.0)})
    record = json.loads(json.dumps(saved_mapping_record(saved)))
    loaded = [saved_mapping_from_record(record)]
    assert loaded == [saved]
    # Same headers in another order and case: found; other headers: not.
    assert matching_saved_mapping(["alianza", "SESION", "paciente"], loaded) == saved
    assert matching_saved_mapping(["Paciente", "Sesión"], loaded) is None


# ------------------------------------------------------------------------------ wide layouts

@pytest.mark.parametrize("token, session", [
    ("s1", 1), ("S12", 12), ("3", 3), ("2m", 2), ("3m", 3), ("pre", 0), ("baseline", 0),
    ("sesion4", 4), ("t2", 2), ("post", None), ("total", None),
])
def test_session_from_token(token, session):
    assert session_from_token(token) == session


def test_detect_wide_ans_oq_by_session():
    cols = ["id", "terapeuta", *[f"ans_s{i}" for i in range(1, 5)], *[f"oq_s{i}" for i in range(1, 5)]]
    layout = detect_wide_layout(cols)
    assert layout.columns == {"ans": {i: f"ans_s{i}" for i in range(1, 5)},
                              "oq": {i: f"oq_s{i}" for i in range(1, 5)}}
    assert layout.measures == {"alliance": "ans", "symptoms": "oq"}


def test_detect_wide_pre_and_months():
    layout = detect_wide_layout(["id", "bdi.pre", "bdi.2m", "bdi.3m"])
    assert layout.columns == {"bdi": {0: "bdi.pre", 2: "bdi.2m", 3: "bdi.3m"}}
    assert layout.measures == {"symptoms": "bdi"}


def test_detect_wide_post_is_the_post_treatment_score_not_a_session():
    """Issue 30: a wide file's ``bdi.post`` / ``oq_post`` is the patient's post-treatment score (one value per
    patient), not one more session."""
    layout = detect_wide_layout(["id", "bdi.pre", "bdi.2m", "bdi.post"])
    assert layout.columns == {"bdi": {0: "bdi.pre", 2: "bdi.2m"}}
    assert layout.post == {"bdi": "bdi.post"}
    assert propose_mapping(["id", "bdi.pre", "bdi.2m", "bdi.post"]).post == "bdi.post"
    cols = ["paciente", *[f"ans_s{i}" for i in range(1, 5)], *[f"oq_s{i}" for i in range(1, 5)], "oq_post"]
    assert detect_wide_layout(cols).post == {"oq": "oq_post"}
    assert propose_mapping(cols).post == "oq_post"


@pytest.mark.parametrize("columns, post", [
    (["patient", "session", "oq", "oq_post"], "oq_post"),
    (["paciente", "sesion", "bdi", "BDI post"], "BDI post"),
    (["id", "session", "symptoms", "post_tratamiento"], "post_tratamiento"),
    (["id", "session", "oq", "OQ final"], "OQ final"),
    (["id", "session", "oq", "ans", "ans_post"], None),       # an alliance score after treatment is not it
    (["id", "session", "oq", "postcode"], None),
    (["id", "session", "oq"], None),
])
def test_post_treatment_role_is_proposed_from_its_header(columns, post):
    mapping = propose_mapping(columns)
    assert mapping.post == post
    assert mapping.symptoms in ("oq", "bdi", "symptoms")


def test_detect_wide_without_separator():
    """'ans1, ans2' is as common as 'ans_1'; the stem is everything before the number."""
    layout = detect_wide_layout(["paciente", "ans1", "ans2", "ans3", "oq1", "oq2", "oq3"])
    assert layout.columns == {"ans": {1: "ans1", 2: "ans2", 3: "ans3"}, "oq": {1: "oq1", 2: "oq2", 3: "oq3"}}
    assert layout.measures == {"alliance": "ans", "symptoms": "oq"}


@pytest.mark.parametrize("columns", [
    ["patient", "therapist", "session", "alliance", "symptoms"],
    ["paciente", "sesion", "ans", "oq45", "phq9", "gad7"],
    ["Paciente", "Terapeuta", "Sesión", "Alianza", "Síntomas"],
])
def test_long_files_are_not_wide(columns):
    assert detect_wide_layout(columns) is None


# ------------------------------------------------------------------- wide to long, row by row

WIDE = (
    "id,terapeuta,ans_s1,ans_s2,ans_s3,ans_s4,oq_s1,oq_s2,oq_s3,oq_s4\n"
    "007,T1,5,5.5,,6,80,70,,60\n"       # row 2: session 3 not attended
    "008,T2,4,,,,90,,,\n"               # row 3: only session 1
    "009,T1,,,3,,,,100,\n"              # row 4: only session 3
    "010,T2,,,,,,,,\n"                  # row 5: no session at all
)


def test_wide_file_to_long_row_by_row():
    raw = read_table(WIDE.encode(), filename="wide.csv")
    layout = detect_wide_layout(raw.columns)
    mapping = propose_mapping(raw.columns)
    assert (mapping.patient, mapping.therapist) == ("id", "terapeuta")
    result = validate_table(raw, mapping, wide=layout)
    got = result.data[["patient", "therapist", "session", "alliance", "symptoms", ROW]]
    expected = pd.DataFrame({
        "patient": ["007", "007", "007", "008", "009"],
        "therapist": ["T1", "T1", "T1", "T2", "T1"],
        "session": np.array([1, 2, 4, 1, 3], dtype=np.int64),
        "alliance": [5.0, 5.5, 6.0, 4.0, 3.0],
        "symptoms": [80.0, 70.0, 60.0, 90.0, 100.0],
        ROW: np.array([2, 2, 2, 3, 4], dtype=np.int64),  # the patient's spreadsheet row
    })
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["session"].dtype == np.int64
    # Sessions not attended (empty cells) are not rows, and are not "excluded" either.
    assert result.excluded.empty
    assert result.n_rows_read == 5


def test_wide_to_long_keeps_other_columns_and_renames_clashes():
    raw = read_table(b"id,session,ans_1,ans_2\nA,x,4,5\n", filename="w.csv")
    layout = detect_wide_layout(raw.columns)
    long = wide_to_long(raw.frame, layout, ["id"])
    assert long.columns.tolist() == [ROW, "session", "id", "session (file)", "ans"]
    assert long["session"].tolist() == ["1", "2"]
    assert long["session (file)"].tolist() == ["x", "x"]


def test_wide_months_and_pre():
    raw = read_table(b"id,bdi.pre,bdi.2m,bdi.3m\n1,20,15,10\n2,30,,\n", filename="w.csv")
    result = validate_table(raw, ColumnMapping(patient="id"), wide=detect_wide_layout(raw.columns))
    got = result.data[["patient", "session", "symptoms", ROW]]
    assert got.values.tolist() == [["1", 0, 20.0, 2], ["1", 2, 15.0, 2], ["1", 3, 10.0, 2],
                                   ["2", 0, 30.0, 3]]


def test_wide_file_reasons_name_the_session():
    text = ("id,ans_s1,ans_s2,oq_s1,oq_s2\n"
            "1,4,abc,80,70\n"
            "2,5,6,-99,50\n"
            "3,5,6,40,60\n")
    raw = read_table(text.encode(), filename="w.csv")
    result = validate_table(raw, ColumnMapping(patient="id"), wide=detect_wide_layout(raw.columns))
    assert result.excluded.empty  # each session keeps its other score
    records = result.rows_missing().to_dict("records")
    assert [r["row"] for r in records] == [2, 3]
    assert records[0]["reason"].startswith("session 2:") and "'abc' is not a number" in records[0]["reason"]
    assert records[1]["reason"].startswith("session 1:") and "code -99" in records[1]["reason"]
    assert len(result.data) == 6 and len(result.data.dropna(subset=["alliance", "symptoms"])) == 4


def test_wide_file_needs_patient_and_measures():
    raw = read_table(WIDE.encode(), filename="wide.csv")
    layout = detect_wide_layout(raw.columns)
    with pytest.raises(InputError, match="patient ID"):
        validate_table(raw, ColumnMapping(), wide=layout)
    with pytest.raises(InputError, match="alliance and which the symptoms"):
        validate_table(raw, ColumnMapping(patient="id"), wide=WideLayout(columns=layout.columns))
    with pytest.raises(InputError, match="no column 'nope'"):
        validate_table(raw, ColumnMapping(patient="nope"), wide=layout)


def test_wide_file_with_no_scores_at_all():
    raw = read_table(b"id,ans_1,ans_2\nA,,\nB,,\n", filename="w.csv")
    with pytest.raises(InputError, match="no scores"):
        validate_table(raw, ColumnMapping(patient="id"), wide=detect_wide_layout(raw.columns))
