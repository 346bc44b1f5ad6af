"""dnc flags: sent leads whose status was set to DNC on the dialer, so each is flagged once

Revision ID: 0007_dnc
Revises: 0006_targets
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_dnc"
down_revision = "0006_targets"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A new table: existing databases upgrade in place, with no lead flagged yet.
    op.create_table(
        "dnc_flags",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("lead_key", sa.String(255), nullable=False),
        sa.Column("list_id", sa.String(14), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("flagged_at", TS, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("target", "lead_key", name="pk_dnc_flags"),
    )


def downgrade() -> None:
    op.drop_table("dnc_flags")
