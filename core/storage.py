"""The clinic database: validated data, users and their roles, uploads and the audit log.

:class:`ClinicStore` keeps validated data (:class:`core.validation.ValidatedData`) in a database
through SQLAlchemy: an embedded SQLite file by default (``$ALLIANCE_DATA_DIR/clinic.db``, default
``./data/clinic.db``), or PostgreSQL by URL (``ALLIANCE_DATABASE_URL``). Opening a store runs the
Alembic migrations of :mod:`core.migrations` up to the newest (``upgrade head``), in one transaction.

Access rules live here, in the queries, not in the pages:

- **supervisor**: every row of every data set, the rows left out of uploads, uploads, users and the
  audit log;
- **therapist**: only the rows whose therapist is the user's therapist code (a SQL ``WHERE``), only
  the data sets holding such rows; never rows left out (their reasons quote cells and IDs), never
  the upload notes (they can name other patients);
- **researcher**: every row, with patient and therapist IDs replaced by stable pseudonyms (keyed
  HMAC-SHA256, ``P-`` / ``T-`` and 12 hex digits, with a per-database secret made by the first
  migration) and no free text: extra columns are kept only when every value is a number (plus the
  ``study`` label of multi-study data); no rows left out, no notes.

Every call re-reads the acting user from the database, so a deactivated account or a changed role
takes effect at once, also in browser sessions that signed in before.

An upload is one transaction (:meth:`ClinicStore.apply_upload`) with an optimistic lock on the data
set's version: a preview records the version it compared with, and the upload is refused with
:class:`UploadConflict` when another upload changed the data set in between. SQLite write
transactions start with ``BEGIN IMMEDIATE`` (writers queue instead of failing half-way); PostgreSQL
locks the data set's row. A process killed during an upload leaves the database as it was.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Iterator

import bcrypt
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from core.errors import InputError
from core.mapping import MEASURES, ColumnMapping
from core.validation import STUDY, ValidatedData, parse_numbers

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
#: Name of the stored demo clinic (seeded by :meth:`ClinicStore.seed_demo`).
DEMO_DATASET = "Demo clinic"
DEMO_PASSWORD = "demo"
#: Columns with a role besides patient and session; every other column of the data is "extra".
ROLE_COLUMNS = ("therapist", "alliance", "symptoms")
BASE_COLUMNS = ("patient", "therapist", "session", "alliance", "symptoms", "row")
MIN_PASSWORD_LENGTH = 8
#: Failed sign-ins of one user name within the window after which sign-in is refused for a while.
FAILED_SIGN_IN_LIMIT = 10
FAILED_SIGN_IN_WINDOW = timedelta(minutes=15)
INSERT_CHUNK = 5_000
_MIGRATION_LOCK_KEY = 4_120_230  # pg_advisory_xact_lock key: one migrating process at a time

CONFLICT_MESSAGE = "Someone else changed this data set since your preview; preview again."
BUSY_MESSAGE = ("The clinic database is busy with another change (for example another upload); "
                "try again in a moment.")


class Role(str, Enum):
    SUPERVISOR = "supervisor"
    THERAPIST = "therapist"
    RESEARCHER = "researcher"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    therapist_code: str | None
    is_demo: bool
    email: str | None = None
    is_active: bool = True


class AccessDenied(PermissionError):
    """The signed-in user may not do this; ``str(err)`` says why in plain words."""


class UploadConflict(RuntimeError):
    """The upload was not stored (another upload got there first, or the database was busy)."""


class StoreBusy(RuntimeError):
    """A write waited too long for another one to finish; nothing was changed."""


class NoSuchDataset(LookupError):
    """No data set of that name among those the user may see."""

    def __str__(self) -> str:  # LookupError would show the repr of the message
        return str(self.args[0]) if self.args else "No such data set."


class NoSuchPatient(LookupError):
    """No patient of that ID among those the user may see (the same whether it exists or not)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "No such patient."


@dataclass(frozen=True, eq=False)
class UploadPreview:
    """What an upload would do to a stored data set, compared with its version ``base_version``.

    ``added``: the new patient-sessions (rows of ``validated.data``); ``changed``: one row per
    changed cell (``patient, session, column, old, new``); ``unchanged``: patient-sessions of the
    file equal to the stored ones; ``kept``: stored patient-sessions not in the file (left as they
    are: an upload never deletes); ``base_version`` 0 means the data set does not exist yet.
    """

    dataset: str
    added: pd.DataFrame
    changed: pd.DataFrame
    unchanged: int
    base_version: int
    validated: ValidatedData
    kept: int = 0
    changed_rows: int = 0
    instruments: tuple[tuple[str, str], ...] | None = None
    is_demo: bool = False

    @property
    def is_new_dataset(self) -> bool:
        return self.base_version == 0


@dataclass(frozen=True)
class UploadResult:
    dataset: str
    added: int
    changed: int
    unchanged: int
    version: int
    kept: int = 0
    excluded: int = 0
    upload_id: int = 0


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    version: int
    is_demo: bool
    instruments: tuple[tuple[str, str], ...]
    columns: tuple[str, ...]          # role columns present: therapist, alliance, symptoms
    extra_columns: tuple[str, ...]    # other columns, as stored (researchers get fewer on load)
    updated_at: datetime


