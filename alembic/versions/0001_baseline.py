"""baseline state schema: targets, shadow users/lists/leads, lead batches, runs, steps, leases

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "state_targets",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("target", name="pk_state_targets"),
    )
    op.create_table(
        "shadow_users",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("agent_user", sa.String(20), nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("digests", sa.JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("target", "agent_user", name="pk_shadow_users"),
    )
    op.create_table(
        "shadow_lists",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("list_id", sa.String(14), nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("target", "list_id", name="pk_shadow_lists"),
    )
    op.create_table(
        "shadow_leads",
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("lead_key", sa.String(255), nullable=False),
        sa.Column("list_id", sa.String(14), nullable=False),
        sa.Column("fields_digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dialer_lead_id", sa.String(32), nullable=True),
        sa.Column("batch_id", sa.String(36), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("target", "lead_key", name="pk_shadow_leads"),
    )
    op.create_index("ix_shadow_leads_batch_id", "shadow_leads", ["batch_id"])
    op.create_table(
        "lead_batches",
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("list_id", sa.String(14), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("lead_count", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("settled_at", TS, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name="pk_lead_batches"),
    )
    op.create_index("ix_lead_batches_target", "lead_batches", ["target"])
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("counts", sa.JSON, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("plan_digest", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
    )
    op.create_index("ix_runs_target", "runs", ["target"])
    op.create_table(
        "run_steps",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("op", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_run_steps_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_run_steps"),
    )
    op.create_index("ix_run_steps_run_id", "run_steps", ["run_id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_run_steps_run_id", table_name="run_steps")
    op.drop_table("run_steps")
    op.drop_index("ix_runs_target", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_lead_batches_target", table_name="lead_batches")
    op.drop_table("lead_batches")
    op.drop_index("ix_shadow_leads_batch_id", table_name="shadow_leads")
    op.drop_table("shadow_leads")
    op.drop_table("shadow_lists")
    op.drop_table("shadow_users")
    op.drop_table("state_targets")
