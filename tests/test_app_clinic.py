"""Clinician pages through AppTest: patient page and clinic overview, on demo and uploaded data."""
from pathlib import Path

import pytest
import streamlit as st
from app_support import open_page, paperlike_dataset
from streamlit.testing.v1 import AppTest

from core.intake.dataset import Dataset
from core.intake.mapping import ColumnMapping
from core.intake.validation import validate_table

pytestmark = pytest.mark.usefixtures("fresh_clinic")

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 60


def _metrics(at):
    return {m.label: m.value for m in at.metric}


def test_patient_page_demo_shows_status_sentences_and_table():
    at = open_page("patient", timeout=TIMEOUT)
    at.selectbox(key="patient_id").set_value("D017").run()
    m = _metrics(at)
    assert m["Sessions"] == "8" and m["Jacobson–Truax status"] == "deteriorated"
    # what needs attention first: one line with the status and why, before the chart
    assert len(at.error) == 1
    summary = at.error[0].value
    assert summary.startswith("**Not on track (session 8)**: score 141, expected 101") and "not-on-track bound" in summary
    assert "rupture in session 8" in summary
    text = " ".join(md.value for md in at.markdown)
    assert "Possible rupture in session 6: alliance was 0.93 points below this patient's mean so far" in text
    table = at.dataframe[0].value
    assert list(table["session"]) == list(range(1, 9))
    # the status in a symbol (the chart's marker shape) and words
    assert table["status"].tolist() == ["○ unknown", "● on track", "● on track", "◆ at risk"] + ["▲ not on track"] * 4
    # the bound on this session's score; none at session 8, where the earlier scores alone decide
    assert table["bound (not on track)"].iloc[5] != "—" and table["bound (not on track)"].iloc[7] == "—"
    assert "the earlier scores alone keep the course past it" in table["why"].iloc[7]
    assert table["why"].iloc[0].startswith("first session")
    assert {"expected", "bound (not on track)", "alliance mean so far", "rupture", "repaired"} <= set(table.columns)
    assert any("REML" in md.value and "own courses (120 patients)" in md.value for md in at.markdown)  # the definition


def test_patient_page_on_track_patient_is_green():
    at = open_page("patient", timeout=TIMEOUT)
    at.selectbox(key="patient_id").set_value("D005").run()
    assert not at.error and len(at.success) == 1
    assert at.success[0].value.startswith("**On track (session 8)**")


