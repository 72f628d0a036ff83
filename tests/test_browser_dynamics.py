"""Browser test: upload a multi-study file on the Reciprocal dynamics page and see the forest plots."""
import pytest
from browser_support import (
    ARTIFACTS,
    ROOT,
    browser_page,
    require_chromium,
    running_app,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_multistudy_upload_shows_forest_plot(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/dynamics")
        page.get_by_text("Reciprocal dynamics").first.wait_for(timeout=60000)
        page.get_by_text("Upload studies").click()
        page.locator("input[type=file]").set_input_files(str(ROOT / "tests" / "data" / "multistudy_public.csv"))
        page.get_by_text("Stage 2: pooled over studies").wait_for(timeout=120000)
        page.get_by_text("Alliance → next-session symptoms", exact=True).wait_for()
        # forest plot (the page also draws the RI-CLPM's diagram): the pooled row and the study labels
        plot = page.locator(".js-plotly-plot").filter(has_text="Pooled (random effects)").first
        plot.wait_for(timeout=30000)
        assert "S01" in plot.inner_text()
        screenshot(page, "dynamics_page")
        plot.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        plot.screenshot(path=str(ARTIFACTS / "dynamics_forest.png"))
