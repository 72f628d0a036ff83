"""Browser test: sign in as a therapist and see only her own patients on the overview and the patient
page; sign out; sign in as the supervisor and find her sign-in and patient-page view in the audit log.
(Every other route to another therapist's patient — URL, widget value, session state, exports — is
tried in tests/test_app_roles.py; a new URL typed into the browser starts a new, signed-out session.)"""
import pytest
from browser_support import browser_page, require_chromium, running_app, screenshot

from core.demo import demo_clinic

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO = demo_clinic()
ANA = sorted(set(DEMO.loc[DEMO["therapist"] == "T01 Ana", "patient"]))
OTHER = sorted(set(DEMO["patient"]) - set(ANA))[0]


def _sign_in(page, url: str, username: str) -> None:
    page.goto(url + "/account")
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill("demo")
    page.get_by_role("button", name="Sign in").click()
    page.locator('[data-testid="stSidebar"]').get_by_text("Signed in as").wait_for(timeout=60000)


def test_therapist_sees_own_patients_only_and_supervisor_reads_audit_log(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        _sign_in(page, url, "demo-therapist-ana")
        screenshot(page, "roles_signed_in_therapist")

        # the session lives in this tab: move by the sidebar, not page.goto (a new, signed-out session)
        page.locator('[data-testid="stSidebarNav"]').get_by_text("My caseload").click()  # her start page's entry
        page.get_by_text("Caseload, most in need of attention first").wait_for(timeout=60000)
        overview = page.locator('[data-testid="stMain"]').inner_text()
        screenshot(page, "roles_therapist_overview")
        assert "Signed in as" in page.locator('[data-testid="stSidebar"]').inner_text()

        page.locator('[data-testid="stSidebarNav"]').get_by_text("Patient", exact=True).click()
        page.get_by_text("Jacobson–Truax status").wait_for(timeout=60000)
        main = page.locator('[data-testid="stMain"]').inner_text()
        screenshot(page, "roles_therapist_patient")
        assert OTHER not in main and OTHER not in overview
        shown = page.get_by_role("combobox", name="Patient ID (type to search)").input_value()
        assert shown in ANA, shown

        # the dropdown offers only her patients
        page.get_by_role("combobox", name="Patient ID (type to search)").click()
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        assert options and set(options) <= set(ANA)

        page.locator('[data-testid="stSidebarNav"]').get_by_text("Account", exact=True).click()
        page.get_by_role("button", name="Sign out", exact=True).click()
        page.get_by_role("button", name="Sign in").wait_for(timeout=60000)

        _sign_in(page, url, "demo-supervisor")
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Users and audit log").click()
        page.get_by_text("Audit log", exact=True).wait_for(timeout=60000)
        page.wait_for_timeout(1500)
        screenshot(page, "roles_supervisor_audit_log")
        audit = page.locator('[data-testid="stDataFrame"]').nth(1)
        audit.wait_for(timeout=30000)
        # the audit grid is a canvas; read it through its CSV download instead
        with page.expect_download() as dl:
            page.get_by_role("button", name="Audit log (CSV)").click()
        text = open(dl.value.path(), encoding="utf-8-sig").read()
        ana = [line for line in text.splitlines() if "demo-therapist-ana" in line]
        assert any("sign-in" in line for line in ana)
        assert any("patient view" in line and any(p in line for p in ANA) for line in ana)
        assert not any(OTHER in line for line in ana)
