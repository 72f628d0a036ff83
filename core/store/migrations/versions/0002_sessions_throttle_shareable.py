"""Sign-in sessions (signed cookie tokens), an atomic sign-in throttle, shareable columns per data set,
and the database's kind (demo or clinic).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-27

- ``sessions``: one row per sign-in; the browser holds a signed token naming the row, and the
  row's ``ended_at`` ends it at once (sign-out, deactivation, a new password).
- ``sign_in_throttle``: attempts per user name (and over all names) in the current window, counted
  by one atomic statement before the password is checked.
- ``datasets.shareable_columns``: the extra columns a supervisor marked as shareable with
  researchers; existing data sets share none.
- ``settings``: ``session_secret`` (the HMAC key of the session tokens) and ``database_kind``:
  ``demo`` for a database that already holds demo accounts, otherwise left unset until
  ``store init`` (``clinic``) or the demo set-up (``demo``).
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("shareable_columns", sa.Text, nullable=False, server_default="[]"))
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE",
                                                       name="fk_sessions_user_id_users"), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("ticket_hash", sa.String(64), nullable=True),
        sa.Column("ticket_expires_at", _tz, nullable=True),
        sa.Column("created_at", _tz, nullable=False),
        sa.Column("expires_at", _tz, nullable=False),
        sa.Column("ended_at", _tz, nullable=True),
        sa.UniqueConstraint("ticket_hash", name="uq_sessions_ticket_hash"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(220), primary_key=True),
        sa.Column("window_start", _tz, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
    rows = [{"key": "session_secret", "value": secrets.token_hex(32)}]
    conn = op.get_bind()
    has_demo = conn.execute(sa.text("SELECT COUNT(*) FROM users WHERE is_demo = :t"), {"t": True}).scalar()
    if has_demo:
        rows.append({"key": "database_kind", "value": "demo"})
    op.bulk_insert(settings, rows)


def downgrade() -> None:
    op.execute("DELETE FROM settings WHERE key IN ('session_secret', 'database_kind')")
    op.drop_table("sign_in_throttle")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("shareable_columns")
