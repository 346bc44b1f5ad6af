"""runs.owner: which process (replica) ran each run, so runs of one target can be checked
never to overlap between replicas

Revision ID: 0006_targets
Revises: 0005_sync_marks
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_targets"
down_revision = "0005_sync_marks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: existing databases upgrade in place; earlier runs name no owner.
    # Plain ALTER TABLE (SQLite has both since 3.35): a batch copy of `runs` would trip over
    # the foreign key of run_steps.
    op.add_column("runs", sa.Column("owner", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "owner")
