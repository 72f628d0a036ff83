"""``python -m core store`` end to end on SQLite and PostgreSQL: what a clinic's IT runs.

The nightly export has names, addresses, record numbers (nhc), phone numbers and dates of birth in
extra columns and a study column of names: a researcher's export holds none of them, only
pseudonyms, sessions, measures and the columns a supervisor marked as shareable.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

from tests.pg_support import fresh_database, postgres_admin_url

ROOT = Path(__file__).resolve().parents[1]
BOSS_PASSWORD = "a long supervisor password"
RESEARCHER_PASSWORD = "a long researcher password"


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request, tmp_path):
    base = {k: v for k, v in os.environ.items()
            if k not in ("ALLIANCE_DATABASE_URL", "ALLIANCE_PASSWORD", "ALLIANCE_NEW_PASSWORD")}
    base["ALLIANCE_DATA_DIR"] = str(tmp_path / "data")
    if request.param == "sqlite":
        yield base
    else:
        with fresh_database(postgres_admin_url()) as url:
            yield {**base, "ALLIANCE_DATABASE_URL": url}


def store(env, *args, password=None, new_password=None):
    e = dict(env)
    if password is not None:
        e["ALLIANCE_PASSWORD"] = password
    if new_password is not None:
        e["ALLIANCE_NEW_PASSWORD"] = new_password
    return subprocess.run([sys.executable, "-m", "core", "store", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=180)


def refused(result, *words):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in line, line
    for w in words:
        assert w in line, line
    return line


def nightly_export(path: Path) -> dict[str, list[str]]:
    """A records-system export: 12 patients x 4 sessions, identifiers in extra columns."""
    rows, secrets = [], {"names": [], "addresses": [], "nhc": [], "phones": [], "dob": [], "studies": []}
    for p in range(12):
        name, address = f"María López Nº{p}", f"Calle Mayor {p + 10}, 28013 Madrid"
        nhc, phone, dob = 4711000 + p, 612345600 + p, 19800101 + p
        study = ["Juan Pérez (Hospital Sur)", "Ana Gómez (Centro Norte)"][p % 2]
        secrets["names"].append(name)
        secrets["addresses"].append(address)
        secrets["nhc"].append(str(nhc))
        secrets["phones"].append(str(phone))
        secrets["dob"].append(str(dob))
        secrets["studies"].append(study)
        for s in range(1, 5):
            rows.append({"NHC": nhc, "pid": f"HC-{nhc}", "terapeuta": ["Dr Ruiz", "Dra Sanz"][p % 2], "sesion": s,
                         "war": round(4 + 0.1 * s + 0.05 * p, 2), "oq": 80 - 2 * s - p, "nombre": name,
                         "direccion": address, "telefono": phone, "fecha_nacimiento": dob, "study": study,
                         "age": 30 + p, "site": ["north", "south"][p % 2]})
    pd.DataFrame(rows).to_csv(path, index=False)
    return secrets


ROLE_FLAGS = ["--patient", "pid", "--session", "sesion", "--symptoms", "oq", "--alliance", "war",
              "--therapist", "terapeuta"]


def test_store_commands_end_to_end(env, tmp_path):
    data = tmp_path / "nightly.csv"
    secrets = nightly_export(data)
    refused(store(env, "add-user", "boss", "--role", "supervisor", new_password=BOSS_PASSWORD)
            if "ALLIANCE_DATABASE_URL" not in env else store(env, "export", "--dataset", "x", "--user", "boss",
                                                             "--out", str(tmp_path / "x.csv"), password="x"))
    init = store(env, "init")
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["new"] is True
    assert json.loads(store(env, "init").stdout)["new"] is False          # upgrade only, idempotent
    # the first supervisor: no --user while the database has no user; the password only from the environment
    refused(store(env, "add-user", "boss", "--role", "supervisor"), "ALLIANCE_NEW_PASSWORD")
    refused(store(env, "add-user", "boss", "--role", "supervisor", new_password="short"), "8 characters")
    ok = store(env, "add-user", "boss", "--role", "supervisor", new_password=BOSS_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    refused(store(env, "add-user", "eve", "--role", "supervisor", new_password=BOSS_PASSWORD), "--user")
    refused(store(env, "add-user", "eve", "--role", "supervisor", "--user", "boss",
                  password="wrong", new_password=BOSS_PASSWORD), "Sign-in refused")
    ok = store(env, "add-user", "rita", "--role", "researcher", "--user", "boss",
               password=BOSS_PASSWORD, new_password=RESEARCHER_PASSWORD)
    assert ok.returncode == 0, ok.stderr
    refused(store(env, "add-user", "tom", "--role", "therapist", "--user", "boss",
                  password=BOSS_PASSWORD, new_password=BOSS_PASSWORD), "therapist code")
    # no demo accounts in a database made by store init
    refused(store(env, "audit", "--user", "demo-supervisor", "--out", str(tmp_path / "a.csv"), password="demo"),
            "Sign-in refused")

    # the nightly import: preview, then store; researchers may see age and site
    preview = store(env, "import", str(data), "--dataset", "Clinic", "--user", "boss", *ROLE_FLAGS,
                    "--shareable", "age", "--shareable", "site", "--preview", password=BOSS_PASSWORD)
    assert preview.returncode == 0, preview.stderr
    summary = json.loads(preview.stdout)
    assert summary["added"] == 48 and summary["stored"] is False and summary["new_dataset"] is True
    imported = store(env, "import", str(data), "--dataset", "Clinic", "--user", "boss", *ROLE_FLAGS,
                     "--shareable", "age", "--shareable", "site", "--out", str(tmp_path / "import.json"),
                     password=BOSS_PASSWORD)
    assert imported.returncode == 0, imported.stderr
    assert json.loads((tmp_path / "import.json").read_text())["version"] == 1
    again = json.loads(store(env, "import", str(data), "--dataset", "Clinic", "--user", "boss", *ROLE_FLAGS,
                             password=BOSS_PASSWORD).stdout)              # the next night: nothing new
    assert again["added"] == 0 and again["unchanged"] == 48 and again["version"] == 2
    refused(store(env, "import", str(data), "--dataset", "Clinic", "--user", "rita", *ROLE_FLAGS,
                  password=RESEARCHER_PASSWORD), "supervisor")
    refused(store(env, "import", str(data), "--dataset", "Clinic", "--user", "boss", *ROLE_FLAGS,
                  "--shareable", "nhc_typo", password=BOSS_PASSWORD), "cannot be shared")

    # the researcher's export: pseudonyms, sessions, measures, age and site; no identifier at all
    out = tmp_path / "research.csv"
    exported = store(env, "export", "--dataset", "Clinic", "--user", "rita", "--out", str(out),
                     password=RESEARCHER_PASSWORD)
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_csv(out, encoding="utf-8-sig", dtype=str)
    assert list(frame.columns) == ["patient", "therapist", "session", "alliance", "symptoms", "study", "age", "site"]
    assert frame["patient"].str.fullmatch(r"P-[0-9a-f]{12}").all() and frame["patient"].nunique() == 12
    assert frame["therapist"].str.fullmatch(r"T-[0-9a-f]{12}").all()
    assert frame["study"].str.fullmatch(r"S-[0-9a-f]{12}").all() and frame["study"].nunique() == 2
    text = out.read_text(encoding="utf-8-sig")
    forbidden = [*secrets["names"], *secrets["addresses"], *secrets["nhc"], *secrets["phones"], *secrets["dob"],
                 "Juan", "Pérez", "Gómez", "Hospital", "Calle", "Madrid", "Ruiz", "Sanz", "HC-", "nombre",
                 "direccion", "telefono", "fecha", "NHC"]
    for value in forbidden:
        assert value not in text, value
    # the supervisor's export has everything; the audit log records both exports
    full = tmp_path / "full.csv"
    assert store(env, "export", "--dataset", "Clinic", "--user", "boss", "--out", str(full),
                 password=BOSS_PASSWORD).returncode == 0
    assert secrets["names"][0] in full.read_text(encoding="utf-8-sig")
    audit = tmp_path / "audit.csv"
    assert store(env, "audit", "--user", "boss", "--out", str(audit), password=BOSS_PASSWORD).returncode == 0
    log = pd.read_csv(audit, encoding="utf-8-sig")
    assert {"upload", "export", "user created", "sign-in", "sign-in failed"} <= set(log["action"])
    assert BOSS_PASSWORD not in audit.read_text(encoding="utf-8-sig")
    refused(store(env, "audit", "--user", "rita", "--out", str(audit), password=RESEARCHER_PASSWORD), "supervisor")
    refused(store(env, "export", "--dataset", "Nope", "--user", "rita", "--out", str(out),
                  password=RESEARCHER_PASSWORD), "Nope")
    refused(store(env, "export", "--dataset", "Clinic", "--user", "rita", "--out", str(out)), "ALLIANCE_PASSWORD")


# ------------------------------------------------------------------------------ backup and restore (issue 25)

@contextlib.contextmanager
def another_database(env, tmp_path, name: str):
    """An environment whose database is a second, empty one of the same kind."""
    if "ALLIANCE_DATABASE_URL" in env:
        with fresh_database(postgres_admin_url()) as url:
            yield {**env, "ALLIANCE_DATABASE_URL": url}
    else:
        yield {**env, "ALLIANCE_DATA_DIR": str(tmp_path / name)}


THERAPIST_PASSWORD = "a long therapist password"
HOSTILE_IDS = ['=HYPERLINK("http://x/")', "+5491100", "-P3", "@SUM(A1)", "José"]


def hostile_export(path: Path) -> None:
    """IDs and codes a spreadsheet would run as formulas, and a column of the file named 'row'."""
    rows = []
    for k, pid in enumerate(HOSTILE_IDS):
        for s in (1, 2, 3):
            rows.append({"pid": pid, "terapeuta": "+T1 Ana" if k % 2 == 0 else "@T2", "sesion": s,
                         "war": round(4.2 + 0.31 * k + 0.01 * s, 2), "oq": 70 - 2 * s - k, "age": 40 + k,
                         "nota": ["=1+1", "-x", "ok"][s - 1], "row": 900 + 3 * k + s})
    pd.DataFrame(rows).to_csv(path, index=False)


def set_up_clinic(env, data: Path) -> None:
    assert store(env, "init").returncode == 0
    assert store(env, "add-user", "boss", "--role", "supervisor", new_password=BOSS_PASSWORD).returncode == 0
    for name, role, extra, pw in (("ana", "therapist", ["--therapist-code", "+T1 Ana"], THERAPIST_PASSWORD),
                                  ("rita", "researcher", [], RESEARCHER_PASSWORD)):
        ok = store(env, "add-user", name, "--role", role, *extra, "--user", "boss", password=BOSS_PASSWORD,
                   new_password=pw)
        assert ok.returncode == 0, ok.stderr
    ok = store(env, "import", str(data), "--dataset", "Clinic", "--user", "boss", *ROLE_FLAGS, "--shareable", "age",
               password=BOSS_PASSWORD)
    assert ok.returncode == 0, ok.stderr


def exports(env, tmp_path, tag: str) -> dict[str, bytes]:
    """What each role exports as CSV."""
    out = {}
    for name, pw in (("boss", BOSS_PASSWORD), ("ana", THERAPIST_PASSWORD), ("rita", RESEARCHER_PASSWORD)):
        path = tmp_path / f"{tag}_{name}.csv"
        done = store(env, "export", "--dataset", "Clinic", "--user", name, "--out", str(path), password=pw)
        assert done.returncode == 0, done.stderr
        out[name] = path.read_bytes()
    return out


def test_export_as_backup_then_restore_gives_the_same_data_set(env, tmp_path):
    data = tmp_path / "hostile.csv"
    hostile_export(data)
    set_up_clinic(env, data)
    before = exports(env, tmp_path, "before")
    # the CSV export is for spreadsheets, and says so: neutralised, with the row numbers as a column
    csv_summary = json.loads(store(env, "export", "--dataset", "Clinic", "--user", "boss", "--out",
                                   str(tmp_path / "x.csv"), password=BOSS_PASSWORD).stdout)
    assert csv_summary["format"] == "csv" and "spreadsheets" in csv_summary["note"]
    assert "'=HYPERLINK" in before["boss"].decode("utf-8-sig") and "'+T1 Ana" in before["ana"].decode("utf-8-sig")
    backup = tmp_path / "clinic.backup"
    made = store(env, "export", "--format", "backup", "--dataset", "Clinic", "--user", "boss", "--out", str(backup),
                 password=BOSS_PASSWORD)
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["format"] == "backup" and summary["counts"]["observations"] == 15
    assert "not for spreadsheets" in summary["note"]
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    refused(store(env, "export", "--format", "backup", "--user", "ana", "--out", str(tmp_path / "a.backup"),
                  password=THERAPIST_PASSWORD), "supervisor")
    with another_database(env, tmp_path, "restored") as env2:
        assert store(env2, "init").returncode == 0
        restored = store(env2, "import", "--restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        result = json.loads(restored.stdout)
        assert result["restored"] is True and result["observations"] == 15 and result["users_added"] == 3
        # the same patients, sessions, scores and therapist access, as each role exports them
        assert exports(env2, tmp_path, "after") == before
        # a second restore of the same data set is refused in one sentence, and so is one without --user
        refused(store(env2, "import", "--restore", str(backup)), "--user")
        refused(store(env2, "import", "--restore", str(backup), "--user", "boss", password=BOSS_PASSWORD),
                "already has a data set named 'Clinic'")
        refused(store(env2, "import", "--restore", str(backup), "--dataset", "X", "--user", "boss",
                      password=BOSS_PASSWORD), "--restore takes the backup file alone")
        audit = tmp_path / "audit2.csv"
        assert store(env2, "audit", "--user", "boss", "--out", str(audit), password=BOSS_PASSWORD).returncode == 0
        assert "restore" in set(pd.read_csv(audit, encoding="utf-8-sig")["action"])
    # the whole database, audit log included
    whole = tmp_path / "all.backup"
    assert store(env, "export", "--format", "backup", "--user", "boss", "--out", str(whole),
                 password=BOSS_PASSWORD).returncode == 0
    with another_database(env, tmp_path, "restored_all") as env3:
        assert store(env3, "init").returncode == 0
        restored = store(env3, "import", "--restore", str(whole), "--user", "boss", password=BOSS_PASSWORD)
        assert restored.returncode == 0, restored.stderr
        assert exports(env3, tmp_path, "after_all") == before
        audit = tmp_path / "audit3.csv"
        assert store(env3, "audit", "--user", "boss", "--out", str(audit), password=BOSS_PASSWORD).returncode == 0
        actions = pd.read_csv(audit, encoding="utf-8-sig")["action"].tolist()
        assert {"user created", "upload", "export", "restore"} <= set(actions)


def test_a_user_name_with_line_breaks_cannot_forge_an_audit_line(env, tmp_path):
    assert store(env, "init").returncode == 0
    assert store(env, "add-user", "boss", "--role", "supervisor", new_password=BOSS_PASSWORD).returncode == 0
    forged = "eve\r\n2026-12-01 09:00:00+00:00,boss,supervisor,export,Clinic (command line; 48 rows)\u2028x"
    refused(store(env, "audit", "--user", forged, "--out", str(tmp_path / "x.csv"), password="guess"),
            "Sign-in refused")
    audit = tmp_path / "audit.csv"
    assert store(env, "audit", "--user", "boss", "--out", str(audit), password=BOSS_PASSWORD).returncode == 0
    lines = audit.read_bytes().decode("utf-8-sig").split("\r\n")
    assert lines[-1] == "" and len(lines) - 2 == len(pd.read_csv(audit, encoding="utf-8-sig"))  # one line each
    assert not any(line.startswith("2026-12-01") for line in lines)
    assert "\n" not in "".join(lines) and "\u2028" not in "".join(lines)
    failed = [line for line in lines if ",sign-in failed," in line]
    assert len(failed) == 1 and "eve\\r\\n2026-12-01 09:00:00+00:00" in failed[0] and "\\u2028x" in failed[0]


def test_a_read_only_database_is_one_sentence_not_an_internal_error(env, tmp_path):
    assert store(env, "init").returncode == 0
    assert store(env, "add-user", "boss", "--role", "supervisor", new_password=BOSS_PASSWORD).returncode == 0
    if "ALLIANCE_DATABASE_URL" in env:  # PostgreSQL: every transaction read-only
        import sqlalchemy as sa

        url = sa.engine.make_url(env["ALLIANCE_DATABASE_URL"])
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on')
        admin.dispose()
        read_only = env
    else:  # SQLite opened read-only (a read-only mount)
        path = Path(env["ALLIANCE_DATA_DIR"]) / "clinic.db"
        read_only = {**env, "ALLIANCE_DATABASE_URL": f"sqlite:///file:{path}?mode=ro&uri=true"}
    line = refused(store(read_only, "audit", "--user", "boss", "--out", str(tmp_path / "a.csv"),
                         password=BOSS_PASSWORD), "read-only", "Nothing was changed")
    assert "internal error" not in line and "bug" not in line
