"""Issue 18, the clinician and account pages in Spanish: no English left on home, overview, patient,
account (signed out and in) and the supervisors' admin page; the language menu switches the
language and stores it with a signed-in user's account; a stored language applies at sign-in; the
caseload's downloads follow the language (CSV with ";" and decimal comma, Excel headers in Spanish).

Charts: the titles, hover texts and legends made inside ``core/reporting/figures.py`` are translated
in that module (another part of issue 18). Until it imports ``core.i18n`` the figures' own texts are
left out of the check here and only the labels these pages hand to the figures (axis and panel
titles) are checked; once it does, every text of every figure is checked too.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.store import dashboard_url
from ui.server import open_store
from tests.app_support import go, open_page
from tests.app_support import signed_in as app_signed_in
from tests.language_support import _figure_texts, _walk, english_in, visible_texts

pytestmark = pytest.mark.usefixtures("fresh_clinic")

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 120
FIGURES_TRANSLATED = "core.i18n" in (ROOT / "core" / "reporting" / "figures.py").read_text(encoding="utf-8")
#: Data values that are not interface text: the demo clinic's patient IDs and therapist names
#: (chart panel titles and hover texts start with them), and the demo accounts' display names,
#: stored in the database as typed ("Demo supervisor").
ALLOW = [r"^D\d{3}\b", r"^T0\d [A-Z][a-z]+\b", r"\bDemo (supervisor|therapist|researcher)\b",
         r"^demo-(supervisor|therapist|researcher)[a-z-]*$"]  # and their user names


def figures(at) -> list[dict]:
    out = []
    for root in (at.main, at.sidebar):
        for el in _walk(root):
            spec = getattr(getattr(el, "proto", None), "spec", None)
            if isinstance(spec, str) and spec.startswith("{"):
                out.append(json.loads(spec))
    return out


def english_on(at) -> list[str]:
    """The page's texts that still hold English (see the module docstring for the figures)."""
    texts = visible_texts(at)
    if not FIGURES_TRANSLATED:
        made_inside = {t for fig in figures(at) for t in _figure_texts(json.dumps(fig))}
        texts = [t for t in texts if t not in made_inside]
        # what the pages pass into the figures: axis titles (and the panel titles of the session means)
        for fig in figures(at):
            texts += [v["title"]["text"] for k, v in fig["layout"].items()
                      if k.startswith("yaxis") and isinstance(v, dict) and isinstance(v.get("title"), dict)
                      and v["title"].get("text")]
    return english_in(texts, allow=ALLOW)


def signed_in(username: str, *, language: str | None = "es", password: str = "demo") -> AppTest:
    at = app_signed_in(username, password, language=language, timeout=TIMEOUT)
    assert at.session_state["signed_in_user"].username == username
    return at


# ------------------------------------------------------------------ pages in Spanish
def test_home_in_spanish():
    at = open_page("home", language="es", timeout=TIMEOUT)
    assert at.title[0].value == "Datos de la clínica"
    assert {m.label for m in at.metric} >= {"Pacientes", "Terapeutas", "Sesiones", "Abandono antes de la sesión 4"}
    assert next(m.value for m in at.metric if m.label == "Abandono antes de la sesión 4") == "30,8%"
    assert at.sidebar.selectbox(key="dataset_choice").options == ["Clínica de demostración (datos simulados, no "
                                                                   "pacientes reales)"]
    assert english_on(at) == []


def test_overview_in_spanish_caseload_therapists_validation_and_trajectories():
    at = open_page("overview", language="es", timeout=TIMEOUT)
    assert at.title[0].value == "Panorama de la clínica"
    caseload = at.dataframe[0]
    labels = {k: v.get("label") for k, v in json.loads(caseload.proto.columns).items()}
    assert labels["patient"] == "Paciente" and labels["signal"] == "Señal actual"
    assert labels["no_reliable_improvement"] == "Sin mejoría confiable hasta la sesión 4"
    table = caseload.value
    assert set(table["signal"]) <= {"▲ fuera de curso", "◆ en riesgo", "● en curso esperado", "○ sin estado"}
    assert set(table["status"]) <= {"recuperado", "mejorado", "sin cambio", "deteriorado", "sin estado"}
    assert table["attention"].iloc[0].startswith("fuera de curso en la sesión 8")
    assert len(at.dataframe) == 4  # caseload, therapists, the signal's validation and its two rules (at once)
    assert any("1 de cada 10 pacientes que evolucionan como se espera" in m.value for m in at.markdown)
    therapists = at.dataframe[1].value
    assert re.fullmatch(r"\d+ de \d+ \(\d+%\)", therapists["deteriorated"].iloc[0])
    assert english_on(at) == []


