"""The clinic database (core.store), on SQLite and on a real PostgreSQL server.

Every test runs twice: on a fresh SQLite file and on a fresh PostgreSQL database (server from
``ALLIANCE_TEST_POSTGRES_URL``, started by ``scripts/test.sh``; without it the PostgreSQL half is
skipped locally and fails under CI).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import bcrypt
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import InputError
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_csv_bytes
from core.intake.validation import ValidatedData, validate_table
from core.store import (
    DEMO_DATASET,
    AccessDenied,
    ClinicStore,
    NoSuchDataset,
    NoSuchPatient,
    Role,
    UploadConflict,
    metadata,
)
from core.store.errors import CONFLICT_MESSAGE

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def clinic(store):
    """The store seeded with the demo, the demo users signed in, and the data set 'Clinic'."""
    store.seed_demo()
    people = {name: store.authenticate(f"demo-{name}", "demo")
              for name in ("supervisor", "therapist-ana", "therapist-bruno", "researcher")}
    result = store.apply_upload(people["supervisor"],
                                store.preview_upload(people["supervisor"], "Clinic", validated(first_file())))
    assert result.added == 28 and result.version == 1
    return store, people


def validated(frame: pd.DataFrame, source: str = "clinic.csv") -> ValidatedData:
    """A table through the same reading and validation as an upload."""
    raw = read_csv_bytes(frame.to_csv(index=False).encode("utf-8"), source=source)
    cols = set(frame.columns)
    mapping = ColumnMapping(patient="patient", session="session",
                            therapist="therapist" if "therapist" in cols else None,
                            alliance="alliance" if "alliance" in cols else None,
                            symptoms="symptoms" if "symptoms" in cols else None)
    return validate_table(raw, mapping, ranges={"alliance": (1, 7), "symptoms": (0, 180)})


THERAPIST_OF = {"A01": "T01 Ana", "A02": "T01 Ana", "A03": "T01 Ana", "B01": "T02 Bruno",
                "B02": "T02 Bruno", "C01": "T03 Carla"}
ANA_PATIENTS = {"A01", "A02", "A03", "E01"}
NOT_ANA = {"B01", "B02", "C01"}           # patients with no session with Ana


def first_file() -> pd.DataFrame:
    rows = []
    for k, (p, t) in enumerate(THERAPIST_OF.items()):
        for s in range(1, 5):
            rows.append({"patient": p, "therapist": t, "session": s, "alliance": round(4 + 0.1 * k + 0.05 * s, 2),
                         "symptoms": 80 - k - 2 * s, "note": f"note on {p} at session {s}", "age": 30 + k})
    for s in range(1, 5):  # E01 moved from Ana to Bruno after session 2
        rows.append({"patient": "E01", "therapist": "T01 Ana" if s <= 2 else "T02 Bruno", "session": s,
                     "alliance": 5.0, "symptoms": 60 - s, "note": "moved", "age": 41})
    rows.append({"patient": "B01", "therapist": "T02 Bruno", "session": 5, "alliance": "abc",
                 "symptoms": "", "note": "", "age": 31})                       # excluded: no usable score
    rows.append({"patient": "B02", "therapist": "T02 Bruno", "session": 5, "alliance": 4.0,
                 "symptoms": 70, "note": "", "age": 32})                       # excluded: conflicting
    rows.append({"patient": "B02", "therapist": "T02 Bruno", "session": 5, "alliance": 4.5,
                 "symptoms": 71, "note": "", "age": 32})
    return pd.DataFrame(rows)


def second_file() -> pd.DataFrame:
    """Overlaps the first: A01, B01, C01 the same; A02 session 2 alliance and session 3 note changed;
    B01 session 5 and patient D01 (3 sessions) new; A03, B02 and E01 absent (must stay)."""
    first = first_file().iloc[:28]
    keep = first[first["patient"].isin(["A01", "A02", "B01", "C01"])].copy()
    keep.loc[(keep["patient"] == "A02") & (keep["session"] == 2), "alliance"] = 6.5
    keep.loc[(keep["patient"] == "A02") & (keep["session"] == 3), "note"] = "new note"
    new = [{"patient": "B01", "therapist": "T02 Bruno", "session": 5, "alliance": 4.9, "symptoms": 66,
            "note": "", "age": 33}]
    new += [{"patient": "D01", "therapist": "T01 Ana", "session": s, "alliance": 5.5, "symptoms": 50 - s,
             "note": "new patient", "age": 25} for s in (1, 2, 3)]
    return pd.concat([keep, pd.DataFrame(new)], ignore_index=True)


def key_values(data: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("patient", "session", "therapist", "alliance", "symptoms") if c in data.columns]
    out = data[cols].copy()
    for col in cols:
        out[col] = (pd.to_numeric(out[col]).astype(float) if col in ("session", "alliance", "symptoms")
                    else out[col].astype(str).astype(object))
    return out.sort_values(["patient", "session"]).reset_index(drop=True)


def cells(*frames: pd.DataFrame) -> list[str]:
    out = []
    for frame in frames:
        out += [str(c) for c in frame.columns]
        for col in frame.columns:
            out += [str(v) for v in frame[col].tolist()]
    return out


# ------------------------------------------------------------------------------ migrations
def test_migrations_create_the_schema_from_empty_and_reopen(db_url):
    first = ClinicStore(db_url, bcrypt_rounds=4)
    tables = set(sa.inspect(first.engine).get_table_names())
    assert {"users", "datasets", "observations", "uploads", "excluded_rows", "audit_log", "settings",
            "session_history", "kiosk_sessions", "alembic_version"} <= tables
    with first.engine.connect() as conn:
        from alembic.script import ScriptDirectory

        from core.store import alembic_config

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert differences == [], "the migrations and core.store.schema.metadata disagree"
    secret = first._secret
    first.close()
    again = ClinicStore(db_url, bcrypt_rounds=4)  # already at head: nothing to do, same secret
    assert again._secret == secret and len(secret) == 32
    again.close()


def test_several_processes_opening_an_empty_database_at_once(db_url):
    errors, secrets_seen = [], []

    def open_it():
        try:
            s = ClinicStore(db_url, bcrypt_rounds=4)
            secrets_seen.append(s._secret)
            s.seed_demo()
            s.close()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(secrets_seen)) == 1
    s = ClinicStore(db_url, bcrypt_rounds=4)
    assert len(s.demo_users()) == 4
    sup = s.authenticate("demo-supervisor", "demo")
    assert s.dataset_names(sup) == [DEMO_DATASET]
    assert [a for a in s.audit_log(sup)["action"] if a == "upload"] == ["upload"]
    s.close()


def test_a_first_open_waits_for_another_process_setting_up_the_file(tmp_path):
    """The flaky first open: SQLite answers ``PRAGMA journal_mode = WAL`` "database is locked" at
    once, without waiting, while another connection writes the new file in its rollback journal
    (as happens when several processes open a fresh clinic database together). The open waits."""
    path = tmp_path / "clinic.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE first_writer (x)")
    release = threading.Timer(3.0, lambda: other.execute("COMMIT"))
    release.start()
    try:
        started = time.monotonic()
        opened = ClinicStore(f"sqlite:///{path}", bcrypt_rounds=4)
        assert time.monotonic() - started >= 2.5
        assert len(opened._secret) == 32
        with opened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        opened.close()
    finally:
        release.join()
        other.close()


def test_default_location_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("ALLIANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "nested" / "data"))
    s = ClinicStore.from_env(bcrypt_rounds=4)
    assert (tmp_path / "nested" / "data" / "clinic.db").is_file()
    s.close()
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    ClinicStore.from_env(bcrypt_rounds=4).close()
    assert (tmp_path / "other.db").is_file()


def test_core_storage_does_not_import_streamlit():
    code = "import sys, core.store; sys.exit(1 if 'streamlit' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ------------------------------------------------------------------------------ users
def test_users_passwords_roles_and_deactivation(store):
    boss = store.create_user(None, "Boss", PASSWORD, Role.SUPERVISOR, display_name="Dr Boss")
    assert boss.username == "boss" and boss.role is Role.SUPERVISOR and not boss.is_demo
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM users WHERE username = 'boss'")).scalar_one()
    assert stored != PASSWORD and PASSWORD not in stored and stored.startswith("$2b$")
    assert bcrypt.checkpw(PASSWORD.encode(), stored.encode())

    assert store.authenticate("boss", PASSWORD) == boss
    assert store.authenticate(" BOSS ", PASSWORD) == boss           # user names ignore case
    assert store.authenticate("boss", "wrong password") is None
    assert store.authenticate("nobody", PASSWORD) is None

    with pytest.raises(AccessDenied):                                # first set-up is over
        store.create_user(None, "intruder", PASSWORD, Role.SUPERVISOR)
    ana = store.create_user(boss, "ana", PASSWORD, "therapist", therapist_code=" T01 Ana ")
    assert ana.therapist_code == "T01 Ana"
    res = store.create_user(boss, "res", PASSWORD, Role.RESEARCHER, email="Res@Uni.example")
    for actor in (ana, res):
        with pytest.raises(AccessDenied):
            store.create_user(actor, "new", PASSWORD, Role.SUPERVISOR)
        with pytest.raises(AccessDenied):
            store.users(actor)
        with pytest.raises(AccessDenied):
            store.deactivate(actor, "boss")
        with pytest.raises(AccessDenied):
            store.set_password(actor, "boss", "another password")
    with pytest.raises(InputError, match="therapist code"):
        store.create_user(boss, "noc", PASSWORD, Role.THERAPIST)
    with pytest.raises(InputError, match="at least 8"):
        store.create_user(boss, "short", "abc", Role.RESEARCHER)
    with pytest.raises(InputError, match="already exists"):
        store.create_user(boss, "ANA", PASSWORD, Role.RESEARCHER)
    with pytest.raises(InputError, match="72 bytes"):
        store.create_user(boss, "long", "x" * 73, Role.RESEARCHER)
    assert [u.username for u in store.users(boss)] == ["ana", "boss", "res"]

    store.set_password(ana, "ana", "my own new password")            # users change their own
    assert store.authenticate("ana", PASSWORD) is None
    assert store.authenticate("ana", "my own new password") == ana

    store.deactivate(boss, "ana")
    assert store.authenticate("ana", "my own new password") is None  # inactive: no sign-in
    with pytest.raises(AccessDenied, match="not active"):           # nor an old browser session
        store.dataset_names(ana)
    with pytest.raises(InputError, match="last active supervisor"):
        store.deactivate(boss, "boss")
    store.reactivate(boss, "ana")
    assert store.authenticate("ana", "my own new password") == ana

    # single sign-on: the identity is a registered user name or e-mail
    assert store.user_for_identity("res@uni.example") == res
    assert store.user_for_identity("RES") == res
    assert store.user_for_identity("stranger@else.example") is None


def test_a_forged_role_gets_nothing_more(clinic):
    """The store reads the role from the database, not from the User object it is given."""
    store, people = clinic
    forged = dataclasses.replace(people["therapist-ana"], role=Role.SUPERVISOR, therapist_code="T02 Bruno")
    data = store.load(forged, "Clinic").data
    assert set(data["therapist"]) == {"T01 Ana"}
    with pytest.raises(AccessDenied):
        store.audit_log(forged)
    stranger = dataclasses.replace(people["supervisor"], id=10_000)
    with pytest.raises(AccessDenied):
        store.load(stranger, "Clinic")


# ------------------------------------------------------------------------------ uploads
def test_overlapping_upload_preview_and_apply(clinic):
    store, people = clinic
    sup = people["supervisor"]
    before = store.load(sup, "Clinic")
    assert len(before.data) == 28 and len(before.excluded) == 3
    assert any("B02" in r for r in before.excluded["reason"])         # reasons quote IDs: supervisors only
    assert any("more than one therapist" in n for n in before.notes)

    preview = store.preview_upload(sup, "Clinic", validated(second_file(), source="clinic-june.csv"))
    assert preview.base_version == 1 and not preview.is_new_dataset
    assert len(preview.added) == 4
    assert set(zip(preview.added["patient"], preview.added["session"])) == {("B01", 5), ("D01", 1), ("D01", 2),
                                                                             ("D01", 3)}
    assert preview.changed_rows == 2 and preview.unchanged == 14 and preview.kept == 12
    changed = preview.changed.set_index(["patient", "session", "column"])
    assert len(changed) == 2
    assert changed.loc[("A02", 2, "alliance"), "old"] == pytest.approx(4.2)
    assert changed.loc[("A02", 2, "alliance"), "new"] == 6.5
    assert changed.loc[("A02", 3, "note"), ["old", "new"]].tolist() == ["note on A02 at session 3", "new note"]
    assert store.dataset_version(sup, "Clinic") == 1                  # a preview writes nothing

    result = store.apply_upload(sup, preview)
    assert (result.added, result.changed, result.unchanged, result.kept, result.version) == (4, 2, 14, 12, 2)
    after = store.load(sup, "Clinic")
    data = after.data
    assert len(data) == 32 and not data.duplicated(["patient", "session"]).any()
    row = data[(data["patient"] == "A02") & (data["session"] == 2)].iloc[0]
    assert row["alliance"] == 6.5
    assert data[(data["patient"] == "A02") & (data["session"] == 3)]["note"].item() == "new note"
    for p in ("A03", "B02", "E01"):                                   # not in the new file: still there
        assert len(data[data["patient"] == p]) == 4
    assert key_values(data[data["patient"] == "A03"]).equals(key_values(before.data[before.data["patient"] == "A03"]))
    assert after.source == "clinic-june.csv" and len(after.excluded) == 0   # the last upload's rows left out
    assert list(data.columns[:6]) == ["patient", "therapist", "session", "alliance", "symptoms", "row"]
    assert data["session"].dtype == np.int64

    again = store.preview_upload(sup, "Clinic", validated(second_file()))
    assert (len(again.added), again.changed_rows, again.unchanged, again.base_version) == (0, 0, 20, 2)
    with pytest.raises(UploadConflict, match="preview again"):       # the old preview is stale now
        store.apply_upload(sup, preview)
    history = store.uploads(sup, "Clinic")
    assert history["added"].tolist() == [4, 28] and history["version"].tolist() == [2, 1]

    other_columns = second_file().drop(columns=["alliance"])
    with pytest.raises(InputError, match="Map the same columns"):
        store.preview_upload(sup, "Clinic", validated(other_columns))
    for actor in (people["therapist-ana"], people["researcher"]):
        with pytest.raises(AccessDenied):
            store.preview_upload(actor, "Clinic", validated(second_file()))
        with pytest.raises(AccessDenied):
            store.apply_upload(actor, again)


def test_non_integer_sessions_round_trip(clinic):
    store, people = clinic
    sup = people["supervisor"]
    frame = pd.DataFrame({"patient": ["X1", "X1", "X2"], "session": [1, 1.5, 2], "symptoms": [10, 11, 12]})
    store.apply_upload(sup, store.preview_upload(sup, "Half sessions", validated(frame)))
    data = store.load(sup, "Half sessions").data
    assert data["session"].tolist() == [1.0, 1.5, 2.0] and data["session"].dtype == float
    assert "therapist" not in data.columns and "alliance" not in data.columns
    assert NoSuchDataset is not None
    with pytest.raises(NoSuchDataset):                                # no therapist column: no therapist rows
        store.load(people["therapist-ana"], "Half sessions")


def test_a_failing_upload_changes_nothing(clinic, monkeypatch):
    store, people = clinic
    sup = people["supervisor"]
    before = store.load(sup, "Clinic").data
    preview = store.preview_upload(sup, "Clinic", validated(second_file()))

    def fail():
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr("core.store.uploads._test_pause", fail)             # fails after part of the rows
    with pytest.raises(RuntimeError, match="simulated"):
        store.apply_upload(sup, preview)
    pd.testing.assert_frame_equal(store.load(sup, "Clinic").data, before)
    assert store.dataset_version(sup, "Clinic") == 1
    assert len(store.uploads(sup, "Clinic")) == 1
    monkeypatch.undo()
    assert store.apply_upload(sup, preview).version == 2              # the same preview still applies


# ------------------------------------------------------------------------------ roles
def test_a_therapist_gets_only_their_patients_everywhere(clinic):
    store, people = clinic
    sup, ana = people["supervisor"], people["therapist-ana"]
    store.apply_upload(sup, store.preview_upload(sup, "Clinic", validated(second_file())))
    store.apply_upload(sup, store.preview_upload(sup, "Bruno only", validated(
        first_file().query("therapist == 'T02 Bruno'").iloc[:8])))
    # an upload whose rows left out quote other patients' IDs
    bad = second_file()
    bad.loc[len(bad)] = {"patient": "C01", "therapist": "T03 Carla", "session": 9, "alliance": "x",
                         "symptoms": "", "note": "about C01", "age": 1}
    store.apply_upload(sup, store.preview_upload(sup, "Clinic", validated(bad)))

    assert store.dataset_names(ana) == [DEMO_DATASET, "Clinic"]        # not "Bruno only"
    with pytest.raises(NoSuchDataset):
        store.load(ana, "Bruno only")
    got = store.load(ana, "Clinic")
    assert len(got.data) and (got.data["therapist"] == "T01 Ana").all()
    assert set(got.data["patient"]) == ANA_PATIENTS | {"D01"}
    assert got.data.loc[got.data["patient"] == "E01", "session"].tolist() == [1, 2]   # Ana's sessions only
    assert got.excluded.empty and got.notes == ()
    ids = store.patient_ids(ana, "Clinic")
    assert set(ids) == ANA_PATIENTS | {"D01"}
    everything = cells(got.data, got.excluded) + list(ids) + list(got.notes) + [got.source]
    for p in NOT_ANA:
        assert not any(p in c for c in everything), p
    for p in NOT_ANA:                                                  # by "URL" or widget value
        with pytest.raises(NoSuchPatient) as err:
            store.patient_sessions(ana, "Clinic", p)
        with pytest.raises(NoSuchPatient) as err_missing:
            store.patient_sessions(ana, "Clinic", "NO-SUCH-ID")
        assert str(err.value).replace(p, "?") == str(err_missing.value).replace("NO-SUCH-ID", "?")
    assert set(store.patient_sessions(ana, "Clinic", "A02")["patient"]) == {"A02"}
    demo = store.load(ana, DEMO_DATASET).data
    assert set(demo["therapist"]) == {"T01 Ana"}
    for call in (lambda: store.uploads(ana, "Clinic"), lambda: store.audit_log(ana), lambda: store.users(ana)):
        with pytest.raises(AccessDenied):
            call()
    bruno = store.load(people["therapist-bruno"], "Clinic").data
    assert set(bruno["therapist"]) == {"T02 Bruno"} and not (set(bruno["patient"]) & {"A01", "A02", "A03", "D01"})
    supervisor_view = store.load(sup, "Clinic")
    assert {"A01", "B01", "C01"} <= set(supervisor_view.data["patient"]) and len(supervisor_view.excluded) == 1


def test_a_researcher_never_sees_a_real_id_or_free_text(clinic):
    store, people = clinic
    sup, res = people["supervisor"], people["researcher"]
    real = store.load(sup, "Clinic").data
    got = store.load(res, "Clinic")
    data = got.data
    assert len(data) == len(real) and data["patient"].nunique() == real["patient"].nunique()
    assert data["therapist"].nunique() == real["therapist"].nunique()
    assert data["patient"].str.fullmatch(r"P-[0-9a-f]{12}").all()
    assert data["therapist"].str.fullmatch(r"T-[0-9a-f]{12}").all()
    assert "note" not in data.columns                                  # free text dropped
    assert "age" not in data.columns and "row" not in data.columns     # nothing shared unless marked
    assert got.excluded.empty and got.notes == ()
    forbidden = set(real["patient"]) | set(real["therapist"]) | {"Ana", "Bruno", "Carla"}
    everything = cells(data, got.excluded) + list(got.notes) + [got.source] + store.patient_ids(res, "Clinic")
    for value in forbidden:
        assert not any(value in c for c in everything), value
    for value in set(store.load(sup, DEMO_DATASET).data["patient"]) | {"T01 Ana", "T02 Bruno"}:
        assert value not in set(cells(store.load(res, DEMO_DATASET).data))
    # stable: the same pseudonyms on every load, after reopening, and for patient_ids
    again = ClinicStore(store.url, bcrypt_rounds=4).load(res, "Clinic").data
    pd.testing.assert_frame_equal(again, data)
    assert sorted(set(data["patient"])) == store.patient_ids(res, "Clinic")
    # one real patient = one pseudonym: the same sessions and scores
    a01 = real[real["patient"] == "A01"]
    pseudo = data.loc[(data["symptoms"] == a01["symptoms"].iloc[0]) & (data["alliance"] == a01["alliance"].iloc[0]),
                      "patient"].item()
    mine = store.patient_sessions(res, "Clinic", pseudo)
    assert mine["alliance"].tolist() == a01["alliance"].tolist() and "note" not in mine.columns
    with pytest.raises(NoSuchPatient):
        store.patient_sessions(res, "Clinic", "A01")                  # real IDs do not open anything
    # a supervisor marks 'age' (numbers) and 'note' (text) as shareable: only the numbers reach researchers
    store.apply_upload(sup, store.preview_upload(sup, "Clinic", validated(first_file()), shareable=["age", "note"]))
    shared = store.load(res, "Clinic").data
    assert shared["age"].dtype == float and set(shared["age"]) == set(real["age"].astype(float))
    assert "note" not in shared.columns and "row" not in shared.columns
    assert store.dataset_info(res, "Clinic").extra_columns == ("note", "age")   # marked; 'note' is free text
    with pytest.raises(InputError, match="cannot be shared"):
        store.preview_upload(sup, "Clinic", validated(first_file()), shareable=["nhc"])


# ------------------------------------------------------------------------------ crashes, races
CHILD = textwrap.dedent("""
    import sys
    from core.intake.mapping import ColumnMapping
    from core.intake.reading import read_csv_bytes
    from core.store import ClinicStore, Role
    from core.intake.validation import validate_table

    url, csv_path, name = sys.argv[1:4]
    store = ClinicStore(url, bcrypt_rounds=4)
    sup = next(u for u in store.demo_users() if u.role is Role.SUPERVISOR)
    raw = read_csv_bytes(open(csv_path, "rb").read(), source=csv_path)
    mapping = ColumnMapping(patient="patient", therapist="therapist", session="session",
                            alliance="alliance", symptoms="symptoms")
    preview = store.preview_upload(sup, name, validate_table(raw, mapping))
    result = store.apply_upload(sup, preview)
    print("STORED", result.added, result.changed, flush=True)
