"""Browser test of *Record a session* and patient mode, in Chromium, on a clinic database made as a
clinic's IT makes one (tests/record_support.py).

1. At 1400, 800 and 390 px, in English and in Spanish, therapist Ana signs in (her caseload is her start
   page), opens *Record a session* and, with the keyboard only, records session 5 of one of her patients
   with a clearly worse symptom score: an alliance score out of range is refused with one sentence
   before anything is saved, the score fields open the number pad (``inputmode="decimal"``). After
   saving, the patient page and her caseload show *not on track* without a reload (the seconds it took
   are written to test-artifacts/record_timings.json; the 2-second target is measured by
   bench/bench_record.py, not asserted here: the machine is shared); the audit log has the entry and
   ``store export`` has the row.
2. Patient mode: started for one patient and session, the tablet shows only the questionnaire, in the
   patient's language; every way out is tried (addresses of every page, another patient's ID in the URL,
   an unknown address, the back button, a reload, a new tab, the keyboard) and none leads anywhere else;
   after *Finish* it thanks the patient and stays locked (reload, addresses, new tab) until a staff
   member signs in.

Screenshots: test-artifacts/record_*.png and kiosk_*.png (also copied to ``$ALLIANCE_SHOTS_DIR``).
Timings: test-artifacts/record_timings.json.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import expect
from browser_support import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, go_by_sidebar, press, require_chromium,
                             running_app, sign_in_by_keyboard, tall_screenshot, type_into, wait_for_text, wait_idle)

from core.i18n import _, language
from tests.record_support import ANA, ANA_PASSWORD, DATASET, HEAD, HEAD_PASSWORD, make_clinic

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (1400, 800, 390)
COMBOS = [(w, lang) for lang in ("en", "es") for w in WIDTHS]
# which of the eight patients cut after session 4 each combination records (the others go to patient mode):
# not the fifth (D047), whose course starts at 112: after four other patients of this small clinic jumped to
# 170 at session 5, the course model's spread at session 5 is so wide that even 180 lies within its bounds
RECORDERS = (0, 1, 2, 3, 5, 7)
PATIENT_ID = re.compile(r"\bD\d{3}\b")
TIMINGS: dict[str, float] = {}


def words(lang: str, *messages: str) -> list[str]:
    with language(lang):
        return [_(m) for m in messages]


def shot(page, name: str) -> Path:
    path = tall_screenshot(page, ARTIFACTS / f"{name}.png")
    shots = os.environ.get("ALLIANCE_SHOTS_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(shots) / path.name)
    return path


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    require_chromium()
    from playwright.sync_api import sync_playwright

    data = tmp_path_factory.mktemp("record_clinic")
    made = make_clinic(data)
    made["store"].close()
    with running_app(data) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield {"url": url, "data": data, "patients": list(made["four_sessions"]), "browser": browser,
                   "store_url": made["url"]}
        finally:
            browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "record_timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


def new_page(clinic, width: int, lang: str):
    context = clinic["browser"].new_context(viewport={"width": width, "height": 1000},
                                            locale="es-AR" if lang == "es" else "en-US", accept_downloads=True)
    return context, context.new_page()


def not_on_track_count(page, lang: str) -> int:
    """The caseload's count of patients not on track ("**2** ▲ not on track")."""
    label = words(lang, "▲ not on track")[0]
    wait_for_text(page, label)
    wait_idle(page, 300)
    text = page.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
        return m ? m.innerText : ''; }""").replace("\n", " ")
    found = re.search(r"([\d.,]+) " + re.escape(label), text)
    assert found, text[:600]
    return int(re.sub(r"[.,]", "", found.group(1)))


def caseload_csv(page) -> bytes:
    """The caseload's CSV download, pressed from the keyboard (again if a rerun took the focus)."""
    for attempt in range(3):
        wait_idle(page)
        try:
            with page.expect_download(timeout=20000) as download:
                press(page, page.locator(".st-key-caseload_csv button"))
            return Path(download.value.path()).read_bytes()
        except Exception:  # noqa: BLE001 - a Playwright timeout: the press met a rerun
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _scalar(store_url: str, sql: str, **params):
    import sqlalchemy as sa

    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()
    finally:
        engine.dispose()


def store_counts(store_url: str) -> int:
    return _scalar(store_url, "SELECT COUNT(*) FROM observations")


def stored_score(store_url: str, patient: str, session: int) -> float:
    return _scalar(store_url, "SELECT symptoms FROM observations WHERE patient = :p AND session = :s",
                   p=patient, s=session)


