"""Reading clinic spreadsheets: CSV in any common locale, and Excel workbooks.

Every cell is read as text, exactly as the file holds it, so that nothing is lost or guessed
before validation: patient IDs keep their leading zeros, and numbers are parsed later with the
file's decimal separator (:mod:`core.intake.validation`). Each data row carries the row number a
spreadsheet program shows (header = row 1, first data row = row 2) in the column ``ROW``.

Supported:

- CSV / text with delimiter ``,`` ``;`` tab or ``|`` (detected), decimal point or decimal comma
  (detected), encoded as UTF-8 (with or without BOM), Windows-1252 or Latin-1, or UTF-16 with
  its BOM (Excel's "Unicode text" export).
- Excel ``.xlsx`` / ``.xlsm`` (any sheet; the first by default).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError

#: Column holding the spreadsheet row number of each data row (header = row 1).
ROW = "row"

_DELIMITERS = [",", ";", "\t", "|"]
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
_DECIMAL_POINT = re.compile(r"^\s*[-+]?\d*\.\d+\s*$")
_EXCEL_SUFFIXES = {".xlsx", ".xlsm"}


@dataclass(frozen=True)
class RawTable:
    """A file as read: all cells as text, plus how it was read.

    ``frame`` has the file's headers as columns (stripped of spaces and BOM) and a ``row``
    column with spreadsheet row numbers. ``decimal`` is the decimal separator numbers use.
    """

    frame: pd.DataFrame
    source: str
    kind: str  # "csv" or "excel"
    delimiter: str | None = None
    decimal: str = "."
    encoding: str | None = None
    sheet: str | None = None
    sheets: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def columns(self) -> list[str]:
        """The file's own columns (without the row-number column)."""
        return [c for c in self.frame.columns if c != ROW]


