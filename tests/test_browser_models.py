"""Browser test: change a model-builder option and download the report, which opens offline."""
import re

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_page,
    require_chromium,
    running_app,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_change_option_and_download_report(tmp_path):
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/models")
        page.get_by_text("The model ladder").wait_for(timeout=90000)
        page.get_by_test_id("stCode").get_by_text("symptoms ~ between + within + (1 | patient)").wait_for(timeout=60000)
        page.get_by_text("Control for time (detrending)").click()
        page.get_by_test_id("stCode").get_by_text("symptoms ~ between + within + time + (1 | patient)").wait_for(timeout=60000)
        screenshot(page, "models_detrended")
        with page.expect_download(timeout=120000) as info:
            page.get_by_role("button", name="Download the report (HTML)").click()
        report = tmp_path / "report.html"
        info.value.save_as(report)
        text = report.read_text(encoding="utf-8")
        assert "controlling for time" in text and "Model builder" in text
        assert "Random-intercept cross-lagged panel model (RI-CLPM)" in text
        assert not re.search(r"<script[^>]+src=", text)

    # the downloaded report opens with no network and draws every figure
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(offline=True)
        offline = context.new_page()
        errors = []
        offline.on("pageerror", lambda e: errors.append(str(e)))
        offline.goto(report.as_uri())
        offline.wait_for_timeout(2000)
        assert offline.locator(".js-plotly-plot").count() == 5  # 4 ladder figures + the RI-CLPM path diagram
        assert errors == []
        browser.close()
