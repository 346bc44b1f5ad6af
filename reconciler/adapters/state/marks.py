"""Sync marks: where an incremental lead read resumes (docs/incremental.md).

One row per target and resource: the change-column value the last applied pass read up to, as
text with its type, and when the last full pass began. A mark is written only after an apply
that finished (`save`), never by a plan; a lead the state forgets (a batch that never left, an
in-doubt lead resolved as not sent) makes the next pass full (`full_pass_due`), since an
incremental pass would not read its unchanged row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from reconciler.adapters.state import queries
from reconciler.adapters.state.schema import shadow_leads, sync_marks
from reconciler.adapters.state.store import StateStore, now
from reconciler.core.leads.passes import SyncMark
from reconciler.core.model import RecordedLead

LEADS = "leads"


def load(engine: sa.Engine, target: str, resource: str = LEADS) -> SyncMark | None:
    t = sync_marks.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.mark, t.mark_type, t.full_pass_at, t.full_pass_due_at)
                           .where(t.target == target, t.resource == resource)).first()
    if row is None:
        return None
    return SyncMark(row.mark, row.mark_type, _utc(row.full_pass_at), _utc(row.full_pass_due_at))


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else queries.as_utc(value)


def save(store: StateStore, mark: str | None, mark_type: str | None, *, at: datetime,
         full: bool, resource: str = LEADS) -> None:
    """After an apply that finished: the next incremental pass reads past `mark`. A full pass
    (`at`: when it began reading) restarts the full_pass_every clock. Fenced by the lease."""
    t = sync_marks.c
    mine = sa.and_(t.target == store.target, t.resource == resource)
    values: dict[str, object] = {"mark": mark, "mark_type": mark_type, "updated_at": now()}
    if full:
        values["full_pass_at"] = at
    with store.engine.begin() as conn:
        store.fence(conn)
        if conn.execute(sa.update(sync_marks).where(mine).values(values)).rowcount == 0:
            conn.execute(sa.insert(sync_marks).values(
                target=store.target, resource=resource, **values))


def full_pass_due(conn: sa.Connection, target: str) -> None:
    """Inside the transaction that forgets leads: the next pass reads every row, unless a full
    pass that began after this finishes first."""
    conn.execute(sa.update(sync_marks).where(sync_marks.c.target == target)
                 .values(full_pass_due_at=now()))


def recorded_by_key(engine: sa.Engine, target: str, keys: Sequence[str]
                    ) -> dict[str, RecordedLead]:
    """The recorded leads among `keys` (one indexed query: ask a thousand or so at a time)."""
    if not keys:
        return {}
    t = shadow_leads.c
    statement = (sa.select(t.lead_key, t.list_id, t.fields_digest, t.status)
                 .where(t.target == target, t.status != "queued", t.lead_key.in_(keys)))
    with engine.connect() as conn:
        return {key: RecordedLead(key, list_id, digest, status)
                for key, list_id, digest, status in conn.execute(statement)}
