"""Fitted results kept per data set version (issue 28): ``fitted_models``, the early-warning signal's
expected course of a data set version and settings as JSON (numbers and untranslated messages, no
patient's row), so that a national data set's model (seconds to fit on a million rows) is fitted once
and read by every replica and after every restart. Deleted with its data set.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fitted_models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id", ondelete="CASCADE",
                                                          name="fk_fitted_models_dataset_id_datasets"),
                  nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_fitted_models_key", "fitted_models", ["dataset_id", "version", "kind"])


def downgrade() -> None:
    op.drop_index("ix_fitted_models_key", table_name="fitted_models")
    op.drop_table("fitted_models")
