"""dialer rejections: a change the dialer refused is held back until its CRM row changes

Revision ID: 0004_rejection_backoff
Revises: 0003_shadow_lead_phone
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_rejection_backoff"
down_revision = "0003_shadow_lead_phone"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A new table: existing databases upgrade in place, with nothing held back yet.
    op.create_table(
        "dialer_rejections",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("op", sa.String(32), nullable=False),
        sa.Column("row_digest", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("rejected_at", TS, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("target", "resource", "key", name="pk_dialer_rejections"),
    )


def downgrade() -> None:
    op.drop_table("dialer_rejections")
