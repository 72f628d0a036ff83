"""Saved column mappings per clinic database, sessions bound to the browser that signed in, and a
sign-in slow-down per user name (issue 25).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

- ``saved_mappings``: the Upload page's saved mappings (formerly ``$ALLIANCE_DATA_DIR/mappings.json``,
  which anyone, signed-out visitors too, could write); written by supervisors only, one row per name.
- ``sessions.browser_hash``: SHA-256 of the random key the signing-in browser keeps in the
  dashboard origin's own storage; a session cookie is honoured only in a browser that proves that
  key, so a cookie planted from another port or site signs nobody in.
- ``sign_in_throttle.next_at``: for a user name with repeated failures, the earliest time of the next
  password check (a growing delay, instead of a lockout that also refused the right password).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "saved_mappings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("mapping", sa.Text, nullable=False),
        sa.Column("wide_measures", sa.Text, nullable=True),
        sa.Column("ranges", sa.Text, nullable=True),
        sa.Column("saved_by", sa.String(200), nullable=True),
        sa.Column("saved_at", _tz, nullable=False),
        sa.UniqueConstraint("name", name="uq_saved_mappings_name"),
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("browser_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("sign_in_throttle") as batch:
        batch.add_column(sa.Column("next_at", _tz, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sign_in_throttle") as batch:
        batch.drop_column("next_at")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("browser_hash")
    op.drop_table("saved_mappings")
