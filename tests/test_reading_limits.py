"""The limits of reading (core.intake.limits) and the streaming .xlsx reader (core.intake.xlsx).

Each limit is checked in process with small values (monkeypatched), so that a file just over it
is refused with one plain sentence and a file just under it is read; the hand-written workbooks
of ``tests/hostile_files.py`` cover what no spreadsheet program writes. The same files at full
size, through the command line and the upload page, are in ``tests/test_hostile_files.py``.
"""
from __future__ import annotations

import datetime
import io
import zipfile

import hostile_files as hostile
import openpyxl
import pandas as pd
import pytest

from core.errors import InputError, some_names
from core.intake import limits, reading, xlsx
from core.intake.reading import ROW, read_table

SHEET_HEAD, SHEET_TAIL = hostile.SHEET_HEAD, hostile.SHEET_TAIL


def plain(err: InputError) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text and len(text) < 600, text
    return text


def workbook(tmp_path, body: str, shared=None, name="x.xlsx") -> bytes:
    return hostile.write_xlsx(tmp_path / name, SHEET_HEAD + body + SHEET_TAIL, shared).read_bytes()


def table(n_rows: int, n_cols: int = 3) -> str:
    rows = []
    for r in range(1, n_rows + 1):
        cells = "".join(f'<c r="{hostile._col_letter(c)}{r}"><v>{r * c}</v></c>' for c in range(1, n_cols + 1))
        rows.append(f'<row r="{r}">{cells}</row>')
    return "".join(rows)


# ------------------------------------------------------------------------------ .xlsx

def test_xlsx_types_read_as_openpyxl_did(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["patient", "when", "ok", "score", "note", "time", "duration"])
    ws.append(["007", datetime.datetime(2024, 3, 1, 9, 30), True, 4.5, "  spaced ", datetime.time(9, 5),
               datetime.timedelta(hours=2, minutes=3)])
    ws.append(["008", datetime.date(2024, 3, 8), False, 5, "x", None, None])
    ws["H2"] = "=D2*2"  # a formula without a cached value reads as empty
    path = tmp_path / "types.xlsx"
    wb.save(path)
    raw = read_table(path)
    assert raw.columns == ["patient", "when", "ok", "score", "note", "time", "duration"]
    first, second = raw.frame.iloc[0], raw.frame.iloc[1]
    assert first["patient"] == "007" and first["when"] == "2024-03-01T09:30:00" and first["ok"] == "True"
    assert first["score"] == "4.5" and first["note"] == "  spaced " and first["time"] == "09:05:00"
    assert first["duration"] == "2:03:00"
    assert second["when"] == "2024-03-08T00:00:00" and second["ok"] == "False" and second["score"] == "5"


def test_xlsx_inline_rich_and_shared_strings_and_prefixes(tmp_path):
    body = ('<row r="1"><c r="A1" t="inlineStr"><is><t>patient</t></is></c>'
            '<c r="B1" t="s"><v>0</v></c><c r="C1" t="str"><v>symptoms</v></c></row>'
            '<row r="2"><c r="A2" t="inlineStr"><is><r><t>P</t></r><r><rPr><b/></rPr><t>1</t></r>'
            '<rPh><t>phonetic</t></rPh></is></c><c r="B2" t="s"><v>1</v></c>'
            '<c r="C2" t="e"><v>#N/A</v></c></row>')
    data = workbook(tmp_path, body, shared=["session", "two &amp; a_x000D_half"])
    raw = read_table(data, filename="x.xlsx")
    assert raw.columns == ["patient", "session", "symptoms"]
    assert raw.frame.iloc[0].tolist() == [2, "P1", "two & a\rhalf", "#N/A"]
    # The same sheet with a namespace prefix (x:row, x:c) reads the same.
    prefixed = (SHEET_HEAD.replace("<worksheet xmlns=", "<x:worksheet xmlns:x=").replace("<sheetData>", "<x:sheetData>")
                + body.replace("<", "<x:").replace("<x:/", "</x:") + "</x:sheetData></x:worksheet>")
    path = hostile.write_xlsx(tmp_path / "p.xlsx", prefixed, ["session", "two &amp; a_x000D_half"])
    pd.testing.assert_frame_equal(read_table(path).frame, raw.frame)


def test_xlsx_dimension_is_not_trusted(tmp_path):
    body = '<dimension ref="A1:XFD1048576"/>'
    data = hostile.write_xlsx(tmp_path / "d.xlsx", SHEET_HEAD.replace("<sheetData>", body + "<sheetData>")
                              + table(3) + SHEET_TAIL).read_bytes()
    assert read_table(data, filename="d.xlsx").frame.shape == (2, 4)


