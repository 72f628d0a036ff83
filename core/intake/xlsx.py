"""Reading one sheet of an .xlsx workbook as a stream, with every limit checked before the work.

An .xlsx file is a ZIP archive of XML parts. This reader trusts nothing the file says about
itself: before anything is unpacked it checks the ZIP directory's size and what the parts it
will read (workbook, relationships, shared strings, styles, the one sheet) declare they unpack
to (:data:`~core.intake.limits.MAX_UNPACKED_BYTES`); Python's :mod:`zipfile` then stops a part
at its declared size and refuses it when it does not match its checksum, so a part cannot
unpack to more than was checked. The sheet is parsed with expat as a stream (never as a tree);
its stored size (``<dimension>``) is ignored; every cell address is checked against Excel's
limits, the table's rows × columns against :data:`~core.intake.limits.MAX_CELLS` after every
row, and each cell's length against :data:`~core.intake.limits.MAX_CELL_CHARS` while it is
read. XML with a document type declaration (where entities would be defined) is refused. The
workbook's list of sheets, its relationships and its shared-string table are counted while they
are read (:data:`~core.intake.limits.MAX_SHEETS`, :data:`~core.intake.limits.MAX_SHARED_STRINGS`,
:data:`~core.intake.limits.MAX_SHARED_STRING_CHARS`), and so are the characters of the cells read
(:data:`~core.intake.limits.MAX_TEXT_CHARS`), so that neither a list of millions of sheets nor one
long text used by millions of cells costs more than the limits allow.

Why not openpyxl's read-only mode: it opens every sheet that lacks a ``<dimension>`` element
and parses all of it to find its size (a 2.7 GB sheet is parsed before a single row is
returned), yields every missing row up to the last one, pads each row to its last cell (one
value at XFD1048576 becomes a 1,048,576 × 16,384 grid), loads the whole shared-string table
before any check, and parses cells about seven times slower than expat with a few Python
callbacks (2.4 million cells: 39 s against 5.6 s on the same loaded machine). Dates use
openpyxl's format rules and conversions (:func:`openpyxl.styles.numbers.is_date_format`,
:func:`openpyxl.utils.datetime.from_excel`), so cells read as they did with openpyxl.

Cells come back as text, as :mod:`core.intake.reading` expects: integral numbers without
``.0``, other numbers as Python writes them, dates in ISO 8601, booleans ``True``/``False``,
formulas as their cached value, errors as Excel shows them (``#N/A``).
"""
from __future__ import annotations

import io
import posixpath
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from xml.parsers import expat

import pandas as pd

from core.errors import InputError
from core.i18n import _
from core.intake import limits
from core.intake.limits import (
    MAX_CELL_CHARS,
    MAX_CELLS,
    MAX_COLUMNS,
    MAX_ROWS,
    MAX_SHARED_STRING_CHARS,
    MAX_SHARED_STRINGS,
    MAX_SHEET_NAME_CHARS,
    MAX_SHEETS,
    MAX_TEXT_CHARS,
    column_letters,
)

# Bytes fed to expat at a time. Large, because expat (2.5) scans an unfinished token again from
# its start at every call: a 250 MB comment fed in 8 MB pieces took 56 s, in 32 MB pieces a few.
_CHUNK = 32 * 2 ** 20
_ROWS_PER_BLOCK = 65_536  # rows kept as Python lists before they become a compact pandas block
_COMPACT_ROWS = 1_000  # a block of at least this many rows is stored as compact (Arrow) text
_MEMO_SIZE = 200_000  # distinct cell texts shared between cells (repeated IDs, scores, labels)
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _damaged(source: str) -> InputError:
    return InputError(_("{source} could not be opened as an Excel workbook (.xlsx): the file is "
                        "damaged or not a workbook. Open it in Excel or LibreOffice and save it again "
                        "as .xlsx or CSV.").format(source=source))


@dataclass(frozen=True)
class SheetCells:
    """The cells of one sheet: ``cells`` holds rows ``first_row`` … (spreadsheet numbers) from
    column A, every cell as text (``""`` when empty); ``sheets`` are the workbook's sheets."""

    cells: pd.DataFrame
    first_row: int
    sheet: str
    sheets: tuple[str, ...]


# ------------------------------------------------------------------------------------ ZIP

