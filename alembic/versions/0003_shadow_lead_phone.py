"""shadow_leads.phone: the phone each lead was sent with, so keep_first counts the dialer's leads

Existing rows get NULL: their phone is filled in from the CRM by the next apply (see
docs/leads.md, "Leads recorded before phones were kept").

Revision ID: 0003_shadow_lead_phone
Revises: 0002_lease_fencing_steps
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_shadow_lead_phone"
down_revision = "0002_lease_fencing_steps"
branch_labels = None
depends_on = None

INDEX = "ix_shadow_leads_target_phone_list_id"


def upgrade() -> None:
    with op.batch_alter_table("shadow_leads") as batch:
        batch.add_column(sa.Column("phone", sa.String(32), nullable=True))
        batch.create_index(INDEX, ["target", "phone", "list_id"])


def downgrade() -> None:
    with op.batch_alter_table("shadow_leads") as batch:
        batch.drop_index(INDEX)
        batch.drop_column("phone")
