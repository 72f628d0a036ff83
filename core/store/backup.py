"""Backup and restore: a faithful, versioned archive of the clinic database or of one data set.

``store export --format backup`` writes it (:meth:`Backups.write_backup`, supervisors only) and
``store import --restore FILE`` reads it back (:meth:`Backups.restore_backup`). Unlike the CSV
export, which is made for spreadsheets (what a role may see, text that a spreadsheet would run
as a formula written with a leading ``'``, the row numbers as a column), the archive holds the
stored values exactly as they are, nothing neutralised, so that a restore gives back the same
data set: the same patients, sessions and scores, the same therapists' access and the same
researchers' pseudonyms.

**What it holds** (format version 1):

- the database's pseudonym key (researchers' ``P-``/``T-``/``S-`` labels stay the same after a
  restore) and its kind (clinic or demo);
- the **users** who may see the data: with ``--dataset``, every supervisor and researcher and the
  therapists whose therapist code occurs in the data set; of the whole database, every user. Each
  with user name, e-mail, display name, role, therapist code, active or not, demo flag, interface
  language and bcrypt password hash (so everyone signs in as before);
- each **data set**: name, version, demo flag, instruments, role and other columns, the columns
  shared with researchers, created and updated times;
- its **history** as far as the database keeps it: every upload (when, by whom, file name, rows
  read, added, changed, unchanged, kept, left out, the version it made, column mapping, notes,
  ranges) with the rows it left out and their reasons; each stored patient-session with the
  upload that last wrote it and its spreadsheet row (earlier values of a changed cell are not
  kept by the database, so not by the archive either);
- of the whole database, also the **audit log**.

Not in it: sign-in sessions and sign-in throttling (a restore signs everyone out), the session
key. The archive is as confidential as the database (identifiers, password hashes, the pseudonym
key): it is written ``0600``.

**Format**: gzip-compressed JSON Lines in UTF-8 (``zcat FILE | head`` shows it). Line 1 is the
header ``{"format": "alliance-dashboard backup", "format_version": 1, "schema_revision", "scope":
"database"|"dataset", "dataset", "created_at", "created_by", "database_kind", "pseudonym_secret"}``;
then one line per stored row, ``{"table": T, "row": {column: value}}``, tables in the order
users, datasets, uploads, observations, excluded_rows, audit_log, with the ids they had (used only
to link rows); the last line ``{"end": true, "counts": {T: n}, "sha256": …}`` holds the number of
rows per table and the SHA-256 of every line before it, so that a damaged or cut file is refused
before anything is written. Numbers are JSON numbers (a score reads back to the same float), times
ISO 8601 in UTC.

**Restore** is one transaction, logged in the audit log (``restore``). It goes

- into an **empty** database (no users and no data sets, e.g. new after ``store init``): every
  part of the archive, its pseudonym key and kind included; ``--user`` is then not needed (as for
  the first supervisor), and when given it is checked against the archive's own accounts;
- or, for a data-set archive, into a **matching** database: the same clinic's (the same pseudonym
  key, e.g. the one it came from, or a restored copy), without a data set of that name, where each
  of the archive's users either does not exist (then it is added) or exists with the same role and
  therapist code; signed in as a supervisor of that database.

Anything else is refused with one sentence, and nothing is written.
"""
from __future__ import annotations

import getpass
import gzip
import hashlib
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from core.errors import InputError
from core.files import private_writer
from core.i18n import N_, _
from core.store.engine import _now
from core.store.schema import audit_log, datasets, excluded_rows, observations, settings, uploads, users
from core.store.users import Role, User, role_label

FORMAT = "alliance-dashboard backup"
FORMAT_VERSION = 1
CHUNK = 5_000

