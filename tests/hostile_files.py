"""Hostile and broken input files, generated on demand (the large ones are never committed).

Each maker writes one file into a folder and returns its path. They are used by
``tests/test_hostile_files.py`` (the command line and the upload page on each file) and by
``bench/bench_hostile.py`` (time and peak memory of ``python -m core analyze`` on each file).

The .xlsx files are written by hand (a ZIP of the few XML parts a workbook needs), so that a
file can say what no spreadsheet program would write: a cell at the last cell of a sheet, a
2.7 GB sheet in a 10 MB file, a size in the ZIP directory that lies.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

ROLES = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms"]

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '{shared}'
    '</Types>')
_SHARED_TYPE = ('<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>')
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    '</Relationships>')
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '{shared}'
    '</Relationships>')
_SHARED_REL = ('<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
               'relationships/sharedStrings" Target="sharedStrings.xml"/>')
SHEET_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
              '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
SHEET_TAIL = '</sheetData></worksheet>'
SST_HEAD = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
SST_TAIL = '</sst>'


class _Entry:
    """One part of a ZIP file: its name, its compressed bytes, CRC-32 and sizes (as declared)."""

    def __init__(self, name: str, compressed: bytes, crc: int, size: int, method: int = 8):
        self.name, self.compressed, self.crc, self.size, self.method = name, compressed, crc, size, method


def _deflated(data: bytes, name: str) -> _Entry:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return _Entry(name, c.compress(data) + c.flush(), zlib.crc32(data), len(data))


def _write_zip(path: Path, entries: list[_Entry]) -> Path:
    """Write a ZIP file (no ZIP64: every size below 4 GiB) from entries as they are declared."""
    with open(path, "wb") as out:
        central = []
        for e in entries:
            name = e.name.encode()
            offset = out.tell()
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, e.method, 0, 0x21, e.crc,
                                  len(e.compressed), e.size, len(name), 0) + name)
            out.write(e.compressed)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, e.method, 0, 0x21,
                                       e.crc, len(e.compressed), e.size, len(name), 0, 0, 0, 0, 0,
                                       offset) + name)
        start = out.tell()
        for c in central:
            out.write(c)
        size = out.tell() - start
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), size, start, 0))
    return path


def write_xlsx(path: Path, sheet_xml: str | _Entry, shared_strings: list[str] | _Entry | None = None,
               workbook: _Entry | None = None) -> Path:
    """A one-sheet workbook from the sheet's XML (or a ready ZIP entry for it); ``shared_strings``
    (texts, or a ready entry for ``xl/sharedStrings.xml``) and ``workbook`` (a ready entry for
    ``xl/workbook.xml``) when given."""
    parts = [
        _deflated(_CONTENT_TYPES.format(shared=_SHARED_TYPE if shared_strings else "").encode(),
                  "[Content_Types].xml"),
        _deflated(_RELS.encode(), "_rels/.rels"),
        workbook or _deflated(_WORKBOOK.encode(), "xl/workbook.xml"),
        _deflated(_WORKBOOK_RELS.format(shared=_SHARED_REL if shared_strings else "").encode(),
                  "xl/_rels/workbook.xml.rels"),
    ]
    if isinstance(shared_strings, _Entry):
        parts.append(shared_strings)
    elif shared_strings:
        sst = (SST_HEAD + "".join(f"<si><t>{s}</t></si>" for s in shared_strings) + SST_TAIL)
        parts.append(_deflated(sst.encode(), "xl/sharedStrings.xml"))
    sheet = sheet_xml if isinstance(sheet_xml, _Entry) else _deflated(sheet_xml.encode(), "xl/worksheets/sheet1.xml")
    return _write_zip(path, parts + [sheet])


def _inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def _number(ref: str, value) -> str:
    return f'<c r="{ref}"><v>{value}</v></c>'


def _header_rows(extra_header: str = "") -> str:
    """A small valid long table (patient, session, symptoms) in rows 1 to 7; ``extra_header``
    adds a header cell D1."""
    rows = ['<row r="1">' + _inline("A1", "patient") + _inline("B1", "session") + _inline("C1", "symptoms")
            + (_inline("D1", extra_header) if extra_header else "") + "</row>"]
    r = 2
    for p in (1, 2):
        for s in (1, 2, 3):
            rows.append(f'<row r="{r}">' + _number(f"A{r}", p) + _number(f"B{r}", s)
                        + _number(f"C{r}", 80 - 3 * s + p) + "</row>")
            r += 1
    return "".join(rows)


# ---------------------------------------------------------------------------- the files

def xlsx_last_cell(folder: Path) -> Path:
    """A 1 KB workbook whose only cell is XFD1048576, the last cell of an Excel sheet."""
    sheet = SHEET_HEAD + '<row r="1048576">' + _number("XFD1048576", 1) + "</row>" + SHEET_TAIL
    return write_xlsx(folder / "last_cell.xlsx", sheet)


def xlsx_last_cell_with_data(folder: Path) -> Path:
    """A small valid table in A1:C7 plus one stray cell at XFD1048576."""
    sheet = SHEET_HEAD + _header_rows() + '<row r="1048576">' + _number("XFD1048576", 1) + "</row>" + SHEET_TAIL
    return write_xlsx(folder / "last_cell_with_data.xlsx", sheet)


def xlsx_bomb(folder: Path, unpacked_mb: int = 2700, name: str = "bomb.xlsx") -> Path:
    """A workbook of about ``unpacked_mb / 270`` MB whose sheet unpacks to ``unpacked_mb`` MB of XML
    (rows of three numeric cells; sizes in the ZIP directory are the true ones).

    The sheet's deflate stream is one compressed 1 MiB block of rows repeated: each block ends
    with a full flush, so it refers to nothing before it and can be repeated as it is.
    """
    row = '<row r="2"><c r="A2"><v>1</v></c><c r="B2"><v>1</v></c><c r="C2"><v>50</v></c></row>'
    block = (row * (2 ** 20 // len(row) + 1))[: 2 ** 20].encode()
    cut = block.rfind(b"</row>") + len(b"</row>")
    block = block[:cut]
    head = (SHEET_HEAD + _header_rows()).encode()
    tail = SHEET_TAIL.encode()
    n = max(1, unpacked_mb * 2 ** 20 // len(block))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    middle = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    last = comp.compress(tail) + comp.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + n * len(block) + len(tail)
    entry = _Entry("xl/worksheets/sheet1.xml", first + middle * n + last, crc, size)
    return write_xlsx(folder / name, entry)


def xlsx_lying_sizes(folder: Path, unpacked_mb: int = 300) -> Path:
    """Like :func:`xlsx_bomb`, but the ZIP directory declares the sheet as 1 KB."""
    path = xlsx_bomb(folder, unpacked_mb, name="lying_sizes.tmp")
    data = bytearray(path.read_bytes())
    # Patch the declared uncompressed size (local header and central directory) of the sheet.
    name = b"xl/worksheets/sheet1.xml"
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = 0
        while True:
            pos = data.find(sig, pos)
            if pos < 0:
                break
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[pos + size_at:pos + size_at + 4] = struct.pack("<I", 1024)
            pos += 4
    out = folder / "lying_sizes.xlsx"
    out.write_bytes(bytes(data))
    path.unlink()
    return out


def csv_many_columns(folder: Path, n_columns: int = 10_000, target_mb: float = 5.0) -> Path:
    """A valid long CSV (patient, session, symptoms) with ``n_columns`` columns in all, about 5 MB."""
    extra = [f"c{i}" for i in range(n_columns - 3)]
    n_rows = max(6, int(target_mb * 2 ** 20 / (2 * n_columns)))
    lines = [",".join(["patient", "session", "symptoms", *extra])]
    rng = np.random.default_rng(3)
    filler = ",".join("7" for _ in extra)
    for i in range(n_rows):
        p, s = i // 5 + 1, i % 5 + 1
        lines.append(f"P{p},{s},{int(rng.integers(20, 120))},{filler}")
    path = folder / "many_columns.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_long_cell(folder: Path, length: int = 200_000) -> Path:
    """A valid long CSV whose second row has a note of ``length`` characters (over 128 KB)."""
    lines = ["patient,session,symptoms,note"]
    for i in range(12):
        note = "x" * length if i == 0 else "ok"
        lines.append(f"P{i // 4 + 1},{i % 4 + 1},{60 + i},{note}")
    path = folder / "long_cell.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_huge_scores(folder: Path) -> Path:
    """A valid long CSV in which one score is 1e308 and one 1e309 (beyond a float)."""
    lines = ["patient,session,symptoms,alliance"]
    rng = np.random.default_rng(5)
    for p in range(1, 21):
        for s in range(1, 6):
            lines.append(f"P{p},{s},{int(rng.integers(30, 120))},{rng.uniform(2, 7):.2f}")
    lines[3] = lines[3].rsplit(",", 2)[0] + ",1e308," + lines[3].rsplit(",", 1)[1]
    lines[7] = lines[7].rsplit(",", 2)[0] + ",1e309," + lines[7].rsplit(",", 1)[1]
    path = folder / "huge_scores.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_wide_sessions(folder: Path, n_sessions: int = 10_000) -> Path:
    """A wide CSV: one row per patient, ``oq_s1 … oq_s10000``."""
    header = ["patient", *(f"oq_s{i}" for i in range(1, n_sessions + 1))]
    lines = [",".join(header)]
    for p in range(1, 4):
        lines.append(",".join([f"P{p}", *("50" for _ in range(n_sessions))]))
    path = folder / "wide_sessions.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- more of the same kind

def csv_tiny_cells(folder: Path, mb: int = 120) -> Path:
    """``mb`` MB of ``1,1,1,1,1`` lines: far more cells than a sheet may have."""
    line = b"1,1,1,1,1,1,1,1,1,1\n"
    path = folder / "tiny_cells.csv"
    with open(path, "wb") as out:
        out.write(b"patient,session,symptoms,a,b,c,d,e,f,g\n")
        chunk = line * (2 ** 20 // len(line))
        for _ in range(mb):
            out.write(chunk)
    return path


def csv_one_wide_line(folder: Path, n_columns: int = 2_000_000) -> Path:
    """A header of three columns, then one line of ``n_columns`` fields."""
    path = folder / "one_wide_line.csv"
    with open(path, "wb") as out:
        out.write(b"patient,session,symptoms\nP1,1,50\nP1,2,40\n")
        out.write(b",".join([b"1"] * n_columns) + b"\n")
    return path


class _SheetStream:
    """A sheet's XML (or another part's, named ``name``) compressed as it is written (for parts
    too large to hold in memory)."""

    def __init__(self, level: int = 1, name: str = "xl/worksheets/sheet1.xml"):
        self.name = name
        self.comp = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.chunks: list[bytes] = []
        self.crc = 0
        self.size = 0

    def put(self, text: str | bytes, times: int = 1) -> None:
        b = text.encode() if isinstance(text, str) else text
        for _ in range(times):
            self.crc = zlib.crc32(b, self.crc)
            self.size += len(b)
            self.chunks.append(self.comp.compress(b))

    def entry(self) -> _Entry:
        self.chunks.append(self.comp.flush())
        return _Entry(self.name, b"".join(self.chunks), self.crc, self.size)


def xlsx_many_cells(folder: Path, n_rows: int = 1_048_576, n_columns: int = 24,
                    addresses: bool = True, name: str = "many_cells.xlsx") -> Path:
    """A sheet that fills ``n_rows`` × ``n_columns`` cells with small numbers; ``addresses=False``
    leaves out each cell's ``r`` (allowed: cells then follow one another), the densest XML."""
    cols = [_col_letter(i) for i in range(1, n_columns + 1)]
    sheet = _SheetStream()
    sheet.put(SHEET_HEAD + '<row r="1">' + "".join(_inline(f"{c}1", h) for c, h in
                                                   zip(cols, ["patient", "session", "symptoms", *cols[3:]])) + "</row>")
    batch = []
    for r in range(2, n_rows + 1):
        if addresses:
            cells = "".join(f'<c r="{c}{r}"><v>{(r * 7 + i) % 97}</v></c>' for i, c in enumerate(cols))
            batch.append(f'<row r="{r}">{cells}</row>')
        else:
            batch.append("<row>" + "".join(f"<c><v>{(r * 7 + i) % 97}</v></c>" for i in range(n_columns)) + "</row>")
        if len(batch) == 5000:
            sheet.put("".join(batch))
            batch = []
    sheet.put("".join(batch) + SHEET_TAIL)
    return write_xlsx(folder / name, sheet.entry())


