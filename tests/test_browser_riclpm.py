"""Browser test: the RI-CLPM section of the Reciprocal dynamics page on the demo clinic, at 1400 and
800 px (screenshots in test-artifacts/)."""
import pytest
from browser_support import browser_page, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_riclpm_section_with_path_diagram(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/dynamics")
        page.get_by_text("Random-intercept cross-lagged panel model (RI-CLPM)").first.wait_for(timeout=120000)
        page.get_by_text("What a cross-lagged effect means here.").wait_for(timeout=120000)
        diagram = page.locator(".js-plotly-plot").filter(has_text="Random intercept, alliance").first
        diagram.wait_for(timeout=60000)
        text = diagram.inner_text()
        assert "A1" in text and "S8" in text and "covariance" in text and "***" in text  # demo: 8 sessions, compact boxes
        diagram.scroll_into_view_if_needed()
        screenshot(page, "dynamics_riclpm_1400")
        diagram.screenshot(path=str(screenshot.__globals__["ARTIFACTS"] / "riclpm_diagram_1400.png"))
        page.set_viewport_size({"width": 800, "height": 1000})
        page.wait_for_timeout(1500)
        diagram.scroll_into_view_if_needed()
        box = diagram.bounding_box()
        assert box["width"] <= 800
        diagram.screenshot(path=str(screenshot.__globals__["ARTIFACTS"] / "riclpm_diagram_800.png"))
        screenshot(page, "dynamics_riclpm_800")
