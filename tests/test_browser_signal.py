"""Browser test of the early-warning signal: the overview's counts, therapist table and validation,
then a red patient's page (the summary line first, the chart with statuses in words) at 1400 and
800 px, with screenshots in test-artifacts/."""
import pytest
from browser_support import browser_page, open_patient_from_caseload, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _idle(page) -> None:
    page.wait_for_function("""() => { const a = document.querySelector('[data-testid="stApp"]');
        return a && a.getAttribute('data-test-script-state') === 'notRunning'; }""", timeout=120000)
    page.wait_for_timeout(800)


def test_overview_and_patient_page_show_the_signal(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/overview")
        page.get_by_text("How well has the signal predicted outcomes in this clinic?").wait_for(timeout=120000)
        page.get_by_text("Mean trajectory per therapist").wait_for(timeout=120000)
        _idle(page)
        body = page.locator("body").inner_text()
        flat = body.replace("\n", " ")
        assert "10 ▲ not on track" in flat and "6 ◆ at risk" in flat
        assert "1 in 10 patients who are doing as expected will be flagged not on track at some point" in flat
        assert "Expected course from this data set's own courses (120 patients)" in flat
        assert "Therapists: not on track now, deteriorated, unrepaired ruptures" in body
        assert "not a ranking of therapists" in body
        assert "Reliable deterioration (" in flat and "The two rules side by side" in flat
        screenshot(page, "signal_overview_1400")

        open_patient_from_caseload(page, "D017")
        page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=60000)
        _idle(page)
        alert = page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first.inner_text()
        assert "Not on track (session 8): score 141, expected 101" in alert and "not-on-track bound" in alert
        # the summary comes before the chart
        alert_y = page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first.bounding_box()["y"]
        chart_y = page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()["y"]
        assert alert_y < chart_y
        chart = page.locator('[data-testid="stPlotlyChart"]').first.inner_text()
        for words in ("not on track", "on track", "start", "rupture", "expected course from this starting point",
                      "not on track beyond this line (given the earlier scores)", "Symptoms (lower is better)",
                      "OQ-45.2 total", "Session"):
            assert words in chart, words
        screenshot(page, "signal_patient_1400")
        page.set_viewport_size({"width": 800, "height": 1000})
        page.wait_for_timeout(1500)
        assert page.locator('[data-testid="stMain"] [data-testid="stAlert"]').first.is_visible()
        screenshot(page, "signal_patient_800")


def test_save_the_expected_course_as_a_norm_and_judge_against_it(tmp_path):
    """The overview's *Save this expected course as a norm* and the sidebar's *Expected course from →
    A norm file*, round trip in Chromium: the demo judged against its own norm file flags the same
    patients, and the page names the norm."""
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/overview")
        page.get_by_text("How well has the signal predicted outcomes in this clinic?").wait_for(timeout=120000)
        _idle(page)
        counts = page.locator("body").inner_text().replace("\n", " ")
        assert "10 ▲ not on track" in counts
        with page.expect_download() as info:
            page.get_by_role("button", name="Save this expected course as a norm (JSON)").click()
        norm = tmp_path / "signal-norm.json"
        info.value.save_as(norm)
        assert '"format": "alliance-dashboard signal norm"' in norm.read_text(encoding="utf-8")
        _idle(page)
        page.locator('[data-testid="stSidebar"] [data-testid="stExpander"] summary').first.click()
        page.wait_for_timeout(1000)  # the expander's opening animation
        menu = page.get_by_role("combobox", name="Expected course from")
        menu.click()
        option = page.get_by_role("option", name="A norm file (JSON)")
        try:
            option.wait_for(timeout=5000)
        except Exception:  # noqa: BLE001 - a click during the expander's animation can miss the menu: the keyboard
            menu.press("ArrowDown")
        option.click()
        _idle(page)
        page.locator('[data-testid="stSidebar"] input[type=file]').set_input_files(str(norm))
        page.get_by_text("an outside norm: the norm file “signal-norm.json” (120 patients)").wait_for(timeout=120000)
        _idle(page)
        body = page.locator("body").inner_text().replace("\n", " ")
        assert "10 ▲ not on track" in body and "Norm file in use: signal-norm.json" in body
        assert "markedly" not in body  # its own norm: no warning
        screenshot(page, "signal_overview_norm_file_1400")
