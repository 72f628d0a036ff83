"""Reading files (core.intake.reading): every common CSV locale and Excel read to the same table.

The clean reference is ``tests/data/paperlike_public.csv`` (columns patient, therapist, session,
alliance, symptoms). Its re-encodings (``;`` + decimal comma + Latin-1 with Spanish headers,
UTF-8 with BOM and tabs, UTF-16 text, .xlsx with Spanish headers on a second sheet) must read,
map (``propose_mapping``) and validate to exactly the same table: values, IDs, sessions and
spreadsheet row numbers.
"""
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from core.errors import InputError
from core.intake.mapping import ColumnMapping, propose_mapping
from core.intake.reading import ROW, detect_delimiter, excel_sheet_names, read_table
from core.intake.validation import validate_table

DATA = Path(__file__).parent / "data"
CLEAN = DATA / "paperlike_public.csv"
AWKWARD = DATA / "awkward"
SPANISH = {"patient": "Paciente", "therapist": "Terapeuta", "session": "Sesión",
           "alliance": "Alianza", "symptoms": "Síntomas"}
TABLE_COLUMNS = ["patient", "therapist", "session", "alliance", "symptoms", ROW]


def validated_table(source, **kwargs) -> pd.DataFrame:
    """Read, propose the mapping, validate; the validated table's standard columns."""
    raw = read_table(source, **kwargs)
    mapping = propose_mapping(raw.columns)
    result = validate_table(raw, mapping)
    assert result.excluded.empty, result.excluded
    return result.data[TABLE_COLUMNS]