def xlsx_tiny_elements(folder: Path, mb: int = 250) -> Path:
    """A sheet of ``mb`` MB of empty elements (``<x/>``) after a small table: the most XML
    elements per byte."""
    sheet = _SheetStream()
    sheet.put(SHEET_HEAD + _header_rows())
    sheet.put(b"<x/>" * 2 ** 18, times=mb)
    sheet.put(SHEET_TAIL)
    return write_xlsx(folder / "tiny_elements.xlsx", sheet.entry())


def xlsx_giant_comment(folder: Path, mb: int = 250) -> Path:
    """A small table followed by one XML comment of ``mb`` MB (one token expat must finish)."""
    sheet = _SheetStream()
    sheet.put(SHEET_HEAD + _header_rows() + "<!-- ")
    sheet.put(b"a" * 2 ** 20, times=mb)
    sheet.put(" -->" + SHEET_TAIL)
    return write_xlsx(folder / "giant_comment.xlsx", sheet.entry())


def csv_long_headers(folder: Path, n_columns: int = 300, length: int = 30_000) -> Path:
    """A valid long table plus ``n_columns`` columns whose headers are ``length`` letters (or
    digits) long: header matching must not take time that grows faster than their length."""
    long = [("a" if i % 2 else "1") * length + str(i) if i % 3 else "b" * length for i in range(n_columns)]
    lines = [",".join(["patient", "session", "symptoms", *long])]
    for i in range(12):
        lines.append(",".join([f"P{i // 4 + 1}", str(i % 4 + 1), str(60 + i), *("" for _ in long)]))
    path = folder / "long_headers.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_long_header(folder: Path, n_columns: int = 12_003) -> Path:
    """A valid long CSV whose header is over 200,000 characters (12,003 columns; issue 25): the last
    column, ``extra_column_12002``, holds a number that varies with the session."""
    extra = [f"extra_column_{i:05d}" for i in range(3, n_columns)]
    lines = [",".join(["patient", "session", "symptoms", *extra])]
    for i in range(40):
        p, s = i // 4 + 1, i % 4 + 1
        # a residual that is no straight line in the session (else symptoms would follow the last column
        # exactly within each patient, and the fit is refused as degenerate, as lme4 would fail it)
        lines.append(",".join([f"P{p}", str(s), str(80 - 3 * s + (p * 7) % 5 + (p * s * s) % 3), *["1"] * (len(extra) - 1),
                               str(s + (p % 3))]))
    path = folder / "long_header.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_mixed_encodings(folder: Path) -> Path:
    """A records-system export in Windows-1252 with rows appended in UTF-8 (issue 25): patient
    "José" in both encodings."""
    latin = ["paciente,sesion,oq,nota"] + [f"{p},{s},{70 - 2 * s - k},señal" for k, p in
                                           enumerate(["José", "Núñez", "Ana"]) for s in (1, 2, 3)]
    utf8 = [f"{p},{s},{70 - 2 * s - k},mañana" for k, p in enumerate(["José", "Núñez", "Ana"]) for s in (4, 5)]
    path = folder / "mixed_encodings.csv"
    path.write_bytes(("\n".join(latin) + "\n").encode("cp1252") + ("\n".join(utf8) + "\n").encode("utf-8"))
    return path


