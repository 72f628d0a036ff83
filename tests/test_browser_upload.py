"""Browser test: the dashboard opens on the demo clinic; an upload shows its validation report."""
from pathlib import Path

import pytest
from browser_support import browser_page, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_demo_then_upload_shows_validation_report(tmp_path):
    require_chromium()
    messy = tmp_path / "clinica.csv"
    messy.write_bytes(
        "Paciente;Terapeuta;Sesión;Alianza;Síntomas\n"
        "007;Dra. Pérez;1;5,5;80\n"
        "007;Dra. Pérez;2;6,0;75\n"
        "007;Dra. Pérez;3;9,0;70\n"          # row 4: alliance out of 1-7
        "008;Dr. Gómez;Sesión 1;4,5;-99\n"   # row 5: missing code
        "008;Dr. Gómez;S2;abc;90\n"          # row 6: not a number
        "008;Dr. Gómez;3;5,0;88\n".encode("cp1252"))
    with running_app(tmp_path) as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("DEMO DATA").first.wait_for(timeout=30000)
        page.get_by_text("Dropout before session 4").wait_for()
        screenshot(page, "home_demo")

        page.goto(url + "/upload")
        page.locator("input[type=file]").set_input_files(str(messy))
        page.get_by_text("Validation report").wait_for(timeout=30000)
        page.get_by_text("sessions are kept with a score missing").wait_for(timeout=30000)
        body = page.locator("body").inner_text()
        assert "semicolon-separated, decimal comma" in body
        screenshot(page, "upload_report")
        # The excluded-rows table is a canvas grid; its CSV download holds the rows and reasons.
        with page.expect_download() as info:
            page.get_by_text("Download the list of rows left out").click()
        text = Path(info.value.path()).read_text(encoding="utf-8")
        assert "4," in text and "outside the allowed range" in text
        assert "5," in text and "missing" in text
        assert "6," in text and "not a number" in text