def _decode(data: bytes) -> tuple[str, str]:
    """Decode bytes as UTF-16 (when it starts with its BOM), UTF-8 (BOM or not), else
    Windows-1252, else Latin-1."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _agrees(fields: list[str], n_header: int) -> bool:
    """A row fits a header of ``n_header`` fields when it has as many fields, or more whose
    extra fields are all empty (a trailing delimiter, as some exports write)."""
    if len(fields) < n_header:
        return False
    return all(not f.strip() for f in fields[n_header:])


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _looks_binary(sample: str) -> bool:
    """True when decoded text holds control characters that no spreadsheet export writes."""
    return len(_CONTROL.findall(sample)) > max(2, len(sample) // 200)


def detect_delimiter(sample_lines: list[str]) -> str:
    """Pick the delimiter that splits the first lines into the most, equally many fields.

    A candidate qualifies when the header has at least two fields (not counting empty fields
    at its end) and at least 80% of the sampled lines have the header's field count, or more
    fields that are all empty (a trailing delimiter); quotes are respected, as ``csv`` reads them.
    """
    best, best_fields = None, 1
    lines = [ln for ln in sample_lines if ln.strip()]
    if not lines:
        raise InputError("The file is empty: it has no header row and no data.")
    for delim in _DELIMITERS:
        rows = list(csv.reader(lines, delimiter=delim))
        header = rows[0]
        while header and not header[-1].strip():
            header = header[:-1]
        n_header = len(header)
        if n_header < 2:
            continue
        agree = sum(1 for r in rows if _agrees(r, n_header)) / len(rows)
        if agree >= 0.8 and n_header > best_fields:
            best, best_fields = delim, n_header
    if best is None:
        return ","  # a one-column file; the mapping step will say what is missing
    return best


def detect_decimal(frame: pd.DataFrame, delimiter: str) -> str:
    """Return ``","`` when numeric-looking cells use a decimal comma, else ``"."``.

    With ``,`` as delimiter a decimal comma is impossible (unquoted). Otherwise count cells
    that look like ``1,5`` versus ``1.5`` in a sample of rows.
    """
    if delimiter == ",":
        return "."
    sample = frame.head(2000)
    commas = points = 0
    for col in sample.columns:
        values = sample[col].astype(str)
        commas += int(values.str.match(_DECIMAL_COMMA).sum())
        points += int(values.str.match(_DECIMAL_POINT).sum())
    return "," if commas > points else "."


def _clean_headers(columns) -> list[str]:
    """Headers stripped of spaces and BOM; empty ones named ``column N``; repeated ones numbered
    (``name (2)``); a file column named ``row`` becomes ``row (file)`` (``row`` holds row numbers)."""
    out = []
    for c in columns:
        name = str(c).replace("\ufeff", "").strip()
        if name == ROW:
            name = f"{ROW} (file)"
        out.append(name if name else f"column {len(out) + 1}")
    seen: dict[str, int] = {}
    unique = []
    for name in out:
        if name in seen:
            seen[name] += 1
            unique.append(f"{name} ({seen[name]})")
        else:
            seen[name] = 1
            unique.append(name)
    return unique


def _finish(frame: pd.DataFrame, first_data_row: int) -> tuple[pd.DataFrame, int]:
    """Add spreadsheet row numbers, drop rows that are completely empty; return the count dropped."""
    frame = frame.fillna("")
    frame.insert(0, ROW, range(first_data_row, first_data_row + len(frame)))
    # A row is empty when every cell is blank; only rows blank so far are checked further, so
    # a normal file costs one pass over its first column.
    empty = np.ones(len(frame), dtype=bool)
    for col in frame.columns[1:]:
        pos = np.flatnonzero(empty)
        if not len(pos):
            break
        cells = frame[col].iloc[pos].astype(str).str.strip()
        empty[pos] = cells.eq("").to_numpy(dtype=bool, na_value=True)
    n_empty = int(empty.sum())
    if n_empty:
        frame = frame.loc[~empty]
    return frame.reset_index(drop=True), n_empty


def _header_and_body(cells: pd.DataFrame, source: str, kind: str) -> tuple[pd.DataFrame, int]:
    """Split a grid of text cells (columns 0..k, no header yet) into named columns and data.

    The header is the first row with a non-empty cell (rows above it are blank). Columns after
    the last named header cell are dropped when they are empty (trailing delimiters, formatted
    but empty Excel cells). When they hold values, an Excel sheet keeps them as ``column N``; in
    a CSV they mean that some rows have more fields than the header (a delimiter inside a cell,
    or a decimal comma in a comma-separated file), so the file cannot be read reliably and
    :class:`InputError` names the first such row. Returns the table (with ``row``) and the
    number of blank rows skipped after the header.
    """
    cells = cells.fillna("")
    header_index = None
    for i in range(len(cells)):
        if any(str(c).strip() for c in cells.iloc[i]):
            header_index = i
            break
    if header_index is None:
        raise InputError(f"{source} is empty: it has no header row and no data.")
    header = [str(c) for c in cells.iloc[header_index]]
    named = [i for i, c in enumerate(header) if c.replace("\ufeff", "").strip()]
    width = named[-1] + 1
    body = cells.iloc[header_index + 1:]
    keep = list(range(width))
    for pos in range(width, cells.shape[1]):
        filled = body.iloc[:, pos].astype(str).str.strip().ne("").to_numpy(dtype=bool, na_value=False)
        if not filled.any():
            continue
        if kind == "csv":
            first = header_index + 2 + int(np.flatnonzero(filled)[0])
            more = int(filled.sum()) - 1
            others = f" (and {more} other {'row' if more == 1 else 'rows'})" if more else ""
            raise InputError(
                f"{source} could not be read as a table: row {first}{others} has more cells than "
                "the header row. Check that the delimiter is not also used inside cells (for "
                "example a decimal comma in a comma-separated file), or save the sheet again as "
                "CSV with ';' as separator.")
        keep.append(pos)
    body = body.iloc[:, keep]
    body.columns = _clean_headers([header[i] if i < width else "" for i in keep])
    return _finish(body, first_data_row=header_index + 2)


def read_csv_bytes(data: bytes, source: str = "upload") -> RawTable:
    """Read CSV/text bytes with detected encoding, delimiter and decimal separator.

    The header is the first non-blank line. Rows may end with extra empty fields (a trailing
    delimiter); a row with more non-empty fields than the header is an :class:`InputError`.
    """
    text, encoding = _decode(data)
    if not text.strip():
        raise InputError(f"{source} is empty: it has no header row and no data.")
    if _looks_binary(text[:65_536]):
        raise InputError(f"{source} is not a text (CSV) file or an .xlsx workbook. "
                         "Save it as CSV or .xlsx.")
    sample = text[:200_000].splitlines()[:50]
    del text  # the parser reads the bytes; the decoded copy was only for the checks above
    delimiter = detect_delimiter(sample)
    n_fields = max(len(r) for r in csv.reader([ln for ln in sample if ln.strip()], delimiter=delimiter))
    for attempt in range(6):
        try:
            # Every line is read as data with numbered columns, so that no line becomes an index
            # and rows longer than the header are seen; the parser reads the bytes with the
            # encoding found above (faster than re-encoding the text).
            cells = pd.read_csv(
                io.BytesIO(data), sep=delimiter, header=None, names=list(range(n_fields)),
                index_col=False, dtype=str, keep_default_na=False, skip_blank_lines=False,
                engine="c", quotechar='"', encoding=encoding,
            )
            break
        except (pd.errors.ParserError, ValueError) as err:
            wider = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", str(err))
            if wider and attempt < 5:
                n_fields = max(n_fields + 1, int(wider.group(2)))
                continue
            line = re.search(r"line (\d+)", str(err))
            where = f" near line {line.group(1)}" if line else ""
            raise InputError(
                f"{source} could not be read as a table{where}. Check that the delimiter "
                f"('{delimiter}') is not also used inside cells and that quotes are closed, or "
                "save the sheet again as CSV."
            ) from None
    frame, n_empty = _header_and_body(cells, source, "csv")
    decimal = detect_decimal(frame.drop(columns=ROW), delimiter)
    notes = (f"{n_empty} completely empty rows were skipped.",) if n_empty else ()
    return RawTable(frame=frame, source=source, kind="csv", delimiter=delimiter,
                    decimal=decimal, encoding=encoding, notes=notes)


def excel_sheet_names(data: bytes) -> list[str]:
    """Names of the sheets in an .xlsx workbook, in order."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    except Exception:  # openpyxl raises many kinds for a damaged file
        raise InputError("The file could not be opened as an Excel workbook (.xlsx). "
                         "Open it in Excel or LibreOffice and save it again as .xlsx or CSV.") from None
    names = list(wb.sheetnames)
    wb.close()
    return names


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def read_excel_bytes(data: bytes, source: str = "upload", sheet: str | None = None) -> RawTable:
    """Read one sheet of an .xlsx workbook, every cell as text (integral numbers without ``.0``)."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        raise InputError(f"{source} could not be opened as an Excel workbook (.xlsx). "
                         "Open it in Excel or LibreOffice and save it again as .xlsx or CSV.") from None
    sheets = tuple(wb.sheetnames)
    if sheet is None:
        sheet = sheets[0]
    if sheet not in sheets:
        wb.close()
        raise InputError(f"{source} has no sheet named '{sheet}'. Its sheets are: {', '.join(sheets)}.")
    ws = wb[sheet]
    if hasattr(ws, "reset_dimensions"):
        # Some programs write a wrong size ("A1") into the sheet; read every row the sheet has.
        ws.reset_dimensions()
    rows = [[_cell_text(v) for v in r] for r in ws.iter_rows(values_only=True)]
    wb.close()
    if not any(c.strip() for r in rows for c in r):
        raise InputError(f"Sheet '{sheet}' of {source} is empty.")
    n_cols = max(len(r) for r in rows)
    cells = pd.DataFrame([r + [""] * (n_cols - len(r)) for r in rows], dtype=str)
    frame, n_empty = _header_and_body(cells, source, "excel")
    notes = (f"{n_empty} completely empty rows were skipped.",) if n_empty else ()
    return RawTable(frame=frame, source=source, kind="excel", decimal=".", sheet=sheet,
                    sheets=sheets, notes=notes)


def read_table(source: str | Path | bytes, filename: str | None = None,
               sheet: str | None = None) -> RawTable:
    """Read a CSV or Excel file (path or bytes) into a :class:`RawTable` of text cells.

    ``filename`` tells the format when ``source`` is bytes (by its suffix); Excel files are
    recognised by suffix or by their ZIP signature.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"The file {path} does not exist.")
        data = path.read_bytes()
        filename = filename or path.name
    else:
        data = source
    name = filename or "upload"
    suffix = Path(name).suffix.lower()
    if suffix == ".xls":
        raise InputError(f"{name} is an old Excel 97-2003 file (.xls). Save it as .xlsx or CSV and upload again.")
    if suffix in _EXCEL_SUFFIXES or data[:4] == b"PK\x03\x04":
        return read_excel_bytes(data, source=name, sheet=sheet)
    if b"\x00" in data[:4096] and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{name} is not a text (CSV) file or an .xlsx workbook. Save it as CSV or .xlsx.")
    return read_csv_bytes(data, source=name)
