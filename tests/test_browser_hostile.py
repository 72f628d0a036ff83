"""Browser test (issue 13): hostile files on the Upload page show one plain sentence, never a
traceback, and the dashboard goes on serving (the next upload works)."""
import hostile_files as hostile
import pytest
from browser_support import browser_page, require_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_hostile_uploads_get_one_sentence_and_the_dashboard_goes_on(tmp_path):
    require_chromium()
    bomb = hostile.xlsx_bomb(tmp_path)
    stray = hostile.xlsx_last_cell_with_data(tmp_path)
    huge = hostile.csv_huge_scores(tmp_path)
    with running_app(tmp_path) as url, browser_page() as page:
        for width in (1400, 800):
            page.set_viewport_size({"width": width, "height": 1000})
            page.goto(url + "/upload")
            upload = page.locator("input[type=file]")
            upload.wait_for(state="attached", timeout=30000)
            upload.set_input_files(str(bomb))
            page.get_by_text("unpacks to 2,700 MB").wait_for(timeout=60000)
            body = page.locator("body").inner_text()
            assert "Traceback" not in body and "Error:" not in body
            screenshot(page, f"upload_bomb_{width}")

            upload.set_input_files(str(stray))
            page.get_by_text("is too large to read").wait_for(timeout=60000)
            screenshot(page, f"upload_stray_cell_{width}")

            upload.set_input_files(str(huge))
            page.get_by_text("Validation report").wait_for(timeout=60000)
            page.get_by_text("2 sessions are kept with a score missing").wait_for(timeout=30000)
            assert "Traceback" not in page.locator("body").inner_text()
            screenshot(page, f"upload_huge_scores_{width}")
