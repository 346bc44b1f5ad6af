"""lead batch answer: a batch's answer kept on its row until its leads' rows are written

Revision ID: 0008_lead_batch_answer
Revises: 0007_dnc
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_lead_batch_answer"
down_revision = "0007_dnc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty on every existing batch: their leads' rows already hold their answers.
    with op.batch_alter_table("lead_batches") as batch:
        batch.add_column(sa.Column("answer", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lead_batches") as batch:
        batch.drop_column("answer")
