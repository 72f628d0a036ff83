"""Recording a session where it happens (issue 26): the history of recorded and corrected sessions,
and patient mode (the waiting-room tablet) held with the sign-in session.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-08

- ``session_history``: one row per session recorded or corrected (page, command line or patient mode):
  the values before (NULL for a new session) and after as JSON, who, when, the reason of a correction,
  the session's date and the data set's version it made. Corrections never lose the earlier value.
- ``kiosk_sessions``: a sign-in session in patient mode, restricted to one patient's questionnaire for
  one session (``sessions.id`` as key: ending the sign-in session ends it), with the answers given so
  far (a reload resumes), when it finished and whether the answers were stored.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

_tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "session_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                          name="fk_session_history_dataset_id_datasets"),
                  nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("session", sa.Double, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", _tz, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                       name="fk_session_history_user_id_users"), nullable=True),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("via", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("session_date", sa.String(10), nullable=True),
        sa.Column("therapist", sa.Text, nullable=True),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=False),
    )
    op.create_index("ix_session_history_key", "session_history", ["dataset_id", "patient", "session"])
    op.create_table(
        "kiosk_sessions",
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
        sa.Column("answers", sa.Text, nullable=False),
        sa.Column("finished_at", _tz, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("kiosk_sessions")
    op.drop_index("ix_session_history_key", table_name="session_history")
    op.drop_table("session_history")