""")


def big_upload(store, people, n_new_patients: int = 5_000) -> pd.DataFrame:
    """The demo clinic with every alliance score changed, and 4 sessions of n new patients."""
    demo = store.load(people["supervisor"], DEMO_DATASET).data
    changed = demo[["patient", "therapist", "session", "alliance", "symptoms"]].copy()
    changed["alliance"] = (changed["alliance"] + 0.01).clip(upper=7).round(2)
    new = pd.DataFrame({"patient": np.repeat([f"N{i:05d}" for i in range(n_new_patients)], 4),
                        "therapist": "T01 Ana", "session": np.tile([1, 2, 3, 4], n_new_patients),
                        "alliance": 5.0, "symptoms": 50.0})
    return pd.concat([changed, new], ignore_index=True)


def start_child(tmp_path, url, frame, name, pause):
    csv = tmp_path / f"upload-{name.replace(' ', '_')}.csv"
    frame.to_csv(csv, index=False)
    marker = tmp_path / f"paused-{name.replace(' ', '_')}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALLIANCE_TEST_PAUSE_IN_UPLOAD": str(pause),
           "ALLIANCE_TEST_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(csv), name], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"upload process ended early: {proc.stderr.read()}")
        assert time.time() < deadline, "the upload never reached its pause"
        time.sleep(0.05)
    return proc


def open_write_transactions(store) -> int:
    """PostgreSQL backends of this database inside a transaction that has written something."""
    with store.engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%' AND backend_xid IS NOT NULL")).scalar_one()


def sqlite_path(store) -> str:
    return store.engine.url.database


def test_a_killed_upload_leaves_the_database_as_it_was(clinic, tmp_path):
    store, people = clinic
    sup = people["supervisor"]
    before = {name: store.load(sup, name) for name in (DEMO_DATASET, "Clinic")}
    version = store.dataset_version(sup, DEMO_DATASET)
    n_uploads = len(store.uploads(sup, DEMO_DATASET))
    n_upload_logs = (store.audit_log(sup)["action"] == "upload").sum()

    proc = start_child(tmp_path, store.url, big_upload(store, people), DEMO_DATASET, pause=120)
    # the child is inside its transaction, with 10,000 of 20,000 new rows written
    if store.is_postgres:
        assert open_write_transactions(store) == 1
    else:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            sqlite3.connect(sqlite_path(store), timeout=0.2).execute("BEGIN IMMEDIATE")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    if store.is_postgres:  # the server notices the dead client and rolls its transaction back
        deadline = time.time() + 30
        while open_write_transactions(store):
            assert time.time() < deadline
            time.sleep(0.1)
    else:  # no lock left behind by the dead process
        probe = sqlite3.connect(sqlite_path(store), timeout=1)
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
        probe.close()
    reopened = ClinicStore(store.url, bcrypt_rounds=4, sqlite_busy_seconds=5)
    for name, old in before.items():
        now = reopened.load(sup, name)
        pd.testing.assert_frame_equal(now.data, old.data)
        pd.testing.assert_frame_equal(now.excluded, old.excluded)
    assert reopened.dataset_version(sup, DEMO_DATASET) == version
    assert len(reopened.uploads(sup, DEMO_DATASET)) == n_uploads
    assert (reopened.audit_log(sup)["action"] == "upload").sum() == n_upload_logs
    # and the database takes the next upload
    small = big_upload(store, people, n_new_patients=2)
    result = reopened.apply_upload(sup, reopened.preview_upload(sup, DEMO_DATASET, validated(small)))
    assert result.added == 8 and result.version == version + 1
    reopened.close()


def expected_after(before: pd.DataFrame, upload: pd.DataFrame) -> pd.DataFrame:
    """Stored rows after an upload: the file's rows, and the stored rows the file does not have."""
    old = key_values(before)
    new = key_values(upload)
    keys = set(zip(new["patient"], new["session"]))
    kept = old[[k not in keys for k in zip(old["patient"], old["session"])]]
    return key_values(pd.concat([kept, new], ignore_index=True))