def xlsx_long_shared_string(folder: Path, length: int = 1_000_000) -> Path:
    """A valid table whose first note is a shared string of ``length`` characters."""
    sheet = (SHEET_HEAD + _header_rows("note")
        + '<row r="8"><c r="A8"><v>3</v></c><c r="B8"><v>1</v></c><c r="C8"><v>70</v></c>'
        + '<c r="D8" t="s"><v>0</v></c></row>' + SHEET_TAIL)
    return write_xlsx(folder / "long_shared_string.xlsx", sheet, shared_strings=["y" * length])


def xlsx_entity_expansion(folder: Path) -> Path:
    """A sheet whose XML defines nested entities (the "billion laughs")."""
    doctype = ('<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">'
               + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
               + "]>")
    sheet = (SHEET_HEAD.replace("\n", "\n" + doctype, 1) + '<row r="1">' + _inline("A1", "patient")
             + _inline("B1", "session") + _inline("C1", "&j;") + "</row>" + SHEET_TAIL)
    return write_xlsx(folder / "entities.xlsx", sheet)


def xlsx_many_sheets(folder: Path, n_sheets: int = 2_500_000) -> Path:
    """A 13 MB workbook whose ``workbook.xml`` lists ``n_sheets`` sheets (all of them the one small
    valid sheet): 2.5 million names for the sheet choice (issue 25)."""
    book = _SheetStream(level=9, name="xl/workbook.xml")
    book.put(_WORKBOOK.split("<sheets>")[0] + "<sheets>")
    for start in range(1, n_sheets + 1, 100_000):
        book.put("".join(f'<sheet name="S{i}" sheetId="{i}" r:id="rId1"/>'
                         for i in range(start, min(start + 100_000, n_sheets + 1))))
    book.put("</sheets></workbook>")
    return write_xlsx(folder / "many_sheets.xlsx", SHEET_HEAD + _header_rows() + SHEET_TAIL, workbook=book.entry())


