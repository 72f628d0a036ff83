"""Tables leaving the dashboard as CSV or Excel, safe to open in a spreadsheet program.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel and LibreOffice (CSV/formula injection, OWASP): a patient ID such as
``=HYPERLINK("http://…")`` would become a live link. Such text cells are written with a leading
apostrophe, which spreadsheet programs show as plain text. Numbers stay numbers (``-0.5`` in a
numeric column is not touched).
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from core.i18n import _

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


def _is_flags(values: pd.Series) -> bool:
    """True for a column of yes/no values: booleans, possibly with missing ones (``repaired``)."""
    if pd.api.types.is_bool_dtype(values):  # also pandas' nullable "boolean" (with <NA>)
        return True
    if values.dtype != object:
        return False
    present = values.dropna()
    return bool(len(present)) and all(isinstance(v, (bool, np.bool_)) for v in present)


def yes_no(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every yes/no column written as the words of the interface language (``yes`` /
    ``no``; Spanish ``sí`` / ``no``), a missing value left empty: a spreadsheet shows ``True`` and
    ``False`` in English whatever its language."""
    flags = [c for c in frame.columns if _is_flags(frame[c])]
    if not flags:
        return frame
    out = frame.copy()
    yes, no = _("yes"), _("no")
    for col in flags:
        out[col] = pd.Series([None if pd.isna(v) else (yes if v else no) for v in frame[col]],
                             index=frame.index, dtype=object)
    return out


#: CSV conventions per interface language: the separator and decimal mark a spreadsheet program
#: set to that language expects (Excel in Spanish splits on ``;`` and reads ``0,5`` as a number).
CSV_LOCALES = {"en": (",", "."), "es": (";", ",")}


def csv_bytes(frame: pd.DataFrame, locale: str = "en") -> bytes:
    """UTF-8 CSV (with BOM, so that Excel reads accents) of a neutralised copy, with the
    separator and decimal mark of ``locale`` (``"en"``: ``,`` and ``.``; ``"es"``: ``;`` and ``,``)
    and yes/no columns in the words of the interface language (:func:`yes_no`).

    >>> csv_bytes(pd.DataFrame({"patient": ["P1"], "change": [-14.5]}), "es").decode("utf-8-sig").split()
    ['patient;change', 'P1;-14,5']
    >>> csv_bytes(pd.DataFrame({"patient": ["P1"], "rupture": [True]})).decode("utf-8-sig").split()
    ['patient,rupture', 'P1,yes']
    """
    sep, decimal = CSV_LOCALES.get(locale, CSV_LOCALES["en"])
    text = neutralise_formulas(yes_no(frame)).to_csv(index=False, sep=sep, decimal=decimal, lineterminator="\r\n")
    return text.encode("utf-8-sig")


def human_label(column: str) -> str:
    """``"no_reliable_improvement"`` → ``"No reliable improvement"`` (for column headers)."""
    text = str(column).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _number_format(values: pd.Series) -> str | None:
    """Excel number format for a column: whole numbers without decimals, others with two."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return None
    finite = values.dropna()
    if len(finite) and (finite % 1 == 0).all():
        return "0"
    return "0.00"


def excel_bytes(frame: pd.DataFrame, sheet: str = "data", *, title: str | None = None,
                labels: dict[str, str] | None = None,
                definitions: list[tuple[str, str]] | None = None,
                definitions_sheet: str | None = None) -> bytes:
    """An .xlsx workbook of a neutralised copy, formatted for people.

    - ``title`` (optional) in row 1 in bold, the header below it;
    - headers from ``labels`` (column → text), else ``"snake_case"`` → ``"Snake case"``;
    - bold header, frozen below the header, an autofilter over the table;
    - column widths from the longest text (8–60 characters);
    - number formats: whole-number columns ``0``, others ``0.00``; yes/no columns as words
      (:func:`yes_no`);
    - ``definitions``: ``(name, value or definition)`` pairs on a second sheet, e.g. the
      thresholds the table was computed with; a value that is a number is stored as a number
      (format ``0`` when whole, else ``0.0##``), so that the spreadsheet writes it its own way
      (Spanish Excel: ``63,5``).

    Text is written as text, never as a formula.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    labels = labels or {}
    definitions_sheet = _("Thresholds and definitions") if definitions_sheet is None else definitions_sheet
    frame = yes_no(frame)
    safe = neutralise_formulas(frame)
    headers = neutralise_formulas(pd.DataFrame(columns=[labels.get(c, human_label(c)) for c in frame.columns]))
    workbook = Workbook()
    ws = workbook.active
    ws.title = sheet[:31]
    header_row = 1
    if title:
        ws.cell(row=1, column=1, value=str(title)).font = Font(bold=True, size=13)
        header_row = 3
    for j, text in enumerate(headers.columns, start=1):
        cell = ws.cell(row=header_row, column=j, value=str(text))
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    formats = [_number_format(frame[c]) for c in frame.columns]
    for i, row in enumerate(safe.itertuples(index=False), start=header_row + 1):
        for j, value in enumerate(row, start=1):
            if value is None or (isinstance(value, float) and value != value):
                continue
            if hasattr(value, "item"):
                value = value.item()
            cell = ws.cell(row=i, column=j, value=value)
            if isinstance(value, str):
                cell.data_type = "s"
            elif formats[j - 1]:
                cell.number_format = formats[j - 1]
    last_row = header_row + len(safe)
    for j, col in enumerate(safe.columns, start=1):
        texts = [str(headers.columns[j - 1])] + [str(v) for v in safe[col].head(2000).tolist()]
        ws.column_dimensions[get_column_letter(j)].width = max(8, min(60, max(len(t) for t in texts) + 2))
    if len(safe.columns):
        ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
        ws.auto_filter.ref = f"A{header_row}:{get_column_letter(len(safe.columns))}{max(last_row, header_row)}"
    if definitions:
        sheet2 = workbook.create_sheet(definitions_sheet[:31])
        pairs = neutralise_formulas(pd.DataFrame([(str(k), v) for k, v in definitions], columns=["name", "value"]))
        sheet2.cell(row=1, column=1, value=_("Name")).font = Font(bold=True)
        sheet2.cell(row=1, column=2, value=_("Value or definition")).font = Font(bold=True)
        for i, (name, value) in enumerate(pairs.itertuples(index=False), start=2):
            sheet2.cell(row=i, column=1, value=name)
            value = value.item() if hasattr(value, "item") else value
            cell = sheet2.cell(row=i, column=2, value=value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                cell.number_format = "0" if float(value).is_integer() else "0.0##"
                cell.alignment = Alignment(horizontal="left", vertical="top")
            else:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet2.column_dimensions["A"].width = max(12, min(40, max(len(str(n)) for n, _ in pairs.itertuples(index=False)) + 2))
        sheet2.column_dimensions["B"].width = 80
        sheet2.freeze_panes = "A2"
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()
