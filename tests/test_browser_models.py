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
        # the command-line caption is drawn just before the download button: the run has finished
        page.get_by_text(re.compile(r"--builder --detrend")).wait_for(timeout=60000)
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
        assert offline.locator(".js-plotly-plot").count() == 6  # 4 ladder figures, the RI-CLPM path diagram, early alliance → outcome
        assert errors == []
        browser.close()


def test_formula_box_fits_a_typed_formula(tmp_path):
    """The builder writes the formula; a researcher types another; the page shows what it fitted."""
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/models")
        page.get_by_text("The model ladder").wait_for(timeout=90000)
        box = page.get_by_role("textbox", name="Formula (lme4 notation)")
        box.wait_for(timeout=60000)
        assert box.input_value() == "symptoms ~ between + within + (1 | patient)"
        box.fill("symptoms ~ alliance_within * time + (time | patient)")
        box.press("Enter")
        page.get_by_test_id("stCode").get_by_text(
            "symptoms ~ alliance_within * time + (time | patient)").wait_for(timeout=90000)
        page.get_by_text("Conditional R²").wait_for(timeout=30000)
        screenshot(page, "models_formula_1400")
        page.set_viewport_size({"width": 800, "height": 1000})
        page.wait_for_timeout(1500)
        screenshot(page, "models_formula_800")


def test_kenward_roger_and_profile_intervals_in_the_builder(tmp_path):
    """Issue 27: the builder's model with Kenward–Roger df and lme4's profile intervals for every parameter."""
    require_chromium()
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url + "/models")
        page.get_by_text("The model ladder").wait_for(timeout=90000)
        page.get_by_text("Degrees of freedom, p-values and 95% CIs by Satterthwaite (lmerTest).").wait_for(timeout=90000)
        page.get_by_text("Kenward–Roger (pbkrtest)").first.click()
        page.get_by_text("Degrees of freedom, p-values and 95% CIs by Kenward–Roger (pbkrtest).").wait_for(timeout=90000)
        page.get_by_role("combobox", name="95% intervals for every parameter").click()
        page.get_by_role("option", name="likelihood profile").click()
        page.get_by_text("95% intervals (likelihood profile, as lme4's confint)").wait_for(timeout=300000)
        page.get_by_role("button", name="Intervals (CSV)").wait_for(timeout=60000)  # the table is drawn on a canvas
        screenshot(page, "models_kr_profile")