@pytest.mark.parametrize("patient", [None, "D017"])  # the first patient; one not on track with ruptures
def test_patient_in_spanish(patient):
    at = open_page("patient", language="es", timeout=TIMEOUT, query={"patient": patient} if patient else None)
    assert at.title[0].value == "Paciente"
    if patient == "D017":
        assert at.error and at.error[0].value.startswith("**Fuera de curso (sesión 8)**")  # the signal's box, in Spanish
        ruptures = [m.value for m in at.markdown if "Posible ruptura en la sesión" in m.value]
        assert ruptures and "De la primera a la última sesión" in " ".join(m.value for m in at.markdown)
        table = at.dataframe[0].value
        assert table["status"].iloc[-1] == "▲ fuera de curso"
    assert english_on(at) == []


def test_account_in_spanish_signed_out():
    at = open_page("account", language="es", timeout=TIMEOUT)
    assert at.title[0].value == "Iniciar sesión"
    assert any("Idioma de la interfaz: **Español**" in m.value for m in at.markdown)
    assert english_on(at) == []


def test_account_and_admin_in_spanish_signed_in_as_supervisor():
    at = signed_in("demo-supervisor")
    go(at, "account")
    assert at.title[0].value == "Cuenta"
    assert "rol **supervisor/a**" in at.success[0].value
    assert english_on(at) == []
    go(at, "admin")
    assert at.title[0].value == "Usuarios y registro de auditoría"
    assert english_on(at) == []
    # a change on the page answers in Spanish too
    at.text_input(key="new_username").set_value("nueva")
    at.text_input(key="new_password").set_value("una contraseña larga")
    at.text_input(key="new_therapist_code").set_value("T09 Nueva")
    add = [b for b in at.button if b.key and b.key.startswith("FormSubmitter:new_user-")]
    add[0].click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    assert at.success[0].value == "Se agregó a nueva (terapeuta)."
    assert english_on(at) == []


def test_the_english_pages_are_still_english():
    at = open_page("overview", timeout=TIMEOUT)  # AppTest has no browser language: English
    assert at.title[0].value == "Clinic overview"
    assert at.dataframe[0].value["signal"].iloc[0] == "▲ not on track"


# ------------------------------------------------------------------ choosing and keeping the language
def picker_script():
    """The language menu on a page of its own (AppTest runs app.py, which draws the menu, only on the
    first run; later runs run the page alone), with a title and the signed-in user, if any."""
    import streamlit as st

    from core.i18n import _
    from ui.language import language_picker

    language_picker()
    st.title(_("Clinic data"))


def test_the_menu_switches_the_language():
    at = AppTest.from_function(picker_script, default_timeout=TIMEOUT)
    at.run()
    assert at.title[0].value == "Clinic data" and at.sidebar.selectbox(key="language_menu").value == "en"
    at.sidebar.selectbox(key="language_menu").select("es").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Datos de la clínica"
    assert at.sidebar.selectbox(key="language_menu").label == "Idioma"
    assert at.session_state["language_source"] == "menu"
    at.sidebar.selectbox(key="language_menu").select("en").run()
    assert at.title[0].value == "Clinic data"
    full = AppTest.from_file(APP, default_timeout=TIMEOUT)  # and app.py draws it in the sidebar
    full.run()
    assert full.sidebar.selectbox(key="language_menu").options == ["English", "Español"]


def test_a_signed_in_choice_is_stored_and_applied_at_the_next_sign_in():
    at = signed_in("demo-therapist-ana", language=None)
    store = open_store(dashboard_url())
    ana = store.authenticate("demo-therapist-ana", "demo")
    assert store.language_of(ana) is None  # signing in stores nothing by itself
    menu = AppTest.from_function(picker_script, default_timeout=TIMEOUT)
    menu.session_state["signed_in_user"] = at.session_state["signed_in_user"]
    menu.run()
    menu.sidebar.selectbox(key="language_menu").select("es").run()
    assert menu.title[0].value == "Datos de la clínica"
    assert store.language_of(ana) == "es"  # kept with her account
    go(at, "account")
    assert any("kept with your account: Español" in m.value for m in at.markdown)  # this tab: still English

    # a new browser session (English by default) signs in: her stored Spanish applies
    later = signed_in("demo-therapist-ana", language=None)
    assert later.session_state["language"] == "es"
    go(later, "overview")
    assert later.title[0].value == "Mis pacientes"  # a therapist's overview is her caseload