# ------------------------------------------------------------------------------------- schema
metadata = sa.MetaData()
_tz = sa.DateTime(timezone=True)

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("therapist_code", sa.String(200), nullable=True),
    sa.Column("password_hash", sa.String(100), nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("is_demo", sa.Boolean, nullable=False),
    sa.Column("created_at", _tz, nullable=False),
    sa.CheckConstraint("role IN ('supervisor', 'therapist', 'researcher')", name="ck_users_role"),
    sa.UniqueConstraint("username", name="uq_users_username"),
    sa.UniqueConstraint("email", name="uq_users_email"),
)
datasets = sa.Table(
    "datasets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("is_demo", sa.Boolean, nullable=False),
    sa.Column("instruments", sa.Text, nullable=False),     # JSON [[measure, instrument id], ...]
    sa.Column("columns", sa.Text, nullable=False),         # JSON: role columns present
    sa.Column("extra_columns", sa.Text, nullable=False),   # JSON: other columns, in order
    sa.Column("created_at", _tz, nullable=False),
    sa.Column("updated_at", _tz, nullable=False),
    sa.UniqueConstraint("name", name="uq_datasets_name"),
)
uploads = sa.Table(
    "uploads", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                      name="fk_uploads_dataset_id_datasets"),
              nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                   name="fk_uploads_user_id_users"), nullable=True),
    sa.Column("username", sa.String(200), nullable=True),
    sa.Column("at", _tz, nullable=False),
    sa.Column("source", sa.String(500), nullable=False),
    sa.Column("n_rows_read", sa.Integer, nullable=False),
    sa.Column("added", sa.Integer, nullable=False),
    sa.Column("changed", sa.Integer, nullable=False),
    sa.Column("unchanged", sa.Integer, nullable=False),
    sa.Column("kept", sa.Integer, nullable=False),
    sa.Column("excluded", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),      # the data set's version after it
    sa.Column("mapping", sa.Text, nullable=False),         # JSON ColumnMapping
    sa.Column("notes", sa.Text, nullable=False),           # JSON list of the validation notes
    sa.Column("ranges", sa.Text, nullable=False),          # JSON {measure: [min, max]}
    sa.Index("ix_uploads_dataset_id", "dataset_id"),
)
observations = sa.Table(
    "observations", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                      name="fk_observations_dataset_id_datasets"),
              nullable=False),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("session", sa.Double, nullable=False),
    sa.Column("therapist", sa.Text, nullable=True),
    sa.Column("alliance", sa.Double, nullable=True),
    sa.Column("symptoms", sa.Double, nullable=True),
    sa.Column("extra", sa.Text, nullable=False),           # JSON {column: text}
    sa.Column("source_row", sa.Integer, nullable=True),    # spreadsheet row of the upload that wrote it
    sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id", ondelete="SET NULL",
                                                     name="fk_observations_upload_id_uploads"),
              nullable=True),
    sa.UniqueConstraint("dataset_id", "patient", "session", name="uq_observations_key"),
    sa.Index("ix_observations_therapist", "dataset_id", "therapist"),
)
excluded_rows = sa.Table(
    "excluded_rows", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id", ondelete="CASCADE",
                                                     name="fk_excluded_rows_upload_id_uploads"),
              nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_excluded_rows_upload_id", "upload_id"),
)
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", _tz, nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                   name="fk_audit_log_user_id_users"), nullable=True),
    sa.Column("username", sa.String(200), nullable=True),
    sa.Column("role", sa.String(20), nullable=True),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_audit_log_username_at", "username", "at"),
)
settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# ------------------------------------------------------------------------------- engine set-up
def default_url() -> str:
    """``ALLIANCE_DATABASE_URL`` if set, else the SQLite file ``$ALLIANCE_DATA_DIR/clinic.db``."""
    url = os.environ.get("ALLIANCE_DATABASE_URL", "").strip()
    if url:
        return url
    folder = Path(os.environ.get("ALLIANCE_DATA_DIR", "data"))
    return f"sqlite:///{(folder / 'clinic.db').resolve()}"


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` URLs use psycopg 3 (the driver installed)."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def open_engine(url: str | None = None, *, sqlite_busy_seconds: float = 60.0) -> sa.Engine:
    """An engine for the URL; for SQLite: foreign keys on, WAL journal, and ``BEGIN IMMEDIATE``
    for transactions on connections with the ``alliance_write`` execution option (plain
    ``BEGIN`` otherwise, so readers never queue behind writers)."""
    url = normalise_url(url or default_url())
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    kwargs: dict = {"connect_args": {"timeout": sqlite_busy_seconds, "check_same_thread": False}}
    database = parsed.database
    if not database or database == ":memory:":
        kwargs["poolclass"] = sa.pool.StaticPool
    elif not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN/COMMIT of its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(sqlite_busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if database and database != ":memory:":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        write = conn.get_execution_options().get("alliance_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def alembic_config(connection=None):
    """Alembic's configuration, in code: the scripts of :mod:`core.migrations`; ``connection``
    (open, in a transaction) is where the migrations run."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_busy(err: Exception) -> bool:
    orig = getattr(err, "orig", err)
    if getattr(orig, "sqlstate", None) in ("55P03", "40001", "40P01"):  # lock timeout, serialization, deadlock
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


def _user(row) -> User:
    return User(id=row.id, username=row.username, display_name=row.display_name, role=Role(row.role),
                therapist_code=row.therapist_code, is_demo=bool(row.is_demo), email=row.email,
                is_active=bool(row.is_active))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean_name(text, what: str, limit: int = 200) -> str:
    text = str(text or "").strip()
    if not text:
        raise InputError(f"Give a {what}.")
    if len(text) > limit or _CONTROL.search(text):
        raise InputError(f"The {what} must be at most {limit} characters, without line breaks or tabs.")
    return text


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------- tables and diffs
def _upload_frame(validated: ValidatedData) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The validated data as stored: ``patient`` text, ``session`` float, role columns, extra
    columns as text (missing: ``""``), ``row``. Returns ``(frame, role columns, extra columns)``."""
    data = validated.data
    if data is None or len(data) == 0:
        raise InputError("There are no rows to store.")
    for col in ("patient", "session"):
        if col not in data.columns:
            raise InputError(f"The data have no '{col}' column.")
    if not any(m in data.columns for m in MEASURES):
        raise InputError("The data have neither alliance nor symptoms.")
    roles = [c for c in ROLE_COLUMNS if c in data.columns]
    extras = [str(c) for c in data.columns if c not in BASE_COLUMNS]
    frame = pd.DataFrame({"patient": data["patient"].astype(str).to_numpy(dtype=object)})
    session = pd.to_numeric(data["session"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(session).all():
        raise InputError("Every row needs a session number.")
    frame["session"] = session
    if "therapist" in roles:
        frame["therapist"] = data["therapist"].astype(str).to_numpy(dtype=object)
    for m in MEASURES:
        if m in roles:
            frame[m] = pd.to_numeric(data[m], errors="coerce").to_numpy(dtype=float)
    frame["row"] = (pd.to_numeric(data["row"], errors="coerce").to_numpy(dtype=float)
                    if "row" in data.columns else np.full(len(data), np.nan))
    for col in extras:
        values = data[col].astype(object)
        frame[col] = values.where(values.notna(), "").astype(str).to_numpy(dtype=object)
    if frame.duplicated(["patient", "session"]).any():
        first = frame.loc[frame.duplicated(["patient", "session"])].iloc[0]
        raise InputError(f"Patient {first['patient']}, session {first['session']:g} occurs twice; "
                         "each patient-session can be stored once.")
    return frame, roles, extras


@dataclass
class _Diff:
    added: np.ndarray           # positions in the upload frame
    changed_long: pd.DataFrame  # patient, session, column, old, new
    updates: list[dict]         # one per changed patient-session: the new stored values
    unchanged: int
    kept: int


def _diff(stored: pd.DataFrame, new: pd.DataFrame, roles: list[str], extras: list[str],
          session_display: pd.Series) -> _Diff:
    """Compare an upload with the stored rows on (patient, session)."""
    empty = pd.DataFrame({"patient": pd.Series(dtype=object), "session": pd.Series(dtype=object),
                          "column": pd.Series(dtype=object), "old": pd.Series(dtype=object),
                          "new": pd.Series(dtype=object)})
    if stored.empty:
        return _Diff(np.arange(len(new)), empty, [], 0, 0)
    stored_key = pd.MultiIndex.from_arrays([stored["patient"].to_numpy(dtype=object),
                                            stored["session"].to_numpy(dtype=float)])
    new_key = pd.MultiIndex.from_arrays([new["patient"].to_numpy(dtype=object),
                                         new["session"].to_numpy(dtype=float)])
    pos = stored_key.get_indexer(new_key)
    matched = np.flatnonzero(pos >= 0)
    old = stored.iloc[pos[matched]].reset_index(drop=True)
    cur = new.iloc[matched].reset_index(drop=True)
    any_change = np.zeros(len(matched), dtype=bool)
    pieces = []

    def record(column: str, mask: np.ndarray, old_values, new_values) -> None:
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        pieces.append(pd.DataFrame({
            "patient": cur["patient"].to_numpy(dtype=object)[idx],
            "session": session_display.to_numpy(dtype=object)[matched[idx]],
            "column": column,
            "old": pd.Series(old_values, dtype=object).to_numpy()[idx],
            "new": pd.Series(new_values, dtype=object).to_numpy()[idx],
        }))

    for col in roles:
        if col == "therapist":
            a = old[col].where(old[col].notna(), "").astype(str).to_numpy(dtype=object)
            b = cur[col].to_numpy(dtype=object)
            mask = a != b
        else:
            a = old[col].to_numpy(dtype=float)
            b = cur[col].to_numpy(dtype=float)
            mask = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        any_change |= mask
        record(col, mask, a, b)
    old_extra = old["extra"].tolist()
    for col in extras:
        a = np.array([d.get(col, "") for d in old_extra], dtype=object)
        b = cur[col].to_numpy(dtype=object)
        mask = a != b
        any_change |= mask
        record(col, mask, a, b)
    idx = np.flatnonzero(any_change)
    ids = old["id"].to_numpy()[idx]
    source_rows = cur["row"].to_numpy(dtype=float)[idx]
    role_values = {col: cur[col].to_numpy(dtype=object if col == "therapist" else float)[idx] for col in roles}
    extra_values = {col: cur[col].to_numpy(dtype=object)[idx] for col in extras}
    updates = []
    for j, i in enumerate(idx):
        values = {"id": int(ids[j]),
                  "source_row": None if np.isnan(source_rows[j]) else int(source_rows[j])}
        for col, array in role_values.items():
            values[col] = array[j] if col == "therapist" else _num(array[j])
        extra = dict(old_extra[i])
        extra.update({col: extra_values[col][j] for col in extras})
        values["extra"] = json.dumps(extra, ensure_ascii=False) if extra else "{}"
        updates.append(values)
    changed_long = pd.concat(pieces, ignore_index=True) if pieces else empty
    if len(changed_long):
        order = {c: k for k, c in enumerate([*roles, *extras])}
        changed_long = (changed_long.assign(_o=changed_long["column"].map(order))
                        .sort_values(["patient", "session", "_o"], kind="stable")
                        .drop(columns="_o").reset_index(drop=True))
    return _Diff(added=np.flatnonzero(pos < 0), changed_long=changed_long, updates=updates,
                 unchanged=int(len(matched) - any_change.sum()), kept=int(len(stored) - len(matched)))


def _test_pause() -> None:
    """Test hook: ``ALLIANCE_TEST_PAUSE_IN_UPLOAD=seconds`` sleeps inside the upload transaction,
    after part of the rows are written (``ALLIANCE_TEST_PAUSE_MARKER``: a file created then)."""
    seconds = os.environ.get("ALLIANCE_TEST_PAUSE_IN_UPLOAD")
    if not seconds:
        return
    marker = os.environ.get("ALLIANCE_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(float(seconds))


# --------------------------------------------------------------------------------- the store
class ClinicStore:
    """The clinic's database. Thread-safe: every call uses its own connection and transaction."""

    def __init__(self, url: str | None = None, *, bcrypt_rounds: int = 12,
                 sqlite_busy_seconds: float = 60.0) -> None:
        self.url = normalise_url(url or default_url())
        self.engine = open_engine(self.url, sqlite_busy_seconds=sqlite_busy_seconds)
        self.bcrypt_rounds = bcrypt_rounds
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._dummy_hash: bytes | None = None
        self._migrate()
        with self._read() as conn:
            secret = conn.execute(sa.select(settings.c.value)
                                  .where(settings.c.key == "pseudonym_secret")).scalar_one()
        self._secret = bytes.fromhex(secret)

    @classmethod
    def from_env(cls, **kwargs) -> "ClinicStore":
        """``ALLIANCE_DATABASE_URL`` if set, else SQLite in ``$ALLIANCE_DATA_DIR`` (default ./data)."""
        return cls(default_url(), **kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"ClinicStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # ----------------------------------------------------------------------- transactions
    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A read transaction: one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
        with self.engine.connect() as conn:
            if self.is_postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self, busy_message: str = BUSY_MESSAGE, busy_error=StoreBusy) -> Iterator[sa.Connection]:
        """A write transaction: committed at the end of the block, rolled back on any error."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(alliance_write=True)
                with conn.begin():
                    if self.is_postgres:
                        conn.exec_driver_sql("SET LOCAL lock_timeout = '120s'")
                    yield conn
        except sa_exc.OperationalError as err:
            if _is_busy(err):
                raise busy_error(busy_message) from None
            raise

    def _migrate(self) -> None:
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            conn.rollback()
        if current == head:
            return
        with self._write("The clinic database is being set up by another process; try again.") as conn:
            if self.is_postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                command.upgrade(alembic_config(conn), "head")
            except Exception as err:  # e.g. a database made by a newer version of the dashboard
                if "Can't locate revision" in str(err):
                    raise RuntimeError("The clinic database was made by a newer version of this dashboard "
                                       f"(schema {current}); update the dashboard to open it.") from None
                raise

    # ------------------------------------------------------------------------ actors
    def _actor(self, conn, actor: User | None) -> User:
        """The acting user as stored now (role, therapist code, active)."""
        if actor is None:
            raise AccessDenied("Sign in first.")
        row = conn.execute(sa.select(users).where(users.c.id == actor.id)).first()
        if row is None or not row.is_active or row.username != actor.username:
            raise AccessDenied("This account is not active any more; sign in again.")
        return _user(row)

    @staticmethod
    def _require(user: User, what: str, *roles: Role) -> None:
        if user.role not in roles:
            who = " or ".join(r.value for r in roles)
            raise AccessDenied(f"Only a {who} can {what}.")

    def _lock_setup(self, conn) -> None:
        """Serialise first set-up (users, demo) between processes."""
        conn.execute(sa.select(settings.c.key).where(settings.c.key == "pseudonym_secret").with_for_update())

    def _audit(self, conn, user: User | None, action: str, detail: str = "", username: str | None = None) -> None:
        conn.execute(audit_log.insert().values(
            at=_now(), user_id=user.id if user else None,
            username=(user.username if user else username)[:200] if (user or username) else None,
            role=user.role.value if user else None, action=action[:100], detail=str(detail)[:4000]))

    # ------------------------------------------------------------------------ users
    def _hash(self, password: str | None, is_demo: bool) -> str | None:
        if password is None:
            return None
        password = str(password)
        if len(password.encode("utf-8")) > 72:
            raise InputError("A password can be at most 72 bytes long (about 72 letters); choose a shorter one.")
        if not is_demo and len(password) < MIN_PASSWORD_LENGTH:
            raise InputError(f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.")
        return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=self.bcrypt_rounds)).decode("ascii")

    @staticmethod
    def _check_password(password: str | None, hashed: str | bytes) -> bool:
        try:
            return bcrypt.checkpw(str(password or "").encode("utf-8"),
                                  hashed.encode("ascii") if isinstance(hashed, str) else hashed)
        except ValueError:  # longer than 72 bytes, or not a bcrypt hash
            return False

    def _insert_user(self, conn, username, password_hash, role: Role, display_name, therapist_code,
                     is_demo: bool, email) -> User:
        clash = (users.c.username == username) | (users.c.email == username)
        if email:
            clash = clash | (users.c.username == email) | (users.c.email == email)
        if conn.execute(sa.select(users.c.id).where(clash)).first():
            raise InputError(f"A user named '{username}' (or with that e-mail) already exists.")
        uid = conn.execute(users.insert().values(
            username=username, email=email, display_name=display_name, role=role.value,
            therapist_code=therapist_code, password_hash=password_hash, is_active=True,
            is_demo=bool(is_demo), created_at=_now()).returning(users.c.id)).scalar_one()
        return User(id=uid, username=username, display_name=display_name, role=role,
                    therapist_code=therapist_code, is_demo=bool(is_demo), email=email, is_active=True)

    def create_user(self, actor: User | None, username: str, password: str | None, role: Role | str,
                    display_name: str | None = None, therapist_code: str | None = None,
                    is_demo: bool = False, email: str | None = None) -> User:
        """Add a user (supervisors only; ``actor=None`` only while the database has no user: the
        first user, a supervisor). ``password=None``: no local password (single sign-on only).
        Therapists need the therapist code used in the data's therapist column."""
        try:
            role = Role(role)
        except ValueError:
            raise InputError(f"Unknown role '{role}'; choose supervisor, therapist or researcher.") from None
        username = _clean_name(username, "user name").lower()
        email = _clean_name(email, "e-mail address", 320).lower() if email else None
        display_name = _clean_name(display_name or username, "display name")
        code = str(therapist_code or "").strip() or None
        if role is Role.THERAPIST and not code:
            raise InputError("A therapist needs a therapist code: the therapist's name or code exactly as in "
                             "the data's therapist column (for example 'T01 Ana').")
        if role is not Role.THERAPIST:
            code = None
        if code and (len(code) > 200 or _CONTROL.search(code)):
            raise InputError("The therapist code must be at most 200 characters, without line breaks or tabs.")
        hashed = self._hash(password, is_demo)
        try:
            with self._write() as conn:
                if actor is None:
                    self._lock_setup(conn)
                    if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                        raise AccessDenied("Sign in as a supervisor to add users.")
                    if role is not Role.SUPERVISOR:
                        raise InputError("The first user must be a supervisor.")
                    user = None
                else:
                    user = self._actor(conn, actor)
                    self._require(user, "add users", Role.SUPERVISOR)
                created = self._insert_user(conn, username, hashed, role, display_name, code, is_demo, email)
                self._audit(conn, user or created, "user created",
                            f"{created.username} ({role.value}{', ' + code if code else ''})")
        except sa_exc.IntegrityError:
            raise InputError(f"A user named '{username}' (or with that e-mail) already exists.") from None
        return created

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this user name and password (bcrypt), else ``None``. Every attempt
        is in the audit log; after 10 failures of one user name in 15 minutes sign-in is refused
        for that name until the window has passed."""
        name = str(username or "").strip().lower()[:200]
        with self._read() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == name)).first() if name else None
            failures = conn.execute(sa.select(sa.func.count()).select_from(audit_log).where(
                audit_log.c.username == name, audit_log.c.action == "sign-in failed",
                audit_log.c.at > _now() - FAILED_SIGN_IN_WINDOW)).scalar_one()
        if row is not None and row.password_hash:
            ok = self._check_password(password, row.password_hash)
        else:  # the same bcrypt work whether or not the name exists
            if self._dummy_hash is None:
                self._dummy_hash = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=self.bcrypt_rounds))
            self._check_password(password, self._dummy_hash)
            ok = False
        user = _user(row) if row is not None else None
        if failures >= FAILED_SIGN_IN_LIMIT:
            why = "too many failed attempts: refused for 15 minutes"
        elif user is None:
            why = "unknown user name"
        elif not user.is_active:
            why = "account deactivated"
        elif not row.password_hash:
            why = "no password (single sign-on only)"
        elif not ok:
            why = "wrong password"
        else:
            why = ""
        with self._write() as conn:
            if why:
                self._audit(conn, None, "sign-in failed", why, username=name or "(empty)")
                return None
            self._audit(conn, user, "sign-in", "password")
        return user

    def user_for_identity(self, email_or_username: str) -> User | None:
        """The active user whose user name or e-mail is the identity of an OpenID Connect sign-in
        (``st.login``), else ``None``; logs the sign-in (or the failed one)."""
        ident = str(email_or_username or "").strip().lower()[:320]
        if not ident:
            return None
        with self._write() as conn:
            row = conn.execute(sa.select(users).where(
                (users.c.username == ident) | (users.c.email == ident)).order_by(users.c.id)).first()
            if row is None or not row.is_active:
                self._audit(conn, None, "sign-in failed",
                            "single sign-on: " + ("not registered" if row is None else "account deactivated"),
                            username=ident[:200])
                return None
            user = _user(row)
            self._audit(conn, user, "sign-in", "single sign-on")
        return user

    def users(self, actor: User) -> list[User]:
        """Every user, deactivated ones too (supervisors only)."""
        with self._read() as conn:
            self._require(self._actor(conn, actor), "see the users", Role.SUPERVISOR)
            rows = conn.execute(sa.select(users).order_by(users.c.username)).all()
        return [_user(r) for r in rows]

    def demo_users(self) -> list[User]:
        """The active demo accounts, for the sign-in page (their password is ``demo``)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(users).where(users.c.is_demo.is_(True), users.c.is_active.is_(True))
                                .order_by(users.c.id)).all()
        return [_user(r) for r in rows]

    def _target(self, conn, username: str):
        row = conn.execute(sa.select(users).where(users.c.username == str(username or "").strip().lower())).first()
        if row is None:
            raise InputError(f"There is no user named '{username}'.")
        return row

    def set_password(self, actor: User, username: str, password: str | None) -> None:
        """A new password (supervisors for anyone; every user for themself)."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            target = self._target(conn, username)
            if target.id != user.id:
                self._require(user, "change another user's password", Role.SUPERVISOR)
            hashed = self._hash(password, bool(target.is_demo))
            conn.execute(users.update().where(users.c.id == target.id).values(password_hash=hashed))
            self._audit(conn, user, "password changed", target.username)

    def deactivate(self, actor: User, username: str) -> None:
        """The user can no longer sign in, and their open sessions stop working (supervisors only).
        The last active supervisor cannot be deactivated."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, "deactivate users", Role.SUPERVISOR)
            target = self._target(conn, username)
            if target.role == Role.SUPERVISOR.value and target.is_active:
                others = conn.execute(sa.select(sa.func.count()).select_from(users).where(
                    users.c.role == Role.SUPERVISOR.value, users.c.is_active.is_(True),
                    users.c.id != target.id)).scalar_one()
                if not others:
                    raise InputError("This is the last active supervisor; add another supervisor first.")
            conn.execute(users.update().where(users.c.id == target.id).values(is_active=False))
            self._audit(conn, user, "user deactivated", target.username)

    def reactivate(self, actor: User, username: str) -> None:
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, "reactivate users", Role.SUPERVISOR)
            target = self._target(conn, username)
            conn.execute(users.update().where(users.c.id == target.id).values(is_active=True))
            self._audit(conn, user, "user reactivated", target.username)

    # ------------------------------------------------------------------------ audit
    def log(self, actor: User, action: str, detail: str = "") -> None:
        """Record an action of a signed-in user (e.g. ``'patient view'``, ``'export'``)."""
        action = _clean_name(action, "action", 100)
        with self._write() as conn:
            self._audit(conn, self._actor(conn, actor), action, detail)

    def audit_log(self, actor: User, limit: int = 1000) -> pd.DataFrame:
        """The newest ``limit`` entries, newest first: at (UTC), username, role, action, detail."""
        with self._read() as conn:
            self._require(self._actor(conn, actor), "read the audit log", Role.SUPERVISOR)
            rows = conn.execute(sa.select(audit_log.c.at, audit_log.c.username, audit_log.c.role,
                                          audit_log.c.action, audit_log.c.detail)
                                .order_by(audit_log.c.id.desc()).limit(int(limit))).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=["at", "username", "role", "action", "detail"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        for col in ("username", "role", "action", "detail"):
            frame[col] = frame[col].fillna("").astype(str)
        return frame

    # ------------------------------------------------------------------------ data: access rule
    @staticmethod
    def _row_filter(user: User):
        """THE access rule for observation rows, as a SQL condition."""
        if user.role is Role.SUPERVISOR or user.role is Role.RESEARCHER:
            return sa.true()
        if user.role is Role.THERAPIST and user.therapist_code:
            return observations.c.therapist == user.therapist_code
        return sa.false()

    def _visible_dataset(self, conn, user: User, name: str):
        row = conn.execute(sa.select(datasets).where(datasets.c.name == str(name))).first()
        if row is not None and user.role is Role.THERAPIST:
            mine = conn.execute(sa.select(observations.c.id).where(
                observations.c.dataset_id == row.id, self._row_filter(user)).limit(1)).first()
            row = row if mine else None
        if row is None:
            raise NoSuchDataset(f"There is no data set named '{name}' among those you can see.")
        return row

    def _pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self._secret, f"{kind}\x1f{value}".encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{kind}-{digest[:12]}"

    def _pseudonymise(self, values: pd.Series, kind: str) -> pd.Series:
        mapping = {v: self._pseudonym(kind, v) for v in pd.unique(values.dropna())}
        return values.map(mapping)

    def dataset_names(self, actor: User) -> list[str]:
        """The data sets the user may see, oldest first (therapists: those with their patients)."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            query = sa.select(datasets.c.name).order_by(datasets.c.id)
            if user.role is not Role.SUPERVISOR and user.role is not Role.RESEARCHER:
                query = query.where(sa.exists(sa.select(observations.c.id).where(
                    observations.c.dataset_id == datasets.c.id, self._row_filter(user))))
            return [r.name for r in conn.execute(query)]

    def dataset_info(self, actor: User, name: str) -> DatasetInfo:
        with self._read() as conn:
            row = self._visible_dataset(conn, self._actor(conn, actor), name)
        return DatasetInfo(name=row.name, version=int(row.version), is_demo=bool(row.is_demo),
                           instruments=tuple(tuple(x) for x in json.loads(row.instruments)),
                           columns=tuple(json.loads(row.columns)),
                           extra_columns=tuple(json.loads(row.extra_columns)),
                           updated_at=row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=timezone.utc))

    def dataset_version(self, actor: User, name: str) -> int:
        """The data set's version: 1 after its first upload, +1 with each upload."""
        return self.dataset_info(actor, name).version

    def _frame(self, conn, user: User, ds, patient: str | None = None) -> pd.DataFrame:
        """The observation rows the user may see, as a table (real IDs; see :meth:`_present`)."""
        o = observations
        query = (sa.select(o.c.patient, o.c.session, o.c.therapist, o.c.alliance, o.c.symptoms,
                           o.c.source_row, o.c.extra)
                 .where(o.c.dataset_id == ds.id, self._row_filter(user)))
        if patient is not None:
            query = query.where(o.c.patient == patient)
        rows = conn.execute(query).all()
        roles = json.loads(ds.columns)
        extras = json.loads(ds.extra_columns)
        cols = list(zip(*rows)) if rows else [()] * 7
        frame = pd.DataFrame({"patient": pd.Series(cols[0], dtype=object).astype(str)})
        if "therapist" in roles:
            frame["therapist"] = pd.Series(cols[2], dtype=object).fillna("").astype(str)
        session = np.array(cols[1], dtype=float)
        frame["session"] = session.astype(np.int64) if (len(session) == 0 or (session % 1 == 0).all()) else session
        for k, m in ((3, "alliance"), (4, "symptoms")):
            if m in roles:
                frame[m] = np.array([np.nan if v is None else v for v in cols[k]], dtype=float)
        frame["row"] = np.array([0 if v is None else v for v in cols[5]], dtype=np.int64)
        if extras:
            parsed = [json.loads(t) for t in cols[6]]
            for col in extras:
                frame[col] = pd.Series([d.get(col, "") for d in parsed], dtype=object).astype(str)
        return frame

    def _present(self, user: User, frame: pd.DataFrame) -> pd.DataFrame:
        """The role's view of rows: researchers get pseudonyms and only numeric extra columns."""
        if user.role is Role.RESEARCHER:
            frame = frame.copy()
            frame["patient"] = self._pseudonymise(frame["patient"], "P")
            if "therapist" in frame.columns:
                frame["therapist"] = self._pseudonymise(frame["therapist"], "T")
            for col in [c for c in frame.columns if c not in BASE_COLUMNS]:
                if col == STUDY:
                    continue
                values, missing, non_numeric = parse_numbers(frame[col].astype(str))
                if non_numeric.any() or missing.all():
                    frame = frame.drop(columns=col)
                else:
                    frame[col] = values.to_numpy(dtype=float)
        return frame.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)

    def load(self, actor: User, dataset: str) -> ValidatedData:
        """The data set as the user may see it (see the module docstring for the rule)."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            data = self._present(user, self._frame(conn, user, ds))
            last = conn.execute(sa.select(uploads).where(uploads.c.dataset_id == ds.id)
                                .order_by(uploads.c.id.desc()).limit(1)).first()
            excluded = pd.DataFrame({"row": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)})
            if user.role is Role.SUPERVISOR and last is not None:
                rows = conn.execute(sa.select(excluded_rows.c.row, excluded_rows.c.reason)
                                    .where(excluded_rows.c.upload_id == last.id)
                                    .order_by(excluded_rows.c.row, excluded_rows.c.id)).all()
                if rows:
                    excluded = pd.DataFrame({"row": np.array([r.row for r in rows], dtype=np.int64),
                                             "reason": pd.Series([r.reason for r in rows], dtype=object)})
        mapping = ColumnMapping(**json.loads(last.mapping)) if last is not None else ColumnMapping()
        ranges = {k: tuple(v) for k, v in json.loads(last.ranges).items()} if last is not None else {}
        if user.role is Role.SUPERVISOR:
            notes = tuple(json.loads(last.notes)) if last is not None else ()
            source = last.source if last is not None else ds.name
            n_read = int(last.n_rows_read) if last is not None else len(data)
        else:
            notes, source, n_read = (), ds.name, len(data)
        return ValidatedData(data=data, excluded=excluded, notes=notes, mapping=mapping, source=source,
                             n_rows_read=n_read, ranges=ranges)

    def load_dataset(self, actor: User, dataset: str):
        """:meth:`load` as a :class:`core.datasets.Dataset` (name, demo flag, instruments)."""
        from core.datasets import Dataset

        info = self.dataset_info(actor, dataset)
        return Dataset(name=info.name, validated=self.load(actor, dataset), is_demo=info.is_demo,
                       instruments=info.instruments)

    def patient_ids(self, actor: User, dataset: str) -> list[str]:
        """The patient IDs the user may see (researchers: pseudonyms), sorted."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            ids = [r[0] for r in conn.execute(sa.select(observations.c.patient).distinct().where(
                observations.c.dataset_id == ds.id, self._row_filter(user)))]
        if user.role is Role.RESEARCHER:
            ids = [self._pseudonym("P", p) for p in ids]
        return sorted(ids)

    def patient_sessions(self, actor: User, dataset: str, patient: str, *, log_view: bool = True) -> pd.DataFrame:
        """One patient's rows as the user may see them (researchers give the pseudonym), logged as a
        ``'patient view'``. :class:`NoSuchPatient` when the user may not see that patient, with the
        same message whether or not the patient exists."""
        patient = str(patient)
        with self._read() as conn:
            user = self._actor(conn, actor)
            ds = self._visible_dataset(conn, user, dataset)
            real = patient
            if user.role is Role.RESEARCHER:
                ids = [r[0] for r in conn.execute(sa.select(observations.c.patient).distinct()
                                                  .where(observations.c.dataset_id == ds.id))]
                real = next((p for p in ids if self._pseudonym("P", p) == patient), None)
            frame = self._frame(conn, user, ds, patient=real) if real is not None else None
        if frame is None or frame.empty:
            raise NoSuchPatient(f"There is no patient '{patient}' among the patients you can see in '{dataset}'.")
        if log_view:
            self.log(actor, "patient view", f"{ds.name}: {patient}")
        return self._present(user, frame)

    def uploads(self, actor: User, dataset: str) -> pd.DataFrame:
        """The uploads of a data set, newest first (supervisors only)."""
        with self._read() as conn:
            user = self._actor(conn, actor)
            self._require(user, "see the uploads", Role.SUPERVISOR)
            ds = self._visible_dataset(conn, user, dataset)
            rows = conn.execute(sa.select(uploads.c.at, uploads.c.username, uploads.c.source, uploads.c.added,
                                          uploads.c.changed, uploads.c.unchanged, uploads.c.kept,
                                          uploads.c.excluded, uploads.c.version)
                                .where(uploads.c.dataset_id == ds.id).order_by(uploads.c.id.desc())).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=["at", "username", "source", "added", "changed",
                                                                "unchanged", "kept", "excluded", "version"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame

    # ------------------------------------------------------------------------ data: uploads
    def _stored(self, conn, dataset_id: int) -> pd.DataFrame:
        o = observations
        rows = conn.execute(sa.select(o.c.id, o.c.patient, o.c.session, o.c.therapist, o.c.alliance,
                                      o.c.symptoms, o.c.extra).where(o.c.dataset_id == dataset_id)).all()
        cols = list(zip(*rows)) if rows else [()] * 7
        return pd.DataFrame({
            "id": np.array(cols[0], dtype=np.int64),
            "patient": pd.Series(cols[1], dtype=object),
            "session": np.array(cols[2], dtype=float),
            "therapist": pd.Series(cols[3], dtype=object),
            "alliance": np.array([np.nan if v is None else v for v in cols[4]], dtype=float),
            "symptoms": np.array([np.nan if v is None else v for v in cols[5]], dtype=float),
            "extra": pd.Series([{} if t == "{}" else json.loads(t) for t in cols[6]], dtype=object),
        })

    @staticmethod
    def _check_columns(ds, roles: list[str]) -> None:
        stored = json.loads(ds.columns)
        if sorted(stored) != sorted(roles):
            def words(cols):
                return ", ".join(cols) if cols else "no therapist or measure"
            raise InputError(f"The data set '{ds.name}' has {words(stored)}; these data have {words(roles)}. "
                             "Map the same columns, or store the data under a new name.")

    def preview_upload(self, actor: User, dataset: str, validated: ValidatedData, *,
                       instruments: tuple[tuple[str, str], ...] | None = None) -> UploadPreview:
        """What storing ``validated`` as (or into) the data set ``dataset`` would add, change and leave
        alone (supervisors only). Nothing is written."""
        name = _clean_name(dataset, "name for the data set")
        new, roles, extras = _upload_frame(validated)
        with self._read() as conn:
            self._require(self._actor(conn, actor), "store data for the clinic", Role.SUPERVISOR)
            ds = conn.execute(sa.select(datasets).where(datasets.c.name == name)).first()
            if ds is not None:
                self._check_columns(ds, roles)
                stored = self._stored(conn, ds.id)
            else:
                stored = self._stored(conn, -1)
        diff = _diff(stored, new, roles, extras, validated.data["session"])
        added = validated.data.iloc[diff.added].reset_index(drop=True)
        return UploadPreview(dataset=name, added=added, changed=diff.changed_long, unchanged=diff.unchanged,
                             base_version=int(ds.version) if ds is not None else 0, validated=validated,
                             kept=diff.kept, changed_rows=len(diff.updates),
                             instruments=tuple(tuple(x) for x in instruments) if instruments is not None else None)

    def apply_upload(self, actor: User, preview: UploadPreview) -> UploadResult:
        """Store a previewed upload in ONE transaction: new patient-sessions inserted, changed ones
        updated, every other stored row left alone (nothing is deleted), the rows left out of this
        upload kept with their reasons, the upload recorded and logged. Refused with
        :class:`UploadConflict` (nothing written) when the data set changed since the preview."""
        name = _clean_name(preview.dataset, "name for the data set")
        new, roles, extras = _upload_frame(preview.validated)
        with self._write(BUSY_MESSAGE, UploadConflict) as conn:
            user = self._actor(conn, actor)
            self._require(user, "store data for the clinic", Role.SUPERVISOR)
            result = self._store(conn, user, name, preview.validated, new, roles, extras,
                                 preview.base_version, preview.instruments, is_demo=False)
        return result

    _OBSERVATION_COLUMNS = ("dataset_id", "patient", "session", "therapist", "alliance", "symptoms", "extra",
                            "source_row", "upload_id")

    def _insert_observations(self, conn, records: list[tuple]) -> None:
        """Insert rows fast, in the connection's transaction: COPY on PostgreSQL, executemany on SQLite."""
        names = ", ".join(self._OBSERVATION_COLUMNS)
        if self.is_postgres:
            cursor = conn.connection.dbapi_connection.cursor()
            with cursor.copy(f"COPY observations ({names}) FROM STDIN") as copy:
                for record in records:
                    copy.write_row(record)
            cursor.close()
        else:
            marks = ", ".join("?" * len(self._OBSERVATION_COLUMNS))
            conn.exec_driver_sql(f"INSERT INTO observations ({names}) VALUES ({marks})", records)

    def _store(self, conn, user: User | None, name: str, validated: ValidatedData, new: pd.DataFrame,
               roles: list[str], extras: list[str], base_version: int,
               instruments: tuple | None, is_demo: bool) -> UploadResult:
        ds = conn.execute(sa.select(datasets).where(datasets.c.name == name).with_for_update()).first()
        now = _now()
        if base_version == 0:
            if ds is not None:
                raise UploadConflict(CONFLICT_MESSAGE)
            try:
                with conn.begin_nested():  # a savepoint: a lost race must not abort the transaction
                    dataset_id = conn.execute(datasets.insert().values(
                        name=name, version=1, is_demo=is_demo, instruments=json.dumps(instruments or []),
                        columns=json.dumps(roles), extra_columns=json.dumps(extras), created_at=now,
                        updated_at=now).returning(datasets.c.id)).scalar_one()
            except sa_exc.IntegrityError:
                raise UploadConflict(CONFLICT_MESSAGE) from None
            version, stored_extras = 1, []
            stored = self._stored(conn, -1)
        else:
            if ds is None or int(ds.version) != int(base_version):
                raise UploadConflict(CONFLICT_MESSAGE)
            self._check_columns(ds, roles)
            bumped = conn.execute(datasets.update().where(datasets.c.id == ds.id,
                                                          datasets.c.version == base_version)
                                  .values(version=base_version + 1, updated_at=now))
            if bumped.rowcount != 1:
                raise UploadConflict(CONFLICT_MESSAGE)
            dataset_id, version = ds.id, base_version + 1
            stored_extras = json.loads(ds.extra_columns)
            stored = self._stored(conn, dataset_id)
        diff = _diff(stored, new, roles, extras, validated.data["session"])
        excluded = validated.excluded
        upload_id = conn.execute(uploads.insert().values(
            dataset_id=dataset_id, user_id=user.id if user else None,
            username=user.username if user else "demo set-up", at=now, source=str(validated.source)[:500],
            n_rows_read=int(validated.n_rows_read or len(validated.data)), added=len(diff.added),
            changed=len(diff.updates), unchanged=diff.unchanged, kept=diff.kept, excluded=len(excluded),
            version=version, mapping=json.dumps(validated.mapping.as_dict()),
            notes=json.dumps(list(validated.notes), ensure_ascii=False),
            ranges=json.dumps({k: list(v) for k, v in (validated.ranges or {}).items()}),
        ).returning(uploads.c.id)).scalar_one()

        added = new.iloc[diff.added]
        n = len(added)
        nothing = [None] * n
        if extras:
            extra_cols = [added[c].to_numpy(dtype=object) for c in extras]
            extra_json = [json.dumps(dict(zip(extras, values)), ensure_ascii=False) for values in zip(*extra_cols)]
        else:
            extra_json = ["{}"] * n
        records = list(zip(
            [dataset_id] * n, added["patient"].to_numpy(dtype=object).tolist(),
            added["session"].to_numpy(dtype=float).tolist(),
            added["therapist"].to_numpy(dtype=object).tolist() if "therapist" in roles else nothing,
            *[[_num(x) for x in added[m].to_numpy(dtype=float)] if m in roles else nothing for m in MEASURES],
            extra_json, [None if math.isnan(x) else int(x) for x in added["row"].to_numpy(dtype=float)],
            [upload_id] * n))
        chunks = [records[k:k + INSERT_CHUNK] for k in range(0, len(records), INSERT_CHUNK)]
        for k, chunk in enumerate(chunks):
            self._insert_observations(conn, chunk)
            if k == max(0, len(chunks) // 2 - 1):
                _test_pause()
        if diff.updates:
            set_cols = [*roles, "extra", "source_row"]
            mark = "%s" if self.is_postgres else "?"
            statement = (f"UPDATE observations SET {', '.join(f'{c} = {mark}' for c in set_cols)}, "
                         f"upload_id = {mark} WHERE id = {mark}")
            params = [tuple(u[c] for c in set_cols) + (upload_id, u["id"]) for u in diff.updates]
            for k in range(0, len(params), INSERT_CHUNK):
                conn.exec_driver_sql(statement, params[k:k + INSERT_CHUNK])
        if not chunks:
            _test_pause()
        merged_extras = list(stored_extras) + [c for c in extras if c not in stored_extras]
        dataset_values = {"extra_columns": json.dumps(merged_extras)}
        if instruments is not None:
            dataset_values["instruments"] = json.dumps([list(x) for x in instruments])
        conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(**dataset_values))
        if len(excluded):
            conn.execute(excluded_rows.insert(), [
                {"upload_id": upload_id, "row": int(r), "reason": str(t)}
                for r, t in zip(excluded["row"], excluded["reason"])])
        result = UploadResult(dataset=name, added=len(diff.added), changed=len(diff.updates),
                              unchanged=diff.unchanged, version=version, kept=diff.kept,
                              excluded=len(excluded), upload_id=int(upload_id))
        self._audit(conn, user, "upload",
                    f"{name}: {result.added} added, {result.changed} changed, {result.unchanged} unchanged, "
                    f"{result.kept} not in the file kept, {result.excluded} rows left out "
                    f"(file {validated.source}; version {version})",
                    username=None if user else "demo set-up")
        return result

    def delete_dataset(self, actor: User, dataset: str) -> None:
        """Remove a data set with its rows, uploads and rows left out (supervisors only), e.g. the
        demo clinic once the clinic's own data are in. Logged."""
        with self._write() as conn:
            user = self._actor(conn, actor)
            self._require(user, "delete data sets", Role.SUPERVISOR)
            ds = self._visible_dataset(conn, user, dataset)
            conn.execute(datasets.delete().where(datasets.c.id == ds.id))
            self._audit(conn, user, "data set deleted", ds.name)

    # ------------------------------------------------------------------------ demo
    DEMO_USERS = (
        ("demo-supervisor", "Demo supervisor", Role.SUPERVISOR, None),
        ("demo-therapist-ana", "Demo therapist Ana (T01)", Role.THERAPIST, "T01 Ana"),
        ("demo-therapist-bruno", "Demo therapist Bruno (T02)", Role.THERAPIST, "T02 Bruno"),
        ("demo-researcher", "Demo researcher", Role.RESEARCHER, None),
    )

    def seed_demo(self) -> bool:
        """On a database without users: the demo users (password ``demo``, ``is_demo``) and the demo
        clinic as the data set ``'Demo clinic'``. Returns whether it seeded; safe to call at every
        start and from several processes at once."""
        with self._read() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                return False
        from core.datasets import demo_dataset

        demo = demo_dataset()
        new, roles, extras = _upload_frame(demo.validated)
        hashed = [self._hash(DEMO_PASSWORD, True) for _ in self.DEMO_USERS]
        with self._write() as conn:
            self._lock_setup(conn)
            if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one():
                return False
            for (username, display, role, code), h in zip(self.DEMO_USERS, hashed):
                self._insert_user(conn, username, h, role, display, code, True, None)
            self._audit(conn, None, "demo set-up", "demo users and the demo clinic created",
                        username="demo set-up")
            if conn.execute(sa.select(datasets.c.id).where(datasets.c.name == DEMO_DATASET)).first() is None:
                self._store(conn, None, DEMO_DATASET, demo.validated, new, roles, extras, 0,
                            demo.instruments, is_demo=True)
        return True