_TEXT, _INT, _FLOAT, _BOOL, _TIME = "text", "int", "float", "bool", "time"
#: Every column an archive holds, by table, with its kind; ``?`` marks a column that may be null.
COLUMNS: dict[str, dict[str, str]] = {
    "users": {"id": _INT, "username": _TEXT, "email": _TEXT + "?", "display_name": _TEXT, "role": _TEXT,
              "therapist_code": _TEXT + "?", "password_hash": _TEXT + "?", "is_active": _BOOL, "is_demo": _BOOL,
              "created_at": _TIME, "language": _TEXT + "?"},
    "datasets": {"id": _INT, "name": _TEXT, "version": _INT, "is_demo": _BOOL, "instruments": _TEXT,
                 "columns": _TEXT, "extra_columns": _TEXT, "shareable_columns": _TEXT, "created_at": _TIME,
                 "updated_at": _TIME},
    "uploads": {"id": _INT, "dataset_id": _INT, "user_id": _INT + "?", "username": _TEXT + "?", "at": _TIME,
                "source": _TEXT, "n_rows_read": _INT, "added": _INT, "changed": _INT, "unchanged": _INT,
                "kept": _INT, "excluded": _INT, "version": _INT, "mapping": _TEXT, "notes": _TEXT,
                "ranges": _TEXT},
    "observations": {"id": _INT, "dataset_id": _INT, "patient": _TEXT, "session": _FLOAT,
                     "therapist": _TEXT + "?", "alliance": _FLOAT + "?", "symptoms": _FLOAT + "?", "extra": _TEXT,
                     "source_row": _INT + "?", "upload_id": _INT + "?"},
    "excluded_rows": {"id": _INT, "upload_id": _INT, "row": _INT, "reason": _TEXT},
    "audit_log": {"id": _INT, "at": _TIME, "user_id": _INT + "?", "username": _TEXT + "?", "role": _TEXT + "?",
                  "action": _TEXT, "detail": _TEXT},
}
TABLES = {"users": users, "datasets": datasets, "uploads": uploads, "observations": observations,
          "excluded_rows": excluded_rows, "audit_log": audit_log}
#: Columns added by later schema revisions, with the value an older archive's rows get.
_DEFAULTS = {("users", "language"): None, ("datasets", "shareable_columns"): "[]"}

DAMAGED = N_("{file} is not a backup made by this dashboard, or it is damaged or incomplete (it was cut short or "
             "changed after it was written); use another copy of the backup.")


class _Damaged(Exception):
    """A line of the archive that is not what it should be (said to the user as :data:`DAMAGED`)."""


