"""``python -m core analyze`` as a user runs it (a subprocess from the repository root).

Contract (shared/contracts/cli-and-reports.md): exit 0 when the report is written; exit 2 with
one short plain message on stderr (no traceback) when the input cannot be analysed; rows that
cannot be used are listed in ``excluded_rows`` as ``{row, reason}`` with spreadsheet row
numbers (header = row 1); numbers are plain JSON (no NaN).
"""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLEAN = ROOT / "tests" / "data" / "paperlike_public.csv"
ROLES = ["--patient", "patient", "--session", "session", "--symptoms", "symptoms",
         "--alliance", "alliance", "--therapist", "therapist"]


def no_nan(name):
    raise AssertionError(f"the report holds {name}, which is not plain JSON")


def run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "analyze", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def analyze(tmp_path, data, *args) -> dict:
    out = tmp_path / "report.json"
    proc = run(data, *args, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text(encoding="utf-8"), parse_constant=no_nan)


def assert_exit_2(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    message = proc.stderr.strip()
    assert message and len(message.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
    for word in words:
        assert word.lower() in message.lower(), message
    return message


@pytest.fixture(scope="module")
def clean_report(tmp_path_factory):
    return analyze(tmp_path_factory.mktemp("clean"), CLEAN, *ROLES)


def test_clean_file_report(clean_report):
    r = clean_report
    assert r["n_observations"] == 328
    assert r["n_patients"] == 96
    assert r["n_therapists"] == 8
    assert r["excluded_rows"] == []
    assert set(r["models"]) >= {"unconditional", "time", "hybrid"}
    assert 0 < r["icc"]["patient"] < 1


def messy_lines() -> tuple[list[str], dict[int, tuple[str, ...]]]:
    """The clean file with awkward rows; returns the lines and {row: key words of the reason}."""
    lines = CLEAN.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    expected = {}

    def edit(row_number, column, value):
        cells = rows[row_number - 2].split(",")
        cells[header.split(",").index(column)] = value
        rows[row_number - 2] = ",".join(cells)

    edit(3, "alliance", "abc")
    expected[3] = ("alliance", "'abc'", "not a number")
    edit(5, "symptoms", "-99")
    expected[5] = ("symptoms", "missing", "code -99")
    edit(7, "alliance", "n/a")
    expected[7] = ("alliance missing",)
    edit(9, "alliance", "8.5")  # only excluded with --alliance-range 1,7
    edit(11, "session", "Session " + rows[9].split(",")[2])  # a label: kept
    edit(12, "patient", "")
    expected[12] = ("patient ID missing",)
    rows.append(rows[0])  # identical copy of row 2, at row 330
    expected[len(rows) + 1] = ("identical duplicate", "row 2")
    return [header, *rows], expected


def test_messy_file_lists_excluded_rows_with_spreadsheet_numbers(tmp_path):
    lines, expected = messy_lines()
    path = tmp_path / "messy.csv"
    path.write_text("\n".join(lines) + "\n")
    report = analyze(tmp_path, path, *ROLES)
    # A model of both measures (hybrid) leaves out every row without both; the file's excluded rows
    # are those with no usable measure or a duplicate.
    excluded = {e["row"]: e["reason"] for e in report["models"]["hybrid"]["excluded_rows"]}
    assert sorted(excluded) == sorted(expected)
    for row, words in expected.items():
        for word in words:
            assert word in excluded[row], (row, excluded[row])
    for entries in (report["excluded_rows"], report["models"]["hybrid"]["excluded_rows"]):
        assert all(set(e) == {"row", "reason"} and isinstance(e["row"], int) for e in entries)
    assert report["models"]["hybrid"]["n_observations"] == 328 - 4  # rows 3, 5, 7, 12; the copy adds nothing
    assert report["n_patients"] == 96
    assert {e["row"] for e in report["excluded_rows"]} <= set(expected)
    # the sessions with a symptom score but no alliance score stay in the symptom-only models
    only_alliance_missing = [r for r, words in expected.items() if any("alliance" in w for w in words)]
    used_unconditional = report["models"]["unconditional"]["n_observations"]
    assert used_unconditional > report["models"]["hybrid"]["n_observations"] or not only_alliance_missing


def test_alliance_range_excludes_out_of_range_values_with_a_reason(tmp_path):
    lines, expected = messy_lines()
    path = tmp_path / "messy.csv"
    path.write_text("\n".join(lines) + "\n")
    report = analyze(tmp_path, path, *ROLES, "--alliance-range", "1,7")
    excluded = {e["row"]: e["reason"] for e in report["models"]["hybrid"]["excluded_rows"]}
    assert sorted(excluded) == sorted([*expected, 9])
    assert "alliance 8.5" in excluded[9] and "outside" in excluded[9] and "1 to 7" in excluded[9]
    assert report["models"]["hybrid"]["n_observations"] == 328 - 5


def test_spanish_semicolon_latin1_export_gives_the_same_report(tmp_path, clean_report):
    clean = pd.read_csv(CLEAN, dtype=str, keep_default_na=False)
    es = clean.rename(columns={"patient": "Paciente", "therapist": "Terapeuta", "session": "Sesión",
                               "alliance": "Alianza", "symptoms": "Síntomas"})
    for col in ("Alianza", "Síntomas"):
        es[col] = es[col].str.replace(".", ",", regex=False)
    path = tmp_path / "clínica.csv"
    path.write_bytes(es.to_csv(sep=";", index=False).encode("cp1252"))
    report = analyze(tmp_path, path, "--patient", "Paciente", "--session", "Sesión",
                     "--symptoms", "Síntomas", "--alliance", "Alianza", "--therapist", "Terapeuta")
    for key in ("n_observations", "n_patients", "n_therapists", "excluded_rows", "icc"):
        assert report[key] == clean_report[key], key
    assert report["models"]["hybrid"]["fixed"] == clean_report["models"]["hybrid"]["fixed"]


def test_missing_column_exits_2_with_one_plain_line(tmp_path):
    proc = run(CLEAN, "--patient", "paciente", "--session", "session", "--symptoms", "symptoms",
               "--out", tmp_path / "r.json")
    message = assert_exit_2(proc, "paciente", "patient, therapist, session")
    assert "paperlike_public.csv" in message
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("name, content, words", [
    ("empty.csv", b"", ("empty",)),
    ("header.csv", b"patient,session,symptoms\n", ("no data rows",)),
    ("old.xls", b"\xd0\xcf\x11\xe0" + b"\x00" * 100, (".xls", "xlsx")),
    ("junk.csv", b"\x00\x01\x02\xff" * 100, ("not a text",)),
])
def test_unusable_files_exit_2(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    assert_exit_2(run(path, "--patient", "patient", "--session", "session", "--symptoms", "symptoms"),
                  name, *words)


def test_no_usable_row_exits_2(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("patient,session,symptoms\nA,1,x\nB,1,y\n")
    assert_exit_2(run(path, "--patient", "patient", "--session", "session", "--symptoms", "symptoms"),
                  "none of the 2 rows", "symptoms is not a number")


def test_bad_range_exits_2(tmp_path):
    proc = run(CLEAN, *ROLES, "--alliance-range", "7,1")
    assert_exit_2(proc, "7,1")


def test_missing_file_exits_2(tmp_path):
    assert_exit_2(run(tmp_path / "nope.csv", *ROLES), "does not exist")


@pytest.mark.slow
def test_a_file_longer_than_a_spreadsheet_is_analysed_without_a_flag(tmp_path):
    """A file given by path is limited by this computer's memory, not by the Upload page's limits
    (Excel's 1,048,576 rows): 1,050,000 rows (150,000 patients × 7 sessions) with no --max-rows."""
    import numpy as np

    rng = np.random.default_rng(28)
    n_patients, n_sessions = 150_000, 7
    patient = np.repeat(np.arange(n_patients), n_sessions)
    session = np.tile(np.arange(1, n_sessions + 1), n_patients)
    level = rng.normal(5, 0.8, n_patients)[patient]
    alliance = np.clip(np.round(level + rng.normal(0, 0.4, patient.size), 2), 1, 7)
    symptoms = np.round(80 - 3 * session - 4 * (level - 5) + rng.normal(0, 8, patient.size))
    path = tmp_path / "long.csv"
    pd.DataFrame({"patient": "P" + pd.Series(patient).astype(str), "session": session,
                  "alliance": alliance, "symptoms": symptoms}).to_csv(path, index=False)
    report = analyze(tmp_path, path, "--patient", "patient", "--session", "session", "--symptoms", "symptoms",
                     "--alliance", "alliance")
    assert report["n_patients"] == n_patients and report["n_observations"] == 1_050_000
    assert report["excluded_rows"] == []
