"""shadow_leads fillfactor 50 on PostgreSQL: room on each page for the updates a lead gets

A lead's row is written `queued` or `pending` and updated once or twice moments later (its
`pending` mark, its answer). None of those columns is indexed, so PostgreSQL can update the
row in place on its page (a HOT update, no index touched) when the page has room; a full page
sends every update to another page and through all three indexes. Pages written from now on
are half full (SQLite has no such setting: nothing changes there).

Revision ID: 0009_shadow_leads_fillfactor
Revises: 0008_lead_batch_answer
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0009_shadow_leads_fillfactor"
down_revision = "0008_lead_batch_answer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE shadow_leads SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE shadow_leads RESET (fillfactor)")
