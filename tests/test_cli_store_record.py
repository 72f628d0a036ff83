"""``python -m core store record`` end to end on SQLite and PostgreSQL: a therapist records a session
from a script, every refusal is exit 2 with one sentence, a correction keeps the earlier value, and
``store export`` and ``store audit`` have the row and the entry."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.test_cli_store import env, refused, store  # noqa: F401 - the fixture and the helpers

pytestmark = pytest.mark.slow

BOSS, ANA, BRUNO = "a long supervisor password", "a long password for ana", "a long password for bruno"
ROLE_FLAGS = ["--patient", "paciente", "--session", "sesion", "--symptoms", "oq", "--alliance", "ans",
              "--therapist", "terapeuta", "--alliance-range", "1,7", "--symptoms-range", "0,180"]


def record(env, user, password, *args):
    return store(env, "record", "--dataset", "Clinic", "--user", user, *args, password=password)


def test_store_record_end_to_end(env, tmp_path):
    from tests.test_cli_store import ROOT

    assert store(env, "init").returncode == 0
    assert store(env, "add-user", "head", "--role", "supervisor", new_password=BOSS).returncode == 0
    for name, code, pw in (("ana", "T01 Ana", ANA), ("bruno", "T02 Bruno", BRUNO)):
        made = store(env, "add-user", name, "--role", "therapist", "--therapist-code", code, "--user", "head",
                     password=BOSS, new_password=pw)
        assert made.returncode == 0, made.stderr
    imported = store(env, "import", str(ROOT / "examples" / "visits.csv"), "--dataset", "Clinic", "--user", "head",
                     *ROLE_FLAGS, password=BOSS)
    assert imported.returncode == 0, imported.stderr

    # D039 is Ana's, with sessions 1-3; D001 is Bruno's
    ok = record(env, "ana", ANA, "--patient", "D039", "--session", "4", "--date", "2026-03-02",
                "--set", "alliance=5,5", "--set", "symptoms=71")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary == {"dataset": "Clinic", "patient": "D039", "session": 4.0, "date": "2026-03-02",
                       "action": "recorded", "values": {"alliance": 5.5, "symptoms": 71.0},
                       "therapist": "T01 Ana", "version": 2}

    refused(record(env, "ana", ANA, "--patient", "D039", "--session", "5", "--set", "alliance=8"),
            "The alliance score 8 is outside its valid range 1–7")
    refused(record(env, "ana", ANA, "--patient", "D001", "--session", "9", "--set", "alliance=5"),
            "Patient 'D001' is not among the patients you can record in 'Clinic'")
    refused(record(env, "ana", ANA, "--patient", "D039", "--session", "5", "--set", "bdi=12"),
            "'bdi' is not a measure of the data set 'Clinic'")
    refused(record(env, "ana", ANA, "--patient", "D039", "--session", "4", "--set", "symptoms=72"),
            "already recorded by ana", "correct it")
    refused(record(env, "ana", ANA, "--patient", "D039", "--session", "5", "--set", "symptoms"), "MEASURE=VALUE")
    refused(record(env, "ana", ANA, "--patient", "D039", "--session", "5"), "--set")
    refused(record(env, "ana", "wrong", "--patient", "D039", "--session", "5", "--set", "symptoms=70"),
            "Sign-in refused")
    refused(record(env, "ana", ANA, "--patient", "D039", "--session", "5", "--set", "symptoms=70",
                   "--date", "2999-01-01"), "in the future")
    refused(record(env, "ana", ANA, "--patient", "NEW1", "--session", "1", "--set", "symptoms=70"),
            "must be added as new")

    corrected = record(env, "ana", ANA, "--patient", "D039", "--session", "4", "--set", "symptoms=72",
                       "--correct", "the sheet said 72")
    assert corrected.returncode == 0, corrected.stderr
    assert json.loads(corrected.stdout)["action"] == "corrected"
    assert json.loads(corrected.stdout)["values"] == {"alliance": 5.5, "symptoms": 72.0}
    added = record(env, "bruno", BRUNO, "--patient", "NEW1", "--session", "1", "--set", "symptoms=90", "--new-patient")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["therapist"] == "T02 Bruno"

    out = tmp_path / "ana.csv"
    exported = store(env, "export", "--dataset", "Clinic", "--user", "ana", "--out", str(out), password=ANA)
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_csv(out, encoding="utf-8-sig", dtype={"patient": str})
    row = frame[(frame["patient"] == "D039") & (frame["session"] == 4)]
    assert row[["alliance", "symptoms"]].values.tolist() == [[5.5, 72.0]]
    assert "NEW1" not in set(frame["patient"])
    audit = tmp_path / "audit.csv"
    assert store(env, "audit", "--user", "head", "--out", str(audit), password=BOSS).returncode == 0
    log = pd.read_csv(audit, encoding="utf-8-sig")
    mine = log[log["username"] == "ana"]
    recorded = mine[mine["action"] == "session recorded"]["detail"].tolist()
    assert any("patient D039, session 4 (2026-03-02); alliance 5.5, symptoms 71; version 2; command line" in d
               for d in recorded), recorded
    assert any("reason: the sheet said 72" in d for d in mine[mine["action"] == "session corrected"]["detail"])
