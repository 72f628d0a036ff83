"""``python -m core store`` end to end on SQLite and PostgreSQL: what a clinic's IT runs.

The nightly export has names, addresses, record numbers (nhc), phone numbers and dates of birth in
extra columns and a study column of names: a researcher's export holds none of them, only
pseudonyms, sessions, measures and the columns a supervisor marked as shareable.
"""
from __future__ import annotations

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
