"""Read-only questions about the run log, for `status`, `history`, `show` and the daemon's
/healthz and /metrics. Nothing here writes.

Times come back timezone-aware (UTC) on every backend: SQLite keeps them without a zone, and
the store writes UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.state.schema import (
    dialer_rejections,
    dnc_flags,
    lead_batches,
    leases,
    run_steps,
    runs,
    shadow_leads,
)
from reconciler.core.model import UNCERTAIN_LEAD_STATUSES
from reconciler.errors import ReconcilerError

# Runs that only looked: they change nothing on the dialer.
PREVIEW_KINDS = ("plan", "resync-plan")
# Outcomes of a run that did its work (rows may have been rejected on the way).
SUCCESS_OUTCOMES = ("ok", "partial")
INTERRUPTED = "interrupted: the process sending it stopped before recording the answer"


def lease_name(target: str) -> str:
    """The write lease of one dialer target, as `apply`, `resync`, `unlock` and the daemon use."""
    return f"apply:{target}"


def _aware(row: sa.RowMapping) -> dict[str, Any]:
    return {str(k): (v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v)
            for k, v in row.items()}


def latest_runs_by_kind(engine: sa.Engine, target: str) -> dict[str, dict[str, Any]]:
    """The newest run of each kind (`apply`, `daemon`, `daemon-leads`, `plan` ...)."""
    newest = (sa.select(runs.c.kind, sa.func.max(runs.c.started_at).label("at"))
              .where(runs.c.target == target).group_by(runs.c.kind).subquery())
    query = (sa.select(runs).join(newest, sa.and_(runs.c.kind == newest.c.kind,
                                                  runs.c.started_at == newest.c.at))
             .where(runs.c.target == target))
    with engine.connect() as conn:
        return {r["kind"]: _aware(r) for r in conn.execute(query).mappings()}


def recent_runs(engine: sa.Engine, target: str, limit: int) -> list[dict[str, Any]]:
    query = (sa.select(runs).where(runs.c.target == target)
             .order_by(runs.c.started_at.desc(), runs.c.run_id).limit(limit))
    with engine.connect() as conn:
        return [_aware(r) for r in conn.execute(query).mappings()]


def find_run(engine: sa.Engine, run_id: str) -> dict[str, Any]:
    """A run by its id, or by a prefix of it that only one run has (as `history` shows them)."""
    escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = sa.select(runs).where(runs.c.run_id.like(f"{escaped}%", escape="\\")).limit(3)
    with engine.connect() as conn:
        found = [_aware(r) for r in conn.execute(query).mappings()]
    exact = [r for r in found if r["run_id"] == run_id]
    if exact:
        return exact[0]
    if not found or not run_id:
        raise ReconcilerError(f"no run {run_id!r} in the state database; "
                              f"`reconciler history` lists them")
    if len(found) > 1:
        raise ReconcilerError(f"run id {run_id!r} is ambiguous: give more of it")
    return found[0]


def steps_of(engine: sa.Engine, run_id: str, outcome: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.seq)
    if outcome is not None:
        query = query.where(run_steps.c.outcome == outcome)
    with engine.connect() as conn:
        return [_aware(r) for r in conn.execute(query).mappings()]


def step_counts(engine: sa.Engine, run_id: str) -> dict[tuple[str, str], int]:
    """(op, outcome) -> number of steps, for one run."""
    query = (sa.select(run_steps.c.op, run_steps.c.outcome, sa.func.count())
             .where(run_steps.c.run_id == run_id)
             .group_by(run_steps.c.op, run_steps.c.outcome))
    with engine.connect() as conn:
        return {(op, outcome): int(n) for op, outcome, n in conn.execute(query)}


def latest_applied_run(engine: sa.Engine, target: str) -> dict[str, Any] | None:
    """The newest finished run that could change the dialer (not a preview)."""
    query = (sa.select(runs)
             .where(runs.c.target == target, runs.c.finished_at.is_not(None),
                    runs.c.kind.not_in(PREVIEW_KINDS))
             .order_by(runs.c.started_at.desc()).limit(1))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _aware(row) if row else None


def last_success(engine: sa.Engine, target: str) -> datetime | None:
    """When the newest run that did its work finished."""
    query = (sa.select(sa.func.max(runs.c.finished_at))
             .where(runs.c.target == target, runs.c.outcome.in_(SUCCESS_OUTCOMES),
                    runs.c.kind.not_in(PREVIEW_KINDS)))
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    if found is None:
        return None
    if isinstance(found, str):      # SQLite gives max() of a DateTime column back as text
        found = datetime.fromisoformat(found)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def in_doubt_batches(engine: sa.Engine, target: str) -> list[dict[str, Any]]:
    """Lead batches whose outcome on the dialer is unknown, oldest first: `status`,
    `leads in-doubt` and /metrics all count these.

    They are the batches whose answer was lost (`in_doubt`), and those a process left at
    `intent` when it died with leads on their way, once no process holds the write lease (until
    then, one may be sending them). Each comes with `doubtful_leads` (how many of its leads are
    unknown) and `last_sent_at` (when a request may last have carried one of them).
    """
    t, b = shadow_leads.c, lead_batches.c
    open_batch = sa.and_(b.target == target, b.state.in_(("intent", "in_doubt")))
    # Counted through the few open batches (and the batch_id index), not over every lead.
    doubtful = (sa.select(t.batch_id, sa.func.count().label("doubtful_leads"),
                          sa.func.max(t.updated_at).label("last_lead_at"))
                .join_from(lead_batches, shadow_leads, t.batch_id == b.batch_id)
                .where(open_batch, t.status.in_(UNCERTAIN_LEAD_STATUSES))
                .group_by(t.batch_id).subquery())
    query = (sa.select(lead_batches, doubtful.c.doubtful_leads, doubtful.c.last_lead_at)
             .outerjoin(doubtful, doubtful.c.batch_id == b.batch_id)
             .where(open_batch).order_by(b.created_at, b.batch_id))
    with engine.connect() as conn:
        sending_now = _lease_live(conn, target)
        rows = [_aware(r) for r in conn.execute(query).mappings()]
    found = []
    for row in rows:
        row["doubtful_leads"] = int(row["doubtful_leads"] or 0)
        last = row.pop("last_lead_at")
        row["last_sent_at"] = max(row["created_at"], as_utc(last)) if last else row["created_at"]
        if row["state"] == "intent":
            if sending_now or not row["doubtful_leads"]:
                continue
            row["message"] = row["message"] or INTERRUPTED
        found.append(row)
    return found


def last_sent_at(conn: sa.Connection, batch_id: str) -> datetime:
    """When a request may last have carried one of the batch's doubtful leads."""
    t = shadow_leads.c
    created = conn.execute(sa.select(lead_batches.c.created_at)
                           .where(lead_batches.c.batch_id == batch_id)).scalar_one()
    last = conn.execute(sa.select(sa.func.max(t.updated_at)).where(
        t.batch_id == batch_id, t.status.in_(UNCERTAIN_LEAD_STATUSES))).scalar()
    return max(as_utc(created), as_utc(last)) if last is not None else as_utc(created)