@pytest.mark.parametrize("width, lang", COMBOS)
def test_a_therapist_records_a_worse_session_and_sees_it_at_once(clinic, width, lang):
    url, patient = clinic["url"], clinic["patients"][RECORDERS[COMBOS.index((width, lang))]]
    (caseload, record, save, open_patient, saved_word, no_track, out_of_range, patient_label, my_caseload) = words(
        lang, "My caseload", "Record a session", "Save session {session:g}", "Open the patient page",
        "Saved: session {session:g} of patient {patient} ({values}), version {version} of the data set. The patient "
        "page and the caseload show it now.",
        "not on track", "The {measure} score {value} is outside its valid range {low}–{high}; check it and enter it "
        "again.", "Patient ID (type to search)", "My caseload")
    saved_word = saved_word.split("{")[0]
    context, page = new_page(clinic, width, lang)
    try:
        sign_in_by_keyboard(page, url, ANA, ANA_PASSWORD, lang)
        page.locator("h1", has_text=caseload).wait_for(timeout=60000)  # her start page is her caseload
        not_on_track_count(page, lang)  # the caseload is drawn
        shot(page, f"record_caseload_before_{lang}_{width}")

        go_by_sidebar(page, record)
        page.locator("h1", has_text=record).wait_for(timeout=60000)
        wait_idle(page)
        combo = page.get_by_role("combobox", name=patient_label)
        combo.focus()
        page.keyboard.type(patient)
        page.keyboard.press("Enter")
        wait_idle(page)
        session = page.locator('[data-testid="stNumberInput"] input').first
        assert session.input_value() == "5"                                  # proposed: the next session
        scores = page.locator('[class*="st-key-dec_"] input')
        assert scores.count() == 2
        assert all(scores.nth(i).get_attribute("inputmode") == "decimal" for i in range(2))  # the number pad
        # a much worse session, near the top of the OQ-45's range: not on track for each of these patients under
        # the calibrated signal (issue 23), which reads a single milder jump in a course that was improving as noise
        worse = max(170, int(stored_score(clinic["store_url"], patient, 4) + 45))

        # out of range: one sentence under the field, and Save refuses with it; nothing is stored
        rows = store_counts(clinic["store_url"])
        type_into(page, scores.nth(0), "8")
        with language(lang):
            sentence = out_of_range.format(measure=_("alliance"), value="8", low="1", high="7")
        page.get_by_text(sentence).first.wait_for(timeout=30000)
        type_into(page, scores.nth(1), str(worse))
        press(page, page.locator(".st-key-rec_save button"))
        # under the field and at the button
        expect(page.locator('[data-testid="stAlert"]').filter(has_text=sentence)).to_have_count(2, timeout=60000)
        wait_idle(page)
        assert store_counts(clinic["store_url"]) == rows

        type_into(page, scores.nth(0), "3,1" if lang == "es" else "3.1")
        page.locator('[data-testid="stAlert"]').filter(has_text=sentence).first.wait_for(state="detached",
                                                                                         timeout=30000)
        wait_idle(page)
        shot(page, f"record_{lang}_{width}")
        press(page, page.locator(".st-key-rec_save button"))
        page.get_by_text(saved_word).first.wait_for(timeout=60000)
        saved_at = time.time()
        wait_idle(page, 0)
        TIMINGS[f"record page done {lang} {width}"] = round(time.time() - saved_at, 2)
        main = page.locator('[data-testid="stMain"]').inner_text()
        assert no_track.capitalize() in main                          # the record page shows the new status
        pressed = time.time()

        # the patient page, without a reload: not on track within 2 s of the save
        press(page, page.get_by_role("link", name=open_patient))
        alert = page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first
        alert.filter(has_text=f"{no_track.capitalize()} (").wait_for(timeout=60000)
        TIMINGS[f"patient page {lang} {width}"] = round(time.time() - saved_at, 2)
        TIMINGS[f"patient page from its button {lang} {width}"] = round(time.time() - pressed, 2)
        assert patient in page.url
        assert re.search(rf"{re.escape(no_track.capitalize())} \(\w+ 5\)", alert.inner_text())
        shot(page, f"record_patient_{lang}_{width}")

        # her caseload, from the sidebar: this patient not on track now (the count of the others may change too:
        # every save refits the expected course of this small clinic)
        started = time.time()
        go_by_sidebar(page, my_caseload)
        page.locator("h1", has_text=caseload).wait_for(timeout=60000)
        wait_for_text(page, words(lang, "▲ not on track")[0])
        TIMINGS[f"caseload {lang} {width}"] = round(time.time() - started, 2)
        wait_idle(page, 300)
        assert not_on_track_count(page, lang) >= 1
        table = pd.read_csv(io.BytesIO(caseload_csv(page)), encoding="utf-8-sig",
                            sep=";" if lang == "es" else ",", dtype={"patient": str})
        assert table.loc[table["patient"] == patient, "signal"].tolist() == words(lang, "▲ not on track")
        shot(page, f"record_caseload_after_{lang}_{width}")
        assert store_counts(clinic["store_url"]) == rows + 1
        go_by_sidebar(page, record)                                   # the save's message and status stay
        page.get_by_text(saved_word).first.wait_for(timeout=60000)
        wait_idle(page)
        shot(page, f"record_saved_{lang}_{width}")
    finally:
        context.close()

    # the audit log has the entry; store export has the row
    from core.store import ClinicStore

    store = ClinicStore(clinic["store_url"])
    try:
        log = store.audit_log(store.authenticate(HEAD, HEAD_PASSWORD))
    finally:
        store.close()
    entry = log[(log["username"] == ANA) & (log["action"] == "session recorded")
                & log["detail"].str.contains(f"patient {patient}, session 5 ", regex=False)]
    assert len(entry) == 1 and f"symptoms {worse}" in entry["detail"].iloc[0]
    out = clinic["data"] / f"export_{patient}.csv"
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_DATABASE_URL"}
    env.update(ALLIANCE_DATA_DIR=str(clinic["data"]), ALLIANCE_PASSWORD=ANA_PASSWORD)
    done = subprocess.run([sys.executable, "-m", "core", "store", "export", "--dataset", DATASET, "--user", ANA,
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    exported = pd.read_csv(out, encoding="utf-8-sig", dtype={"patient": str})
    row = exported[(exported["patient"] == patient) & (exported["session"] == 5)]
    assert row[["alliance", "symptoms"]].values.tolist() == [[3.1, float(worse)]]


# ---------------------------------------------------------------------------------------- patient mode
def kiosk_shown(page, lang: str) -> str:
    """The questionnaire (or its thank-you and lock) is all there is: no sidebar, no page links, no header
    menu, no patient ID, no table; returns the page's text."""
    page.locator('.st-key-kiosk_item, .st-key-kiosk_nav_finish, [data-testid="stMain"] h1').first.wait_for(
        timeout=60000)
    wait_idle(page, 500)
    assert page.locator('[data-testid="stSidebarNavLink"]').count() == 0
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.count() == 0 or not sidebar.is_visible()
    for hidden in ("stHeader", "stMainMenu", "stExpandSidebarButton", "stSidebarCollapsedControl"):
        found = page.locator(f'[data-testid="{hidden}"]')
        assert found.count() == 0 or not found.first.is_visible(), hidden
    assert page.locator('[data-testid="stDataFrame"], [data-testid="stPlotlyChart"]').count() == 0
    page.wait_for_timeout(300)  # Streamlit's "Page not found" over an unknown address is closed at once
    assert page.locator('section[role="dialog"]').count() == 0
    text = page.locator("body").inner_text()
    assert not PATIENT_ID.search(text), PATIENT_ID.search(text)
    staff = words(lang, "Staff: sign in to end patient mode")[0]
    assert staff in text
    return text


@pytest.mark.parametrize("lang, width", [("en", 1400), ("es", 390)])
def test_patient_mode_has_no_way_out_without_a_staff_sign_in(clinic, lang, width):
    url = clinic["url"]
    patient = clinic["patients"][4 if lang == "en" else 6]
    other = "D001"
    question, thanks, start, patient_language, finish, wrong = words(
        lang, "Question {n} of {total}", "Thank you!", "Start patient mode for patient {patient}, session {session:g}",
        "The patient's language", "Finish", "User name or password is not right, or the account is deactivated.")
    context, page = new_page(clinic, width, "en")
    try:
        sign_in_by_keyboard(page, url, ANA, ANA_PASSWORD, "en")  # the therapist works in English; the patient reads `lang`
        page.goto(f"{url}/record?patient={patient}")
        page.locator(".st-key-rec_kiosk_start button").wait_for(timeout=60000)
        wait_idle(page)
        if lang != "en":
            chooser = page.get_by_role("combobox", name=words("en", "The patient's language")[0])
            chooser.focus()
            page.keyboard.type("Espa")
            page.keyboard.press("Enter")
            wait_idle(page)
        with language("en"):
            start_label = _("Start patient mode for patient {patient}, session {session:g}").format(patient=patient,
                                                                                                  session=5)
        press(page, page.get_by_role("button", name=start_label))
        page.get_by_text(question.format(n=1, total=45)).wait_for(timeout=60000)
        for w in WIDTHS:
            page.set_viewport_size({"width": w, "height": 1000})
            page.wait_for_timeout(800)
            kiosk_shown(page, lang)
            shot(page, f"kiosk_{lang}_{w}")
        page.set_viewport_size({"width": width, "height": 1000})
        # two answers, kept on the server: a reload resumes at question 3
        for n in (1, 2):
            press(page, page.locator(".st-key-kiosk_answers button").nth(2))
            page.get_by_text(question.format(n=n + 1, total=45)).wait_for(timeout=60000)

        # every way out
        ways = ["/", "/overview", "/patient", f"/patient?patient={other}", f"/patient?patient={patient}", "/record",
                f"/record?patient={other}", "/account", "/admin", "/models", "/upload", "/home",
                f"/?patient={other}&lang=en", "/no-such-page"]
        for way in ways:
            page.goto(url + way)
            text = kiosk_shown(page, lang)
            assert question.format(n=3, total=45) in text, (way, text[:300])
        page.reload()
        assert question.format(n=3, total=45) in kiosk_shown(page, lang)
        for _back in range(4):
            page.go_back()
            kiosk_shown(page, lang)
        tab = context.new_page()
        tab.goto(url)
        assert question.format(n=3, total=45) in kiosk_shown(tab, lang)
        tab.close()
        # the keyboard reaches nothing but the questionnaire's own controls
        page.goto(url + "/overview")
        kiosk_shown(page, lang)
        reached = []
        for _step in range(30):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("""() => { const e = document.activeElement;
                return e ? [e.tagName, (e.innerText || e.getAttribute('aria-label') || '').trim(),
                            !!e.closest('[data-testid="stSidebar"], [data-testid="stHeader"]')] : null; }"""))
        assert not any(r and r[2] for r in reached), reached
        titles = set(words(lang, "Clinic data", "My caseload", "Patient", "Record a session", "Account")) | set(
            words("en", "Clinic data", "My caseload", "Patient", "Record a session", "Account"))
        assert not any(r and r[1] in titles for r in reached), reached

        # the rest of the questionnaire, then Finish
        for n in range(3, 46):
            press(page, page.locator(".st-key-kiosk_answers button").nth(2))
            page.get_by_text(question.format(n=n + 1, total=45) if n < 45 else finish, exact=True).first.wait_for(
                timeout=60000)
        press(page, page.get_by_role("button", name=finish))
        page.get_by_text(thanks).wait_for(timeout=60000)
        for w in WIDTHS:
            page.set_viewport_size({"width": w, "height": 1000})
            page.wait_for_timeout(800)
            shot(page, f"kiosk_thanks_{lang}_{w}")
        page.set_viewport_size({"width": width, "height": 1000})

        # locked: reload, addresses, a new tab, a wrong password
        page.reload()
        assert thanks in kiosk_shown(page, lang)
        for way in ("/overview", f"/patient?patient={patient}", "/record", "/account"):
            page.goto(url + way)
            assert thanks in kiosk_shown(page, lang)
        tab = context.new_page()
        tab.goto(url + "/overview")
        assert thanks in kiosk_shown(tab, lang)
        tab.close()
        expander = page.locator('[data-testid="stExpander"] summary').first
        press(page, expander)
        page.locator('.stForm input[type="password"]').wait_for(timeout=30000)
        page.locator('.stForm input').first.fill(ANA)
        page.locator('.stForm input[type="password"]').fill("not her password")
        press(page, page.locator('[data-testid="stFormSubmitButton"] button'))
        page.get_by_text(wrong).wait_for(timeout=60000)
        assert thanks in kiosk_shown(page, lang)

        # a staff member signs in: patient mode ends, the dashboard is hers again
        page.locator('.stForm input').first.fill(ANA)
        page.locator('.stForm input[type="password"]').fill(ANA_PASSWORD)
        press(page, page.locator('[data-testid="stFormSubmitButton"] button'))
        page.locator('[data-testid="stSidebarNav"]').wait_for(state="attached", timeout=60000)
        wait_idle(page)
        assert page.locator('[data-testid="stSidebarNavLink"]').count() > 3
    finally:
        context.close()

    from core.store import ClinicStore

    store = ClinicStore(clinic["store_url"])
    try:
        ana = store.authenticate(ANA, ANA_PASSWORD)
        stored = store.stored_session(ana, DATASET, patient, 5)
        history = store.session_history(ana, DATASET, patient)
        log = store.audit_log(store.authenticate(HEAD, HEAD_PASSWORD))
    finally:
        store.close()
    assert stored.values["symptoms"] == 90.0                                  # 45 answers of 2
    assert history["via"].tolist() == ["patient mode"]
    actions = log[log["detail"].str.contains(f"patient {patient}, session 5", regex=False)]["action"].tolist()
    assert actions == ["patient mode ended", "session recorded", "patient mode started"], actions
