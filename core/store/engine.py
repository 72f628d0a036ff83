"""Connecting to the clinic database: the URL, the engine (SQLite or PostgreSQL), transactions
and the Alembic migrations run when a store opens. :class:`StoreBase` is the part of
:class:`core.store.ClinicStore` that every other part uses."""
from __future__ import annotations

import os
import random
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from core.files import create_private_file, private_folder, refuse_links
from core.i18n import N_, _
from core.store.errors import BUSY_MESSAGE, StoreBusy, StoreUnwritable
from core.store.schema import settings

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_MIGRATION_LOCK_KEY = 4_120_230  # pg_advisory_xact_lock key: one migrating process at a time


def _data_dir() -> Path:
    return Path(os.environ.get("ALLIANCE_DATA_DIR", "data")).resolve()


def default_url() -> str:
    """The clinic's database: ``ALLIANCE_DATABASE_URL`` if set, else the SQLite file
    ``$ALLIANCE_DATA_DIR/clinic.db`` (what ``python -m core store`` works on)."""
    url = os.environ.get("ALLIANCE_DATABASE_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{_data_dir() / 'clinic.db'}"


def demo_url() -> str:
    """The demo database, ``$ALLIANCE_DATA_DIR/demo.db``: the only one with demo accounts."""
    return f"sqlite:///{_data_dir() / 'demo.db'}"


def clinic_database_configured() -> bool:
    """True when ``ALLIANCE_DATABASE_URL`` is set or ``store init`` made ``$ALLIANCE_DATA_DIR/clinic.db``."""
    return bool(os.environ.get("ALLIANCE_DATABASE_URL", "").strip()) or (_data_dir() / "clinic.db").exists()


def dashboard_url() -> str:
    """The database the dashboard opens: the clinic's (:func:`default_url`) when one is configured,
    else the demo database (:func:`demo_url`), which the dashboard seeds with the demo accounts."""
    return default_url() if clinic_database_configured() else demo_url()


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
    ``BEGIN`` otherwise, so readers never queue behind writers).

    A SQLite file is created here, ``0600`` in a folder created ``0700`` (it holds the clinic's
    data and secrets), and is never opened through a symbolic link (nor its ``-wal``, ``-shm`` and
    ``-journal`` files, which SQLite creates with the database file's permissions)."""
    url = normalise_url(url or default_url())
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    kwargs: dict = {"connect_args": {"timeout": sqlite_busy_seconds, "check_same_thread": False}}
    database = parsed.database
    if not database or database == ":memory:":
        kwargs["poolclass"] = sa.pool.StaticPool
    elif not database.startswith("file:"):
        private_folder(Path(database).parent)
        refuse_links(*(database + suffix for suffix in ("", "-wal", "-shm", "-journal")))
        create_private_file(database)
    engine = sa.create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN/COMMIT of its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(sqlite_busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if database and database != ":memory:":
            _set_wal(cursor, sqlite_busy_seconds)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        write = conn.get_execution_options().get("alliance_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _set_wal(cursor, busy_seconds: float) -> None:
    """``PRAGMA journal_mode = WAL``, waiting (up to ``busy_seconds``) while another connection
    holds the database: SQLite answers this pragma "database is locked" at once, without its busy
    handler, when several processes open a new database together (the first one converts it)."""
    deadline = time.monotonic() + busy_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if not _is_busy(err) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))


def alembic_config(connection=None):
    """Alembic's configuration, in code: the scripts of :mod:`core.store.migrations`; ``connection``
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


#: What the database server says when it cannot write, by cause (SQLite's messages; PostgreSQL's
#: SQLSTATE: 53100 disk_full, 53xxx insufficient resources, 25006 read_only_sql_transaction, 58030
#: io_error; its "No space left on device" when a file cannot be extended).
_DISK_FULL = ("database or disk is full", "no space left on device", "could not extend file", "disk quota")
_READ_ONLY = ("attempt to write a readonly database", "read-only transaction", "readonly database",
              "read-only file system")
DISK_FULL_MESSAGE = N_("The clinic database could not be written: the disk it is on is full. Nothing was "
                       "changed; free some space (or ask the administrator to) and try again.")
READ_ONLY_MESSAGE = N_("The clinic database could not be written: it is read-only (its file, folder or "
                       "server does not accept changes). Nothing was changed; ask the administrator to make it "
                       "writable and try again.")


def unwritable_message(err: BaseException) -> str | None:
    """The plain sentence for a database that cannot be written (disk full, read-only), or ``None``
    when ``err`` is something else."""
    orig = getattr(err, "orig", err)
    state = str(getattr(orig, "sqlstate", None) or "")
    text = str(orig).lower()
    if state.startswith("53") or any(t in text for t in _DISK_FULL):
        return _(DISK_FULL_MESSAGE)
    if state == "25006" or any(t in text for t in _READ_ONLY):
        return _(READ_ONLY_MESSAGE)
    return None


@contextmanager
def plain_store_errors() -> Iterator[None]:
    """A database that cannot be written (disk full, read-only) as :class:`StoreUnwritable` with one
    plain sentence; every other error as it was."""
    try:
        yield
    except (sa_exc.DBAPIError, sqlite3.Error) as err:
        message = unwritable_message(err)
        if message is None:
            raise
        raise StoreUnwritable(message) from None


class StoreBase:
    """The engine, the transactions and the migrations of a clinic database."""

    def __init__(self, url: str | None = None, *, bcrypt_rounds: int = 12,
                 sqlite_busy_seconds: float = 60.0) -> None:
        self.url = normalise_url(url or default_url())
        self.engine = open_engine(self.url, sqlite_busy_seconds=sqlite_busy_seconds)
        self.bcrypt_rounds = bcrypt_rounds
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._dummy_hash: bytes | None = None
        with plain_store_errors():
            self._migrate()
        with self._read() as conn:
            values = dict(conn.execute(sa.select(settings.c.key, settings.c.value)).all())
        self._secret = bytes.fromhex(values["pseudonym_secret"])
        self._session_secret = bytes.fromhex(values["session_secret"])

    @classmethod
    def from_env(cls, **kwargs) -> "StoreBase":
        """``ALLIANCE_DATABASE_URL`` if set, else SQLite in ``$ALLIANCE_DATA_DIR`` (default ./data)."""
        return cls(default_url(), **kwargs)

    def database_kind(self) -> str | None:
        """``'demo'`` (the demo database, with demo accounts), ``'clinic'`` (made by ``store init``) or
        ``None`` (neither yet, e.g. a database reached by ``ALLIANCE_DATABASE_URL``)."""
        with self._read() as conn:
            return conn.execute(sa.select(settings.c.value).where(settings.c.key == "database_kind")).scalar()

    @property
    def is_demo_database(self) -> bool:
        return self.database_kind() == "demo"

    def _set_kind(self, conn, kind: str) -> None:
        if conn.execute(sa.select(settings.c.key).where(settings.c.key == "database_kind")).first():
            conn.execute(settings.update().where(settings.c.key == "database_kind").values(value=kind))
        else:
            conn.execute(settings.insert().values(key="database_kind", value=kind))

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"ClinicStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # ----------------------------------------------------------------------- transactions
    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A read transaction: one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
        with plain_store_errors(), self.engine.connect() as conn:
            if self.is_postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self, busy_message: str = BUSY_MESSAGE, busy_error=StoreBusy) -> Iterator[sa.Connection]:
        """A write transaction: committed at the end of the block, rolled back on any error. A
        database that cannot be written (disk full, read-only) is :class:`StoreUnwritable`."""
        try:
            with plain_store_errors(), self.engine.connect() as conn:
                conn.execution_options(alliance_write=True)
                with conn.begin():
                    if self.is_postgres:
                        conn.exec_driver_sql("SET LOCAL lock_timeout = '120s'")
                    yield conn
        except sa_exc.OperationalError as err:
            if _is_busy(err):
                raise busy_error(_(busy_message)) from None
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
        with self._write(N_("The clinic database is being set up by another process; try again.")) as conn:
            if self.is_postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                command.upgrade(alembic_config(conn), "head")
            except Exception as err:  # e.g. a database made by a newer version of the dashboard
                if "Can't locate revision" in str(err):
                    raise RuntimeError(_("The clinic database was made by a newer version of this dashboard "
                                         "(schema {schema}); update the dashboard to open it.").format(schema=current)) from None
                raise

    def _lock_setup(self, conn) -> None:
        """Serialise first set-up (users, demo) between processes."""
        conn.execute(sa.select(settings.c.key).where(settings.c.key == "pseudonym_secret").with_for_update())