def test_rupture_threshold_changes_flags_without_refitting(monkeypatch):
    at = open_page("patient", timeout=TIMEOUT)
    at.selectbox(key="patient_id").set_value("D017").run()
    assert sum("Possible rupture" in md.value for md in at.markdown) == 2
    import core.clinical.signal as signal
    calls = []
    original = signal.fit_signal_model
    monkeypatch.setattr("ui.clinic.fit_signal_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    at.select_slider(key="rupture_threshold").set_value(1.5).run()
    assert sum("Possible rupture" in md.value for md in at.markdown) == 1
    at.selectbox(key="patient_id").set_value("D042").run()
    assert calls == []  # the clinic's expected courses came from the cache


def test_patient_opened_by_query_parameter():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["patient"] = "D042"
    at.run()
    at.switch_page(str(ROOT / "pages" / "patient.py"))
    at.query_params["patient"] = "D042"
    at.run()
    assert at.selectbox(key="patient_id").value == "D042"


def test_patient_page_on_uploaded_mean_item_scores():
    at = open_page("patient", paperlike_dataset("paperlike upload"), timeout=TIMEOUT)
    assert at.selectbox(key="patient_id").value == "P0000"
    # OQ mean item scores (0-4): thresholds scale to 63.5/45 and 14/45
    assert at.selectbox(key=[w.key for w in at.selectbox if w.key and w.key.startswith("clin_instrument")][0]).value \
        == "OQ-45.2 mean item score (0–4)"
    assert _metrics(at)["Sessions"] == "4"


def test_overview_demo_caseload_sorted_and_downloads():
    at = open_page("overview", timeout=TIMEOUT)
    m = _metrics(at)
    assert m["Patients"] == "120" and m["Therapists"] == "6" and m["Dropout before session 4"] == "30.8%"
    assert any("lie between therapists" in i.value for i in at.info)
    table = at.dataframe[0].value
    assert len(table) == 120
    assert table["patient"].iloc[0] == "D017" and table["status"].iloc[0] == "deteriorated"
    # red, then yellow, then an unrepaired rupture, then the rest; the reasons in words
    group = table["signal"].map({"▲ not on track": 0, "◆ at risk": 1}).fillna(
        table["unrepaired"].gt(0).map({True: 2, False: 3}))
    assert group.is_monotonic_increasing and (group == 0).sum() == 10 and (group == 1).sum() == 6
    assert table["attention"].iloc[0].startswith("not on track at session 8: score 141, expected 101")
    # the flag that never cleared: no patient who improved reliably is still flagged
    improved = table["status"].isin(["improved", "recovered"])
    assert improved.any() and not table.loc[improved, "no_reliable_improvement"].any()
    therapists = at.dataframe[1].value
    assert list(therapists.columns) == ["therapist", "patients", "not on track now", "deteriorated", "unrepaired rupture"]
    assert therapists.set_index("therapist").loc["T03 Carla", "not on track now"] == "6 of 23 (26%)"
    assert any("not a ranking of therapists" in c.value for c in at.caption)
    # the definition in words beside the caseload and the therapists, the norm in use, the calibration
    rates = "1 in 10 patients who are doing as expected will be flagged not on track at some point"
    assert any(rates in md.value and "own courses (120 patients)" in md.value for md in at.markdown)
    assert any(c.value.startswith("Not on track now: the latest session's signal. " + rates) for c in at.caption)
    assert any(c.value.startswith("Checked by simulating 8,000 patients") for c in at.caption)
    validation = at.dataframe[2].value
    assert validation["by session"].tolist() == [4, 6, 4, 6]
    assert validation["outcome"].tolist() == ["reliable deterioration"] * 2 + ["no reliable improvement"] * 2
    assert validation["sensitivity"].str.match(r"\d+ of \d+ \(\d+%\)").all()
    rules = at.dataframe[3].value
    assert len(rules) == 2 and rules["rule"].iloc[0].endswith("✓")
    assert any("cross-validation by patient" in c.value for c in at.caption)
    labels = [b.label for b in at.get("download_button")]
    assert "Caseload (CSV)" in labels and "Caseload (Excel)" in labels
    assert "Save this expected course as a norm (JSON)" in labels


def test_overview_filters_by_therapist_and_opens_patient(monkeypatch):
    at = open_page("overview", timeout=TIMEOUT)
    at.multiselect(key="overview_therapists").set_value(["T03 Carla"]).run()
    table = at.dataframe[0].value
    assert set(table["therapist"]) == {"T03 Carla"}
    first = table["patient"].iloc[0]
    # AppTest stays on the page it was pointed at, so record the page switch instead.
    switched = []
    monkeypatch.setattr(st, "switch_page", lambda page, **kwargs: switched.append((page, kwargs)))
    at.selectbox(key="overview_open").set_value(first).run()
    at.button(key="open_patient_button").click().run()
    assert switched == [("pages/patient.py", {"query_params": {"patient": first}})]
    assert at.session_state["open_patient"] == first
    # The patient page then opens the requested patient.
    at.switch_page(str(ROOT / "pages" / "patient.py"))
    at.run()
    assert at.selectbox(key="patient_id").value == first


def test_overview_on_uploaded_data():
    at = open_page("overview", paperlike_dataset("paperlike upload"), timeout=TIMEOUT)
    m = _metrics(at)
    assert m["Patients"] == "96" and m["Therapists"] == "8"
    info = " ".join(i.value for i in at.info)
    assert "0.0% of the differences in symptoms lie between therapists" in info


def _many_patients(n: int = 600) -> Dataset:
    import numpy as np
    import pandas as pd

    from core.intake.reading import read_csv_bytes

    rng = np.random.default_rng(3)
    rows = [{"patient": f"P{p:04d}", "therapist": f"T{p % 7}", "session": s,
             "alliance": round(float(rng.uniform(3, 7)), 2), "symptoms": round(float(rng.uniform(40, 120)), 1)}
            for p in range(n) for s in (1, 2, 3)]
    raw = read_csv_bytes(pd.DataFrame(rows).to_csv(index=False).encode(), source="many.csv")
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                            alliance="alliance", symptoms="symptoms")
    return Dataset(name="many patients", validated=validate_table(raw, mapping))


def test_patient_page_with_many_patients_finds_a_patient_by_typed_id():
    at = open_page("patient", _many_patients(), timeout=TIMEOUT)
    box = at.selectbox(key="patient_id")
    assert len(box.options) == 500 and box.value == "P0000"
    assert any("500 of 600" in c.value for c in at.caption)
    at.text_input(key="patient_search").set_value("P0577").run()
    assert at.selectbox(key="patient_id").value == "P0577"
    assert _metrics(at)["Sessions"] == "3"
    at.text_input(key="patient_search").set_value("P05").run()  # several matches: the current one stays
    box = at.selectbox(key="patient_id")
    assert box.value == "P0577" and len(box.options) == 100 and all(o.startswith("P05") for o in box.options)
    at.text_input(key="patient_search").set_value("nobody").run()
    assert any("No patient ID contains" in w.value for w in at.warning)
    assert at.selectbox(key="patient_id").value == "P0577"


def test_patient_page_with_many_patients_opens_one_from_the_url_beyond_the_list():
    at = open_page("patient", _many_patients(), query={"patient": "P0599"}, timeout=TIMEOUT)
    assert at.selectbox(key="patient_id").value == "P0599"
