"""Browser test: open the clinic overview, open a patient from it, change the rupture threshold."""
import pytest
from browser_support import browser_page, open_patient_from_caseload, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _rupture_count(page) -> int:
    return page.locator("text=Possible rupture in session").count()


def test_overview_to_patient_and_threshold(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/overview")  # first visit straight to a page URL, not the start page
        page.get_by_text("Caseload, most in need of attention first").wait_for(timeout=60000)
        page.get_by_text("of the differences in symptoms lie between therapists").wait_for(timeout=60000)
        page.get_by_text("Mean trajectory per therapist").wait_for(timeout=60000)
        screenshot(page, "overview")

        open_patient_from_caseload(page, "D017")
        assert "patient=D017" in page.url
        page.get_by_text("Possible rupture in session").first.wait_for(timeout=30000)
        before = _rupture_count(page)
        screenshot(page, "patient_threshold_1sd")

        slider = page.get_by_role("slider").first
        slider.focus()
        for _ in range(2):  # 1.0 -> 1.5 own SDs, in steps of 0.25
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(2500)
        page.get_by_text("Jacobson–Truax status").wait_for(timeout=30000)
        after = _rupture_count(page)
        screenshot(page, "patient_threshold_1_5sd")
        assert "1.50" in page.locator('[data-testid="stSidebar"]').inner_text()
        # D017: sessions 6 (4.64) and 8 (4.87) lie below mean 5.53 - 1 SD (0.54); only session 6 below 1.5 SD
        assert (before, after) == (2, 1)