def two_uploads(store, people):
    base = key_values(store.load(people["supervisor"], "Clinic").data)
    a = second_file()
    b = first_file().iloc[:28].copy()
    b["symptoms"] = b["symptoms"] + 1
    b = pd.concat([b, pd.DataFrame([{"patient": "Z01", "therapist": "T03 Carla", "session": 1,
                                     "alliance": 3.0, "symptoms": 90, "note": "", "age": 50}])])
    return base, a, b


def test_two_uploads_at_once_one_lands_one_is_refused(clinic):
    store, people = clinic
    sup = people["supervisor"]
    base, a, b = two_uploads(store, people)
    previews = {"a": store.preview_upload(sup, "Clinic", validated(a)),
                "b": store.preview_upload(sup, "Clinic", validated(b))}
    assert previews["a"].base_version == previews["b"].base_version == 1
    barrier = threading.Barrier(2)
    outcome = {}

    def apply(which):
        barrier.wait()
        try:
            outcome[which] = store.apply_upload(sup, previews[which])
        except UploadConflict as err:
            outcome[which] = err

    threads = [threading.Thread(target=apply, args=(w,)) for w in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    landed = [w for w, r in outcome.items() if not isinstance(r, Exception)]
    refused = [w for w, r in outcome.items() if isinstance(r, UploadConflict)]
    assert len(landed) == 1 and len(refused) == 1, outcome
    assert str(outcome[refused[0]]) == CONFLICT_MESSAGE
    winner = {"a": a, "b": b}[landed[0]]
    pd.testing.assert_frame_equal(key_values(store.load(sup, "Clinic").data), expected_after(base, winner))
    assert store.dataset_version(sup, "Clinic") == 2
    assert len(store.uploads(sup, "Clinic")) == 2


def test_an_upload_waiting_behind_another_is_refused_not_mixed(clinic, tmp_path):
    """Process A is inside its upload transaction (paused) when B applies a preview of the same
    version: B waits for A, then is refused; the data are exactly A's result."""
    store, people = clinic
    sup = people["supervisor"]
    base, a, b = two_uploads(store, people)
    preview_b = store.preview_upload(sup, "Clinic", validated(b))
    proc = start_child(tmp_path, store.url, a.drop(columns=["note", "age"]), "Clinic", pause=3)
    started = time.time()
    with pytest.raises(UploadConflict, match="preview again"):
        store.apply_upload(sup, preview_b)
    assert time.time() - started > 1                                   # it did wait for A
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("STORED 4 1")
    pd.testing.assert_frame_equal(key_values(store.load(sup, "Clinic").data), expected_after(base, a))
    # uploads to different data sets at the same time both land
    other = first_file().iloc[:8]
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(
        store.apply_upload(sup, store.preview_upload(sup, n, validated(other))))) for n in ("One", "Two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.dataset for r in results) == ["One", "Two"]


# ------------------------------------------------------------------------------ audit, demo
def test_the_audit_log(clinic):
    store, people = clinic
    sup, ana = people["supervisor"], people["therapist-ana"]
    assert store.authenticate("demo-therapist-ana", "not the password") is None
    store.log(ana, "export", "caseload.csv")
    store.patient_sessions(ana, "Clinic", "A01")                       # logs the patient view
    log = store.audit_log(sup)
    assert list(log.columns) == ["at", "username", "role", "action", "detail"]
    assert log["at"].is_monotonic_decreasing
    top = log.head(3)[["username", "action", "detail"]].values.tolist()
    assert top == [["demo-therapist-ana", "patient view", "Clinic: A01"],
                   ["demo-therapist-ana", "export", "caseload.csv"],
                   ["demo-therapist-ana", "sign-in failed", "wrong password (from local)"]]
    actions = set(log["action"])
    assert {"sign-in", "sign-in failed", "upload", "demo set-up"} <= actions
    upload = log[log["action"] == "upload"].iloc[0]
    assert upload["username"] == "demo-supervisor" and "Clinic: 28 added" in upload["detail"]
    assert not any("demo" == d or "not the password" in d for d in log["detail"])   # no passwords
    assert len(store.audit_log(sup, limit=2)) == 2
    for actor in (ana, people["researcher"]):
        with pytest.raises(AccessDenied):
            store.audit_log(actor)
    with pytest.raises(AccessDenied):
        store.log(None, "export")


def test_audit_entries_store_typed_text_escaped_on_one_line(clinic):
    """A failed sign-in name with line breaks, a patient ID with a tab: stored escaped (issue 25)."""
    store, people = clinic
    sup, ana = people["supervisor"], people["therapist-ana"]
    forged = "eve\n2026-12-01 09:00:00+00:00,boss,supervisor,export,Clinic\\x\u2028\x1b"
    assert store.authenticate(forged, "guess") is None
    store.log(ana, "export", "report\r\nfor\tA01\x00")  # PostgreSQL refuses a NUL in text: stored escaped
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT username, detail FROM audit_log ORDER BY id DESC LIMIT 2")).all()
    assert stored[0] == ("demo-therapist-ana", "report\\r\\nfor\\tA01\\x00")
    assert stored[1][0] == "eve\\n2026-12-01 09:00:00+00:00,boss,supervisor,export,clinic\\\\x\\u2028\\x1b"
    log = store.audit_log(sup)
    assert not any(ch in "".join(log["username"]) + "".join(log["detail"]) for ch in "\n\r\t\x00\u2028")
    # an entry stored before text was escaped is shown on one line too
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log (at, username, action, detail) VALUES "
                             "(:at, 'old', 'sign-in failed', 'a\nb')"),
                     {"at": pd.Timestamp.now(tz="UTC").to_pydatetime()})
    assert store.audit_log(sup).iloc[0]["detail"] == "a\\nb"


