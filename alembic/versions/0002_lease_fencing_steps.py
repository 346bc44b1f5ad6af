"""lease generation, for fencing; one step number per step of a run

Revision ID: 0002_lease_fencing_steps
Revises: 0001_baseline
Create Date: 2026-12-01

`leases.generation` grows with every take-over of a lease row, so that a write can check, in its
own transaction, that the lease is still held by the acquisition that planned it (the fence).

`run_steps` gets a unique (run_id, seq). Lead steps used to be numbered from 1001 while the
executor counted from 1, so a run with more than 1,000 other steps holds two steps with one
number: such a run's steps are numbered again, 1, 2, 3 ..., in the order they were written
(their `id`), before the constraint is added. Runs without a clash keep their numbers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_lease_fencing_steps"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="0"))
    _renumber_clashing_steps()
    with op.batch_alter_table("run_steps") as batch:
        batch.create_unique_constraint("uq_run_steps_run_id_seq", ["run_id", "seq"])


def downgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_constraint("uq_run_steps_run_id_seq", type_="unique")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("generation")


def _renumber_clashing_steps() -> None:
    steps = sa.table("run_steps", sa.column("id", sa.Integer), sa.column("run_id", sa.String),
                     sa.column("seq", sa.Integer))
    # Read first: the numbers the clash is found by are the ones the update changes.
    clashing = sorted(set(op.get_bind().execute(
        sa.select(steps.c.run_id).group_by(steps.c.run_id, steps.c.seq)
        .having(sa.func.count() > 1)).scalars()))
    if not clashing:
        return
    earlier = steps.alias("earlier")
    position = (sa.select(sa.func.count()).where(earlier.c.run_id == steps.c.run_id,
                                                 earlier.c.id <= steps.c.id)
                .scalar_subquery())
    op.execute(sa.update(steps).where(steps.c.run_id.in_(clashing)).values(seq=position))
