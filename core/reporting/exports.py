"""Tables leaving the dashboard as CSV or Excel, safe to open in a spreadsheet program.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel and LibreOffice (CSV/formula injection, OWASP): a patient ID such as
``=HYPERLINK("http://…")`` would become a live link. Such text cells are written with a leading
apostrophe, which spreadsheet programs show as plain text. Numbers stay numbers (``-0.5`` in a
numeric column is not touched).
"""
from __future__ import annotations

import io

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell (and column name) that a spreadsheet would run as a
    formula starts with an apostrophe."""
    out = frame.copy()

    def safe(value):
        if isinstance(value, str) and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value

    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map(safe)
    out.columns = [safe(str(c)) for c in out.columns]
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV (with BOM, so that Excel reads accents) of a neutralised copy."""
    return neutralise_formulas(frame).to_csv(index=False).encode("utf-8-sig")


def excel_bytes(frame: pd.DataFrame, sheet: str = "data") -> bytes:
    """An .xlsx workbook of a neutralised copy; text is written as text, never as a formula."""
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        neutralise_formulas(frame).to_excel(writer, index=False, sheet_name=sheet[:31])
    return buf.getvalue()