def _lease_live(conn: sa.Connection, target: str) -> bool:
    expires = conn.execute(sa.select(leases.c.expires_at)
                           .where(leases.c.name == lease_name(target))).scalar()
    return expires is not None and as_utc(expires) > datetime.now(UTC)


def as_utc(value: datetime | str) -> datetime:
    """A time read from the state database, timezone-aware (UTC) on every backend."""
    if isinstance(value, str):      # SQLite gives max() of a DateTime column back as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def rejected_lead_count(engine: sa.Engine, target: str) -> int:
    query = (sa.select(sa.func.count()).select_from(shadow_leads)
             .where(shadow_leads.c.target == target, shadow_leads.c.status == "rejected"))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def dnc_flag_counts(engine: sa.Engine, target: str) -> dict[str, int]:
    """Leads sent before whose phone went on the do-not-call list: how many were set to DNC on
    the dialer (`flagged`), and how many were no longer there to set (`absent`)."""
    t = dnc_flags.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.outcome, sa.func.count()).where(t.target == target)
                            .group_by(t.outcome))
        return {str(outcome): int(n) for outcome, n in rows}


def dialer_rejections_held(engine: sa.Engine, target: str) -> list[dict[str, Any]]:
    """Changes the dialer refused, held back until their CRM row changes; oldest first."""
    query = (sa.select(dialer_rejections).where(dialer_rejections.c.target == target)
             .order_by(dialer_rejections.c.rejected_at, dialer_rejections.c.resource,
                       dialer_rejections.c.key))
    with engine.connect() as conn:
        return [_aware(r) for r in conn.execute(query).mappings()]


def lease_holder(engine: sa.Engine, target: str) -> dict[str, Any] | None:
    query = sa.select(leases).where(leases.c.name == lease_name(target))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _aware(row) if row else None
