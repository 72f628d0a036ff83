"""Backup and restore of the clinic database (issue 25): ``write_backup`` → ``restore_backup`` gives
back the same data set — the same patients, sessions, scores, history, therapists' access and
researchers' pseudonyms — on SQLite and on PostgreSQL; a restore goes only into an empty or a
matching database and refuses anything else with one sentence, writing nothing."""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import stat

import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import InputError
from core.intake.mapping import ColumnMapping
from core.intake.reading import read_csv_bytes
from core.intake.validation import validate_table
from core.store import AccessDenied, ClinicStore
from core.store.schema import observations, users
from tests.pg_support import fresh_database, postgres_admin_url

PASSWORDS = {"head": "head's long password", "ana": "ana's long password", "bruno": "bruno's long password",
             "rita": "rita's long password", "old": "old supervisor password"}
HOSTILE = ["=HYPERLINK(\"http://x\")", "+34 600", "-P3", "@SUM(A1)", "José", "P\t5"]


@pytest.fixture
def other_url(db_url, tmp_path):
    """A second empty database on the same server (or a second SQLite file)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        with fresh_database(postgres_admin_url()) as url:
            yield url


@contextlib.contextmanager
def opened(url: str):
    s = ClinicStore(url, bcrypt_rounds=4)
    try:
        yield s
    finally:
        s.close()


def validated(rows: list[dict], source: str = "visits.csv"):
    frame = pd.DataFrame(rows)
    raw = read_csv_bytes(frame.to_csv(index=False).encode("utf-8"), source=source)
    mapping = ColumnMapping(patient="patient", session="session", therapist="therapist", alliance="alliance",
                            symptoms="symptoms")
    return validate_table(raw, mapping, ranges={"alliance": (1, 7), "symptoms": (0, 180)})


def first_upload() -> list[dict]:
    rows = []
    for k, patient in enumerate(HOSTILE):
        therapist = "+T1 Ana" if k % 2 == 0 else "T02 Bruno"
        for s in (1, 2, 3):
            rows.append({"patient": patient, "therapist": therapist, "session": s,
                         "alliance": round(4.1 + 0.37 * k + 0.013 * s, 3), "symptoms": 80 - 3 * s - k,
                         "note": ["=cmd|' /C calc'!A0", "-2+3", "@home", "ok"][(k + s) % 4], "age": 30 + k,
                         "row": 100 + 3 * k + s})
    rows.append({"patient": "P9", "therapist": "T02 Bruno", "session": 1.5, "alliance": 5.0, "symptoms": "",
                 "note": "half", "age": 50, "row": 1})
    rows.append({"patient": "P9", "therapist": "T02 Bruno", "session": 2, "alliance": "abc", "symptoms": "",
                 "note": "", "age": 50, "row": 2})  # left out: no usable score
    return rows


def second_upload() -> list[dict]:
    rows = [r for r in first_upload() if r["patient"] in HOSTILE[:3]]
    rows[1] = {**rows[1], "alliance": 6.25, "note": "changed"}
    rows.append({"patient": "N01", "therapist": "+T1 Ana", "session": 1, "alliance": 5.5, "symptoms": 40,
                 "note": "new", "age": 25, "row": 7})
    return rows


@pytest.fixture
def clinic(store):
    """A clinic database with four active users and one deactivated, two uploads of 'Clinic' (a
    history of versions, rows left out), hostile IDs and codes, a shared column, and 'Other'."""
    store.init_clinic()
    head = store.create_user(None, "head", PASSWORDS["head"], "supervisor")
    store.create_user(head, "ana", PASSWORDS["ana"], "therapist", therapist_code="+T1 Ana", email="ana@clinic.example")
    store.create_user(head, "bruno", PASSWORDS["bruno"], "therapist", therapist_code="T02 Bruno")
    store.create_user(head, "carla", "carla's long password", "therapist", therapist_code="T03 Elsewhere")
    store.create_user(head, "rita", PASSWORDS["rita"], "researcher")
    store.create_user(head, "old", PASSWORDS["old"], "supervisor")
    store.deactivate(head, "old")
    store.set_language(store.authenticate("ana", PASSWORDS["ana"]), "es")
    store.apply_upload(head, store.preview_upload(head, "Clinic", validated(first_upload()), shareable=["age"]))
    store.apply_upload(head, store.preview_upload(head, "Clinic", validated(second_upload(), "visits2.csv")))
    other = [{"patient": "O1", "therapist": "T03 Elsewhere", "session": s, "alliance": 4, "symptoms": 50}
             for s in (1, 2)]
    store.apply_upload(head, store.preview_upload(head, "Other", validated(other, "other.csv")))
    return store


def sign_in(store, name):
    user = store.authenticate(name, PASSWORDS[name])
    assert user is not None, name
    return user


def plain(frame: pd.DataFrame) -> dict:
    """A table as lists, a missing value as None (NaN is not equal to itself)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("list")