def test_xlsx_cells_limit_is_checked_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_CELLS", 30)
    assert read_table(workbook(tmp_path, table(10)), filename="x.xlsx").frame.shape == (9, 4)
    with pytest.raises(InputError, match=r"too large to read: 11 rows × 3 columns .* is 33 cells") as err:
        read_table(workbook(tmp_path, table(11)), filename="x.xlsx")
    assert "rows 1 to 11, columns A to C" in plain(err.value)


def test_xlsx_a_stray_cell_counts_its_whole_rectangle(tmp_path):
    body = table(5) + '<row r="900000"><c r="ZZ900000"><v>1</v></c></row>'
    with pytest.raises(InputError, match="900,000 rows × 702 columns") as err:
        read_table(workbook(tmp_path, body), filename="x.xlsx")
    assert "Remove unused rows and columns" in plain(err.value)


def test_xlsx_cell_elements_are_counted_even_when_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_CELLS", 100)
    body = table(2) + '<row r="3">' + "<c/>" * 200 + "</row>"
    with pytest.raises(InputError, match="more than 200 cell entries"):
        read_table(workbook(tmp_path, body), filename="x.xlsx")


@pytest.mark.parametrize("body, words", [
    ('<row r="1"><c r="XFE1"><v>1</v></c></row>', "beyond Excel's last column"),
    ('<row r="1048577"><c r="A1048577"><v>1</v></c></row>', "beyond Excel's last row"),
    ('<row r="5"><c r="A5"><v>1</v></c></row><row r="3"><c r="A3"><v>1</v></c></row>', "lists row 3 after row 5"),
    ('<row r="1"><c r="1A"><v>1</v></c></row>', "damaged"),
    ('<row r="x"><c r="A1"><v>1</v></c></row>', "damaged"),
    ('<row r="1"><c r="A1" t="s"><v>7</v></c></row>', "damaged"),
    ('<row r="1"><c r="A1"><v>1</v></row>', "damaged"),
])
def test_xlsx_what_no_spreadsheet_writes_is_refused(tmp_path, body, words):
    with pytest.raises(InputError, match=words) as err:
        read_table(workbook(tmp_path, body), filename="x.xlsx")
    plain(err.value)


def test_xlsx_long_cells_are_refused_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_CELL_CHARS", 10)
    ok = '<row r="1"><c r="A1" t="inlineStr"><is><t>0123456789</t></is></c></row>'
    assert read_table(workbook(tmp_path, ok), filename="x.xlsx").columns == ["0123456789"]
    long = '<row r="1"><c r="B1" t="inlineStr"><is><t>0123456789A</t></is></c></row>'
    with pytest.raises(InputError, match="cell B1 of sheet 'Sheet1' holds 11 characters"):
        read_table(workbook(tmp_path, long), filename="x.xlsx")
    shared = '<row r="1"><c r="C1" t="s"><v>0</v></c></row>'
    with pytest.raises(InputError, match="cell C1 of sheet 'Sheet1' holds 12 characters"):
        read_table(workbook(tmp_path, shared, shared=["0123456789AB"]), filename="x.xlsx")


def test_xlsx_unpacked_size_is_checked_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_UNPACKED_BYTES", 2_000)
    assert read_table(workbook(tmp_path, table(3)), filename="x.xlsx").frame.shape == (2, 4)
    data = workbook(tmp_path, table(40))
    with pytest.raises(InputError, match="unpacks to .* MB of sheet data, more than the 0 MB") as err:
        read_table(data, filename="x.xlsx")
    plain(err.value)
    bomb = hostile.xlsx_bomb(tmp_path, unpacked_mb=1).read_bytes()
    assert reading.excel_sheet_names(bomb) == ["Sheet1"]  # the sheet itself is not unpacked
    with pytest.raises(InputError, match="unpacks to 1 MB"):
        read_table(bomb, filename="bomb.xlsx")


def test_xlsx_part_larger_than_declared_is_damaged(tmp_path):
    data = hostile.xlsx_lying_sizes(tmp_path, unpacked_mb=2).read_bytes()
    with pytest.raises(InputError, match="damaged"):
        read_table(data, filename="x.xlsx")


