"""sync marks: where incremental lead reads resume, and when the last full pass ran

Revision ID: 0005_sync_marks
Revises: 0004_rejection_backoff
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sync_marks"
down_revision = "0004_rejection_backoff"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A new table: existing databases upgrade in place; with no mark yet, the next pass is full.
    op.create_table(
        "sync_marks",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("mark", sa.Text, nullable=True),
        sa.Column("mark_type", sa.String(16), nullable=True),
        sa.Column("full_pass_at", TS, nullable=True),
        sa.Column("full_pass_due_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("target", "resource", name="pk_sync_marks"),
    )


def downgrade() -> None:
    op.drop_table("sync_marks")
