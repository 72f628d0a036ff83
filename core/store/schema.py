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
    sa.Column("dataset", sa.String(200), nullable=True),         # the data set chosen last in this session
    sa.UniqueConstraint("ticket_hash", name="uq_sessions_ticket_hash"),
    sa.Index("ix_sessions_user_id", "user_id"),
)
sign_in_throttle = sa.Table(
    "sign_in_throttle", metadata,
    sa.Column("key", sa.String(220), primary_key=True),          # 'user:<name>' or 'all'
    sa.Column("window_start", _tz, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),           # attempts not (yet) proven right
)
settings = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