def test_a_language_picked_before_signing_in_wins_and_is_stored():
    store = open_store(dashboard_url())
    supervisor = store.authenticate("demo-supervisor", "demo")
    store.set_language(supervisor, "es")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["language"] = "en"  # as the menu's callback leaves it (test above)
    at.session_state["language_source"] = "menu"
    at.run()
    assert store.language_of(supervisor) == "es"  # signed out: a pick is not stored anywhere
    at.switch_page(str(ROOT / "pages" / "account.py"))
    at.run()
    at.text_input(key="sign_in_username").set_value("demo-supervisor")
    at.text_input(key="sign_in_password").set_value("demo")
    at.button(key="FormSubmitter:sign_in_form-Sign in").click().run()
    assert not at.exception, at.exception
    assert at.session_state["language"] == "en" and store.language_of(supervisor) == "en"


def test_a_link_s_language_wins_for_the_session_and_is_not_stored():
    store = open_store(dashboard_url())
    supervisor = store.authenticate("demo-supervisor", "demo")
    store.set_language(supervisor, "en")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["lang"] = "es"
    at.run()
    assert at.title[0].value == "Datos de la clínica" and at.session_state["language_source"] == "url"
    at.switch_page(str(ROOT / "pages" / "account.py"))
    at.run()
    at.text_input(key="sign_in_username").set_value("demo-supervisor")
    at.text_input(key="sign_in_password").set_value("demo")
    at.button(key="FormSubmitter:sign_in_form-Iniciar sesión").click().run()
    assert not at.exception, at.exception
    assert at.session_state["language"] == "es" and store.language_of(supervisor) == "en"


def test_signing_out_keeps_the_page_in_its_language():
    at = signed_in("demo-supervisor")
    go(at, "account")
    at.button(key="sign_out").click().run()
    assert not at.exception, at.exception
    assert "signed_in_user" not in at.session_state
    assert at.title[0].value == "Iniciar sesión"


def test_after_a_sign_out_the_next_user_gets_her_own_stored_language():
    store = open_store(dashboard_url())
    ana = store.authenticate("demo-therapist-ana", "demo")
    store.set_language(ana, "en")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["language"] = "es"  # the supervisor's own pick in the menu
    at.session_state["language_source"] = "menu"
    at.run()
    at.switch_page(str(ROOT / "pages" / "account.py"))
    at.run()
    for user in ("demo-supervisor", "demo-therapist-ana"):
        at.text_input(key="sign_in_username").set_value(user)
        at.text_input(key="sign_in_password").set_value("demo")
        [b for b in at.button if b.key and b.key.startswith("FormSubmitter:sign_in_form-")][0].click().run()
        assert not at.exception, at.exception
        if user == "demo-supervisor":
            assert store.language_of(store.authenticate("demo-supervisor", "demo")) == "es"
            go(at, "account")
            at.button(key="sign_out").click().run()
            assert at.title[0].value == "Iniciar sesión"  # still Spanish after the sign-out
    assert at.session_state["language"] == "en" and store.language_of(ana) == "en"


# ------------------------------------------------------------------ downloads
def test_caseload_downloads_in_spanish(downloads):
    at = open_page("overview", language="es", timeout=TIMEOUT)
    table = at.dataframe[0].value
    label, _, csv = downloads["caseload_csv"]
    assert label == "Casos (CSV)"
    text = csv.decode("utf-8-sig")
    assert text.splitlines()[0].split(";")[:3] == ["patient", "signal", "attention"]  # the keys: stable for scripts
    read = pd.read_csv(io.BytesIO(csv), sep=";", decimal=",", encoding="utf-8-sig")
    assert len(read) == 120 and read["signal"].iloc[0] == "▲ fuera de curso"
    assert read["change"].tolist() == pytest.approx(table["change"].tolist())
    _, _, xlsx = downloads["caseload_xlsx"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx))
    sheet = book["Casos"]
    assert sheet["A1"].value.startswith("Casos de Clínica de demostración")
    assert [c.value for c in sheet[3]][:4] == ["Paciente", "Señal actual", "Por qué (motivos)", "Terapeuta"]
    definitions = dict(row for row in book["Umbrales y definiciones"].iter_rows(min_row=2, values_only=True))
    # numbers stored as numbers (issue 24): Excel set to Spanish writes them 63,5
    assert definitions["Punto de corte clínico"] == 63.5 and definitions["Cambio confiable (puntos)"] == 14
    assert definitions["Medida de síntomas"] == "OQ-45.2, puntaje total (0–180)"
    assert english_in([str(v) for row in book["Umbrales y definiciones"].iter_rows(values_only=True)
                       for v in row if v]) == []

