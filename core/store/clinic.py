"""The clinic database: validated data, users and their roles, uploads and the audit log.

:class:`ClinicStore` keeps validated data (:class:`core.intake.validation.ValidatedData`) in a database
through SQLAlchemy: an embedded SQLite file by default (``$ALLIANCE_DATA_DIR/clinic.db``, default
``./data/clinic.db``), or PostgreSQL by URL (``ALLIANCE_DATABASE_URL``). Opening a store runs the
Alembic migrations of :mod:`core.store.migrations` up to the newest (``upgrade head``), in one transaction.

Access rules live here, in the queries, not in the pages:

- **supervisor**: every row of every data set, the rows left out of uploads, uploads, users and the
  audit log;
- **therapist**: only the rows whose therapist is the user's therapist code (a SQL ``WHERE``), only
  the data sets holding such rows; never rows left out (their reasons quote cells and IDs), never
  the upload notes (they can name other patients);
- **researcher**: an allow-list, never a block-list: every row, with patient, therapist and study
  labels replaced by stable pseudonyms (keyed HMAC-SHA256, ``P-`` / ``T-`` / ``S-`` and 12 hex
  digits, with a per-database secret made by the first migration), the session number, the
  measures, and only those extra columns a supervisor marked as shareable when storing the data
  (default: none; a shareable column is kept only where every value is a number); no spreadsheet
  row numbers, no rows left out, no notes, no file name.

Every call re-reads the acting user from the database, so a deactivated account or a changed role
takes effect at once, also in browser sessions that signed in before.

An upload is one transaction (:meth:`ClinicStore.apply_upload`) with an optimistic lock on the data
set's version: a preview records the version it compared with, and the upload is refused with
:class:`UploadConflict` when another upload changed the data set in between. SQLite write
transactions start with ``BEGIN IMMEDIATE`` (writers queue instead of failing half-way); PostgreSQL
locks the data set's row. A process killed during an upload leaves the database as it was.
"""
from __future__ import annotations

from core.store.access import DataAccess
from core.store.audit import AuditLog
from core.store.backup import Backups
from core.store.demo_accounts import DemoSeed
from core.store.engine import StoreBase
from core.store.mappings import SavedMappings
from core.store.record import SessionRecords
from core.store.sessions import Sessions
from core.store.uploads import Uploads
from core.store.users import UserAccounts


class ClinicStore(UserAccounts, Sessions, AuditLog, DataAccess, Uploads, SessionRecords, SavedMappings, Backups,
                  DemoSeed, StoreBase):
    """The clinic's database. Thread-safe: every call uses its own connection and transaction.

    Its parts, one module each: :mod:`~core.store.engine` (connection, transactions, migrations),
    :mod:`~core.store.users` (accounts and sign-in), :mod:`~core.store.audit`,
    :mod:`~core.store.access` (the access rule and the reads), :mod:`~core.store.uploads`
    (preview and store), :mod:`~core.store.sessions` (sign-in sessions), :mod:`~core.store.record` (one
    session recorded or corrected, patient mode), :mod:`~core.store.mappings` (saved column mappings),
    :mod:`~core.store.backup` (backup and restore), :mod:`~core.store.demo_accounts`.
    """
