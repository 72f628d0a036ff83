"""The data set a sign-in session works on (issue 24; numbered after 0006, which was merged first): ``sessions.dataset``, the name of the data set
chosen last in that session (NULL until the dashboard records one). A reload, a new tab and a
``?patient=`` link of the same sign-in open on it, instead of falling back to the first data set
(the demo clinic in the demo database). It is a preference, not a grant: every read still goes
through the access rule of :mod:`core.store.access`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("dataset", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("dataset")
