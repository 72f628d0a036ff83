"""The clinic database's tables (SQLAlchemy Core). Alembic's migrations in
:mod:`core.store.migrations` create and upgrade them; a migration freezes the schema as it was."""
from __future__ import annotations

import sqlalchemy as sa

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
    sa.Column("language", sa.String(16), nullable=True),  # interface language code; NULL: the browser's
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
    # JSON: the extra columns a supervisor marked as shareable with researchers (default: none)
    sa.Column("shareable_columns", sa.Text, nullable=False, server_default="[]"),
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
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE",
                                                   name="fk_sessions_user_id_users"), nullable=False),
    sa.Column("nonce", sa.String(64), nullable=False),           # random; part of the signed token
    sa.Column("ticket_hash", sa.String(64), nullable=True),      # SHA-256 of the one-time hand-over ticket
    sa.Column("ticket_expires_at", _tz, nullable=True),
    sa.Column("created_at", _tz, nullable=False),
    sa.Column("expires_at", _tz, nullable=False),
    sa.Column("ended_at", _tz, nullable=True),                   # sign-out, deactivation, new password
    # SHA-256 of the key the signing-in browser keeps in the dashboard origin's storage (migration 0004)
    sa.Column("browser_hash", sa.String(64), nullable=True),
    sa.Column("dataset", sa.String(200), nullable=True),         # data set chosen last in the session (0007)
    sa.UniqueConstraint("ticket_hash", name="uq_sessions_ticket_hash"),
    sa.Index("ix_sessions_user_id", "user_id"),
)
sign_in_throttle = sa.Table(
    "sign_in_throttle", metadata,
    sa.Column("key", sa.String(220), primary_key=True),          # 'user:<name>' or 'source:<address>'
    sa.Column("window_start", _tz, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),           # attempts not (yet) proven right
    sa.Column("next_at", _tz, nullable=True),                    # a user name's next password check, not before
)
saved_mappings = sa.Table(
    "saved_mappings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("headers", sa.Text, nullable=False),               # JSON list of the file's headers
    sa.Column("mapping", sa.Text, nullable=False),               # JSON ColumnMapping
    sa.Column("wide_measures", sa.Text, nullable=True),          # JSON {measure: stem} of a wide file
    sa.Column("ranges", sa.Text, nullable=True),                 # JSON {measure: [min, max]}
    sa.Column("saved_by", sa.String(200), nullable=True),
    sa.Column("saved_at", _tz, nullable=False),
    sa.UniqueConstraint("name", name="uq_saved_mappings_name"),
)
settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# ---------------------------------------------------------------- recording a session (issue 26, migration 0006)
#: Every session recorded or corrected on the *Record a session* page, by ``store record`` or in patient
#: mode: the values before (NULL for a new session) and after, who, when, why, and the data set's version
#: it made. An upload that changes a row later does not delete these entries.
session_history = sa.Table(
    "session_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                      name="fk_session_history_dataset_id_datasets"),
              nullable=False),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("session", sa.Double, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),           # the data set's version after it
    sa.Column("at", _tz, nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                   name="fk_session_history_user_id_users"), nullable=True),
    sa.Column("username", sa.String(200), nullable=True),
    sa.Column("action", sa.String(20), nullable=False),         # 'recorded' or 'corrected'
    sa.Column("via", sa.String(20), nullable=False),            # 'page', 'command line', 'patient mode'
    sa.Column("reason", sa.Text, nullable=True),                # a correction's reason
    sa.Column("session_date", sa.String(10), nullable=True),    # ISO date of the session (YYYY-MM-DD)
    sa.Column("therapist", sa.Text, nullable=True),
    sa.Column("before", sa.Text, nullable=True),                # JSON {measure: value} before; NULL: new
    sa.Column("after", sa.Text, nullable=False),                # JSON {measure: value} after
    sa.Index("ix_session_history_key", "dataset_id", "patient", "session"),
)
#: A sign-in session turned into patient mode (the waiting-room tablet): restricted to one patient's
#: questionnaire for one session until a staff member signs in again.
kiosk_sessions = sa.Table(
    "kiosk_sessions", metadata,
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id", ondelete="CASCADE",
                                                      name="fk_kiosk_sessions_session_id_sessions"),
              primary_key=True, autoincrement=False),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                      name="fk_kiosk_sessions_dataset_id_datasets"),
              nullable=False),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("session", sa.Double, nullable=False),
    sa.Column("session_date", sa.String(10), nullable=True),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE",
                                                   name="fk_kiosk_sessions_user_id_users"), nullable=False),
    sa.Column("started_at", _tz, nullable=False),
    sa.Column("answers", sa.Text, nullable=False),              # JSON {measure: {item: value or null}}
    sa.Column("finished_at", _tz, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),               # 'stored' or the sentence why not
)
#: Results fitted on a whole data set that take seconds on a large one, kept per data set version (issue 28):
#: the early-warning signal's expected course (``kind`` 'signal_model', ``key`` its settings as canonical
#: JSON, ``payload`` the model as JSON: numbers and untranslated messages, no patient's row). Written by
#: the first dashboard replica or command that needs one, read by every replica and after restarts; a new
#: version of the data set makes new ones (the older versions' rows are deleted when one is written).
fitted_models = sa.Table(
    "fitted_models", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                      name="fk_fitted_models_dataset_id_datasets"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", _tz, nullable=False),
    sa.Index("ix_fitted_models_key", "dataset_id", "version", "kind"),
)
