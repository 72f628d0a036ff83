"""The researcher pages (model explorer, reciprocal dynamics, power, upload) in Spanish show no
English: every label, message, table header and sentence they make is translated (issue 18), in
the states that show each page's sections (the ladder and a fitted formula; pooled studies and the
RI-CLPM; a power curve; an uploaded file with its validation report and rows left out). The HTML
report downloaded from the model explorer in Spanish is in Spanish."""
import json
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from app_support import open_page, paperlike_dataset
from language_support import english_in, english_words, visible_texts

ROOT = Path(__file__).resolve().parent.parent

#: Texts that stay as they are in every language.
ALLOW = [
    r"~",  # an lme4 formula (the builder's formula box): variable names stay English
    r"python -m core [a-z]+ --",  # a command line: subcommands and flags are the same in every language
]


def untranslated(at) -> list[str]:
    """English left on the page, beyond ALLOW."""
    return english_in(visible_texts(at), allow=ALLOW)


@pytest.fixture(autouse=True)
def fresh_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def test_model_explorer_in_spanish_ladder_formula_and_report(monkeypatch):
    downloads = {}
    real_download = st.download_button

    def spy(label, data, *args, **kwargs):  # every download button of the page, by key
        downloads[kwargs.get("key")] = data
        return real_download(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    at = open_page("models", paperlike_dataset(), language="es")
    assert at.title[0].value == "Explorador de modelos"
    assert untranslated(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["CCI de pacientes"] == "0,868"  # decimal comma
    assert "híbrido" in set(at.dataframe[0].value["model"])  # the ladder's models named in Spanish
    at.checkbox(key="mb_detrend").check().run()
    at.text_input(key="mb_formula").set_value("symptoms ~ time + alliance_within + (1 | patient)").run()
    assert not at.exception
    assert any(c.value.startswith("Su fórmula en la línea de comandos") for c in at.caption)
    assert untranslated(at) == []
    # the report is built when the button is clicked, by the server outside the page's run (in
    # the test's thread here, whose language is English): it must still be the page's language
    assert "Descargar el informe (HTML)" in [b.proto.label for b in at.get("download_button")]
    html = downloads["report_html"]()
    html = html.decode() if isinstance(html, bytes) else html
    assert "<html lang='es'>" in html
    assert "Secuencia de modelos" in html and "Model ladder" not in html


def test_dynamics_in_spanish_pooled_studies_and_riclpm():
    frame = pd.read_csv(ROOT / "tests" / "data" / "multistudy_public.csv")
    spanish = frame.rename(columns={"study": "estudio", "patient": "paciente", "therapist": "terapeuta",
                                    "session": "sesion", "alliance": "alianza", "symptoms": "sintomas"})
    at = open_page("dynamics", language="es")
    assert at.title[0].value == "Dinámica recíproca"
    at.radio(key="dyn_source").set_value("Upload studies").run()
    at.file_uploader(key="dyn_files").set_value(
        [("estudios.csv", spanish.to_csv(index=False).encode(), "text/csv")]).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="dyn_map_study").value == "estudio"
    subheaders = [s.value for s in at.subheader]
    assert "Etapa 2: combinación de los estudios" in subheaders
    assert any("RI-CLPM" in s for s in subheaders)
    assert len([c for c in at.get("plotly_chart") if c.key.startswith("forest_")]) == 2
    assert untranslated(at) == []


def test_power_in_spanish_curve_table_and_methods_sentence():
    at = open_page("power", paperlike_dataset(), language="es")
    assert at.title[0].value == "Planificar un estudio: potencia"
    assert untranslated(at) == []
    at.text_input(key="pw_effect__text").set_value("−0,05")  # Spanish: a text field with a decimal comma
    at.text_input(key="pw_sizes").set_value("48, 96")
    at.number_input(key="pw_nsim").set_value(10)
    at.button(key="pw_compute").click()
    at.run(timeout=300)
    assert not at.exception and not at.error
    assert at.get("plotly_chart") and at.dataframe
    config = json.loads(at.dataframe[0].proto.columns)
    headers = [config[c]["label"] for c in ("patients", "power")]
    assert headers == ["pacientes", "potencia"]
    assert untranslated(at) == []
    # the methods sentence is a code block (to copy), which visible_texts leaves out: checked here
    sentence = at.code[-1].value
    assert "Power to detect an effect of" not in sentence and "patients" not in sentence
    assert english_words(sentence) == [], sentence


def test_upload_in_spanish_report_and_rows_left_out():
    at = open_page("upload", language="es")
    assert at.title[0].value == "Subir datos"
    data = (ROOT / "examples" / "visits.csv").read_bytes()
    # a row left out (no patient) and a session kept with a score missing, beside the example file
    data += "\n;T02 Bruno;3;4,0;70\nD001;T02 Bruno;9;n/a;71\n".encode()
    at.file_uploader(key="upload_file").set_value(("visitas.csv", data, "text/csv")).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Filas dejadas afuera"]) >= 1 and int(metrics["Puntajes faltantes"]) >= 1
    assert any("no pueden usarse" in w.value or "no puede usarse" in w.value for w in at.warning)
    assert any("separado por punto y coma, coma decimal" in c.value for c in at.caption)
    assert untranslated(at) == []