def test_xlsx_zip_directory_size_is_checked_first(monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(300):
            z.writestr(f"junk/{i:04d}.bin", b"")
    monkeypatch.setattr(limits, "MAX_ZIP_DIRECTORY_BYTES", 1_000)
    with pytest.raises(InputError, match="far more parts than an Excel workbook"):
        read_table(buf.getvalue(), filename="x.xlsx")


def test_xlsx_doctype_and_entities_are_refused(tmp_path):
    with pytest.raises(InputError, match="damaged"):
        read_table(hostile.xlsx_entity_expansion(tmp_path))


def test_xlsx_sheet_names_are_worksheets_in_order(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Notas"
    wb.create_sheet("Datos")["A1"] = "x"
    wb.create_chartsheet("Gráfico")
    buf = io.BytesIO()
    wb.save(buf)
    assert reading.excel_sheet_names(buf.getvalue()) == ["Notas", "Datos"]
    with pytest.raises(InputError, match="no sheet named 'Gráfico'. Its sheets are: Notas, Datos"):
        read_table(buf.getvalue(), filename="x.xlsx", sheet="Gráfico")


def test_xlsx_huge_numbers_keep_their_text(tmp_path):
    body = ('<row r="1"><c r="A1"><v>1E+400</v></c><c r="B1"><v>1.5E+300</v></c>'
            f'<c r="C1"><v>{"9" * 5000}</v></c><c r="D1"><v>12345678901234567890</v></c></row>')
    raw = read_table(workbook(tmp_path, body + '<row r="2"><c r="A2"><v>1</v></c></row>'), filename="x.xlsx")
    assert raw.columns[:2] == ["1E+400", "1.5e+300"] and raw.columns[2] == "9" * 5000
    assert raw.columns[3] == "12345678901234567890"


# ------------------------------------------------------------------------------ CSV

def csv(n_rows: int, n_cols: int = 3) -> bytes:
    lines = [",".join(f"c{i}" for i in range(n_cols))]
    lines += [",".join(str(r * n_cols + i) for i in range(n_cols)) for r in range(n_rows)]
    return ("\n".join(lines) + "\n").encode()


def test_csv_cells_limit_is_checked_while_parsing(monkeypatch):
    monkeypatch.setattr(reading, "MAX_CELLS", 3_000)
    assert len(read_table(csv(999), filename="x.csv").frame) == 999
    with pytest.raises(InputError, match=r"too large to read: .* rows or more × 3 columns") as err:
        read_table(csv(5_000), filename="x.csv")
    plain(err.value)


def test_csv_rows_limit_is_excel_s(monkeypatch):
    monkeypatch.setattr(reading, "MAX_ROWS", 1_500)
    monkeypatch.setattr(limits, "MAX_ROWS", 1_500)
    with pytest.raises(InputError, match="larger than a spreadsheet can be"):
        read_table(csv(5_000), filename="x.csv")


def test_csv_columns_limit(monkeypatch):
    monkeypatch.setattr(reading, "MAX_COLUMNS", 50)
    assert len(read_table(csv(3, 50), filename="x.csv").columns) == 50
    with pytest.raises(InputError, match="a row has 51 cells or more, and Excel's limit is 50 columns"):
        read_table(csv(3, 51), filename="x.csv")
    # A wide line further down than the sampled lines is caught too.
    data = csv(200, 3) + (",".join(["1"] * 80) + "\n").encode()
    with pytest.raises(InputError, match="80 cells or more"):
        read_table(data, filename="x.csv")


@pytest.mark.parametrize("quoted", [False, True])
def test_csv_long_cell_is_named(quoted):
    cell = "x" * 40_000
    data = f'patient;session;note\nA;1;{chr(34) + cell + chr(34) if quoted else cell}\nA;2;ok\n'.encode()
    with pytest.raises(InputError, match=r"the cell in row 2, column 3 \(C\) holds 40,000 characters") as err:
        read_table(data, filename="x.csv")
    plain(err.value)
    ok = b"patient;session;note\nA;1;" + b"y" * 32_767 + b"\n"
    assert read_table(ok, filename="x.csv").frame["note"].str.len().tolist() == [32_767]


def test_csv_quoted_newlines_count_one_cell(monkeypatch):
    note = '"' + "line\n" * 9_000 + '"'  # 45,000 characters over 9,000 lines: one cell
    with pytest.raises(InputError, match="row 2, column 3"):
        read_table(f"patient,session,note\nA,1,{note}\n".encode(), filename="x.csv")


def test_csv_blank_lines_before_the_header_keep_row_numbers():
    raw = read_table(b"\n\n ,\npatient,session,oq\nA,1,3\n", filename="x.csv")
    assert raw.columns == ["patient", "session", "oq"] and raw.frame[ROW].tolist() == [5]


def test_file_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "MAX_FILE_BYTES", 1_000)
    path = tmp_path / "big.csv"
    path.write_bytes(csv(300))
    with pytest.raises(InputError, match=r"big.csv is 0 MB; at most 0 MB are read") as err:
        read_table(path)
    plain(err.value)
    with pytest.raises(InputError, match="at most 0 MB"):
        read_table(csv(300), filename="x.csv")


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_table(tmp_path)
    with pytest.raises(InputError, match="not a regular file"):
        read_table("/dev/null")


def test_some_names_keeps_messages_short():
    assert some_names(["a", "b"]) == "a, b"
    text = some_names([f"column {i}" for i in range(16_384)])
    assert text.endswith("… (16,384 in all)") and len(text) < 200
    assert len(some_names(["x" * 32_767])) == 40


def test_encrypted_or_old_excel_is_named():
    with pytest.raises(InputError, match="password-protected workbook or an old Excel 97-2003 file"):
        read_table(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), filename="x.xlsx")


