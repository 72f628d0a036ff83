"""Issue 29 in Chromium, at 1400 and 800 px, in English and Spanish, signed in as the demo supervisor:
a FHIR bundle on the Upload page (its unusable resources listed), and the patient page's one-page
summary downloaded as a PDF. Screenshots in test-artifacts/fhir_*.png."""
from __future__ import annotations

import pytest

from tests import fhir_support as fs
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, require_chromium, running_app, screenshot
from tests.test_browser_language import idle, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]
WORDS = {"en": ("3. Validation report", "Download a one-page summary (PDF)", "Resources left out"),
         "es": ("3. Informe de validación", "Descargar un resumen de una página (PDF)", "Recursos excluidos")}


@pytest.mark.parametrize("lang", ["en", "es"])
def test_fhir_upload_and_summary_pdf_in_chromium(tmp_path, lang):
    require_chromium()
    from playwright.sync_api import sync_playwright

    report, button, left_out = WORDS[lang]
    data, bad, _good = fs.broken_bundle()
    bundle = tmp_path / "historia_clinica.json"
    bundle.write_bytes(data)
    with running_app(tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width in (1400, 800):
                context = browser.new_context(viewport={"width": width, "height": 1000}, accept_downloads=True)
                page = context.new_page()
                sign_in(page, url, "demo-supervisor")
                page.goto(f"{url}/upload?lang={lang}")
                idle(page)
                page.locator("input[type=file]").set_input_files(str(bundle))
                page.get_by_text(report).wait_for(timeout=120000)
                idle(page)
                page.get_by_text(left_out).first.wait_for(timeout=60000)
                screenshot(page, f"fhir_upload_{lang}_{width}")
                table = page.locator('[data-testid="stDataFrame"]').first
                table.scroll_into_view_if_needed()
                page.wait_for_timeout(800)
                screenshot(page, f"fhir_upload_report_{lang}_{width}")

                page.goto(f"{url}/patient?patient=D003&lang={lang}")
                idle(page)
                download_button = page.get_by_role("button", name=button)
                download_button.wait_for(timeout=120000)
                download_button.scroll_into_view_if_needed()
                screenshot(page, f"fhir_patient_pdf_{lang}_{width}")
                with page.expect_download(timeout=120000) as info:
                    download_button.click()
                pdf = tmp_path / f"summary_{lang}_{width}.pdf"
                info.value.save_as(pdf)
                assert pdf.read_bytes().startswith(b"%PDF")
                assert info.value.suggested_filename == "summary_D003.pdf"
                context.close()
        finally:
            browser.close()