def xlsx_many_shared_strings(folder: Path, n_strings: int = 5_500_000) -> Path:
    """A small valid table and a shared-string table of ``n_strings`` short distinct texts (about
    120 MB unpacked, under the unpacked-size limit): millions of strings no cell uses."""
    table = _SheetStream(level=9, name="xl/sharedStrings.xml")
    table.put(SST_HEAD)
    for start in range(0, n_strings, 100_000):
        table.put("".join(f"<si><t>{i}</t></si>" for i in range(start, min(start + 100_000, n_strings))))
    table.put(SST_TAIL)
    return write_xlsx(folder / "many_shared_strings.xlsx", SHEET_HEAD + _header_rows() + SHEET_TAIL,
                      shared_strings=table.entry())


def xlsx_large_shared_strings(folder: Path, n_strings: int = 2_000, length: int = 32_767) -> Path:
    """A small valid table and a shared-string table of ``n_strings`` texts of ``length``
    characters (65 million characters, 64 MB unpacked), none of them used by a cell."""
    table = _SheetStream(level=9, name="xl/sharedStrings.xml")
    table.put(SST_HEAD)
    for i in range(n_strings):
        table.put(f"<si><t>{i}" + "w" * (length - len(str(i))) + "</t></si>")
    table.put(SST_TAIL)
    return write_xlsx(folder / "large_shared_strings.xlsx", SHEET_HEAD + _header_rows() + SHEET_TAIL,
                      shared_strings=table.entry())


