"""``python -m core store import|export --format fhir`` and ``python -m core summary`` end to end (SQLite
and PostgreSQL): the round trip through the clinic database, role-scoped and audited exports,
a broken bundle's resources listed, hostile bundles refused in one line, the contract's PDF."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests import fhir_support as fs
from tests.test_cli_store import BOSS_PASSWORD, ROOT, refused, store
from tests.test_cli_store import env  # noqa: F401 - the fixture (SQLite, then PostgreSQL)

pytestmark = pytest.mark.slow
THERAPIST_PASSWORD = "a long therapist password"
ROLE_FLAGS = ["--patient", "paciente", "--session", "sesion", "--symptoms", "oq", "--alliance", "ans",
              "--therapist", "terapeuta"]


def ok(result) -> dict:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _clinic(env, tmp_path):
    ok(store(env, "init"))
    ok(store(env, "add-user", "boss", "--role", "supervisor", new_password=BOSS_PASSWORD))
    ok(store(env, "add-user", "ana", "--role", "therapist", "--therapist-code", "T03 Carla", "--user", "boss",
             password=BOSS_PASSWORD, new_password=THERAPIST_PASSWORD))
    ok(store(env, "import", str(ROOT / "examples" / "visits.csv"), "--dataset", "Clinic", "--user", "boss",
             *ROLE_FLAGS, password=BOSS_PASSWORD))


def _csv(env, dataset, tmp_path):
    out = tmp_path / f"{dataset}.csv"
    ok(store(env, "export", "--dataset", dataset, "--user", "boss", "--out", str(out), password=BOSS_PASSWORD))
    return pd.read_csv(out, dtype={"patient": str})


def test_fhir_round_trip_through_the_clinic_database(env, tmp_path):
    _clinic(env, tmp_path)
    bundle = tmp_path / "clinic.json"
    summary = ok(store(env, "export", "--dataset", "Clinic", "--user", "boss", "--format", "fhir",
                       "--out", str(bundle), password=BOSS_PASSWORD))
    assert summary["format"] == "fhir" and summary["observations"] > 0
    back = ok(store(env, "import", str(bundle), "--format", "fhir", "--dataset", "Back", "--user", "boss",
                    password=BOSS_PASSWORD))
    assert back["stored"] and back["excluded_rows"] == [] and back["n_resources"] == summary["observations"]
    a, b = _csv(env, "Clinic", tmp_path), _csv(env, "Back", tmp_path)
    cols = ["patient", "therapist", "session", "alliance", "symptoms"]
    pd.testing.assert_frame_equal(a[cols], b[cols])  # same patients, therapists, sessions, scores
    # importing the same bundle again changes nothing
    again = ok(store(env, "import", str(bundle), "--format", "fhir", "--dataset", "Back", "--user", "boss",
                     "--preview", password=BOSS_PASSWORD))
    assert again["added"] == 0 and again["changed_rows"] == 0 and again["unchanged"] == len(a)
    audit = tmp_path / "audit.csv"
    ok(store(env, "audit", "--user", "boss", "--out", str(audit), password=BOSS_PASSWORD))
    log = pd.read_csv(audit)
    assert log["detail"].str.contains("FHIR bundle, all patients").any()


def test_fhir_export_is_role_scoped(env, tmp_path):
    _clinic(env, tmp_path)
    out = tmp_path / "ana.json"
    ok(store(env, "export", "--dataset", "Clinic", "--user", "ana", "--format", "fhir", "--out", str(out),
             password=THERAPIST_PASSWORD))
    entries = json.loads(out.read_text())["entry"]
    performers = {e["resource"]["performer"][0]["identifier"]["value"] for e in entries}
    assert performers == {"T03 Carla"}
    other = refused(store(env, "export", "--dataset", "Clinic", "--user", "ana", "--format", "fhir",
                          "--patient", "D001", "--out", str(out), password=THERAPIST_PASSWORD), "D001")
    assert "no patient" in other


def test_broken_bundle_import_lists_every_bad_resource(env, tmp_path):
    _clinic(env, tmp_path)
    data, bad, _good = fs.broken_bundle()
    path = tmp_path / "broken.json"
    path.write_bytes(data)
    report = ok(store(env, "import", str(path), "--format", "fhir", "--dataset", "Record", "--user", "boss",
                      "--alliance-code", f"{fs.CODES}|wai", "--symptoms-code", "oq", "--symptoms-code",
                      fs.OQ45_QUESTIONNAIRE, "--alliance-range", "1,7", "--symptoms-range", "0,180",
                      password=BOSS_PASSWORD))
    assert {r["row"] for r in report["excluded_rows"]} == set(bad)
    assert report["added"] == 4 and report["stored"]


@pytest.mark.parametrize("maker", [fs.fhir_deep_nesting, fs.fhir_over_size])
def test_hostile_bundle_import_is_one_line(env, tmp_path, maker):
    _clinic(env, tmp_path)
    path = maker(tmp_path)
    refused(store(env, "import", str(path), "--format", "fhir", "--dataset", "X", "--user", "boss",
                  password=BOSS_PASSWORD), path.name)


def test_csv_import_still_needs_its_role_flags(env, tmp_path):
    _clinic(env, tmp_path)
    refused(store(env, "import", str(tmp_path / "x.json"), "--dataset", "X", "--user", "boss",
                  password=BOSS_PASSWORD), "--patient", "--format fhir")


def _summary(*args, env=None):
    return subprocess.run([sys.executable, "-m", "core", "summary", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def _text(pdf: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("lang, status", [("en", "Not on track"), ("es", "Fuera de curso")])
def test_summary_command_writes_the_contracts_pdf(tmp_path, lang, status):
    out = tmp_path / "summary.pdf"
    result = _summary(str(ROOT / "examples" / "visits.csv"), *ROLE_FLAGS, "--alliance-range", "1,7",
                      "--patient-id", "D003", "--lang", lang, "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = _text(out)
    assert "D003" in text and status in text
    assert "100" in text  # D003's latest symptom score (session 8)
    assert out.read_bytes().count(b"/Type /Page\n") + out.read_bytes().count(b"/Type /Page ") == 1


def test_summary_command_from_the_database_is_audited(env, tmp_path):
    _clinic(env, tmp_path)
    out = tmp_path / "s.pdf"
    result = _summary("--dataset", "Clinic", "--user", "ana", "--patient-id", "D003", "--out", str(out),
                      env={**env, "ALLIANCE_PASSWORD": THERAPIST_PASSWORD})
    assert result.returncode == 0, result.stderr
    assert "D003" in _text(out)
    refused(_summary("--dataset", "Clinic", "--user", "ana", "--patient-id", "D001", "--out", str(out),
                     env={**env, "ALLIANCE_PASSWORD": THERAPIST_PASSWORD}), "D001")
    audit = tmp_path / "audit.csv"
    ok(store(env, "audit", "--user", "boss", "--out", str(audit), password=BOSS_PASSWORD))
    log = pd.read_csv(audit)
    assert ((log["username"] == "ana") & log["detail"].str.contains("D003 summary")).any()