def test_database_files_are_private_and_never_reached_through_a_link(tmp_path):
    folder = tmp_path / "data"
    s = ClinicStore(f"sqlite:///{folder / 'clinic.db'}", bcrypt_rounds=4)
    s.seed_demo()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    for name in ("clinic.db", "clinic.db-wal", "clinic.db-shm"):
        assert oct((folder / name).stat().st_mode & 0o777) == "0o600", name
    s.close()
    elsewhere = tmp_path / "elsewhere.db"
    for planted in ("clinic.db", "clinic.db-wal", "clinic.db-journal"):
        other = tmp_path / f"other_{planted.replace('.', '_')}"
        other.mkdir()
        (other / planted).symlink_to(elsewhere)
        with pytest.raises(InputError, match="symbolic link"):
            ClinicStore(f"sqlite:///{other / 'clinic.db'}", bcrypt_rounds=4)
        assert not elsewhere.exists()


def test_data_folder_files_are_written_privately_and_never_through_a_link(tmp_path):
    from core.files import write_private_file

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "mappings.tmp").symlink_to(victim)       # a planted temporary name is never opened
    (folder / "mappings.json.tmp").symlink_to(victim)
    write_private_file(folder / "mappings.json", "[1]")
    assert victim.read_text() == "keep" and (folder / "mappings.json").read_text() == "[1]"
    assert oct((folder / "mappings.json").stat().st_mode & 0o777) == "0o600"
    (folder / "secrets.json").symlink_to(victim)        # nor is a target that is a link
    with pytest.raises(InputError, match="symbolic link"):
        write_private_file(folder / "secrets.json", "x")
    assert victim.read_text() == "keep"
    assert sorted(p.name for p in folder.iterdir()) == ["mappings.json", "mappings.json.tmp", "mappings.tmp",
                                                        "secrets.json"]


