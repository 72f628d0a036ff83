"""Browser test (Chromium): the Reciprocal dynamics page's meta-regression, funnel plot with Egger's test,
leave-one-out and influence (issue 27), and the early alliance → outcome section (issue 30), at 1400 and
800 px."""
import pytest
from browser_support import ARTIFACTS, ROOT, browser_page, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("width", [1400, 800])
def test_moderators_sensitivity_and_alliance_outcome_in_chromium(tmp_path, width):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.set_viewport_size({"width": width, "height": 1000})
        page.goto(url + "/dynamics")
        page.get_by_text("Reciprocal dynamics").first.wait_for(timeout=60000)
        page.get_by_text("Upload studies").first.click(timeout=90000)
        page.locator("input[type=file]").set_input_files(str(ROOT / "tests" / "data" / "alliance_outcome_multistudy.csv"))
        page.get_by_text("Stage 2: pooled over studies").wait_for(timeout=120000)
        box = page.locator("[data-testid='stMultiSelect']").filter(has_text="Study-level moderators").first
        box.click()
        page.keyboard.type("setting")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.get_by_text("Meta-regression on setting").first.wait_for(timeout=60000)
        assert "settingoutpatient" in page.locator('[data-testid="stMain"]').inner_text()
        page.get_by_text("Sensitivity: funnel plot").first.click()
        funnel = page.locator(".js-plotly-plot").filter(has_text="Egger's test for funnel-plot asymmetry").first
        funnel.wait_for(timeout=60000)
        page.get_by_text("Each study left out in turn").first.wait_for()
        page.get_by_text("Influence diagnostics").first.wait_for()
        page.get_by_text("Early alliance and post-treatment outcome", exact=True).wait_for(timeout=60000)
        forest = page.locator(".js-plotly-plot").filter(has_text="standardized coefficient of early alliance").first
        forest.wait_for(timeout=60000)
        main = page.locator('[data-testid="stMain"]').inner_text()
        assert "For a methods section:" in main and "over 6 studies (322 patients)" in main
        ARTIFACTS.mkdir(exist_ok=True)
        funnel.scroll_into_view_if_needed()
        funnel.screenshot(path=str(ARTIFACTS / f"dynamics_funnel_{width}.png"))
        forest.scroll_into_view_if_needed()
        forest.screenshot(path=str(ARTIFACTS / f"dynamics_alliance_outcome_forest_{width}.png"))
        screenshot(page, f"dynamics_meta_outcome_{width}")