@pytest.fixture(scope="module")
def clean_text() -> pd.DataFrame:
    """The clean CSV as text cells, exactly as written in the file."""
    return pd.read_csv(CLEAN, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def clean_table() -> pd.DataFrame:
    return validated_table(CLEAN)


def spanish_decimal_comma(frame: pd.DataFrame) -> pd.DataFrame:
    es = frame.rename(columns=SPANISH)
    for col in ("Alianza", "Síntomas"):
        es[col] = es[col].str.replace(".", ",", regex=False)
    return es


def assert_plain_sentence(err: InputError) -> None:
    """One plain-language message: no traceback, no exception names, one line."""
    text = str(err)
    assert text and "\n" not in text
    for marker in ("Traceback", 'File "', "Error:", "Exception", "errno", "<class"):
        assert marker not in text, text


# ------------------------------------------------------------------------------ clean file

def test_clean_csv_reads_as_text_with_row_numbers(clean_text):
    raw = read_table(CLEAN)
    assert raw.kind == "csv" and raw.delimiter == "," and raw.decimal == "."
    assert raw.columns == ["patient", "therapist", "session", "alliance", "symptoms"]
    assert len(raw.frame) == len(clean_text) == 328
    # Header = row 1, first data row = row 2.
    assert raw.frame[ROW].tolist() == list(range(2, 330))
    # Cells are the file's own text.
    assert raw.frame["alliance"].tolist() == clean_text["alliance"].tolist()


def test_clean_csv_validates_to_numbers(clean_table, clean_text):
    assert len(clean_table) == 328
    assert clean_table["session"].dtype == np.int64
    assert clean_table["alliance"].dtype == float
    assert clean_table["patient"].nunique() == 96
    assert clean_table["therapist"].nunique() == 8
    first = clean_table.iloc[0]
    assert (first["patient"], first["therapist"], first["session"], first["alliance"],
            first["symptoms"], first[ROW]) == ("P0000", "T05", 1, 6.136, 1.38, 2)


# --------------------------------------------------------- the same table from every locale

def test_semicolon_decimal_comma_latin1_spanish_headers_same_table(tmp_path, clean_text, clean_table):
    path = tmp_path / "clinica.csv"
    path.write_bytes(spanish_decimal_comma(clean_text).to_csv(sep=";", index=False).encode("cp1252"))
    raw = read_table(path)
    assert (raw.delimiter, raw.decimal) == (";", ",")
    assert raw.encoding in ("cp1252", "latin-1")
    assert raw.columns == list(SPANISH.values())
    assert propose_mapping(raw.columns) == ColumnMapping(**SPANISH)
    pd.testing.assert_frame_equal(validated_table(path), clean_table)


def test_strict_latin1_bytes_read(tmp_path, clean_text, clean_table):
    """Bytes that are not valid Windows-1252 (0x81) still read, as Latin-1."""
    es = spanish_decimal_comma(clean_text)
    es["nota"] = "\x81"  # undefined in cp1252, a control character in Latin-1: one cell only
    es.loc[1:, "nota"] = "ñandú"
    path = tmp_path / "latin1.csv"
    path.write_bytes(es.to_csv(sep=";", index=False).encode("latin-1"))
    raw = read_table(path)
    assert raw.encoding == "latin-1"
    assert raw.frame["nota"].iloc[5] == "ñandú"
    pd.testing.assert_frame_equal(validated_table(path), clean_table)


def test_utf8_bom_tab_separated_same_table(tmp_path, clean_text, clean_table):
    path = tmp_path / "export.tsv"
    path.write_bytes(clean_text.to_csv(sep="\t", index=False).encode("utf-8-sig"))
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    raw = read_table(path)
    assert raw.delimiter == "\t"
    assert raw.columns[0] == "patient"  # no BOM left in the first header
    pd.testing.assert_frame_equal(validated_table(path), clean_table)


def test_utf8_with_accents_no_bom_same_table(tmp_path, clean_text, clean_table):
    path = tmp_path / "utf8.csv"
    path.write_bytes(spanish_decimal_comma(clean_text).to_csv(sep=";", index=False).encode("utf-8"))
    raw = read_table(path)
    assert raw.encoding == "utf-8-sig" and raw.columns[2] == "Sesión"
    pd.testing.assert_frame_equal(validated_table(path), clean_table)


def test_utf16_unicode_text_export_same_table(clean_text, clean_table):
    """Excel's 'Unicode text' export: UTF-16 with BOM, tab-separated."""
    data = spanish_decimal_comma(clean_text).to_csv(sep="\t", index=False).encode("utf-16")
    raw = read_table(data, filename="export.txt")
    assert raw.encoding == "utf-16" and raw.decimal == ","
    pd.testing.assert_frame_equal(validated_table(data, filename="export.txt"), clean_table)


def test_crlf_and_pipe_delimiter_same_table(clean_text, clean_table):
    data = clean_text.to_csv(sep="|", index=False, lineterminator="\r\n").encode()
    assert read_table(data, filename="x.csv").delimiter == "|"
    pd.testing.assert_frame_equal(validated_table(data, filename="x.csv"), clean_table)


def write_spanish_workbook(path: Path, clean_text: pd.DataFrame) -> None:
    wb = openpyxl.Workbook()
    wb.active.title = "Notas"
    wb.active.append(["Exportado del sistema"])
    ws = wb.create_sheet("Datos")
    ws.append(list(SPANISH.values()))
    for r in clean_text.itertuples(index=False):
        ws.append([r.patient, r.therapist, int(r.session), float(r.alliance), float(r.symptoms)])
    wb.save(path)


def test_xlsx_spanish_headers_second_sheet_same_table(tmp_path, clean_text, clean_table):
    path = tmp_path / "clinica.xlsx"
    write_spanish_workbook(path, clean_text)
    assert excel_sheet_names(path.read_bytes()) == ["Notas", "Datos"]
    raw = read_table(path, sheet="Datos")
    assert raw.kind == "excel" and raw.sheet == "Datos" and raw.sheets == ("Notas", "Datos")
    assert raw.columns == list(SPANISH.values())
    # Integral numbers read without ".0"; other numbers as Python writes them.
    assert raw.frame["Sesión"].iloc[0] == "1"
    assert raw.frame["Alianza"].iloc[0] == "6.136"
    pd.testing.assert_frame_equal(validated_table(path, sheet="Datos"), clean_table)
    # Bytes with a file name give the same.
    pd.testing.assert_frame_equal(
        validated_table(path.read_bytes(), filename="clinica.xlsx", sheet="Datos"), clean_table)


def test_xlsx_default_is_first_sheet(tmp_path, clean_text):
    path = tmp_path / "clinica.xlsx"
    write_spanish_workbook(path, clean_text)
    raw = read_table(path)
    assert raw.sheet == "Notas" and raw.columns == ["Exportado del sistema"]


def test_xlsx_unknown_sheet_names_the_sheets(tmp_path, clean_text):
    path = tmp_path / "clinica.xlsx"
    write_spanish_workbook(path, clean_text)
    with pytest.raises(InputError, match="no sheet named 'Hoja1'.*Notas, Datos") as err:
        read_table(path, sheet="Hoja1")
    assert_plain_sentence(err.value)


def test_committed_fixtures_read_to_the_clean_rows(clean_table):
    """tests/data/awkward: a Latin-1 ';' decimal-comma CSV and an .xlsx with Spanish headers."""
    expected = clean_table.head(24)
    latin1 = AWKWARD / "clinica_ba_latin1.csv"
    assert b"Sesi\xf3n" in latin1.read_bytes()  # really Latin-1, not UTF-8
    pd.testing.assert_frame_equal(validated_table(latin1), expected)
    pd.testing.assert_frame_equal(validated_table(AWKWARD / "clinica_ba.xlsx", sheet="Datos"), expected)


# ------------------------------------------------------------------------ awkward CSV detail

def test_ids_keep_leading_zeros():
    raw = read_table(b"patient;session;oq\n007;1;3,5\n0012;2;4\n", filename="x.csv")
    assert raw.frame["patient"].tolist() == ["007", "0012"]
    data = validate_table(raw, propose_mapping(raw.columns)).data
    assert data["patient"].tolist() == ["0012", "007"]  # text order; "007" is not 7
    assert data["symptoms"].tolist() == [4.0, 3.5]


def test_decimal_comma_detected_with_tab():
    raw = read_table("id\tsesión\tans\n1\t1\t4,5\n1\t2\t5,25\n".encode("cp1252"), filename="x.txt")
    assert (raw.delimiter, raw.decimal) == ("\t", ",")


def test_blank_lines_are_skipped_but_row_numbers_kept():
    raw = read_table(b"patient,session,oq\n1,1,3\n\n,,\n 1 ,2,4\n", filename="x.csv")
    assert raw.frame[ROW].tolist() == [2, 5]
    assert any("2 completely empty rows" in n for n in raw.notes)


def test_blank_lines_above_the_header_shift_row_numbers():
    raw = read_table(b"\n\npatient,session,oq\n1,1,3\n", filename="x.csv")
    assert raw.columns == ["patient", "session", "oq"]
    assert raw.frame[ROW].tolist() == [4]


@pytest.mark.parametrize("text", [
    "a;b\n1;2;\n3;4;\n",       # every data row ends with a delimiter
    "a;b;\n1;2;\n3;4;\n",      # header too
    "a,b\n1,2,\n3,4\n",        # only some rows
    "a,b\n1,2,,\n3,4\n",
])
def test_trailing_delimiters_do_not_shift_columns(text):
    """Regression: pandas took the first column as an index when data rows had one more field,
    shifting every value one column left (a = 2 instead of 1)."""
    raw = read_table(text.encode(), filename="x.csv")
    assert raw.columns == ["a", "b"]
    assert raw.frame["a"].tolist() == ["1", "3"]
    assert raw.frame["b"].tolist() == ["2", "4"]


def test_row_with_more_cells_than_header_names_the_row():
    with pytest.raises(InputError, match=r"row 3 has more cells than the header") as err:
        read_table(b"patient,session,oq\n1,1,3\n1,2,4,5\n", filename="x.csv")
    assert_plain_sentence(err.value)


def test_unquoted_decimal_commas_in_comma_file_are_not_read_silently():
    """'4,5' in a comma-separated file splits the cell: this must stop, not shift values."""
    with pytest.raises(InputError, match="more cells than the header") as err:
        read_table(b"patient,session,oq\n1,1,4,5\n1,2,3,5\n1,3,2,5\n", filename="x.csv")
    assert_plain_sentence(err.value)


def test_quoted_cells_with_delimiters_and_newlines():
    raw = read_table(b'patient,session,oq,note\n1,1,"4,5","two\nlines"\n1,2,3,x\n', filename="x.csv")
    assert raw.frame["oq"].tolist() == ["4,5", "3"]
    assert raw.frame["note"].iloc[0] == "two\nlines"
    assert raw.frame[ROW].tolist() == [2, 3]  # a spreadsheet shows the quoted cell in one row
    data = validate_table(raw, ColumnMapping(patient="patient", session="session", symptoms="oq")).data
    assert data["symptoms"].tolist() == [4.5, 3.0]


def test_header_cells_cleaned():
    raw = read_table("\ufeff Paciente ,row,oq,,oq\n1,x,3,,4\n".encode(), filename="x.csv")
    assert raw.columns == ["Paciente", "row (file)", "oq", "column 4", "oq (2)"]
    assert raw.frame[ROW].tolist() == [2]


@pytest.mark.parametrize("lines, delimiter", [
    (["a,b,c", "1,2,3"], ","),
    (["a;b;c", "1,5;2;3,5"], ";"),
    (["a\tb", "1,5\t2"], "\t"),
    (["a|b", "1|2"], "|"),
    (["only", "1"], ","),
])
def test_detect_delimiter(lines, delimiter):
    assert detect_delimiter(lines) == delimiter


# ------------------------------------------------------------------------------------- Excel

def test_excel_integral_numbers_have_no_trailing_zero(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "sesión", "oq", "ans", "fecha"])
    ws.append([12, 1.0, 99.0, 4.5, "007"])
    ws.append(["007", 2, 150, 6.125, None])
    ws.append(["007", 3, 20, 7, None])
    path = tmp_path / "x.xlsx"
    wb.save(path)
    raw = read_table(path)
    assert raw.frame["id"].tolist() == ["12", "007", "007"]
    assert raw.frame["sesión"].tolist() == ["1", "2", "3"]
    assert raw.frame["oq"].tolist() == ["99", "150", "20"]
    assert raw.frame["ans"].tolist() == ["4.5", "6.125", "7"]
    assert raw.frame["fecha"].tolist() == ["007", "", ""]
    data = validate_table(raw, propose_mapping(raw.columns)).data
    assert data["patient"].tolist() == ["007", "007", "12"]
    assert data["symptoms"].tolist() == [150.0, 20.0, 99.0]  # 99 is a score where values go to 150


