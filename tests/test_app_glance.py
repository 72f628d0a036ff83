"""Issue 18 through AppTest: the exports the pages hand out (a Spanish-locale CSV read as Excel in
Spanish reads it, the formatted caseload workbook), whole numbers without decimals, the alliance axis
on the full scale, the likelihood-ratio table's χ², df and p, the caseload's key columns first."""
import io
import json

import openpyxl
import pandas as pd
import pytest
from app_support import open_page


pytestmark = pytest.mark.usefixtures("fresh_clinic")

TIMEOUT = 90


def _spanish(monkeypatch):
    """The pages' downloads as for a Spanish Excel (``;``, decimal comma), the words in English: the
    pages' own ``get_language`` (a page script imports it on every run) answers "es". The shared
    modules are imported first, so that none keeps the patched function after this test."""
    import core.i18n
    import ui.auth  # noqa: F401
    import ui.clinic  # noqa: F401
    import ui.look  # noqa: F401
    import ui.state  # noqa: F401

    monkeypatch.setattr(core.i18n, "get_language", lambda: "es")


def test_caseload_downloads_are_formatted_for_people_and_for_spanish_excel(monkeypatch, downloads):
    _spanish(monkeypatch)
    at = open_page("overview", timeout=TIMEOUT)
    table = at.dataframe[0].value
    # the key columns first: who, the signal now, why
    assert list(table.columns[:4]) == ["patient", "signal", "attention", "therapist"]

    # CSV: Excel set to Spanish splits on ";" and reads "0,5" as a number
    _, name, csv = downloads["caseload_csv"]
    assert name == "caseload.csv" and csv.startswith("\ufeff".encode())
    header = csv.decode("utf-8-sig").splitlines()[0]
    assert header.split(";")[:3] == ["patient", "signal", "attention"] and "," not in header
    read = pd.read_csv(io.BytesIO(csv), sep=";", decimal=",", encoding="utf-8-sig")
    assert len(read) == len(table) == 120
    assert pd.api.types.is_numeric_dtype(read["change"]) and pd.api.types.is_numeric_dtype(read["sessions"])
    assert read["change"].tolist() == pytest.approx(table["change"].tolist())
    assert read["patient"].tolist() == table["patient"].tolist()

    # Excel: title, readable headers, widths, frozen header, filter, number formats, the thresholds sheet
    _, name, xlsx = downloads["caseload_xlsx"]
    assert name == "caseload.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(xlsx))
    sheet = book["Caseload"]
    assert sheet["A1"].value.startswith("Caseload of Demo clinic") and sheet["A1"].font.bold
    headers = [c.value for c in sheet[3]]
    assert headers[:4] == ["Patient", "Signal now", "Why (reasons)", "Therapist"]
    assert "No reliable improvement by session 4" in headers and "Change (last − first)" in headers
    assert all(sheet.cell(row=3, column=j).font.bold for j in range(1, len(headers) + 1))
    assert sheet.freeze_panes == "A4" and sheet.auto_filter.ref == f"A3:{sheet.cell(row=3, column=len(headers)).column_letter}123"
    assert sheet.column_dimensions["C"].width >= 40  # the reasons are long
    assert sheet["A4"].value == table["patient"].iloc[0]
    change = headers.index("Change (last − first)") + 1
    assert sheet.cell(row=4, column=change).number_format == "0"  # OQ totals: whole numbers
    thresholds = dict(row for row in book["Thresholds and definitions"].iter_rows(min_row=2, values_only=True))
    # numbers as numbers (issue 24): the spreadsheet writes them its own way (Spanish Excel: 63,5)
    assert thresholds["Clinical cut-off"] == 63.5 and thresholds["Reliable change (points)"] == 14
    assert thresholds["Rupture threshold (own SDs below own mean so far)"] == 1
    assert thresholds["Expect reliable improvement by session"] == 4
    assert "1 in 10 patients who are doing as expected" in thresholds["Signal now"]
    assert "REML" in thresholds["How the signal is computed"]
    assert thresholds["Expected course from"] == "this data set's own courses (120 patients)"
    assert thresholds["Data set"].startswith("Demo clinic") and thresholds["Therapists"] == "All therapists"


def test_patient_page_whole_numbers_full_alliance_scale_and_spanish_csv(monkeypatch, downloads):
    _spanish(monkeypatch)
    at = open_page("patient", timeout=TIMEOUT)
    at.selectbox(key="patient_id").set_value("D017").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Symptom change (first → last)"] == "+17"  # OQ totals: no ".00"
    assert any("changed by +17 points" in m.value for m in at.markdown)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    low, high = chart["layout"]["yaxis2"]["range"]
    assert low < 1 and high > 7  # the ANS scale's full range
    assert chart["layout"]["yaxis2"]["title"]["text"].replace("<br>", " ") == "Alliance, ANS mean item score (1–7)"
    names = [t.get("name") for t in chart["data"]]
    assert "at-risk bound" not in names and "own mean so far" not in names
    at.toggle(key="patient_zoom_alliance").set_value(True).run()
    at.toggle(key="patient_details").set_value(True).run()
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "range" not in chart["layout"]["yaxis2"]
    assert {"at-risk bound", "own mean so far", "rupture limit so far"} <= {t.get("name") for t in chart["data"]}
    _, name, csv = downloads["patient_csv"]
    assert name == "patient_D017.csv"
    read = pd.read_csv(io.BytesIO(csv), sep=";", decimal=",", encoding="utf-8-sig")
    assert read["alliance"].dtype == float and read["symptoms"].tolist()[0] == 124
    assert list(read.columns[:4]) == ["session", "symptoms", "status", "why"]


def test_model_explorer_likelihood_ratio_tests_show_chi_square_df_and_p():
    at = open_page("models", timeout=TIMEOUT)
    tests = next(d.value for d in at.dataframe if "chisq" in d.value.columns)
    assert list(tests.columns) == ["fuller", "simpler", "chisq", "df", "p"]
    assert tests["df"].tolist() == [3, 2, 1, 1, 1]
    assert any("vs unconditional: The therapist variance is tested at its boundary" in c.value  # the note
               for c in at.caption)


def test_an_upload_with_a_declared_alliance_range_gets_the_full_scale():
    from app_support import ROOT

    from core.intake.dataset import Dataset
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_table
    from core.intake.validation import validate_table

    raw = read_table(ROOT / "tests" / "data" / "paperlike_public.csv")
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session", alliance="alliance",
                            symptoms="symptoms")
    ds = Dataset(name="upload with ranges", validated=validate_table(raw, mapping, ranges={"alliance": (1.0, 7.0)}))
    at = open_page("patient", ds, timeout=TIMEOUT)
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    low, high = chart["layout"]["yaxis2"]["range"]
    assert low < 1 and 7 < high < 7.5
    assert chart["layout"]["yaxis2"]["title"]["text"].replace("<br>", " ") == "Alliance score (1–7)"
