"""Leads in the state database: the exactly-once bookkeeping of add_multi_lead batches.

A batch's intent (its id and lead keys, status `pending`) is committed before it is sent; each
lead's outcome after the answer. A batch whose answer never came is `in_doubt` and is never
resent automatically: `reconciler leads resolve` settles it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reconciler.errors import StateError
from reconciler.keyorder import binary_key_order
from reconciler.model import RecordedLead
from reconciler.state.schema import lead_batches, shadow_leads
from reconciler.state.store import StateStore, StepWriter, now

STREAM_CHUNK = 5000


@dataclass(frozen=True)
class LeadResult:
    key: str
    status: str                       # sent | rejected | in_doubt
    dialer_lead_id: str | None = None
    message: str = ""


class LeadBook:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.engine, self.target = store.engine, store.target

    def stream_recorded(self) -> Iterator[RecordedLead]:
        """Every recorded lead of this target, in byte order of its key."""
        t = shadow_leads.c
        statement = (
            sa.select(t.lead_key, t.list_id, t.fields_digest, t.status)
            .where(t.target == self.target)
            .order_by(binary_key_order(t.lead_key, self.engine.dialect.name))
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=STREAM_CHUNK).execute(
                statement)
            for key, list_id, digest, status in result:
                yield RecordedLead(key, list_id, digest, status)

    def record_intent(self, run_id: str, list_id: str,
                      items: Sequence[tuple[str, Any, str]]) -> str:
        """Commit, before sending, which leads this batch carries. Returns the batch id."""
        batch_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(sa.insert(lead_batches).values(
                batch_id=batch_id, target=self.target, list_id=list_id, run_id=run_id,
                state="intent", lead_count=len(items), created_at=now()))
            keys = [key for key, _, _ in items]
            conn.execute(sa.delete(shadow_leads).where(
                shadow_leads.c.target == self.target, shadow_leads.c.lead_key.in_(keys)))
            conn.execute(sa.insert(shadow_leads), [
                {"target": self.target, "lead_key": key, "list_id": list_id,
                 "fields_digest": digest, "status": "pending", "batch_id": batch_id,
                 "updated_at": now()}
                for key, _, digest in items])
            StepWriter(conn, self.target, run_id).bump_version()
        return batch_id

    def record_outcome(self, batch_id: str, results: Sequence[LeadResult], state: str,
                       message: str = "") -> None:
        with self.engine.begin() as conn:
            for result in results:
                conn.execute(
                    sa.update(shadow_leads)
                    .where(shadow_leads.c.target == self.target,
                           shadow_leads.c.lead_key == result.key,
                           shadow_leads.c.batch_id == batch_id)
                    .values(status=result.status, dialer_lead_id=result.dialer_lead_id,
                            message=result.message or None, updated_at=now()))
            self._settle(conn, batch_id, state, message)
            StepWriter(conn, self.target, "").bump_version()

    def forget_unsent(self, batch_id: str, message: str) -> None:
        """The batch never reached the dialer: drop its intent so the leads are planned again."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(shadow_leads).where(shadow_leads.c.batch_id == batch_id))
            self._settle(conn, batch_id, "not_sent", message)
            StepWriter(conn, self.target, "").bump_version()

    def settle_interrupted(self) -> int:
        """Batches left at `intent` by a process that died are in doubt. Call under the lease."""
        with self.engine.begin() as conn:
            stuck = [row.batch_id for row in conn.execute(
                sa.select(lead_batches.c.batch_id).where(
                    lead_batches.c.target == self.target, lead_batches.c.state == "intent"))]
            for batch_id in stuck:
                conn.execute(sa.update(shadow_leads)
                             .where(shadow_leads.c.batch_id == batch_id,
                                    shadow_leads.c.status == "pending")
                             .values(status="in_doubt", updated_at=now()))
                self._settle(conn, batch_id, "in_doubt",
                             "interrupted between sending and recording the answer")
        return len(stuck)

    def in_doubt_batches(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(lead_batches).where(
                    lead_batches.c.target == self.target,
                    lead_batches.c.state.in_(("intent", "in_doubt")))
                .order_by(lead_batches.c.created_at)).mappings()
            return [dict(r) for r in rows]

    def resolve(self, batch_id: str, *, sent: bool) -> int:
        """An operator checked the dialer: the batch's doubtful leads were sent, or were not."""
        with self.engine.begin() as conn:
            batch = conn.execute(sa.select(lead_batches).where(
                lead_batches.c.batch_id == batch_id,
                lead_batches.c.target == self.target)).mappings().first()
            if batch is None:
                raise StateError(f"no lead batch {batch_id} for target {self.target!r}")
            if batch["state"] not in ("intent", "in_doubt"):
                raise StateError(f"lead batch {batch_id} is {batch['state']}, not in doubt")
            doubtful = sa.and_(shadow_leads.c.batch_id == batch_id,
                               shadow_leads.c.status.in_(("pending", "in_doubt")))
            if sent:
                changed = conn.execute(sa.update(shadow_leads).where(doubtful).values(
                    status="sent", message="confirmed sent by an operator", updated_at=now()))
            else:
                changed = conn.execute(sa.delete(shadow_leads).where(doubtful))
            self._settle(conn, batch_id, "resolved_sent" if sent else "resolved_not_sent",
                         "resolved by an operator")
            StepWriter(conn, self.target, batch["run_id"] or "").bump_version()
            return int(changed.rowcount)

    def _settle(self, conn: sa.Connection, batch_id: str, state: str, message: str) -> None:
        conn.execute(sa.update(lead_batches).where(lead_batches.c.batch_id == batch_id)
                     .values(state=state, settled_at=now(), message=message or None))