# ------------------------------------------------------------------------------ values and models

def test_sessions_beyond_the_limit_are_left_out_with_a_reason():
    from core.intake.mapping import ColumnMapping
    from core.intake.validation import validate_table

    raw = read_table(b"patient,session,oq\nA,1,3\nA,2,4\nA,1e7,5\nA,1e309,6\n", filename="x.csv")
    v = validate_table(raw, ColumnMapping(patient="patient", session="session", symptoms="oq"))
    assert v.excluded_records() == [
        {"row": 4, "reason": "session 1e7 is beyond ±1,000,000, larger than a session number can be"},
        {"row": 5, "reason": "session 1e309 is beyond ±1,000,000, larger than a session number can be"}]


@pytest.mark.parametrize("ranges, words", [({"symptoms": (float("inf"), 5)}, "not a range of finite"),
                                           ({"symptoms": (5, float("nan"))}, "not a range of finite"),
                                           ({"symptoms": (5, 5)}, "minimum not below its maximum"),
                                           ({"symptoms": (7, 1)}, "minimum not below its maximum")])
def test_ranges_must_be_finite_with_min_below_max(ranges, words):
    from core.intake.mapping import ColumnMapping
    from core.intake.validation import validate_table

    raw = read_table(b"patient,session,oq\nA,1,3\nA,2,4\n", filename="x.csv")
    with pytest.raises(InputError, match=words) as err:
        validate_table(raw, ColumnMapping(patient="patient", session="session", symptoms="oq"), ranges=ranges)
    plain(err.value)


def test_too_many_studies_in_one_file(monkeypatch):
    from core.intake import validation
    from core.intake.mapping import ColumnMapping

    monkeypatch.setattr(validation, "MAX_STUDIES", 3)
    rows = "".join(f"S{i},P{i},1,3,4\n" for i in range(4))
    raw = read_table(("study,patient,session,alliance,oq\n" + rows).encode(), filename="x.csv")
    with pytest.raises(InputError, match="names 4 different studies in column 'study'; at most 3"):
        validation.validate_studies(raw, ColumnMapping(patient="patient", session="session", alliance="alliance",
                                                       symptoms="oq"), "study")


def test_models_refuse_values_too_large_for_their_arithmetic_in_plain_words():
    import numpy as np

    from core.stats.models import fit_ladder

    rng = np.random.default_rng(1)
    data = pd.DataFrame({"patient": np.repeat([f"P{i}" for i in range(10)], 4),
                         "session": np.tile([1, 2, 3, 4], 10),
                         "symptoms": rng.normal(50, 5, 40), "alliance": rng.normal(5, 1, 40)})
    data.loc[3, "symptoms"] = 1e300  # validation leaves such values out; the model checks again
    ladder = fit_ladder(data)
    assert not ladder.models
    for message in ladder.errors.values():
        assert "too large to fit a model" in message and "theta" not in message, message


# ------------------------------------------------------------------------------ issue 25

def book_with_sheets(tmp_path, names: list[str]) -> bytes:
    """A workbook whose list names ``names`` (every one the same small sheet)."""
    xml = (hostile._WORKBOOK.split("<sheets>")[0] + "<sheets>"
           + "".join(f'<sheet name="{n}" sheetId="{i}" r:id="rId1"/>' for i, n in enumerate(names, start=1))
           + "</sheets></workbook>")
    return hostile.write_xlsx(tmp_path / "sheets.xlsx", SHEET_HEAD + table(3) + SHEET_TAIL,
                              workbook=hostile._deflated(xml.encode(), "xl/workbook.xml")).read_bytes()