def snapshot(store, dataset="Clinic") -> dict:
    """Everything each role sees of a data set, plus its history and the users' access."""
    out = {}
    for name in ("head", "ana", "bruno", "rita"):
        user = sign_in(store, name)
        loaded = store.load(user, dataset)
        info = store.dataset_info(user, dataset)
        out[name] = {
            "data": plain(loaded.data), "excluded": plain(loaded.excluded),
            "notes": loaded.notes, "mapping": loaded.mapping, "source": loaded.source,
            "n_rows_read": loaded.n_rows_read, "ranges": loaded.ranges, "ids": store.patient_ids(user, dataset),
            "info": (info.name, info.version, info.is_demo, info.instruments, info.columns, info.extra_columns,
                     info.updated_at, info.shareable_columns),
            "language": store.language_of(user),
        }
    head = sign_in(store, "head")
    out["uploads"] = plain(store.uploads(head, dataset))
    out["users"] = [(u.username, u.role, u.therapist_code, u.email, u.is_active, u.display_name)
                    for u in store.users(head) if u.username != "carla"]
    return out


def audit_rows(store) -> list[tuple]:
    frame = store.audit_log(sign_in(store, "head"), limit=10 ** 6)
    return [tuple(r) for r in frame.iloc[::-1].itertuples(index=False)]


# ------------------------------------------------------------------------------ round trips

def test_a_data_set_backup_restored_into_an_empty_database_is_the_same_data_set(clinic, other_url, tmp_path):
    before = snapshot(clinic)
    path = tmp_path / "clinic.backup"
    result = clinic.write_backup(sign_in(clinic, "head"), path, dataset="Clinic")
    assert result["counts"]["observations"] == 20 and result["counts"]["uploads"] == 2
    assert result["counts"]["users"] == 5  # the supervisors (one deactivated), the researcher, Clinic's two therapists
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    assert "'=HYPERLINK" not in text and "=HYPERLINK" in text  # un-neutralised
    assert "T03 Elsewhere" not in text and "Other" not in text  # one data set: nothing of another
    with opened(other_url) as target:
        target.init_clinic()
        restored = target.restore_backup(None, path)
        assert restored["observations"] == 20 and restored["users_added"] == 5 and restored["into"] == "empty database"
        after = snapshot(target)
        assert after == before
        # the restore is logged; the deactivated supervisor stays deactivated
        assert target.authenticate("old", PASSWORDS["old"]) is None
        log = target.audit_log(sign_in(target, "head"))
        assert "restore" in set(log["action"]) and "clinic.backup" in " ".join(log["detail"])
        assert target.dataset_names(sign_in(target, "head")) == ["Clinic"]
    assert "export" in set(clinic.audit_log(sign_in(clinic, "head"))["action"])


def test_a_whole_database_backup_restores_every_data_set_user_and_audit_entry(clinic, other_url, tmp_path):
    before = {name: snapshot(clinic, name) for name in ("Clinic",)}
    old_log = audit_rows(clinic)
    path = tmp_path / "all.backup"
    clinic.write_backup(sign_in(clinic, "head"), path)
    with opened(other_url) as target:
        target.init_clinic()
        target.restore_backup(None, path, username="HEAD", password=PASSWORDS["head"])
        assert snapshot(target, "Clinic") == before["Clinic"]
        carla = target.authenticate("carla", "carla's long password")
        assert target.dataset_names(carla) == ["Other"]
        assert target.load(carla, "Other").data["patient"].tolist() == ["O1", "O1"]
        restored_log = audit_rows(target)
        assert restored_log[:len(old_log)] == old_log[:len(old_log)]
        entry = [r for r in restored_log if r[3] == "restore"]
        assert len(entry) == 1 and "as the backup's head" in entry[0][4]


def test_a_data_set_restored_into_the_database_it_came_from_after_it_was_deleted(clinic, tmp_path):
    before = snapshot(clinic)
    path = tmp_path / "clinic.backup"
    head = sign_in(clinic, "head")
    clinic.write_backup(head, path, dataset="Clinic")
    clinic.delete_dataset(head, "Clinic")
    assert "Clinic" not in clinic.dataset_names(head)
    restored = clinic.restore_backup(sign_in(clinic, "head"), path)
    assert restored["into"] == "matching database" and restored["users_matched"] == 5 and not restored["users_added"]
    assert snapshot(clinic) == before


