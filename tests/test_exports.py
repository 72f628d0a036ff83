"""Exports neutralise spreadsheet formulas (CSV and Excel)."""
import io

import openpyxl
import pandas as pd

from core.reporting.exports import csv_bytes, excel_bytes, neutralise_formulas

EVIL = '=HYPERLINK("http://evil.example","click")'


def test_formula_cells_become_text():
    frame = pd.DataFrame({"patient": [EVIL, "+1", "-2", "@SUM(A1)", "P01"], "score": [1.0, -0.5, 2.0, 3.0, 4.0]})
    safe = neutralise_formulas(frame)
    assert safe["patient"].tolist() == ["'" + EVIL, "'+1", "'-2", "'@SUM(A1)", "P01"]
    assert safe["score"].tolist() == [1.0, -0.5, 2.0, 3.0, 4.0]  # numbers untouched


def test_csv_has_no_live_formula():
    text = csv_bytes(pd.DataFrame({"patient": [EVIL]})).decode("utf-8-sig")
    assert "\n=HYPERLINK" not in text and "'=HYPERLINK" in text


def test_excel_cell_is_text_not_formula():
    data = excel_bytes(pd.DataFrame({"patient": [EVIL], "=bad header": [1]}))
    ws = openpyxl.load_workbook(io.BytesIO(data)).active
    cell = ws["A2"]
    assert cell.data_type == "s" and cell.value.startswith("'=")
    assert ws["B1"].value == "'=bad header" and ws["B2"].value == 1


def test_spanish_csv_opens_as_excel_in_spanish_would():
    """Excel set to Spanish splits on ';' and reads a decimal comma as a number."""
    frame = pd.DataFrame({"patient": ["P1", "=cmd"], "change": [-14.5, 0.25], "sessions": [4, 6]})
    data = csv_bytes(frame, "es")
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0] == "patient;change;sessions"
    assert "-14,5" in text and "0,25" in text and "." not in text
    back = pd.read_csv(io.BytesIO(data), sep=";", decimal=",", encoding="utf-8-sig")
    assert back["change"].tolist() == [-14.5, 0.25] and back["sessions"].tolist() == [4, 6]
    assert back["patient"].tolist() == ["P1", "'=cmd"]
    english = csv_bytes(frame).decode("utf-8-sig")
    assert english.splitlines()[1] == "P1,-14.5,4"


def test_excel_is_formatted_for_people():
    frame = pd.DataFrame({"patient": ["P1", "P2"], "last_score": [101, 87], "change_from_first": [-14.5, 3.25],
                          "status_reason": ["reliable deterioration, with a long explanation", ""]})
    data = excel_bytes(frame, "caseload", title="Caseload, Demo clinic",
                       labels={"last_score": "Last OQ-45 total"},
                       definitions=[("Reliable change (points)", 14), ("Clinical cut-off", 63.5)])
    book = openpyxl.load_workbook(io.BytesIO(data))
    ws = book["caseload"]
    assert ws["A1"].value == "Caseload, Demo clinic" and ws["A1"].font.bold
    assert [c.value for c in ws[3]] == ["Patient", "Last OQ-45 total", "Change from first", "Status reason"]
    assert all(c.font.bold for c in ws[3])
    assert ws.freeze_panes == "A4"
    assert ws.auto_filter.ref == "A3:D5"
    assert ws["B4"].value == 101 and ws["B4"].number_format == "0"
    assert ws["C4"].value == -14.5 and ws["C4"].number_format == "0.00"
    assert ws.column_dimensions["D"].width > ws.column_dimensions["A"].width >= 8
    thresholds = book["Thresholds and definitions"]
    assert [(r[0].value, r[1].value) for r in thresholds.iter_rows(min_row=2)] == [
        ("Reliable change (points)", 14), ("Clinical cut-off", 63.5)]


def test_yes_no_in_the_interface_language_and_numbers_as_numbers():
    """Issue 24: no True/False in a Spanish download; a threshold is a number the spreadsheet formats."""
    from core.i18n import language

    frame = pd.DataFrame({"patient": ["P1", "P2", "P3"], "rupture": [True, False, True],
                          "repaired": pd.array([True, None, False], dtype="boolean")})
    with language("es"):
        text = csv_bytes(frame, "es").decode("utf-8-sig")
        data = excel_bytes(frame, "casos", definitions=[("Punto de corte clínico", 63.5), ("Sesión", 4)])
    assert text.splitlines()[1:] == ["P1;sí;sí", "P2;no;", "P3;sí;no"]
    assert "True" not in text and "False" not in text
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert [c.value for c in book["casos"]["B"][1:]] == ["sí", "no", "sí"]
    cut, session = book["Umbrales y definiciones"]["B2"], book["Umbrales y definiciones"]["B3"]
    assert cut.value == 63.5 and cut.data_type == "n" and cut.number_format == "0.0##"
    assert session.value == 4 and session.number_format == "0"
    assert csv_bytes(frame).decode("utf-8-sig").splitlines()[1] == "P1,yes,yes"