def test_xlsx_sheets_are_counted_while_the_list_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_SHEETS", 5)
    assert reading.excel_sheet_names(book_with_sheets(tmp_path, [f"S{i}" for i in range(5)])) == \
        ["S0", "S1", "S2", "S3", "S4"]
    with pytest.raises(InputError, match="lists more than 5 sheets, more than are read from a workbook") as err:
        reading.excel_sheet_names(book_with_sheets(tmp_path, [f"S{i}" for i in range(6)]), "book.xlsx")
    assert plain(err.value).startswith("book.xlsx")
    with pytest.raises(InputError, match="more than 5 sheets"):  # reading a sheet checks the list too
        read_table(book_with_sheets(tmp_path, [f"S{i}" for i in range(6)]), filename="x.xlsx")


def test_xlsx_sheet_names_beyond_any_spreadsheet_are_refused(tmp_path):
    assert reading.excel_sheet_names(book_with_sheets(tmp_path, ["a" * 255])) == ["a" * 255]
    with pytest.raises(InputError, match="a sheet name of 256 characters; Excel's sheet names have at most 31"):
        reading.excel_sheet_names(book_with_sheets(tmp_path, ["a" * 256]))


def test_xlsx_relationships_beyond_a_workbook_s_are_damaged(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "_MAX_RELATIONSHIPS", 3)
    rels = xlsx._Relationships("xl", "x.xlsx")
    for i in range(3):
        rels.start("Relationship", {"Id": f"rId{i}", "Type": "t", "Target": "a.xml"})
    with pytest.raises(InputError, match="damaged"):
        rels.start("Relationship", {"Id": "rId9", "Type": "t", "Target": "a.xml"})


def test_xlsx_shared_strings_are_counted_while_read(tmp_path, monkeypatch):
    body = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>3</v></c></row>'
    monkeypatch.setattr(xlsx, "MAX_SHARED_STRINGS", 4)
    assert read_table(workbook(tmp_path, body, shared=["p", "x", "y", "s"]), filename="x.xlsx").columns == ["p", "s"]
    with pytest.raises(InputError, match=r"more than 4 different texts in its shared-string table \(sharedStr"):
        read_table(workbook(tmp_path, body, shared=["p", "x", "y", "s", "z"]), filename="x.xlsx")
    monkeypatch.setattr(xlsx, "MAX_SHARED_STRING_CHARS", 10)
    assert read_table(workbook(tmp_path, body, shared=["pp", "xxx", "yyy", "ss"]), filename="x.xlsx").columns == \
        ["pp", "ss"]
    with pytest.raises(InputError, match="more than 10 characters of text in its shared-string table") as err:
        read_table(workbook(tmp_path, body, shared=["pp", "xxx", "yyy", "sss"]), filename="x.xlsx")
    plain(err.value)


def test_xlsx_text_of_the_cells_read_is_counted_each_time_it_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(xlsx, "MAX_TEXT_CHARS", 100)
    rows = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>' for r in range(1, 11))
    assert len(read_table(workbook(tmp_path, rows, shared=["t" * 10]), filename="x.xlsx").frame) == 9
    rows += '<row r="11"><c r="A11" t="s"><v>0</v></c></row>'
    with pytest.raises(InputError, match="sheet 'Sheet1' of x.xlsx holds more than 100 characters of text in its "
                                         "cells") as err:
        read_table(workbook(tmp_path, rows, shared=["t" * 10]), filename="x.xlsx")
    plain(err.value)


@pytest.mark.parametrize("n_columns, name", [(12_003, "extra_column_{:05d}"), (16_000, "a_much_longer_header_{:05d}")])
def test_csv_a_header_of_any_length_is_read_whole(n_columns, name):
    """A header over the 200,000 characters sampled lost its columns beyond (12,003 → 8,336)."""
    header = ["patient", "session", "symptoms"] + [name.format(i) for i in range(n_columns - 3)]
    assert len(",".join(header)) > 200_000
    lines = [",".join(header)] + [",".join([f"P{r // 4}", str(r % 4 + 1), "50"] + [str(r)] * (n_columns - 3))
                                  for r in range(8)]
    raw = read_table(("\n".join(lines) + "\n").encode(), filename="wide.csv")
    assert raw.columns == header
    assert raw.frame[header[-1]].tolist() == [str(r) for r in range(8)]