def test_excel_title_rows_and_gaps_keep_spreadsheet_row_numbers(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A3"], ws["B3"], ws["C3"] = "Paciente", "Sesión", "OQ"
    ws.append(["A", 1, 80])      # row 4
    ws.append([None, None, None])
    ws["A7"], ws["B7"], ws["C7"] = "B", 1, 70
    path = tmp_path / "x.xlsx"
    wb.save(path)
    raw = read_table(path)
    assert raw.columns == ["Paciente", "Sesión", "OQ"]
    assert raw.frame[ROW].tolist() == [4, 7]


def test_excel_values_right_of_the_header_are_kept(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["patient", "session", "oq"])
    ws.append(["A", 1, 80, "see notes"])
    path = tmp_path / "x.xlsx"
    wb.save(path)
    raw = read_table(path)
    assert raw.columns == ["patient", "session", "oq", "column 4"]
    assert raw.frame["column 4"].tolist() == ["see notes"]


def test_excel_with_wrong_stored_dimension_reads_every_row(tmp_path, clean_text, clean_table):
    """Some programs store the sheet size as "A1"; openpyxl's read-only mode then read one cell."""
    path = tmp_path / "good.xlsx"
    write_spanish_workbook(path, clean_text)
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet2.xml":
                data, n = re.subn(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1"/>', data)
                assert n == 1
            dst.writestr(item, data)
    pd.testing.assert_frame_equal(validated_table(bad, sheet="Datos"), clean_table)


# ---------------------------------------------------------------------------- unusable input

def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        read_table(path)
    assert_plain_sentence(err.value)


def test_whitespace_only_file():
    with pytest.raises(InputError, match="empty") as err:
        read_table(b" \r\n\r\n \n", filename="x.csv")
    assert_plain_sentence(err.value)


def test_header_only_file():
    raw = read_table(b"patient,session,oq\n", filename="x.csv")
    assert raw.frame.empty
    with pytest.raises(InputError, match="header but no data rows") as err:
        validate_table(raw, propose_mapping(raw.columns))
    assert_plain_sentence(err.value)


def test_old_xls_file():
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500
    with pytest.raises(InputError, match=r"\.xls.*Save it as \.xlsx or CSV") as err:
        read_table(ole, filename="datos.xls")
    assert_plain_sentence(err.value)


@pytest.mark.parametrize("data", [
    b"\x00\x01\x02\x03binary\xff\xfe\x00" * 50,
    bytes(np.random.default_rng(0).integers(1, 256, 4000, dtype=np.uint8)),  # no NUL byte
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nstream\n\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b" * 20,
])
def test_binary_junk(data):
    with pytest.raises(InputError, match="not a text \\(CSV\\) file") as err:
        read_table(data, filename="datos.csv")
    assert_plain_sentence(err.value)


def test_damaged_xlsx():
    with pytest.raises(InputError, match="could not be opened as an Excel workbook") as err:
        read_table(b"PK\x03\x04 this is not really a zip", filename="datos.xlsx")
    assert_plain_sentence(err.value)


def test_empty_excel_sheet(tmp_path):
    path = tmp_path / "x.xlsx"
    openpyxl.Workbook().save(path)
    with pytest.raises(InputError, match="empty") as err:
        read_table(path)
    assert_plain_sentence(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist") as err:
        read_table(tmp_path / "nope.csv")
    assert_plain_sentence(err.value)


def test_wrong_column_name_lists_the_file_columns():
    raw = read_table(b"patient,session,oq\n1,1,3\n", filename="x.csv")
    mapping = ColumnMapping(patient="paciente", session="session", symptoms="oq")
    with pytest.raises(InputError, match="no column 'paciente'.*patient, session, oq") as err:
        validate_table(raw, mapping)
    assert_plain_sentence(err.value)


def test_reading_from_bytes_and_buffers_agree(clean_table):
    data = CLEAN.read_bytes()
    pd.testing.assert_frame_equal(validated_table(data, filename="x.csv"), clean_table)
    # Bytes without a file name are sniffed: an .xlsx by its ZIP signature.
    buf = io.BytesIO()
    wb = openpyxl.Workbook()
    wb.active.append(["patient", "session", "oq"])
    wb.active.append(["A", 1, 3])
    wb.save(buf)
    assert read_table(buf.getvalue()).kind == "excel"


def test_long_rows_after_the_sampled_lines_are_seen():
    """The delimiter is found from the first 50 lines; a wider row further down is still caught,
    and trailing empty fields there are harmless."""
    body = "".join(f"P{i},1,{i % 7}\n" for i in range(200))
    ok = read_table(("patient,session,oq\n" + body + "P200,1,3,,\n").encode(), filename="x.csv")
    assert len(ok.frame) == 201 and ok.columns == ["patient", "session", "oq"]
    assert ok.frame["oq"].iloc[-1] == "3"
    with pytest.raises(InputError, match="row 202 has more cells than the header") as err:
        read_table(("patient,session,oq\n" + body + "P200,1,3,5\n").encode(), filename="x.csv")
    assert_plain_sentence(err.value)
