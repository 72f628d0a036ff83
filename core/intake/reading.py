"""Reading clinic spreadsheets: CSV in any common locale, and Excel workbooks.

Every cell is read as text, exactly as the file holds it, so that nothing is lost or guessed
before validation: patient IDs keep their leading zeros, and numbers are parsed later with the
file's decimal separator (:mod:`core.intake.validation`). Each data row carries the row number a
spreadsheet program shows (header = row 1, first data row = row 2) in the column ``ROW``.

Supported:

- CSV / text with delimiter ``,`` ``;`` tab or ``|`` (detected), decimal point or decimal comma
  (detected), encoded as UTF-8 (with or without BOM), Windows-1252 or Latin-1, or UTF-16 with
  its BOM (Excel's "Unicode text" export). A file that mixes UTF-8 and Windows-1252/Latin-1
  rows (two exports joined) is read row by row, each line in its own encoding, with a note
  naming the rows in the other encoding (:func:`_mixed_to_utf8`), so that "José" stays one patient.
- Headers of any length: the header row's fields are counted in full, however long it is.
- Excel ``.xlsx`` / ``.xlsm`` (any sheet; the first by default), read as a stream
  (:mod:`core.intake.xlsx`).

Every file is read within the limits of :mod:`core.intake.limits` (Excel's 1,048,576 rows ×
16,384 columns, at most 10 million cells, 32,767 characters a cell, 200 MB a file, 128 MB
unpacked for a workbook), checked before or while the work is done, so that no file can make
reading take unbounded time or memory; a file over a limit is refused with one plain sentence.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError, TooLarge, some_names
from core.i18n import _, ngettext
from core.intake import limits, xlsx
from core.intake.limits import MAX_CELL_CHARS, MAX_CELLS, MAX_COLUMNS, MAX_FILE_BYTES, MAX_ROWS, Limits

#: Column holding the spreadsheet row number of each data row (header = row 1).
ROW = "row"

_DELIMITERS = [",", ";", "\t", "|"]
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")
_DECIMAL_POINT = re.compile(r"^\s*[-+]?\d*\.\d+\s*$")
_EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
_WIDE_TABLE = 1_000  # columns beyond which a table is kept as one block of Python strings


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


_DECODE_CHUNK = 4 * 2 ** 20
_SAMPLE_BYTES = 400_000


def _decodes(data: bytes, encoding: str) -> bool:
    """True when all of ``data`` decodes as ``encoding`` (checked in pieces: no decoded copy of
    the whole file is kept)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(data)
    try:
        for start in range(0, len(data), _DECODE_CHUNK):
            decoder.decode(view[start:start + _DECODE_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _detect_encoding(data: bytes) -> str:
    """UTF-16 (when it starts with its BOM), UTF-8 (BOM or not), else Windows-1252, else Latin-1."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") and _decodes(data, "utf-16"):
        return "utf-16"
    for encoding in ("utf-8-sig", "cp1252"):
        if _decodes(data, encoding):
            return encoding
    return "latin-1"


def _sample(data: bytes, encoding: str) -> str:
    """The file's first lines as text (about 200,000 characters from its first non-blank byte)."""
    start = 0
    if encoding != "utf-16":
        first = re.search(rb"\S", data)
        if first is None:
            return ""
        start = data.rfind(b"\n", 0, first.start()) + 1
    head = data[start:start + _SAMPLE_BYTES]
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)


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
        raise InputError(_("The file is empty: it has no header row and no data."))
    for delim in _DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delim))
        except csv.Error:  # a field over csv's own size limit: not this delimiter's table
            continue
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
    if delimiter == "," or frame.empty or not len(frame.columns):
        return "."
    # One vectorised pass over a sample of about 200,000 cells (linear in the number of columns).
    sample = frame.head(max(20, 200_000 // len(frame.columns)))
    values = pd.Series(sample.to_numpy(dtype=object).ravel(), dtype=object).astype(str)
    commas = int(values.str.match(_DECIMAL_COMMA).sum())
    points = int(values.str.match(_DECIMAL_POINT).sum())
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
    if frame.shape[1] > _WIDE_TABLE:
        # Many short columns: one block of Python strings. Each Arrow-backed column costs a fixed
        # time in every pandas operation (and in pickling for the dashboard's cache), which for
        # 16,384 columns took longer than the data; one block costs per cell, not per column.
        frame = pd.DataFrame(frame.to_numpy(dtype=object), columns=frame.columns, dtype=object)
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


def _first_filled_row(cells: pd.DataFrame) -> int | None:
    """Position of the first row with a non-blank cell (None if none), looking at growing blocks
    of rows, so that a header on row 1 costs one row and blank rows cost one pass."""
    start, step = 0, 16
    while start < len(cells):
        block = cells.iloc[start:start + step].to_numpy(dtype=object)
        filled = np.frompyfunc(lambda c: bool(str(c).strip()), 1, 1)(block).astype(bool).any(axis=1)
        if filled.any():
            return start + int(np.argmax(filled))
        start += step
        step *= 4
    return None


def _header_and_body(cells: pd.DataFrame, source: str, kind: str,
                     first_row: int = 1) -> tuple[pd.DataFrame, int]:
    """Split a grid of text cells (columns 0..k, no header yet) into named columns and data.

    The header is the first row with a non-empty cell (rows above it are blank). Columns after
    the last named header cell are dropped when they are empty (trailing delimiters, formatted
    but empty Excel cells). When they hold values, an Excel sheet keeps them as ``column N``; in
    a CSV they mean that some rows have more fields than the header (a delimiter inside a cell,
    or a decimal comma in a comma-separated file), so the file cannot be read reliably and
    :class:`InputError` names the first such row. Returns the table (with ``row``) and the
    number of blank rows skipped after the header. ``first_row`` is the spreadsheet number of
    the grid's first row.
    """
    cells = cells.fillna("")
    header_index = _first_filled_row(cells)
    if header_index is None:
        raise InputError(_("{source} is empty: it has no header row and no data.").format(source=source))
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
            first = first_row + header_index + 1 + int(np.flatnonzero(filled)[0])
            more = int(filled.sum()) - 1
            others = ngettext(" (and {n} other row)", " (and {n} other rows)", more).format(n=more) if more else ""
            raise InputError(_(
                "{source} could not be read as a table: row {row}{others} has more cells than "
                "the header row. Check that the delimiter is not also used inside cells (for "
                "example a decimal comma in a comma-separated file), or save the sheet again as "
                "CSV with ';' as separator.").format(source=source, row=first, others=others))
        keep.append(pos)
    body = body.iloc[:, keep]
    body.columns = _clean_headers([header[i] if i < width else "" for i in keep])
    return _finish(body, first_data_row=first_row + header_index + 1)


def _too_wide(source: str, n_fields: int) -> InputError:
    return InputError(_("{source} is larger than a spreadsheet can be: a row has {n:,} cells or "
                        "more, and Excel's limit is {max:,} columns. Check the delimiter, or "
                        "split the file, and upload again.").format(source=source, n=n_fields, max=MAX_COLUMNS))


def _longest_field_bytes(data: bytes, delimiter: str) -> int:
    """The longest run of bytes without a delimiter or line break (numpy, in 16 MB windows)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    stops = (ord("\n"), ord("\r"), ord(delimiter))
    longest, last = 0, -1
    for start in range(0, len(arr), 2 ** 24):
        window = arr[start:start + 2 ** 24]
        pos = np.flatnonzero((window == stops[0]) | (window == stops[1]) | (window == stops[2])) + start
        if len(pos):
            longest = max(longest, int(np.diff(pos, prepend=last).max()) - 1)
            last = int(pos[-1])
    return max(longest, len(arr) - last - 1)


def _check_cell_sizes(cells: pd.DataFrame, source: str, data: bytes, delimiter: str, encoding: str) -> None:
    """Refuse a cell over :data:`~core.intake.limits.MAX_CELL_CHARS` characters, naming it."""
    if len(data) <= MAX_CELL_CHARS:  # no cell can be longer than the file
        return
    if encoding != "utf-16" and b'"' not in data and _longest_field_bytes(data, delimiter) <= MAX_CELL_CHARS:
        return  # without quotes a cell ends at the next delimiter or line break (and bytes >= characters)
    for pos, col in enumerate(cells.columns):
        lengths = cells[col].str.len()
        longest = lengths.max()
        if pd.notna(longest) and longest > MAX_CELL_CHARS:
            row = int(np.flatnonzero(lengths.to_numpy(dtype=float, na_value=0) > MAX_CELL_CHARS)[0]) + 1
            raise InputError(limits.cell_too_long(
                source, _("the cell in row {row:,}, column {column:,} ({letters})").format(
                    row=row, column=pos + 1, letters=limits.column_letters(pos + 1)),
                int(longest)))


def _limits(given: Limits | None) -> Limits:
    """``given``, or this module's limits (read at call time)."""
    return given if given is not None else Limits(rows=MAX_ROWS, cells=MAX_CELLS, file_bytes=MAX_FILE_BYTES)


def _parse_csv(data: bytes, source: str, delimiter: str, n_fields: int, encoding: str,
               lim: Limits | None = None) -> pd.DataFrame:
    """Every line as text cells in ``n_fields`` numbered columns (widened when a later line has
    more fields), read in pieces so that a file over the rows or cells limit stops early."""
    lim = _limits(lim)
    for attempt in range(6):
        if n_fields > MAX_COLUMNS:
            raise _too_wide(source, n_fields)
        pieces, n_rows = [], 0
        try:
            # Every line is read as data with numbered columns, so that no line becomes an index
            # and rows longer than the header are seen; the parser reads the bytes with the
            # encoding found above (faster than re-encoding the text).
            reader = pd.read_csv(
                io.BytesIO(data), sep=delimiter, header=None, names=list(range(n_fields)),
                index_col=False, dtype=object if n_fields > _WIDE_TABLE else str,
                keep_default_na=False, skip_blank_lines=False,
                engine="c", quotechar='"', encoding=encoding,
                chunksize=max(1_000, 1_000_000 // n_fields),
            )
            with reader, warnings.catch_warnings(record=True) as caught:
                # Lines shorter than the widest line are padded with empty cells, as intended. A
                # first line with more fields than the columns given would lose its extra fields
                # (pandas only warns): the columns are counted again and the file read again.
                warnings.simplefilter("always", pd.errors.ParserWarning)
                for piece in reader:
                    if any("loss of data" in str(w.message) for w in caught):
                        break
                    n_rows += len(piece)
                    if n_rows > lim.rows or n_rows * n_fields > lim.cells:
                        raise TooLarge(limits.too_large(source, n_rows, n_fields, at_least=True, limits=lim))
                    pieces.append(piece)
            if any("loss of data" in str(w.message) for w in caught):
                first = _first_line_fields(data, encoding, delimiter)
                if first <= n_fields or attempt == 5:
                    raise InputError(_("{source} could not be read as a table: its first row has more cells than "
                                       "could be counted. Save the sheet again as CSV and upload again.").format(
                        source=source))
                n_fields = first
                continue
        except (pd.errors.ParserError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            wider = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", str(err))
            if wider and attempt < 5:
                n_fields = max(n_fields + 1, int(wider.group(2)))
                continue
            line = re.search(r"line (\d+)", str(err))
            where = _(" near line {line}").format(line=line.group(1)) if line else ""
            raise InputError(_(
                "{source} could not be read as a table{where}. Check that the delimiter "
                "('{delimiter}') is not also used inside cells and that quotes are closed, or "
                "save the sheet again as CSV.").format(source=source, where=where, delimiter=delimiter)
            ) from None
        if not pieces:
            raise InputError(_("{source} is empty: it has no header row and no data.").format(source=source))
        return pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
    raise AssertionError("unreachable")  # the loop returns or raises


def _first_line_fields(data: bytes, encoding: str, delimiter: str) -> int:
    """The fields of the file's first line, counted in full however long it is (decoded in
    pieces up to its line break; quotes respected as ``csv`` reads them)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    pieces: list[str] = []
    for start in range(0, len(data), _DECODE_CHUNK):
        text = decoder.decode(data[start:start + _DECODE_CHUNK], final=start + _DECODE_CHUNK >= len(data))
        end = text.find("\n")
        if end >= 0:
            pieces.append(text[:end])
            break
        pieces.append(text)
    line = "".join(pieces).rstrip("\r")
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(max(limit, len(line) + 1))
        return max(1, len(next(csv.reader([line], delimiter=delimiter), [])))
    except csv.Error:
        return line.count(delimiter) + 1
    finally:
        csv.field_size_limit(limit)


#: Characters a line of UTF-8 text in a mixed file may hold beyond ASCII: Latin letters, general
#: punctuation, the euro sign. Windows-1252 text that happens to decode as UTF-8 gives others
#: (``ÓN”`` is the bytes of the Cyrillic ``Ӕ``), so such a line is read as Windows-1252.
_PLAUSIBLE_UTF8 = re.compile(r"[^\x00-\x7f\u00a0-\u024f\u1e00-\u1eff\u2000-\u206f\u20ac]")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
#: UTF-8 byte pairs of the characters above: a Windows-1252 file without one has no UTF-8 line.
_UTF8_PAIR = re.compile(rb"[\xc2-\xc9][\x80-\xbf]|\xe1[\xb8-\xbb][\x80-\xbf]|\xe2[\x80-\x82][\x80-\xbf]")
_MIXED_NOTES = 20  # rows named one note each; the rest in one more note


def _utf8_line(line: bytes) -> str | None:
    """The line as UTF-8 text when it is UTF-8 (and reads as text a clinic writes), else None."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _PLAUSIBLE_UTF8.search(text) else text


def _mixed_to_utf8(data: bytes) -> tuple[bytes, list[int], str, str] | None:
    """A file that is not all UTF-8 but has UTF-8 lines among Windows-1252 (or Latin-1) ones, as
    UTF-8: each line with a byte beyond ASCII decoded in its own encoding. Returns the UTF-8 bytes,
    the 0-based line numbers in the rarer of the two encodings, and the names of that encoding and
    of the file's main one; ``None`` when the file has no UTF-8 line (it is simply Windows-1252)."""
    if _UTF8_PAIR.search(data) is None:
        return None
    pieces, utf8_lines, other_lines = [], [], []
    last, line_no, fallback, pos = 0, 0, "Windows-1252", 0
    while True:
        match = _NON_ASCII.search(data, pos)
        if match is None:
            break
        start = data.rfind(b"\n", 0, match.start()) + 1
        end = data.find(b"\n", match.start())
        end = len(data) if end < 0 else end
        line_no += data.count(b"\n", last, start)
        pieces.append(data[last:start])
        line = data[start:end]
        text = _utf8_line(line)
        if text is None:
            try:
                text = line.decode("cp1252")
            except UnicodeDecodeError:
                text, fallback = line.decode("latin-1"), "Latin-1"
            other_lines.append(line_no)
        else:
            utf8_lines.append(line_no)
        pieces.append(text.encode("utf-8"))
        last = pos = end
    if not utf8_lines or not other_lines:
        return None
    pieces.append(data[last:])
    if len(utf8_lines) < len(other_lines):
        return b"".join(pieces), utf8_lines, "UTF-8", fallback
    return b"".join(pieces), other_lines, fallback, "UTF-8"


def _line_rows(data: bytes, delimiter: str, lines: list[int]) -> list[int]:
    """The spreadsheet rows (header = row 1, as :func:`_finish` numbers them) holding the given
    0-based physical lines of UTF-8 ``data`` (a quoted cell can span lines)."""
    wanted = sorted(set(lines))
    rows, k = [], 0
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(max(limit, len(data) + 1))
        reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""), delimiter=delimiter)
        for record, _fields in enumerate(reader, start=1):
            while k < len(wanted) and wanted[k] < reader.line_num:
                rows.append(record)
                k += 1
            if k == len(wanted):
                break
    except csv.Error:  # as the parser reads it: one line a row
        return [line + 1 for line in wanted]
    finally:
        csv.field_size_limit(limit)
    return sorted(set(rows))


def _mixed_notes(rows: list[int], encoding: str, main: str) -> tuple[str, ...]:
    """One note per row read in the other encoding (the first :data:`_MIXED_NOTES`), then one for the rest."""
    notes = [_("Row {row} is encoded as {encoding}, the rest of the file as {main}: the file mixes two "
               "encodings (for example two exports joined), and each row was read in its own.").format(
        row=row, encoding=encoding, main=main) for row in rows[:_MIXED_NOTES]]
    if len(rows) > _MIXED_NOTES:
        more = len(rows) - _MIXED_NOTES
        notes.append(ngettext("{n:,} more row is encoded as {encoding} (rows {rows}); each was read in its own "
                              "encoding.", "{n:,} more rows are encoded as {encoding} (rows {rows}); each was read "
                              "in its own encoding.", more).format(
            n=more, encoding=encoding, rows=some_names(rows[_MIXED_NOTES:], 10)))
    return tuple(notes)


def read_csv_bytes(data: bytes, source: str = "upload", limits: Limits | None = None) -> RawTable:
    """Read CSV/text bytes with detected encoding, delimiter and decimal separator.

    The header is the first non-blank line. Rows may end with extra empty fields (a trailing
    delimiter); a row with more non-empty fields than the header is an :class:`InputError`.
    The limits of :mod:`core.intake.limits` (or raised ``limits``) are checked while the file is parsed.
    """
    lim = _limits(limits)
    if len(data) > lim.file_bytes:
        raise TooLarge(_file_too_large(source, len(data), lim))
    encoding = _detect_encoding(data)
    mixed_notes: tuple[str, ...] = ()
    mixed = _mixed_to_utf8(data) if encoding in ("cp1252", "latin-1") else None
    if mixed is not None:
        data, mixed_lines, other, main = mixed
        encoding = "utf-8"
    text = _sample(data, encoding)
    if not text.strip():
        raise InputError(_("{source} is empty: it has no header row and no data.").format(source=source))
    if _looks_binary(text[:65_536]):
        raise InputError(_("{source} is not a text (CSV) file or an .xlsx workbook. "
                           "Save it as CSV or .xlsx.").format(source=source))
    sample = text[:200_000].splitlines()[:50]
    delimiter = detect_delimiter(sample)
    lines = [ln for ln in sample if ln.strip()]
    try:
        n_fields = max(len(r) for r in csv.reader(lines, delimiter=delimiter))
    except csv.Error:  # a field over csv's own size limit; the parser below has none
        n_fields = max(ln.count(delimiter) + 1 for ln in lines)
    if mixed is not None:
        mixed_notes = _mixed_notes(_line_rows(data, delimiter, mixed_lines), other, main)
        encoding = "UTF-8 + Latin-1" if "Latin-1" in (other, main) else "UTF-8 + Windows-1252"
    cells = _parse_csv(data, source, delimiter, n_fields, "utf-8" if mixed else encoding, lim)
    _check_cell_sizes(cells, source, data, delimiter, encoding)
    frame, n_empty = _header_and_body(cells, source, "csv")
    decimal = detect_decimal(frame.drop(columns=ROW), delimiter)
    notes = mixed_notes + ((_empty_rows_note(n_empty),) if n_empty else ())
    return RawTable(frame=frame, source=source, kind="csv", delimiter=delimiter,
                    decimal=decimal, encoding=encoding, notes=notes)


def _file_too_large(source: str, n_bytes: int, lim: Limits | None = None) -> str:
    if lim is not None and lim.memory_bytes is not None:
        return _("{source} is {mb:,.0f} MB; this computer's free memory ({gb:,.1f} GB) holds a file of about "
                 "{max:,} MB. Close other programs or use a computer with more memory, split the file, or give "
                 "--max-rows N to read more anyway.").format(
            source=source, mb=n_bytes / 2 ** 20, gb=lim.memory_bytes / 2 ** 30, max=lim.file_bytes // 2 ** 20)
    if lim is not None and lim.raised:
        return _("{source} is {mb:,.0f} MB; --max-rows {rows:,} reads at most {max:,} MB. "
                 "Give a larger --max-rows, or split the file.").format(
            source=source, mb=n_bytes / 2 ** 20, rows=lim.rows, max=lim.file_bytes // 2 ** 20)
    return _("{source} is {mb:,.0f} MB; at most {max} MB are read. "
             "Split the file (for example by year or by study) and upload the parts.").format(
        source=source, mb=n_bytes / 2 ** 20, max=MAX_FILE_BYTES // 2 ** 20)


def _empty_rows_note(n_empty: int) -> str:
    return ngettext("{n:,} completely empty row was skipped.", "{n:,} completely empty rows were skipped.",
                    n_empty).format(n=n_empty)


def excel_sheet_names(data: bytes, source: str | None = None) -> list[str]:
    """Names of the worksheets in an .xlsx workbook, in order."""
    source = _("The file") if source is None else source
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge(_file_too_large(source, len(data)))
    return xlsx.sheet_names(data, source)


def read_excel_bytes(data: bytes, source: str = "upload", sheet: str | None = None) -> RawTable:
    """Read one sheet of an .xlsx workbook, every cell as text (integral numbers without ``.0``),
    as a stream within the limits of :mod:`core.intake.limits` (:mod:`core.intake.xlsx`)."""
    if len(data) > MAX_FILE_BYTES:
        raise InputError(_file_too_large(source, len(data)))
    got = xlsx.read_sheet(data, source, sheet)
    if got.cells.empty:
        raise InputError(_("Sheet '{sheet}' of {source} is empty.").format(sheet=got.sheet, source=source))
    frame, n_empty = _header_and_body(got.cells, source, "excel", first_row=got.first_row)
    notes = (_empty_rows_note(n_empty),) if n_empty else ()
    return RawTable(frame=frame, source=source, kind="excel", decimal=".", sheet=got.sheet,
                    sheets=got.sheets, notes=notes)


def _read_path(path: Path, lim: Limits | None = None) -> bytes:
    """The bytes of a file given by path; a folder, a missing or unreadable file, a device or a
    file over :data:`~core.intake.limits.MAX_FILE_BYTES` (or ``lim``) is an :class:`InputError`."""
    lim = _limits(lim)
    try:
        if not path.exists():
            raise InputError(_("The file {path} does not exist.").format(path=path))
        if path.is_dir():
            raise InputError(_("{path} is a folder, not a file. Give the path of a CSV or .xlsx file.").format(path=path))
        if not path.is_file():
            raise InputError(_("{path} is not a regular file. Give the path of a CSV or .xlsx file.").format(path=path))
        with open(path, "rb") as handle:
            data = handle.read(lim.file_bytes + 1)
    except PermissionError:
        raise InputError(_("{path} cannot be read: permission denied. Check the file's permissions "
                           "or copy it somewhere you can read it.").format(path=path)) from None
    except OSError as err:
        raise InputError(_("{path} could not be read ({error}). Check the path and try again.").format(
            path=path, error=err.strerror or type(err).__name__)) from None
    if len(data) > lim.file_bytes:
        raise TooLarge(_file_too_large(str(path), path.stat().st_size, lim))
    return data


def read_table(source: str | Path | bytes, filename: str | None = None,
               sheet: str | None = None, *, limits: Limits | None = None) -> RawTable:
    """Read a CSV or Excel file (path or bytes) into a :class:`RawTable` of text cells.

    ``filename`` tells the format when ``source`` is bytes (by its suffix); Excel files are
    recognised by suffix or by their ZIP signature. Files over the limits of
    :mod:`core.intake.limits` are refused with an :class:`InputError` (:class:`~core.errors.TooLarge`);
    ``limits`` raises the rows, cells and file-size limits of a CSV (the command line's ``--max-rows``).
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        data = _read_path(path, limits)
        filename = filename or path.name
    else:
        data = source
    name = filename or "upload"
    suffix = Path(name).suffix.lower()
    if suffix == ".xls":
        raise InputError(_("{name} is an old Excel 97-2003 file (.xls). Save it as .xlsx or CSV and upload again.").format(name=name))
    if suffix in _EXCEL_SUFFIXES or data[:4] == b"PK\x03\x04":
        return read_excel_bytes(data, source=name, sheet=sheet)
    if b"\x00" in data[:4096] and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(_("{name} is not a text (CSV) file or an .xlsx workbook. Save it as CSV or .xlsx.").format(name=name))
    return read_csv_bytes(data, source=name, limits=limits)