def test_csv_a_first_line_longer_than_counted_is_read_again_never_cut(monkeypatch):
    """The parser keeps only the columns it was given of a first line that has more (pandas just warns):
    the fields are counted again in full."""
    real = reading._parse_csv
    monkeypatch.setattr(reading, "_parse_csv", lambda data, source, delimiter, n_fields, *a: real(
        data, source, delimiter, 2, *a))
    raw = read_table(b"patient,session,oq,note\nA,1,3,x\nA,2,4,y\n", filename="x.csv")
    assert raw.columns == ["patient", "session", "oq", "note"] and raw.frame["note"].tolist() == ["x", "y"]


def mixed_file() -> bytes:
    """An export in Latin-1 (Windows-1252) with rows appended by a program that writes UTF-8."""
    latin = ["paciente;sesion;oq;nota"] + [f"José;{s};{60 - s};señal" for s in (1, 2, 3)] + ["Ana;1;40;", "Ana;2;41;"]
    utf8 = ["José;4;55;mañana", "Ana;3;39;ñ"]
    return ("\n".join(latin) + "\n").encode("cp1252") + ("\n".join(utf8) + "\n").encode("utf-8")


def test_csv_mixing_utf8_and_latin1_reads_each_row_in_its_own_encoding():
    raw = read_table(mixed_file(), filename="mixed.csv")
    assert raw.encoding == "UTF-8 + Windows-1252"
    assert raw.frame["paciente"].tolist() == ["José"] * 3 + ["Ana", "Ana", "José", "Ana"]
    assert raw.frame["nota"].tolist() == ["señal"] * 3 + ["", "", "mañana", "ñ"]
    assert raw.notes == tuple(
        f"Row {r} is encoded as UTF-8, the rest of the file as Windows-1252: the file mixes two encodings (for "
        "example two exports joined), and each row was read in its own." for r in (7, 8))
    from core.intake.mapping import ColumnMapping
    from core.intake.validation import validate_table

    validated = validate_table(raw, ColumnMapping(patient="paciente", session="sesion", symptoms="oq"))
    assert sorted(validated.data["patient"].unique()) == ["Ana", "José"]  # never two patients for one
    assert (validated.data["patient"] == "José").sum() == 4
    assert all(note in validated.notes for note in raw.notes)


def test_csv_mixed_encodings_many_rows_and_quoted_lines():
    lines = ["patient,session,oq,note"]
    body = b""
    for s in range(1, 41):
        text = f'José,{s},{50 + s},"line one\nline two"\n' if s == 1 else f"José,{s},{50 + s},x\n"
        body += text.encode("utf-8" if s % 2 else "cp1252")
    raw = read_table((lines[0] + "\n").encode() + body + "Zoë,1,3,y\n".encode("cp1252"), filename="m.csv")
    assert set(raw.frame["patient"]) == {"José", "Zoë"}
    # 20 UTF-8 rows (the first spans two lines) against 21 in Windows-1252: 20 notes, then one for the rest
    assert len(raw.notes) == 20
    assert raw.notes[0].startswith("Row 2 is encoded as UTF-8") and raw.notes[1].startswith("Row 4 is")
    raw = read_table((lines[0] + "\n").encode() + body + "".join(f"Zoë,{s},3,y\n" for s in range(5)).encode("cp1252"),
                     filename="m.csv")
    assert len(raw.notes) == 20  # the UTF-8 rows are fewer: they are named
    many = (lines[0] + "\n").encode() + "".join(f"Ana,{s},1,ñ\n" for s in range(30)).encode("utf-8") + \
        "".join(f"Ana,{s},1,ñ\n" for s in range(30, 90)).encode("cp1252")
    notes = read_table(many, filename="m.csv").notes
    assert len(notes) == 21 and notes[-1].startswith("10 more rows are encoded as UTF-8 (rows 22, 23, 24")


def test_csv_in_windows_1252_whose_bytes_happen_to_be_utf8_stays_windows_1252():
    """"CAMIÓN”" in Windows-1252 is the UTF-8 of a Cyrillic letter: not a UTF-8 row."""
    data = "patient;session;oq;note\nP1;1;3;CAMIÓN”\nP1;2;4;niño\n".encode("cp1252")
    raw = read_table(data, filename="x.csv")
    assert raw.encoding == "cp1252" and raw.notes == ()
    assert raw.frame["note"].tolist() == ["CAMIÓN”", "niño"]
