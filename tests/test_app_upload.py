"""The home and upload pages through Streamlit's AppTest (no browser)."""
import io
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from app_support import go, open_page, signed_in
from streamlit.testing.v1 import AppTest

from core.demo import DEMO_LABEL
from core.store import ClinicStore, dashboard_url

pytestmark = pytest.mark.usefixtures("fresh_clinic")

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
UPLOAD = str(ROOT / "pages" / "upload.py")


def _csv(text: str, encoding="utf-8") -> bytes:
    return text.encode(encoding)


def test_home_shows_demo_clinic_labelled():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Clinic data"
    labels = {m.label: m.value for m in at.metric}
    assert labels["Patients"] == "120" and labels["Therapists"] == "6"
    assert any("DEMO DATA" in c.value for c in at.caption)
    assert at.selectbox(key="dataset_choice").value == DEMO_LABEL


def test_upload_spanish_semicolon_file_maps_and_reports_excluded_rows():
    at = open_page("upload", timeout=TIMEOUT)
    data = _csv("Paciente;Terapeuta;Sesión;Alianza;Síntomas\n"
                "007;Dra. Pérez;1;5,5;80\n"
                "007;Dra. Pérez;2;8,5;75\n"
                "008;Dr. Gómez;Sesión 1;4,5;n/a\n"
                "008;Dr. Gómez;2;5,0;88\n", "cp1252")
    at.file_uploader(key="upload_file").set_value(("clinica.csv", data, "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="map_patient").value == "Paciente"
    assert at.selectbox(key="map_session").value == "Sesión"
    assert at.selectbox(key="map_alliance").value == "Alianza"
    assert at.selectbox(key="map_symptoms").value == "Síntomas"
    metrics = {m.label: m.value for m in at.metric}
    # both problem rows keep their session (the other score is usable); each is listed with its reason
    assert metrics["Rows read"] == "4" and metrics["Rows used"] == "4" and metrics["Rows left out"] == "0"
    assert metrics["Scores missing"] == "2"
    excluded = at.dataframe[0].value
    assert list(excluded["row"]) == [3, 4]
    assert "outside the allowed range" in excluded["reason"].iloc[0]
    assert "symptoms missing" in excluded["reason"].iloc[1]
    preview = at.dataframe[1].value
    assert set(preview["patient"]) == {"007", "008"}  # leading zeros survive


def test_user_corrects_mapping_and_uses_data():
    at = open_page("upload", timeout=TIMEOUT)
    data = _csv("id,therapist,visit_no,score_a,score_b\nA,T1,1,5,60\nA,T1,2,6,55\nB,T2,1,4,70\nB,T2,2,5,66\n")
    at.file_uploader(key="upload_file").set_value(("x.csv", data, "text/csv")).run()
    at.selectbox(key="map_session").set_value("visit_no").run()
    at.selectbox(key="map_alliance").set_value("score_a").run()
    at.selectbox(key="map_symptoms").set_value("score_b").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Rows used"] == "4"
    at.text_input(key="dataset_name").set_value("My clinic").run()
    at.button(key="use_data").click().run()
    assert any("My clinic" in s.value for s in at.success)
    assert at.session_state["active_dataset"] == "My clinic"


def test_each_new_file_proposes_its_own_name():
    """The name typed for the last file is not kept for the next one (whose rows would go into the last
    one's data set by surprise); the next file's name is proposed, and a name typed for it stays."""
    at = open_page("upload", timeout=TIMEOUT)
    first = _csv("patient,therapist,session,alliance,symptoms\nA,T1,1,5,60\nA,T1,2,6,55\n")
    at.file_uploader(key="upload_file").set_value(("march.csv", first, "text/csv")).run()
    assert at.text_input(key="dataset_name").value == "march"
    at.text_input(key="dataset_name").set_value("Clinic 2026").run()
    at.selectbox(key="map_symptoms").set_value("symptoms").run()  # a rerun for the same file keeps it
    assert at.text_input(key="dataset_name").value == "Clinic 2026"
    second = _csv("patient,therapist,session,alliance,symptoms\nB,T1,1,5,60\nB,T1,2,6,55\n")
    at.file_uploader(key="upload_file").set_value(("april.csv", second, "text/csv")).run()
    assert not at.exception, at.exception
    assert at.text_input(key="dataset_name").value == "april"


def _map_march(at) -> None:
    data = _csv("id,therapist,visit_no,score_a,score_b\nA,T1,1,5,60\nA,T1,2,6,55\n")
    at.file_uploader(key="upload_file").set_value(("march.csv", data, "text/csv")).run()
    at.selectbox(key="map_session").set_value("visit_no").run()
    at.selectbox(key="map_alliance").set_value("score_a").run()
    at.selectbox(key="map_symptoms").set_value("score_b").run()
    at.text_input(key="mapping_name").set_value("Monthly export").run()
    at.button(key="save_mapping").click().run()
    assert not at.exception, at.exception


def _april(at):
    april = _csv("score_b,score_a,id,therapist,visit_no\n50,6,C,T3,1\n48,6,C,T3,2\n")
    at.file_uploader(key="upload_file").set_value(("april.csv", april, "text/csv")).run()
    assert not at.exception, at.exception
    return at


def test_a_signed_out_visitors_saved_mapping_stays_in_her_session(tmp_path):
    """Issue 25: a signed-out visitor's saved mapping maps her next file, but is written nowhere else:
    no mappings.json in the data folder, nothing in the database, no other session sees it."""
    at = open_page("upload", timeout=TIMEOUT)
    _map_march(at)
    assert any("this browser session only" in s.value for s in at.success)
    assert not (tmp_path / "mappings.json").exists()
    _april(at)
    assert any("Monthly export" in s.value for s in at.success)        # her next file, one click
    assert at.selectbox(key="map_session").value == "visit_no"
    other = _april(open_page("upload", timeout=TIMEOUT))                # anyone else: not mapped by it
    assert not any("Monthly export" in s.value for s in other.success)
    assert other.selectbox(key="map_alliance").value != "score_a"
    supervisor = _april(go(signed_in("demo-supervisor"), "upload"))     # nor a supervisor's upload
    assert not any("Monthly export" in s.value for s in supervisor.success)


def test_a_supervisors_saved_mapping_is_kept_in_the_clinic_database(tmp_path):
    at = go(signed_in("demo-supervisor"), "upload")
    _map_march(at)
    assert any("clinic database" in s.value for s in at.success)
    assert not (tmp_path / "mappings.json").exists()
    store = ClinicStore(dashboard_url(), bcrypt_rounds=4)
    assert [m.name for m in store.saved_mappings(store.authenticate("demo-supervisor", "demo"))] == ["Monthly export"]
    later = _april(go(signed_in("demo-supervisor"), "upload"))          # the next session, the next month
    assert any("Monthly export" in s.value for s in later.success)
    assert later.selectbox(key="map_session").value == "visit_no"
    assert {m.label: m.value for m in later.metric}["Rows used"] == "2"
    visitor = _april(open_page("upload", timeout=TIMEOUT))              # never offered to a signed-out visitor
    assert not any("Monthly export" in s.value for s in visitor.success)


def test_wide_file_is_recognised():
    at = open_page("upload", timeout=TIMEOUT)
    data = _csv("paciente,terapeuta,ans_s1,ans_s2,oq_s1,oq_s2\nP1,T1,5,6,80,70\nP2,T1,4,,90,\n")
    at.file_uploader(key="upload_file").set_value(("wide.csv", data, "text/csv")).run()
    assert not at.exception
    assert any("wide" in i.value for i in at.info)
    assert at.selectbox(key="wide_alliance").value == "ans"
    assert at.selectbox(key="wide_symptoms").value == "oq"
    assert {m.label: m.value for m in at.metric}["Rows used"] == "3"


def test_excel_with_sheet_choice():
    frame = pd.DataFrame({"Paciente": ["001", "001", "002", "002"], "Sesión": [1, 2, 1, 2],
                          "Alianza": [5.5, 6.0, 4.0, 4.5], "Síntomas": [80, 70, 90, 85]})
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xw:
        pd.DataFrame({"notes": ["cover sheet"]}).to_excel(xw, sheet_name="Portada", index=False)
        frame.to_excel(xw, sheet_name="Datos", index=False)
    at = open_page("upload", timeout=TIMEOUT)
    at.file_uploader(key="upload_file").set_value(
        ("clinica.xlsx", buf.getvalue(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")).run()
    # First sheet has no usable columns: the page says what to choose instead of crashing.
    assert not at.exception
    at.selectbox(key="upload_sheet").set_value("Datos").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Rows used"] == "4"


def test_unreadable_file_gets_one_plain_message():
    at = open_page("upload", timeout=TIMEOUT)
    at.file_uploader(key="upload_file").set_value(("broken.xlsx", b"not a workbook", "application/octet-stream")).run()
    assert not at.exception
    assert len(at.error) == 1 and "could not be opened as an Excel workbook" in at.error[0].value


def test_symptoms_scored_from_oq_items_with_alpha_and_reasons():
    import numpy as np

    rng = np.random.default_rng(5)
    rows = []
    for p in range(30):
        level = rng.normal(0, 1)
        for s in (1, 2):
            items = np.clip(np.round(2 + level + rng.normal(0, 0.8, 45)), 0, 4).astype(int)
            rows.append([f"P{p:02d}", s, 5.0] + list(items))
    frame = pd.DataFrame(rows, columns=["patient", "session", "alliance"] + [f"oq{i}" for i in range(1, 46)])
    frame = frame.astype(str)
    frame.loc[0, [f"oq{i}" for i in range(1, 11)]] = ""  # 10 of 45 missing: no score for row 2
    at = open_page("upload", timeout=TIMEOUT)
    at.file_uploader(key="upload_file").set_value(("items.csv", frame.to_csv(index=False).encode(), "text/csv")).run()
    assert not at.exception
    assert at.checkbox(key="items_on_symptoms").value is True
    assert at.selectbox(key="items_inst_symptoms").value == "oq45"
    assert len(at.multiselect(key="items_cols_symptoms").value) == 45
    success = " ".join(s.value for s in at.success)
    assert "Cronbach's α in this sample" in success
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows used"] == "60" and metrics["Rows left out"] == "0"  # alliance present: kept
    assert metrics["Scores missing"] == "1"
    excluded = at.dataframe[0].value
    assert excluded["row"].tolist() == [2]
    assert "10 of 45 items missing" in excluded["reason"].iloc[0]
