"""The clinic database: users, data sets, observations, uploads, excluded rows, audit log, settings.

Revision ID: 0001
Revises:
Create Date: 2025-11-22

The pseudonym secret (the HMAC key of the researcher's patient and therapist pseudonyms) is created
here, once per database, from :func:`secrets.token_hex`; it never leaves the database.
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
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
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("is_demo", sa.Boolean, nullable=False),
        sa.Column("instruments", sa.Text, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("extra_columns", sa.Text, nullable=False),
        sa.Column("created_at", _tz, nullable=False),
        sa.Column("updated_at", _tz, nullable=False),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                          name="fk_uploads_dataset_id_datasets"),
                  nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                       name="fk_uploads_user_id_users"),
                  nullable=True),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("at", _tz, nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("n_rows_read", sa.Integer, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("unchanged", sa.Integer, nullable=False),
        sa.Column("kept", sa.Integer, nullable=False),
        sa.Column("excluded", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("mapping", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("ranges", sa.Text, nullable=False),
    )
    op.create_index("ix_uploads_dataset_id", "uploads", ["dataset_id"])
    op.create_table(
        "observations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                          name="fk_observations_dataset_id_datasets"),
                  nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("session", sa.Double, nullable=False),
        sa.Column("therapist", sa.Text, nullable=True),
        sa.Column("alliance", sa.Double, nullable=True),
        sa.Column("symptoms", sa.Double, nullable=True),
        sa.Column("extra", sa.Text, nullable=False),
        sa.Column("source_row", sa.Integer, nullable=True),
        sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id", ondelete="SET NULL",
                                                         name="fk_observations_upload_id_uploads"),
                  nullable=True),
        sa.UniqueConstraint("dataset_id", "patient", "session", name="uq_observations_key"),
    )
    op.create_index("ix_observations_therapist", "observations", ["dataset_id", "therapist"])
    op.create_table(
        "excluded_rows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id", ondelete="CASCADE",
                                                         name="fk_excluded_rows_upload_id_uploads"),
                  nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_excluded_rows_upload_id", "excluded_rows", ["upload_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", _tz, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                       name="fk_audit_log_user_id_users"),
                  nullable=True),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("role", sa.String(20), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_username_at", "audit_log", ["username", "at"])
    settings = op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(settings, [{"key": "pseudonym_secret", "value": secrets.token_hex(32)}])


def downgrade() -> None:
    for table in ("settings", "audit_log", "excluded_rows", "observations", "uploads", "datasets", "users"):
        op.drop_table(table)
