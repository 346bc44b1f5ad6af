"""The state database: what we last confirmed on each dialer target, and what every run did.

Alembic (`alembic/versions`) creates these tables; this module is the shape the code reads and
writes, and a test checks that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Timestamp = sa.DateTime(timezone=True)

# One row per dialer target; `version` grows with every shadow write, so a saved plan can tell
# whether the state it was computed from is still the state it would be applied to.
state_targets = sa.Table(
    "state_targets", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", Timestamp, nullable=True),
)

# Users as last confirmed on the dialer: plain fields, and keyed digests for secret fields.
shadow_users = sa.Table(
    "shadow_users", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("agent_user", sa.String(20), primary_key=True),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("digests", sa.JSON, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
)

shadow_lists = sa.Table(
    "shadow_lists", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("list_id", sa.String(14), primary_key=True),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),      # created | adopted
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
)

# Changes the dialer refused, one row per object: not sent again while the CRM row they were
# made from keeps this digest (planner.backoff). Cleared when a change to the object succeeds.
dialer_rejections = sa.Table(
    "dialer_rejections", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("resource", sa.String(16), primary_key=True),   # users | lists
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("op", sa.String(32), nullable=False),
    sa.Column("row_digest", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("rejected_at", Timestamp, nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
)

# Leads: one row per CRM lead key ever exported, with its outcome; never deleted. `phone` is the
# phone it was sent with, for keep_first (NULL: recorded before phones were kept; "": unknown).
shadow_leads = sa.Table(
    "shadow_leads", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    # Byte order on PostgreSQL too, so that its primary key is read in the merge's order
    # (migration 0010_shadow_leads_key_order); SQLite compares text byte by byte already.
    sa.Column("lead_key", sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql"),
              primary_key=True),
    sa.Column("list_id", sa.String(14), nullable=False),
    sa.Column("fields_digest", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),      # see reconciler/state/leads.py
    sa.Column("dialer_lead_id", sa.String(32), nullable=True),
    sa.Column("batch_id", sa.String(36), nullable=True, index=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("phone", sa.String(32), nullable=True),
    # Which lead holds a phone in a list; phone first, so "phone IS NULL" is found by it too.
    sa.Index(None, "target", "phone", "list_id"),
    # Room on each page for the updates a lead gets just after its row is written (migration
    # 0009_shadow_leads_fillfactor).
    postgresql_with={"fillfactor": 50},
)

# Incremental reads (docs/incremental.md): per resource, the highest change-column value read by
# the last pass that finished applying (`mark`, as text, with `mark_type` to read it back as
# what it was), when the last full pass that finished began, and when leads were last forgotten
# (a full pass that began before then is not enough).
sync_marks = sa.Table(
    "sync_marks", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("resource", sa.String(16), primary_key=True),   # leads
    sa.Column("mark", sa.Text, nullable=True),
    sa.Column("mark_type", sa.String(16), nullable=True),      # integer | decimal | text | ...
    sa.Column("full_pass_at", Timestamp, nullable=True),
    sa.Column("full_pass_due_at", Timestamp, nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# Sent leads whose status was set to DNC on the dialer (flag_dnc), so they are flagged once.
dnc_flags = sa.Table(
    "dnc_flags", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("lead_key", sa.String(255), primary_key=True),
    sa.Column("list_id", sa.String(14), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),     # flagged | absent
    sa.Column("flagged_at", Timestamp, nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
)

lead_batches = sa.Table(
    "lead_batches", metadata,
    sa.Column("batch_id", sa.String(36), primary_key=True),
    sa.Column("target", sa.String(64), nullable=False, index=True),
    sa.Column("list_id", sa.String(14), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
    # intent -> answered | in_doubt -> resolved_sent | resolved_not_sent
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("lead_count", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("settled_at", Timestamp, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    # The batch's answer (JSON, one [key, status, dialer_lead_id, message] a lead), committed
    # with the next batch's `pending` mark, until its leads' own rows say it: for a moment, or,
    # when the process died in that moment, until the next run writes them from it.
    sa.Column("answer", sa.Text, nullable=True),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("target", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),        # plan | apply | resync
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),      # ok | partial | failed | refused
    sa.Column("counts", sa.JSON, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("plan_digest", sa.String(64), nullable=True),
    # The process that ran it (a lease owner: host:pid:nonce) when it held the write lease.
    sa.Column("owner", sa.String(255), nullable=True),
)

run_steps = sa.Table(
    "run_steps", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("op", sa.String(32), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    # One step counter per run, shared by every kind of step: a number names one step.
    sa.UniqueConstraint("run_id", "seq"),
)

# The write lease: one row per name; a holder renews `expires_at` while it works. `generation`
# grows with every take-over of the row (1 when it is inserted): with `owner`, unique to each
# process, it names one acquisition. The writes that come before a send check both in their own
# transaction (the fence), so a holder whose lease was taken over can no longer write.
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("acquired_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
)