@pytest.fixture
def fill_disk():
    """Call it, and every SQLite connection opened afterwards may grow its file by a few pages
    only: a full disk."""
    def cap(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 3}")

    yield lambda: sa.event.listen(sa.engine.Engine, "connect", cap)
    if sa.event.contains(sa.engine.Engine, "connect", cap):
        sa.event.remove(sa.engine.Engine, "connect", cap)


def test_a_full_disk_is_one_sentence_and_changes_nothing(tmp_path, monkeypatch, fill_disk, capsys):
    """SQLite's "database or disk is full" (PostgreSQL's 53100 the same way): one plain sentence,
    exit 2 on the command line, instead of an internal error."""
    from core.cli import main

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ALLIANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALLIANCE_NEW_PASSWORD", PASSWORD)
    monkeypatch.setenv("ALLIANCE_PASSWORD", PASSWORD)
    assert main(["store", "init"]) == 0
    assert main(["store", "add-user", "head", "--role", "supervisor"]) == 0
    big = pd.DataFrame({"patient": [f"P{i:05d}-{'x' * 40}" for i in range(3000)], "session": 1, "symptoms": 50})
    big.to_csv(tmp_path / "big.csv", index=False)
    fill_disk()
    capsys.readouterr()
    code = main(["store", "import", str(tmp_path / "big.csv"), "--dataset", "Clinic", "--user", "head",
                 "--patient", "patient", "--session", "session", "--symptoms", "symptoms"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "the disk it is on is full" in err and "Nothing was changed" in err and "internal error" not in err
    from core.store import StoreUnwritable
    from core.store.engine import unwritable_message

    s = ClinicStore(f"sqlite:///{tmp_path / 'clinic.db'}", bcrypt_rounds=4)
    head = s.authenticate("head", PASSWORD)
    assert s.dataset_names(head) == []
    with pytest.raises(StoreUnwritable, match="disk it is on is full"):
        s.apply_upload(head, s.preview_upload(head, "Clinic", validated(big)))
    s.close()

    class PgError(Exception):
        def __init__(self, sqlstate, text):
            super().__init__(text)
            self.sqlstate = sqlstate

    assert "full" in unwritable_message(PgError("53100", 'could not extend file "base/1/2": No space left on device'))
    assert "read-only" in unwritable_message(PgError("25006", "cannot execute INSERT in a read-only transaction"))
    assert unwritable_message(PgError("23505", "duplicate key")) is None


def test_seed_demo_is_idempotent_and_labelled(store):
    assert store.seed_demo() is True
    assert store.seed_demo() is False
    demo = store.demo_users()
    assert [(u.username, u.role, u.therapist_code) for u in demo] == [
        ("demo-supervisor", Role.SUPERVISOR, None), ("demo-therapist-ana", Role.THERAPIST, "T01 Ana"),
        ("demo-therapist-bruno", Role.THERAPIST, "T02 Bruno"), ("demo-researcher", Role.RESEARCHER, None)]
    assert all(u.is_demo and "Demo" in u.display_name for u in demo)
    sup = store.authenticate("demo-supervisor", "demo")
    info = store.dataset_info(sup, DEMO_DATASET)
    assert info.is_demo and info.version == 1 and dict(info.instruments) == {"alliance": "ans", "symptoms": "oq45"}
    from core.demo import demo_dataset

    stored = store.load_dataset(sup, DEMO_DATASET)
    assert stored.is_demo and stored.instruments == demo_dataset().instruments
    pd.testing.assert_frame_equal(stored.data, demo_dataset().data, check_dtype=False)
    with pytest.raises(AccessDenied):                                  # demo users exist: no first set-up
        store.create_user(None, "admin", PASSWORD, Role.SUPERVISOR)
    real = store.create_user(sup, "head", PASSWORD, Role.SUPERVISOR)
    with pytest.raises(AccessDenied):
        store.delete_dataset(store.authenticate("demo-therapist-ana", "demo"), DEMO_DATASET)
    for u in demo:                                                     # a clinic removes the demo
        store.deactivate(real, u.username)
    assert store.demo_users() == [] and store.authenticate("demo-supervisor", "demo") is None
    store.delete_dataset(real, DEMO_DATASET)
    assert store.dataset_names(real) == []
    with store.engine.connect() as conn:
        for table in ("observations", "uploads", "datasets"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
    assert store.audit_log(real)["action"].iloc[0] == "data set deleted"


# ------------------------------------------------------------------------------ saved mappings (issue 25)
def test_saved_mappings_live_in_the_clinic_database_and_only_supervisors_write_them(db_url):
    from core.intake.mapping import SavedMapping

    store = ClinicStore(db_url, bcrypt_rounds=4)
    store.init_clinic()
    head = store.create_user(None, "head", PASSWORD, Role.SUPERVISOR)
    rita = store.create_user(head, "rita", PASSWORD, Role.RESEARCHER)
    saved = SavedMapping(name="Export mensual", headers=("nhc", "sesión", "oq"),
                         mapping=ColumnMapping(patient="nhc", session="sesión", symptoms="oq"),
                         ranges={"symptoms": (0.0, 180.0)})
    with pytest.raises(AccessDenied):
        store.save_mapping(rita, saved)
    with pytest.raises(AccessDenied):
        store.saved_mappings(rita)
    store.save_mapping(head, saved)
    store.save_mapping(head, SavedMapping(name="Export mensual", headers=("nhc", "sesión", "oq", "ans"),
                                          mapping=ColumnMapping(patient="nhc", session="sesión", alliance="ans")))
    assert [(m.name, m.headers) for m in store.saved_mappings(head)] == [("Export mensual", ("nhc", "sesión", "oq", "ans"))]
    store.save_mapping(head, saved)
    assert store.saved_mappings(head) == [saved]                    # replaced by name, read back as saved
    assert (store.audit_log(head)["action"] == "mapping saved").sum() == 3
    store.close()


# ------------------------------------------------------------------------------ issue 24
def test_the_data_set_of_a_sign_in_session(clinic):
    """A reload, a new tab and a link of one sign-in open on the data set chosen in it (migration 0007)."""
    store, people = clinic
    session_id, _ticket = store.start_session(people["supervisor"])
    other, _ticket = store.start_session(people["supervisor"])
    assert store.session_dataset(session_id) is None                 # nothing chosen yet
    store.set_session_dataset(session_id, "Clinic")
    assert store.session_dataset(session_id) == "Clinic" and store.session_dataset(other) is None
    store.set_session_dataset(session_id, "Demo clinic")
    assert store.session_dataset(session_id) == "Demo clinic"
    store.end_session(session_id)
    assert store.session_dataset(session_id) is None                 # an ended session has none …
    store.set_session_dataset(session_id, "Clinic")
    assert store.session_dataset(session_id) is None                 # … and gets none
    assert store.session_dataset(None) is None


def test_where_a_user_may_see_a_patient(clinic):
    """The data sets a patient link may lead to: only where the user's role shows that patient."""
    store, people = clinic
    assert store.datasets_with_patient(people["supervisor"], "A01") == ["Clinic"]
    assert store.datasets_with_patient(people["supervisor"], "D001") == ["Demo clinic"]
    assert store.datasets_with_patient(people["supervisor"], "nobody") == []
    assert store.datasets_with_patient(people["therapist-ana"], "A01") == ["Clinic"]
    assert store.datasets_with_patient(people["therapist-ana"], "B01") == []   # Bruno's: as if it did not exist
    researcher = people["researcher"]
    assert store.datasets_with_patient(researcher, "A01") == []              # a real ID is no ID of hers
    pseudonym = next(p for p in store.patient_ids(researcher, "Clinic")
                     if store.datasets_with_patient(researcher, p) == ["Clinic"])
    assert pseudonym.startswith("P-")