def _json_value(value):
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _line(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def _parse(kind: str, value):
    """An archived value as the database takes it; :class:`_Damaged` when it is not of its kind."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        if nullable:
            return None
        raise _Damaged(kind)
    if kind == _TEXT and isinstance(value, str):
        return value
    if kind == _INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == _FLOAT and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if kind == _BOOL and isinstance(value, bool):
        return value
    if kind == _TIME and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Damaged(kind) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise _Damaged(kind)


def _row(table: str, raw) -> dict:
    """One archived row, checked column by column (unknown columns: a newer format; damaged)."""
    if not isinstance(raw, dict):
        raise _Damaged(table)
    columns = COLUMNS[table]
    if set(raw) - set(columns):
        raise _Damaged(table)
    out = {}
    for name, kind in columns.items():
        if name not in raw:
            if (table, name) not in _DEFAULTS:
                raise _Damaged(name)
            out[name] = _DEFAULTS[(table, name)]
        else:
            out[name] = _parse(kind, raw[name])
    return out


def _open_archive(path: Path):
    """The archive's lines as bytes: gzip-compressed, or as ``gunzip`` left it."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    from core.store.engine import alembic_config

    return [s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()]


class _Archive:
    """What a first pass over an archive found: its header, its users, and that it is whole."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        digest = hashlib.sha256()
        self.header: dict | None = None
        self.users: list[dict] = []
        self.datasets: list[dict] = []
        counts: dict[str, int] = {t: 0 for t in TABLES}
        end = None
        order = list(TABLES)
        at = 0
        try:
            with _open_archive(path) as stream:
                for raw in stream:
                    if end is not None:
                        raise _Damaged("after the end")
                    item = json.loads(raw)
                    if self.header is None:
                        self.header = self._check_header(item)
                        digest.update(raw)
                        continue
                    if not isinstance(item, dict):
                        raise _Damaged("line")
                    if item.get("end") is True:
                        end = item
                        continue
                    digest.update(raw)
                    table = item.get("table")
                    if table not in TABLES or order.index(table) < at:
                        raise _Damaged("table order")
                    at = order.index(table)
                    counts[table] += 1
                    if table in ("users", "datasets"):
                        (self.users if table == "users" else self.datasets).append(_row(table, item.get("row")))
        except InputError:
            raise
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, json.JSONDecodeError, _Damaged,
                ValueError):
            raise InputError(_(DAMAGED).format(file=self.name)) from None
        if (self.header is None or end is None or end.get("sha256") != digest.hexdigest()
                or end.get("counts") != counts):
            raise InputError(_(DAMAGED).format(file=self.name))
        self.counts = counts

    def _check_header(self, item) -> dict:
        if not isinstance(item, dict) or item.get("format") != FORMAT:
            raise _Damaged("header")
        version = item.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise InputError(_("{file} was written by a newer version of this dashboard (backup format {version}); "
                               "update the dashboard to restore it.").format(file=self.name, version=version))
        revision = item.get("schema_revision")
        if revision not in _known_revisions():
            raise InputError(_("{file} was written by a newer version of this dashboard (schema {schema}); update "
                               "the dashboard to restore it.").format(file=self.name, schema=revision))
        if item.get("scope") not in ("database", "dataset") or not isinstance(item.get("pseudonym_secret"), str):
            raise _Damaged("header")
        try:
            bytes.fromhex(item["pseudonym_secret"])
        except ValueError:
            raise _Damaged("header") from None
        return item

    def rows(self, table: str):
        """The archive's rows of ``table``, checked, in order (another pass over the file, whole as the
        first pass found it: only the lines of ``table``, as :func:`_line` begins them, are parsed)."""
        prefix = _line({"table": table})[:-2]  # b'{"table":"observations"'
        seen = False
        try:
            with _open_archive(self.path) as stream:
                next(stream)
                for raw in stream:
                    if raw.startswith(prefix):
                        seen = True
                        item = json.loads(raw)
                        yield _row(table, item["row"])
                    elif seen:  # the tables come one after another
                        return
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, json.JSONDecodeError, _Damaged,
                KeyError, ValueError):
            raise InputError(_(DAMAGED).format(file=self.name)) from None


class Backups:
    """The backup part of :class:`core.store.ClinicStore`: :meth:`write_backup`, :meth:`restore_backup`."""

    # ------------------------------------------------------------------------------ backup
    def write_backup(self, actor: User, out: str | os.PathLike, dataset: str | None = None) -> dict:
        """Write the archive of one data set (``dataset``) or of the whole database to ``out``
        (supervisors only; one consistent snapshot; ``0600``, written to a temporary file and renamed,
        so ``out`` is whole or as it was). Logged as an export. Returns the counts per table."""
        from alembic.runtime.migration import MigrationContext

        counts: dict[str, int] = {t: 0 for t in TABLES}
        with self._read() as conn:
            user = self._actor(conn, actor)
            self._require(user, N_("make a backup"), Role.SUPERVISOR)
            revision = MigrationContext.configure(conn).get_current_revision()
            values = dict(conn.execute(sa.select(settings.c.key, settings.c.value)).all())
            if dataset is not None:
                ds = self._visible_dataset(conn, user, dataset)
                ds_filter = datasets.c.id == ds.id
                codes = sa.select(observations.c.therapist).where(observations.c.dataset_id == ds.id).distinct()
                user_filter = users.c.role.in_([Role.SUPERVISOR.value, Role.RESEARCHER.value]) | (
                    (users.c.role == Role.THERAPIST.value) & users.c.therapist_code.in_(codes))
            else:
                ds_filter = user_filter = sa.true()
            upload_ids = sa.select(uploads.c.id).join(datasets, uploads.c.dataset_id == datasets.c.id).where(ds_filter)
            queries = {
                "users": sa.select(users).where(user_filter).order_by(users.c.id),
                "datasets": sa.select(datasets).where(ds_filter).order_by(datasets.c.id),
                "uploads": sa.select(uploads).where(uploads.c.id.in_(upload_ids)).order_by(uploads.c.id),
                "observations": sa.select(observations).join(datasets, observations.c.dataset_id == datasets.c.id)
                .where(ds_filter).order_by(observations.c.id),
                "excluded_rows": sa.select(excluded_rows).where(excluded_rows.c.upload_id.in_(upload_ids))
                .order_by(excluded_rows.c.id),
            }
            if dataset is None:
                queries["audit_log"] = sa.select(audit_log).order_by(audit_log.c.id)
            header = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_revision": revision,
                      "scope": "dataset" if dataset is not None else "database",
                      "dataset": ds.name if dataset is not None else None,
                      "created_at": _json_value(_now()), "created_by": user.username,
                      "database_kind": values.get("database_kind"),
                      "pseudonym_secret": values["pseudonym_secret"]}
            digest = hashlib.sha256()
            try:
                with private_writer(out) as raw, \
                        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as archive:
                    batch = [_line(header)]
                    for table, query in queries.items():
                        names = list(COLUMNS[table])
                        for record in conn.execute(query.execution_options(yield_per=CHUNK)):
                            mapping = record._mapping
                            batch.append(_line({"table": table, "row": {c: _json_value(mapping[c]) for c in names}}))
                            counts[table] += 1
                            if len(batch) >= CHUNK:
                                _write_lines(archive, batch, digest)
                    _write_lines(archive, batch, digest)
                    archive.write(_line({"end": True, "counts": counts, "sha256": digest.hexdigest()}))
            except OSError as err:
                raise InputError(_("Could not write {out}: {error}.").format(
                    out=out, error=err.strerror or err)) from None
        what = (_audit_name(ds.name) if dataset is not None else "the whole database")
        self.log(actor, "export", f"backup of {what} (command line: {Path(out).name}; {counts['observations']} "
                                  f"patient-sessions, {counts['users']} users)")
        return {"scope": header["scope"], "dataset": header["dataset"], "schema_revision": revision,
                "counts": counts}

    # ------------------------------------------------------------------------------ restore
    def is_empty_database(self) -> bool:
        """No users and no data sets (a restore of a whole database goes only into such a one)."""
        with self._read() as conn:
            return not (conn.execute(sa.select(users.c.id).limit(1)).first()
                        or conn.execute(sa.select(datasets.c.id).limit(1)).first())

    def restore_backup(self, actor: User | None, path: str | os.PathLike, *, username: str | None = None,
                       password: str | None = None) -> dict:
        """Restore an archive written by :meth:`write_backup` into this database, in one transaction
        (see the module's docstring for where it may go). ``actor``: the signed-in supervisor of a
        database that has users; into an empty database none is needed, and ``username`` and
        ``password``, when given, must be a supervisor's of the archive. Logged as ``restore``.
        Returns what was restored."""
        path = Path(path)
        archive = _Archive(path)
        header = archive.header
        by_name = {u["username"]: u for u in archive.users}
        if username is not None:
            claimed = by_name.get(str(username).strip().lower())
            if (claimed is None or claimed["role"] != Role.SUPERVISOR.value or not claimed["is_active"]
                    or not claimed["password_hash"] or not self._check_password(password, claimed["password_hash"])):
                raise InputError(_("Restore refused: '{name}' with ALLIANCE_PASSWORD is not an active supervisor of "
                                   "the backup.").format(name=username))
        with self._write() as conn:
            self._lock_setup(conn)
            n_users = conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()
            n_datasets = conn.execute(sa.select(sa.func.count()).select_from(datasets)).scalar_one()
            values = dict(conn.execute(sa.select(settings.c.key, settings.c.value)).all())
            empty = n_users == 0 and n_datasets == 0
            user = None
            if empty:
                self._check_kind(values.get("database_kind"), header.get("database_kind"))
            else:
                user = self._check_matching(conn, archive, actor, values)
            user_ids, added, matched = self._restore_users(conn, archive)
            restored = {"users_added": added, "users_matched": matched, **self._restore_rows(conn, archive, user_ids)}
            if empty:
                conn.execute(settings.update().where(settings.c.key == "pseudonym_secret")
                             .values(value=header["pseudonym_secret"]))
                if header.get("database_kind") and not values.get("database_kind"):
                    self._set_kind(conn, header["database_kind"])
                self._secret = bytes.fromhex(header["pseudonym_secret"])
            names = [d["name"] for d in archive.datasets]
            if user is not None:
                who = f"signed in as {user.username}"
            else:
                who = (f"into an empty database, as the backup's {username.strip().lower()}" if username
                       else "into an empty database, no sign-in") + f", system user {_system_user()}"
            what = "the whole database" if header["scope"] == "database" else _audit_name(header["dataset"])
            self._audit(conn, user, "restore",
                        f"backup of {what} made {header['created_at']} by {header['created_by']} "
                        f"(file {archive.name}; {who}): "
                        f"{restored['observations']} patient-sessions in {', '.join(names) or 'no data set'}, "
                        f"{restored['users_added']} users added, {restored['users_matched']} users matched",
                        username=None if user is not None else "restore (command line)")
        return {"scope": header["scope"], "datasets": names, "into": "empty database" if empty else "matching database",
                "created_at": header["created_at"], "created_by": header["created_by"], **restored}

    @staticmethod
    def _check_kind(target: str | None, archived: str | None) -> None:
        if target == "clinic" and archived == "demo":
            raise InputError(_("This backup is of the demo database (its demo accounts have public passwords); it "
                               "cannot be restored into a clinic's database."))

    def _check_matching(self, conn, archive: _Archive, actor: User | None, values: dict) -> User:
        """A data-set archive into a database with users or data sets: the same clinic's, no data set
        of that name, users compatible; signed in as a supervisor. Else one sentence."""
        header = archive.header
        if header["scope"] == "database":
            raise InputError(_("This database already has users or data sets; a backup of a whole database is "
                               "restored only into an empty one (make one with 'python -m core store init' where "
                               "ALLIANCE_DATA_DIR or ALLIANCE_DATABASE_URL points)."))
        if actor is None:
            raise InputError(_("This database already has users: give --user NAME (a supervisor of this database) "
                               "and ALLIANCE_PASSWORD to restore a data set into it."))
        user = self._actor(conn, actor)
        self._require(user, N_("restore a backup"), Role.SUPERVISOR)
        if values.get("pseudonym_secret") != header["pseudonym_secret"]:
            raise InputError(_("This backup comes from another clinic database (researchers' pseudonyms would "
                               "change); restore it into an empty database, or into the database it came from."))
        name = header["dataset"]
        if conn.execute(sa.select(datasets.c.id).where(datasets.c.name == name)).first() is not None:
            raise InputError(_("This database already has a data set named '{name}'; restore the backup into an "
                               "empty database, or delete that data set first.").format(name=name))
        for u in archive.users:
            row = conn.execute(sa.select(users).where(users.c.username == u["username"])).first()
            if row is None:
                if u["email"] and conn.execute(sa.select(users.c.id).where(
                        (users.c.email == u["email"]) | (users.c.username == u["email"]))).first():
                    raise InputError(_("The backup's user '{name}' has the e-mail address of another user of this "
                                       "database; restore it into an empty database.").format(name=u["username"]))
            elif row.role != u["role"] or (row.therapist_code or None) != (u["therapist_code"] or None):
                raise InputError(_("The user '{name}' is a {role} with therapist code '{code}' here but a {role2} with "
                                   "therapist code '{code2}' in the backup, so her access would change; restore it "
                                   "into an empty database.").format(
                    name=u["username"], role=role_label(row.role), code=row.therapist_code or "",
                    role2=role_label(u["role"]), code2=u["therapist_code"] or ""))
        return user

    @staticmethod
    def _restore_users(conn, archive: _Archive) -> tuple[dict[int, int], int, int]:
        """The archive's users, added where missing: (archive id → id here, added, matched)."""
        ids, added, matched = {}, 0, 0
        for u in archive.users:
            row = conn.execute(sa.select(users.c.id).where(users.c.username == u["username"])).first()
            if row is not None:
                ids[u["id"]] = row.id
                matched += 1
                continue
            values = {k: v for k, v in u.items() if k != "id"}
            ids[u["id"]] = conn.execute(users.insert().values(**values).returning(users.c.id)).scalar_one()
            added += 1
        return ids, added, matched

    def _restore_rows(self, conn, archive: _Archive, user_ids: dict[int, int]) -> dict:
        """Data sets, uploads, patient-sessions, rows left out and the audit log, ids mapped."""
        dataset_ids, upload_ids = {}, {}
        for d in archive.rows("datasets"):
            values = {k: v for k, v in d.items() if k != "id"}
            dataset_ids[d["id"]] = conn.execute(datasets.insert().values(**values)
                                                .returning(datasets.c.id)).scalar_one()
        for u in archive.rows("uploads"):
            values = {k: v for k, v in u.items() if k != "id"}
            values["dataset_id"] = self._mapped(dataset_ids, u["dataset_id"], archive)
            values["user_id"] = user_ids.get(u["user_id"])
            upload_ids[u["id"]] = conn.execute(uploads.insert().values(**values).returning(uploads.c.id)).scalar_one()
        n_observations = 0
        chunk = []
        for o in archive.rows("observations"):
            chunk.append((self._mapped(dataset_ids, o["dataset_id"], archive), o["patient"], o["session"],
                          o["therapist"], o["alliance"], o["symptoms"], o["extra"], o["source_row"],
                          self._mapped(upload_ids, o["upload_id"], archive) if o["upload_id"] is not None else None))
            if len(chunk) == CHUNK:
                self._insert_observations(conn, chunk)
                n_observations += len(chunk)
                chunk = []
        if chunk:
            self._insert_observations(conn, chunk)
            n_observations += len(chunk)
        n_excluded = self._insert_chunks(conn, excluded_rows, (
            {"upload_id": self._mapped(upload_ids, e["upload_id"], archive), "row": e["row"], "reason": e["reason"]}
            for e in archive.rows("excluded_rows")))
        n_audit = self._insert_chunks(conn, audit_log, (
            {**{k: v for k, v in a.items() if k != "id"}, "user_id": user_ids.get(a["user_id"])}
            for a in archive.rows("audit_log")))
        return {"datasets_restored": len(dataset_ids), "uploads": len(upload_ids),
                "observations": n_observations, "excluded_rows": n_excluded, "audit_entries": n_audit}

    @staticmethod
    def _insert_chunks(conn, table, rows) -> int:
        n, chunk = 0, []
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK:
                conn.execute(table.insert(), chunk)
                n += len(chunk)
                chunk = []
        if chunk:
            conn.execute(table.insert(), chunk)
            n += len(chunk)
        return n

    @staticmethod
    def _mapped(ids: dict[int, int], key: int, archive: _Archive) -> int:
        if key not in ids:  # a row pointing at nothing in the archive
            raise InputError(_(DAMAGED).format(file=archive.name))
        return ids[key]


def _write_lines(archive, batch: list[bytes], digest) -> None:
    """Write and hash a batch of lines, and empty it."""
    data = b"".join(batch)
    digest.update(data)
    archive.write(data)
    batch.clear()


def _audit_name(name: str) -> str:
    return f"the data set '{name}'"


def _system_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"
