"""shadow_leads.lead_key in the "C" collation on PostgreSQL: its index in the merge's order

A plan reads a target's recorded leads in byte order of their key (the order Python compares
strings in, so that it can merge them with the CRM's). With the key in the database's own
collation, PostgreSQL could not walk the primary key in that order and sorted every recorded
lead of the target for each plan. In "C" (byte order; equality is unchanged) the primary key
gives that order as it is. The primary key's index is rebuilt once, here. SQLite compares text
byte by byte already: nothing changes there.

Revision ID: 0010_shadow_leads_key_order
Revises: 0009_shadow_leads_fillfactor
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010_shadow_leads_key_order"
down_revision = "0009_shadow_leads_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE shadow_leads ALTER COLUMN lead_key TYPE VARCHAR(255) COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE shadow_leads ALTER COLUMN lead_key TYPE VARCHAR(255) '
                   'COLLATE "default"')
