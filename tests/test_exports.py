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