# ------------------------------------------------------------------------------ refusals

def count_rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(observations)).scalar_one()


def refused(call, *words) -> str:
    with pytest.raises(InputError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text
    for word in words:
        assert word in text, text
    return text


def test_a_restore_refuses_what_is_not_empty_or_matching_and_writes_nothing(clinic, other_url, tmp_path):
    head = sign_in(clinic, "head")
    whole, one = tmp_path / "all.backup", tmp_path / "one.backup"
    clinic.write_backup(head, whole)
    clinic.write_backup(head, one, dataset="Clinic")
    n = count_rows(clinic)
    refused(lambda: clinic.restore_backup(head, whole), "restored only into an empty one")
    refused(lambda: clinic.restore_backup(head, one), "already has a data set named 'Clinic'")
    refused(lambda: clinic.restore_backup(None, one), "--user")
    with pytest.raises(AccessDenied, match="Only a supervisor can restore a backup"):
        clinic.restore_backup(sign_in(clinic, "rita"), one)
    assert count_rows(clinic) == n
    with opened(other_url) as target:  # another clinic's database, with a user: another pseudonym key
        target.init_clinic()
        boss = target.create_user(None, "boss", "the other boss's password", "supervisor")
        refused(lambda: target.restore_backup(boss, one), "another clinic database")
        assert count_rows(target) == 0


def test_a_restore_that_would_change_a_therapist_s_access_is_refused(clinic, other_url, tmp_path):
    one = tmp_path / "one.backup"
    clinic.write_backup(sign_in(clinic, "head"), one, dataset="Clinic")
    with opened(other_url) as copy:  # a restored copy of the clinic, where Ana's code is another
        copy.init_clinic()
        copy.restore_backup(None, one)
        copy.delete_dataset(sign_in(copy, "head"), "Clinic")
        with copy.engine.begin() as conn:
            conn.execute(users.update().where(users.c.username == "ana").values(therapist_code="T09"))
        refused(lambda: copy.restore_backup(sign_in(copy, "head"), one), "'ana'", "her access would change")
        assert count_rows(copy) == 0


def test_a_damaged_cut_or_newer_backup_is_refused_before_anything_is_written(clinic, other_url, tmp_path):
    path = tmp_path / "clinic.backup"
    clinic.write_backup(sign_in(clinic, "head"), path, dataset="Clinic")
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    cut, changed, newer, plain = (tmp_path / n for n in ("cut.backup", "changed.backup", "newer.backup", "plain"))
    cut.write_bytes(gzip.compress(b"\n".join(lines[:-3]) + b"\n"))
    i = next(k for k, line in enumerate(lines) if b'"observations"' in line)
    lines_changed = list(lines)
    lines_changed[i] = lines_changed[i].replace(b'"symptoms":', b'"symptoms":1', 1)
    changed.write_bytes(gzip.compress(b"\n".join(lines_changed)))
    header = json.loads(lines[0])
    newer.write_bytes(gzip.compress(b"\n".join([json.dumps({**header, "format_version": 2}).encode(), *lines[1:]])))
    plain.write_bytes(gzip.decompress(path.read_bytes()))  # as gunzip leaves it: still restores
    with opened(other_url) as target:
        target.init_clinic()
        refused(lambda: target.restore_backup(None, cut), "damaged or incomplete")
        refused(lambda: target.restore_backup(None, changed), "damaged or incomplete")
        refused(lambda: target.restore_backup(None, newer), "newer version")
        refused(lambda: target.restore_backup(None, tmp_path / "x.csv"), "damaged")
        refused(lambda: target.restore_backup(None, plain, username="head", password="wrong"),
                "not an active supervisor of the backup")
        refused(lambda: target.restore_backup(None, plain, username="old", password=PASSWORDS["old"]),
                "not an active supervisor of the backup")
        assert count_rows(target) == 0 and target.is_empty_database()
        assert target.restore_backup(None, plain)["observations"] == 20


def test_a_backup_of_the_demo_database_never_goes_into_a_clinic_s(store, other_url, tmp_path):
    store.seed_demo()
    path = tmp_path / "demo.backup"
    store.write_backup(store.authenticate("demo-supervisor", "demo"), path)
    with opened(other_url) as target:
        target.init_clinic()
        refused(lambda: target.restore_backup(None, path), "demo database")
        assert target.is_empty_database()


def test_only_a_supervisor_makes_a_backup(clinic, tmp_path):
    with pytest.raises(AccessDenied):
        clinic.write_backup(sign_in(clinic, "ana"), tmp_path / "x.backup", dataset="Clinic")
    assert not (tmp_path / "x.backup").exists() and not list(tmp_path.glob(".x.backup*"))