def xlsx_long_string_everywhere(folder: Path, n_rows: int = 400_000, n_notes: int = 8,
                                length: int = 32_000) -> Path:
    """A valid long table whose ``n_notes`` note columns all hold the same shared string of
    ``length`` characters (within Excel's 32,767): 3.2 million cells of one 32,000-character text,
    100 GB of text from a 1 MB file."""
    notes = [f"note{k}" for k in range(n_notes)]
    letters = [_col_letter(i) for i in range(4, 4 + n_notes)]
    sheet = _SheetStream(level=9)
    sheet.put(SHEET_HEAD + '<row r="1">' + "".join(_inline(f"{c}1", h) for c, h in zip(
        ["A", "B", "C", *letters], ["patient", "session", "symptoms", *notes])) + "</row>")
    same = "".join('<c t="s"><v>0</v></c>' for _ in letters)
    batch = []
    for r in range(2, n_rows + 2):
        batch.append(f'<row r="{r}"><c><v>{r // 4}</v></c><c><v>{r % 4 + 1}</v></c><c><v>{50 + r % 30}</v></c>'
                     + same + "</row>")
        if len(batch) == 10_000:
            sheet.put("".join(batch))
            batch = []
    sheet.put("".join(batch) + SHEET_TAIL)
    return write_xlsx(folder / "long_string_everywhere.xlsx", sheet.entry(), shared_strings=["z" * length])


def not_a_zip(folder: Path) -> Path:
    """Random bytes named .xlsx."""
    path = folder / "random.xlsx"
    path.write_bytes(np.random.default_rng(1).bytes(50_000))
    return path


def _col_letter(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s
