"""The Upload page with a FHIR bundle and the patient page's summary PDF, through Streamlit's AppTest."""
from __future__ import annotations

import pytest
from app_support import go, open_page

from tests import fhir_support as fs

pytestmark = pytest.mark.usefixtures("fresh_clinic")
TIMEOUT = 120


def _upload(at, data: bytes, name: str = "record.json"):
    at.file_uploader(key="upload_file").set_value((name, data, "application/json")).run()
    assert not at.exception, at.exception
    return at


def test_fhir_bundle_is_mapped_and_every_unusable_resource_listed():
    at = open_page("upload", timeout=TIMEOUT)
    data, bad, good = fs.broken_bundle()
    _upload(at, data)
    assert at.selectbox(key="fhir_code_alliance").value == f"{fs.CODES}|wai"
    at.selectbox(key="fhir_code_symptoms").set_value(f"{fs.CODES}|oq").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Resources read"] == "23"
    listed = at.dataframe[0].value
    used = at.dataframe[1].value
    # every resource is used, listed with its position and reason, or a supporting Patient (8, 23)
    assert set(listed["row"]) | set(used["row"]) | {8, 9, 23} == set(range(1, 24))
    assert not set(listed["row"]) & set(used["row"])
    reasons = dict(zip(listed["row"], listed["reason"]))
    assert "not mapped" in reasons[11] and "no patient" in reasons[3]  # the questionnaire, when OQ codes are chosen
    assert any("same day are one session" in i.value for i in at.info)


def test_fhir_bundle_becomes_the_active_data_set_and_opens_on_the_patient_page(downloads):
    at = open_page("upload", timeout=TIMEOUT)
    resources = [fs.observation(f"P{p}", f"2024-0{s}-01", "oq", 90 - 3 * s - p) for p in range(1, 4) for s in range(1, 6)]
    resources += [fs.observation(f"P{p}", f"2024-0{s}-01", "wai", 5) for p in range(1, 4) for s in range(1, 6)]
    _upload(at, fs.as_bytes(fs.bundle(resources)))
    at.button(key="use_data").click().run()
    assert not at.exception
    go(at, "patient", {"patient": "P2"})
    assert at.selectbox(key="patient_id").value == "P2"
    label, file_name, pdf = downloads["patient_pdf"]
    assert label == "Download a one-page summary (PDF)" and file_name == "summary_P2.pdf"
    assert pdf.startswith(b"%PDF")
    # the course for the record system: P2's scores as an R4 Bundle, reading back as the same sessions
    import json

    from fhir.resources.R4B.bundle import Bundle

    from core.intake.fhir import read_fhir_validated

    _label, file_name, course = downloads["patient_pdf_fhir"]
    assert file_name == "patient_P2.fhir.json"
    Bundle.model_validate(json.loads(course))
    back = read_fhir_validated(course, source=file_name).validated.data
    assert back["patient"].unique().tolist() == ["P2"] and back["session"].tolist() == [1, 2, 3, 4, 5]
    assert back["symptoms"].tolist() == [90 - 3 * s - 2 for s in range(1, 6)]


def test_patient_page_summary_pdf_in_spanish(downloads, tmp_path):
    open_page("patient", query={"patient": "D003"}, language="es", timeout=TIMEOUT)
    label, file_name, pdf = downloads["patient_pdf"]
    assert label == "Descargar un resumen de una página (PDF)"
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / file_name
    path.write_bytes(pdf)
    text = " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True).stdout.split())
    assert "Resumen del paciente: D003" in text and "Fuera de curso" in text
    assert "Clínica de demostración" in text or "demostración" in text


def test_spanish_upload_page_speaks_spanish_for_a_bundle():
    at = open_page("upload", language="es", timeout=TIMEOUT)
    data, _bad, _good = fs.broken_bundle()
    _upload(at, data)
    assert [s.value for s in at.subheader][:2] == ["1. ¿Qué código es cada medida?", "3. Informe de validación"] \
        or "1. ¿Qué código es cada medida?" in [s.value for s in at.subheader]
    metrics = {m.label for m in at.metric}
    assert "Recursos leídos" in metrics and "Recursos excluidos" in metrics
