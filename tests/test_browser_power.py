"""Browser test: plan a study on the demo clinic: the progress bar while the simulations run, then the
power curve, the table and the methods sentence, at 1400 and 800 px."""
import pytest
from browser_support import browser_page, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_power_curve_in_the_browser(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/power")
        page.get_by_text("1. The model and the effect to detect").wait_for(timeout=90000)
        page.get_by_role("spinbutton", name="Smallest effect of interest").fill("-1")
        sizes = page.get_by_role("textbox", name="Numbers of patients")
        sizes.fill("60, 120, 240")
        simulations = page.get_by_role("spinbutton", name="Simulations per number")
        simulations.fill("150")
        page.get_by_role("button", name="Compute power").click()
        page.get_by_text("simulations", exact=False).first.wait_for(timeout=60000)
        progress = page.get_by_test_id("stProgress")
        progress.wait_for(timeout=60000)
        progress.scroll_into_view_if_needed()
        screenshot(page, "power_progress")
        page.get_by_text("3. For the methods section").wait_for(timeout=300000)
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(timeout=60000)
        text = page.get_by_test_id("stCode").last.inner_text()
        assert "Power to detect an effect of alliance_within of −1" in text and "N = 240:" in text
        for width in (1400, 800):
            page.set_viewport_size({"width": width, "height": 2400})
            page.wait_for_timeout(1500)
            page.get_by_text("2. Power by number of patients").scroll_into_view_if_needed()
            screenshot(page, f"power_{width}")
            page.get_by_text("3. For the methods section").scroll_into_view_if_needed()
            screenshot(page, f"power_{width}_methods")