def _zip_directory_size(data: bytes) -> int | None:
    """Size of the ZIP central directory from its end record, or None when there is none."""
    tail_start = max(0, len(data) - (65_535 + 22))
    pos = data.rfind(b"PK\x05\x06", tail_start)
    if pos < 0 or pos + 22 > len(data):
        return None
    entries, size = struct.unpack_from("<HI", data, pos + 10)
    if entries == 0xFFFF or size == 0xFFFFFFFF:  # ZIP64: far more than a workbook holds
        return limits.MAX_ZIP_DIRECTORY_BYTES + 1
    return size


class _Archive:
    """The workbook's ZIP archive with its parts located (read on demand, within the limits)."""

    def __init__(self, data: bytes, source: str):
        self.source = source
        directory = _zip_directory_size(data)
        if directory is None:
            if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":  # an OLE2 container, not a ZIP
                raise InputError(_("{source} is a password-protected workbook or an old Excel 97-2003 "
                                   "file. Open it in Excel or LibreOffice, remove the password, and save "
                                   "it as .xlsx or CSV.").format(source=source))
            raise _damaged(source)
        if directory > limits.MAX_ZIP_DIRECTORY_BYTES:
            raise InputError(_("{source} has far more parts than an Excel workbook (its ZIP directory "
                               "is over {mb} MB). Open it in Excel or LibreOffice and save it again as "
                               ".xlsx or CSV.").format(source=source, mb=limits.MAX_ZIP_DIRECTORY_BYTES // 2 ** 20))
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
            self.names = set(self.zip.namelist())
        except InputError:
            raise
        except Exception:  # zipfile raises many kinds on a damaged archive
            raise _damaged(source) from None
        workbook = self._office_document()
        if workbook not in self.names:
            raise _damaged(source)
        self.workbook = workbook
        self.workbook_rels = posixpath.join(posixpath.dirname(workbook), "_rels",
                                            posixpath.basename(workbook) + ".rels")
        self._check_sizes([workbook, self.workbook_rels])
        rels = self._relationships(self.workbook_rels, posixpath.dirname(workbook))
        info = _WorkbookInfo(source)
        self.parse(workbook, info)
        self.date1904 = info.date1904
        self.sheets: list[tuple[str, str]] = []  # (name, part) of each worksheet, in order
        for name, rid in info.sheets:
            rel_type, target = rels.get(rid, ("", ""))
            if rel_type.endswith("/worksheet") and target in self.names:
                self.sheets.append((name, target))
        self.shared_strings = next((t for k, t in rels.values() if k.endswith("/sharedStrings")), None)
        self.styles = next((t for k, t in rels.values() if k.endswith("/styles")), None)

    def _office_document(self) -> str:
        if "_rels/.rels" in self.names:
            self._check_sizes(["_rels/.rels"])
            for kind, target in self._relationships("_rels/.rels", "").values():
                if kind.endswith("/officeDocument"):
                    return target
        return "xl/workbook.xml"

    def _check_sizes(self, parts: list[str]) -> None:
        """Refuse when the parts (as the ZIP directory declares them) unpack to more than the limit."""
        total = sum(self.zip.getinfo(p).file_size for p in dict.fromkeys(parts) if p in self.names)
        if total > limits.MAX_UNPACKED_BYTES:
            raise InputError(_(
                "{source} unpacks to {mb:,.0f} MB of sheet data, more than the {max} MB read from a "
                "workbook. Save the sheet as CSV (or split it) and upload again.").format(
                source=self.source, mb=total / 2 ** 20, max=limits.MAX_UNPACKED_BYTES // 2 ** 20))

    def _relationships(self, part: str, base: str) -> dict[str, tuple[str, str]]:
        rels = _Relationships(base, self.source)
        self.parse(part, rels)
        return rels.found

    def parse(self, part: str, handler) -> None:
        """Stream ``part`` through expat into ``handler`` (start, end, chars); DTDs refused."""
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.StartElementHandler = handler.start
        parser.EndElementHandler = handler.end
        if hasattr(handler, "chars"):
            parser.CharacterDataHandler = handler.chars

        def no_dtd(*_):
            raise _damaged(self.source)

        parser.StartDoctypeDeclHandler = no_dtd
        parser.EntityDeclHandler = no_dtd
        try:
            with self.zip.open(part) as stream:
                while True:
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    parser.Parse(chunk, False)
                parser.Parse(b"", True)
        except (expat.ExpatError, zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError,
                RuntimeError, NotImplementedError, struct.error):
            # Malformed XML, a broken or lying deflate stream (CRC), an encrypted or unsupported
            # compression: a damaged part.
            raise _damaged(self.source) from None


def _local(name: str) -> str:
    return name.rpartition(":")[2] if ":" in name else name


#: Relationships a ``.rels`` part may list: one per sheet, and the other parts a workbook has.
_MAX_RELATIONSHIPS = 2 * MAX_SHEETS + 1_000


class _Relationships:
    """``Id → (Type, part path)`` from a ``.rels`` part; targets resolved against ``base``; more
    relationships than a workbook of :data:`~core.intake.limits.MAX_SHEETS` sheets has: damaged."""

    def __init__(self, base: str, source: str = "upload"):
        self.base = base
        self.source = source
        self.count = 0
        self.found: dict[str, tuple[str, str]] = {}

    def start(self, name, attrs):
        if _local(name) == "Relationship":
            self.count += 1
            if self.count > _MAX_RELATIONSHIPS:
                raise _damaged(self.source)
        if _local(name) == "Relationship" and attrs.get("TargetMode") != "External":
            target = attrs.get("Target", "")
            path = target.lstrip("/") if target.startswith("/") else posixpath.join(self.base, target)
            self.found[attrs.get("Id", "")] = (attrs.get("Type", ""), posixpath.normpath(path))

    def end(self, name):
        pass


class _WorkbookInfo:
    """Sheet names with their relationship ids, and the 1904 date system flag; at most
    :data:`~core.intake.limits.MAX_SHEETS` sheets, counted as the list is read."""

    def __init__(self, source: str = "upload"):
        self.source = source
        self.sheets: list[tuple[str, str]] = []
        self.date1904 = False

    def start(self, name, attrs):
        local = _local(name)
        if local == "sheet":
            if len(self.sheets) >= MAX_SHEETS:
                raise InputError(_("{source} lists more than {max:,} sheets, more than are read from a workbook "
                                   "(LibreOffice's limit). Copy the sheet you need into a workbook of its own, "
                                   "or save it as CSV, and upload again.").format(source=self.source, max=MAX_SHEETS))
            sheet = attrs.get("name", "")
            if len(sheet) > MAX_SHEET_NAME_CHARS:
                raise InputError(_("{source} has a sheet name of {n:,} characters; Excel's sheet names have at "
                                   "most 31, and at most {max} are read. Rename the sheet in Excel or LibreOffice, "
                                   "or save it as CSV, and upload again.").format(
                    source=self.source, n=len(sheet), max=MAX_SHEET_NAME_CHARS))
            rid = next((v for k, v in attrs.items() if k == "id" or k.endswith(":id")), "")
            self.sheets.append((sheet, rid))
        elif local == "workbookPr":
            self.date1904 = attrs.get("date1904", "0").strip().lower() in ("1", "true")

    def end(self, name):
        pass


class _Styles:
    """Which cell styles (``s`` of a cell, index into ``cellXfs``) show a date or a duration."""

    def __init__(self):
        self.custom: dict[int, str] = {}
        self.formats: list[int] = []
        self.in_xfs = False

    def start(self, name, attrs):
        local = _local(name)
        if local == "numFmt":
            try:
                self.custom[int(attrs.get("numFmtId", ""))] = attrs.get("formatCode", "")
            except ValueError:
                pass
        elif local == "cellXfs":
            self.in_xfs = True
        elif local == "xf" and self.in_xfs:
            try:
                self.formats.append(int(attrs.get("numFmtId", "0")))
            except ValueError:
                self.formats.append(0)

    def end(self, name):
        if _local(name) == "cellXfs":
            self.in_xfs = False

    def date_styles(self) -> tuple[set[int], set[int]]:
        from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format

        dates, durations = set(), set()
        for idx, fmt_id in enumerate(self.formats):
            fmt = self.custom.get(fmt_id, BUILTIN_FORMATS.get(fmt_id))
            if fmt is None:
                continue
            if is_date_format(fmt):
                dates.add(idx)
            if is_timedelta_format(fmt):
                durations.add(idx)
        return dates, durations


class _SharedStrings:
    """The shared-string table: each ``<si>``'s text runs (``<t>``), phonetic runs left out; at
    most :data:`~core.intake.limits.MAX_SHARED_STRINGS` texts of
    :data:`~core.intake.limits.MAX_SHARED_STRING_CHARS` characters in all, counted as it is read."""

    def __init__(self, source: str = "upload"):
        self.source = source
        self.strings: list[str] = []
        self.parts: list[str] = []
        self.n_chars = 0
        self.in_t = False
        self.in_rph = False

    def start(self, name, attrs):
        local = _local(name)
        if local == "t":
            self.in_t = not self.in_rph
        elif local == "rPh":
            self.in_rph = True

    def end(self, name):
        local = _local(name)
        if local == "t":
            self.in_t = False
        elif local == "rPh":
            self.in_rph = False
        elif local == "si":
            if len(self.strings) >= MAX_SHARED_STRINGS:
                raise InputError(_("{source} has more than {max:,} different texts in its shared-string table "
                                   "(sharedStrings.xml), more than are read from a workbook. Save the sheet as CSV "
                                   "and upload again.").format(source=self.source, max=MAX_SHARED_STRINGS))
            text = "".join(self.parts)
            self.strings.append(_unescape(text) if "_x" in text else text)
            self.parts = []

    def chars(self, data):
        if self.in_t:
            self.parts.append(data)
            self.n_chars += len(data)
            if self.n_chars > MAX_SHARED_STRING_CHARS:
                raise InputError(_("{source} has more than {max:,} characters of text in its shared-string table "
                                   "(sharedStrings.xml), more than are read from a workbook. Save the sheet as CSV "
                                   "(or split it) and upload again.").format(source=self.source,
                                                                            max=MAX_SHARED_STRING_CHARS))


def _unescape(text: str) -> str:
    """OOXML's ``_xHHHH_`` escapes (e.g. ``_x000D_`` for a carriage return)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


# ------------------------------------------------------------------------------------ sheet

_LETTERS = {column_letters(i): i for i in range(1, MAX_COLUMNS + 1)}


def _number_text(v: str) -> str:
    """A numeric cell's text as openpyxl's value would print: ``5`` not ``5.0``, ``5.5``, ``1e+20``."""
    if "." in v or "E" in v or "e" in v:
        try:
            f = float(v)
        except ValueError:
            return v
        if f != f or f in (float("inf"), float("-inf")):
            return v  # beyond a float: validation says so with the cell's own text
        if f.is_integer() and abs(f) < 1e16:
            return str(int(f))
        return repr(f)
    try:
        return str(int(v))
    except ValueError:  # not a number, or more digits than Python converts
        return v


class _SheetReader:
    """expat handlers that collect one sheet's cells as rows of text, within the limits."""

    __slots__ = ("where", "source", "sheet", "shared", "dates", "durations", "date1904", "in_data",
                 "row_index", "row", "col", "kind", "style", "parts", "n_chars", "collect", "in_is",
                 "in_rph", "first_row", "last_row", "width", "n_cell_elements", "memo", "numbers",
                 "blocks", "pending", "n_text")

    def __init__(self, source: str, sheet: str, shared: list[str], dates: set[int],
                 durations: set[int], date1904: bool):
        self.where = _("sheet '{sheet}' of {source}").format(sheet=sheet, source=source)
        self.source, self.sheet = source, sheet
        self.shared, self.dates, self.durations = shared, dates, durations
        self.date1904 = date1904
        self.in_data = False
        self.row_index = 0  # spreadsheet number of the current row
        self.row: list[str] = []
        self.col = 0  # column of the current cell (1-based)
        self.kind = "n"
        self.style = 0
        self.parts: list[str] = []
        self.n_chars = 0
        self.collect = False
        self.in_is = False
        self.in_rph = False
        self.first_row: int | None = None
        self.last_row = 0
        self.width = 0  # last column holding a value
        self.n_cell_elements = 0
        self.memo: dict[str, str] = {}
        self.numbers: dict[str, str] = {}  # a number cell's XML text → its text here
        self.blocks: list[pd.DataFrame] = []
        self.pending: list[list[str]] = []
        self.n_text = 0  # characters of the cells stored so far

    # -- expat handlers
    def start(self, name, attrs):
        if ":" in name:
            name = name.rpartition(":")[2]
        if name == "c":
            if not self.in_data:
                return
            ref = attrs.get("r")
            if ref:
                letters = ref.rstrip("0123456789")
                col = _LETTERS.get(letters)
                if col is None:
                    self._bad_address(ref, letters)
                self.col = col
            else:
                self.col += 1
                if self.col > MAX_COLUMNS:
                    self._bad_address(f"{column_letters(self.col)}{self.row_index}", "")
            self.kind = attrs.get("t", "n")
            style = attrs.get("s")
            self.style = int(style) if style and style.isdigit() else 0
            self.parts = []
            self.n_chars = 0
            self.n_cell_elements += 1
            if self.n_cell_elements > 2 * MAX_CELLS:  # empty or repeated cells cost time too
                raise InputError(_("{source} is too large to read: {where} has more than "
                                   "{entries:,} cell entries (empty or not), far more than the "
                                   "{max:,} cells that are read. Split the file and upload again.").format(
                    source=self.source, where=self.where, entries=2 * MAX_CELLS, max=MAX_CELLS))
        elif name == "v":
            self.collect = True
        elif name == "t":
            self.collect = self.in_is and not self.in_rph
        elif name == "is":
            self.in_is = True
        elif name == "rPh":
            self.in_rph = True
        elif name == "row":
            if not self.in_data:
                return
            ref = attrs.get("r")
            if ref:
                if not ref.isdigit():
                    raise _damaged(self.source)
                index = int(ref)
            else:
                index = self.row_index + 1
            if index > MAX_ROWS:
                raise InputError(_("{where} has a row {row:,}, beyond Excel's last row "
                                   "({max:,}): the file was not written by a spreadsheet program. "
                                   "Save the table again from Excel or LibreOffice, or as CSV.").format(
                    where=self.where, row=index, max=MAX_ROWS))
            if index <= self.row_index:
                raise InputError(_("{where} lists row {row:,} after row {previous:,}, "
                                   "which no spreadsheet program writes: the file is damaged. Open it in "
                                   "Excel or LibreOffice and save it again as .xlsx or CSV.").format(
                    where=self.where, row=index, previous=self.row_index))
            self.row_index = index
            self.row = []
            self.col = 0
        elif name == "sheetData":
            self.in_data = True

    def end(self, name):
        if ":" in name:
            name = name.rpartition(":")[2]
        if name == "c":
            if self.in_data and self.parts:
                self._store_cell()
        elif name == "v" or name == "t":
            self.collect = False
        elif name == "row":
            if self.in_data and self.row:
                self._store_row()
        elif name == "is":
            self.in_is = False
        elif name == "rPh":
            self.in_rph = False
        elif name == "sheetData":
            self.in_data = False

    def chars(self, data):
        if self.collect:
            self.parts.append(data)
            self.n_chars += len(data)
            if self.n_chars > MAX_CELL_CHARS:
                raise InputError(limits.cell_too_long(self.source, self._cell_name(), self.n_chars))

    # -- cells and rows
    def _bad_address(self, ref: str, letters: str):
        if letters and letters.isalpha() and letters.isupper() and len(letters) <= 3:
            raise InputError(_("{where} has a value in cell {ref}, beyond Excel's last column "
                               "(XFD, column {max:,}): the file was not written by a spreadsheet "
                               "program. Save the table again from Excel or LibreOffice, or as CSV.").format(
                where=self.where, ref=ref, max=MAX_COLUMNS))
        raise _damaged(self.source)

    def _cell_name(self) -> str:
        return _("cell {ref} of sheet '{sheet}'").format(ref=f"{column_letters(self.col)}{self.row_index}",
                                                        sheet=self.sheet)

    def _store_cell(self):
        v = "".join(self.parts) if len(self.parts) > 1 else self.parts[0]
        kind = self.kind
        if kind == "n":
            if self.style and self.style in self.dates:
                text = self._date(v) if v else ""
            else:
                text = self.numbers.get(v)
                if text is None:
                    text = _number_text(v)
                    if len(self.numbers) < _MEMO_SIZE:
                        self.numbers[v] = text
        elif kind == "s":
            try:
                text = self.shared[int(v)]
            except (ValueError, IndexError):
                raise _damaged(self.source) from None
            if len(text) > MAX_CELL_CHARS:
                raise InputError(limits.cell_too_long(self.source, self._cell_name(), len(text)))
        elif kind == "b":
            text = "True" if v.strip() in ("1", "true") else "False"
        elif kind == "inlineStr":
            text = _unescape(v) if "_x" in v else v
        elif kind == "d":
            text = self._iso_date(v)
        else:  # "str" (a formula's text), "e" (an error such as #N/A), anything else: as written
            text = v
        if not text:
            return
        self.n_text += len(text)
        if self.n_text > MAX_TEXT_CHARS:
            raise InputError(_("{where} holds more than {max:,} characters of text in its cells (a text repeated "
                               "in many cells counts each time), more than is read from one sheet. Save the sheet "
                               "as CSV (or split it) and upload again.").format(where=self.where, max=MAX_TEXT_CHARS))
        memo = self.memo
        text = memo.get(text, text)
        if len(memo) < _MEMO_SIZE:
            memo[text] = text
        row = self.row
        col = self.col
        if col > len(row):
            row.extend([""] * (col - len(row)))
        row[col - 1] = text

    def _date(self, v: str) -> str:
        """A number in a date or duration format, as openpyxl converts it, in ISO 8601."""
        from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel

        try:
            value = from_excel(float(v), CALENDAR_MAC_1904 if self.date1904 else CALENDAR_WINDOWS_1900,
                               timedelta=self.style in self.durations)
        except (ValueError, OverflowError):
            return v
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    @staticmethod
    def _iso_date(v: str) -> str:
        from openpyxl.utils.datetime import from_ISO8601

        try:
            value = from_ISO8601(v)
        except (ValueError, TypeError, OverflowError):
            return v
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    def _store_row(self):
        row = self.row
        index = self.row_index
        if self.first_row is None:
            self.first_row = index
        if len(row) > self.width:
            self.width = len(row)
        n_rows = index - self.first_row + 1
        if n_rows * self.width > MAX_CELLS:
            raise InputError(limits.too_large(
                self.source, n_rows, self.width,
                _(" (rows {first:,} to {last:,}, columns A to {letters}, of sheet '{sheet}')").format(
                    first=self.first_row, last=index, letters=column_letters(self.width), sheet=self.sheet)))
        gap = index - self.last_row - 1 if self.last_row else 0
        if gap:
            self.pending.extend([] for _ in range(gap))
        self.pending.append(row)
        self.last_row = index
        if len(self.pending) >= _ROWS_PER_BLOCK:
            self._flush()

    def _flush(self):
        if not self.pending:
            return
        width = max(len(r) for r in self.pending)
        for r in self.pending:
            if len(r) < width:
                r.extend([""] * (width - len(r)))
        block = pd.DataFrame(self.pending, columns=range(width), dtype=object) if width else \
            pd.DataFrame(index=range(len(self.pending)))
        if width and len(self.pending) >= _COMPACT_ROWS:
            # Arrow-backed text takes a fraction of the memory of Python strings; converting costs
            # a fixed time per column, so a block of few rows (a wide sheet) stays as it is.
            block = block.astype("str")
        self.blocks.append(block)
        self.pending = []

    def table(self) -> pd.DataFrame:
        self._flush()
        if not self.blocks:
            return pd.DataFrame()
        frame = pd.concat(self.blocks, ignore_index=True) if len(self.blocks) > 1 else self.blocks[0]
        frame = frame.reindex(columns=range(self.width))
        return frame.fillna("")


def _archive(data: bytes, source: str) -> _Archive:
    return _Archive(data, source)


def sheet_names(data: bytes, source: str = "upload") -> list[str]:
    """Names of the worksheets of an .xlsx workbook, in order."""
    return [name for name, _ in _archive(data, source).sheets]


def read_sheet(data: bytes, source: str = "upload", sheet: str | None = None) -> SheetCells:
    """The cells of one sheet (the first by default) as text, within :mod:`core.intake.limits`."""
    book = _archive(data, source)
    sheets = tuple(name for name, _ in book.sheets)
    if not sheets:
        raise InputError(_("{source} has no worksheet with data. Save the data as .xlsx or CSV and upload again.").format(
            source=source))
    if sheet is None:
        sheet = sheets[0]
    if sheet not in sheets:
        shown = ", ".join(sheets[:10]) + (_(" … ({n} sheets)").format(n=len(sheets)) if len(sheets) > 10 else "")
        raise InputError(_("{source} has no sheet named '{sheet}'. Its sheets are: {sheets}.").format(
            source=source, sheet=sheet, sheets=shown))
    part = dict(book.sheets)[sheet]
    book._check_sizes([book.workbook, book.workbook_rels, part,
                       *(p for p in (book.shared_strings, book.styles) if p)])
    shared: list[str] = []
    if book.shared_strings and book.shared_strings in book.names:
        table = _SharedStrings(source)
        book.parse(book.shared_strings, table)
        shared = table.strings
    dates: set[int] = set()
    durations: set[int] = set()
    if book.styles and book.styles in book.names:
        styles = _Styles()
        book.parse(book.styles, styles)
        dates, durations = styles.date_styles()
    reader = _SheetReader(source, sheet, shared, dates, durations, book.date1904)
    book.parse(part, reader)
    return SheetCells(cells=reader.table(), first_row=reader.first_row or 1, sheet=sheet, sheets=sheets)
