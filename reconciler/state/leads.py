"""Leads in the state database: the exactly-once bookkeeping of add_multi_lead batches.

A batch's intent (its id and lead keys, status `pending`) is committed before it is sent; each
lead's outcome after the answer. A batch whose answer never came is `in_doubt` and is never
resent automatically: `reconciler leads resolve` settles it, or, with a dialer that can look
leads up, a look-up does (`doubtful_leads`, `settle_by_lookup`). A dialer that takes leads one
by one gets a batch's intent committed at once too, then each lead's outcome as it comes.

Each lead keeps the phone it was sent with (as sent: digits only), so that `keep_first` can ask
which lead already holds a phone in a list (`phone_holders`). A lead recorded before the phone
was kept has none (NULL) until `record_phones` fills it in; "" means it is not known.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reconciler.errors import StateError
from reconciler.keyorder import binary_key_order, stream_rows
from reconciler.model import RecordedLead
from reconciler.state.schema import lead_batches, shadow_leads
from reconciler.state.store import StateStore, StepWriter, now

# A lead in these states is on the dialer, or may be: its phone is taken in its list.
HOLDS_PHONE = ("sent", "pending", "in_doubt")


@dataclass(frozen=True)
class DoubtfulLead:
    key: str
    list_id: str
    digest: str
    batch_id: str


@dataclass(frozen=True)
class LeadSettlement:
    """What a look-up on the dialer found for an in-doubt lead."""

    key: str
    batch_id: str
    dialer_lead_id: str | None        # it landed with this id; None: it never landed


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
            .order_by(binary_key_order(t.lead_key, self.engine.dialect.name, is_text=True))
        )
        with self.engine.connect() as conn:
            for key, list_id, digest, status in stream_rows(conn, statement):
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
                 "phone": fields.get("phone_number"), "updated_at": now()}
                for key, fields, digest in items])
            StepWriter(conn, self.target, run_id).bump_version()
        return batch_id

    def phone_holders(self, pairs: Collection[tuple[str, str]]
                      ) -> dict[tuple[str, str], tuple[str, ...]]:
        """(list, phone) -> the keys of the leads that hold it on the dialer, for each pair asked
        about that one holds. One indexed query; ask about a few hundred pairs at a time."""
        if not pairs:
            return {}
        t = shadow_leads.c
        statement = (
            sa.select(t.list_id, t.phone, t.lead_key)
            .where(t.target == self.target, t.phone.in_({phone for _, phone in pairs}),
                   t.list_id.in_({list_id for list_id, _ in pairs}),
                   t.status.in_(HOLDS_PHONE))
        )
        found: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        with self.engine.connect() as conn:
            for list_id, phone, key in conn.execute(statement):
                if (list_id, phone) in pairs:
                    found[list_id, phone].append(key)
        return {pair: tuple(sorted(keys)) for pair, keys in found.items()}

    def unknown_phones(self) -> int:
        """How many leads on the dialer were recorded before their phone was kept."""
        t = shadow_leads.c
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                t.target == self.target, t.phone.is_(None),
                t.status.in_(HOLDS_PHONE))).scalar_one())

    def stream_unknown_phones(self) -> Iterator[RecordedLead]:
        """Those leads, in byte order of their key (to merge with the CRM's)."""
        t = shadow_leads.c
        statement = (
            sa.select(t.lead_key, t.list_id, t.fields_digest, t.status)
            .where(t.target == self.target, t.phone.is_(None), t.status.in_(HOLDS_PHONE))
            .order_by(binary_key_order(t.lead_key, self.engine.dialect.name, is_text=True))
        )
        with self.engine.connect() as conn:
            for key, list_id, digest, status in stream_rows(conn, statement):
                yield RecordedLead(key, list_id, digest, status)

    def record_phones(self, phones: Iterable[tuple[str, str]], chunk: int = 5000) -> int:
        """Fill in (key, phone) for leads recorded without one ("": not known). Returns how
        many. Committed a chunk at a time; each raises the version (a saved plan is stale)."""
        t = shadow_leads.c
        statement = (sa.update(shadow_leads)
                     .where(t.target == self.target, t.lead_key == sa.bindparam("key"),
                            t.phone.is_(None))
                     .values(phone=sa.bindparam("known")))
        done = 0
        pending: list[dict[str, str]] = []

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(statement, pending)
                StepWriter(conn, self.target, "").bump_version()
            pending.clear()

        for key, phone in phones:
            pending.append({"key": key, "known": phone})
            done += 1
            if len(pending) >= chunk:
                write()
        if pending:
            write()
        return done

    def record_outcome(self, batch_id: str, results: Sequence[LeadResult], state: str,
                       message: str = "") -> None:
        t = shadow_leads.c
        statement = (
            sa.update(shadow_leads)
            .where(t.target == self.target, t.lead_key == sa.bindparam("key"),
                   t.batch_id == batch_id)
            .values(status=sa.bindparam("status"), dialer_lead_id=sa.bindparam("lead_id"),
                    message=sa.bindparam("why"), updated_at=now())
        )
        with self.engine.begin() as conn:
            if results:     # one executemany for the batch, not a statement per lead
                conn.execute(statement, [
                    {"key": r.key, "status": r.status, "lead_id": r.dialer_lead_id,
                     "why": r.message or None} for r in results])
            self._settle(conn, batch_id, state, message)
            StepWriter(conn, self.target, "").bump_version()

    def record_lead(self, batch_id: str, result: LeadResult) -> None:
        """Commit one lead's outcome (leads sent one by one)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(shadow_leads).where(
                shadow_leads.c.target == self.target, shadow_leads.c.lead_key == result.key,
                shadow_leads.c.batch_id == batch_id).values(
                    status=result.status, dialer_lead_id=result.dialer_lead_id,
                    message=result.message or None, updated_at=now()))
            StepWriter(conn, self.target, "").bump_version()

    def finish_batch(self, batch_id: str, unsent: Sequence[str], state: str,
                     message: str = "") -> None:
        """Close a batch sent lead by lead: its leads never attempted are forgotten (planned
        again next run); the batch is `state` (answered, or in_doubt when a lead is)."""
        with self.engine.begin() as conn:
            if unsent:
                conn.execute(sa.delete(shadow_leads).where(
                    shadow_leads.c.batch_id == batch_id, shadow_leads.c.status == "pending",
                    shadow_leads.c.lead_key.in_(list(unsent))))
            self._settle(conn, batch_id, state, message)
            StepWriter(conn, self.target, "").bump_version()

    def doubtful_leads(self, settled_before: datetime) -> list[DoubtfulLead]:
        """Leads in doubt since before `settled_before`, from batches a finished run settled."""
        t, b = shadow_leads.c, lead_batches.c
        statement = (
            sa.select(t.lead_key, t.list_id, t.fields_digest, t.batch_id)
            .join_from(shadow_leads, lead_batches, t.batch_id == b.batch_id)
            .where(t.target == self.target, t.status == "in_doubt", b.state == "in_doubt",
                   t.updated_at <= settled_before)
            .order_by(t.lead_key))
        with self.engine.connect() as conn:
            return [DoubtfulLead(*row) for row in conn.execute(statement)]

    def settle_by_lookup(self, settlements: Sequence[LeadSettlement]) -> int:
        """Write what look-ups found: a lead found is sent, one not found is forgotten (so it is
        sent again). Only leads still in doubt in the same batch change. Returns how many."""
        t = shadow_leads.c
        changed = 0
        with self.engine.begin() as conn:
            for s in settlements:
                mine = sa.and_(t.target == self.target, t.lead_key == s.key,
                               t.batch_id == s.batch_id, t.status == "in_doubt")
                if s.dialer_lead_id is not None:
                    done = conn.execute(sa.update(shadow_leads).where(mine).values(
                        status="sent", dialer_lead_id=s.dialer_lead_id, updated_at=now(),
                        message="found on the dialer by a look-up"))
                else:
                    done = conn.execute(sa.delete(shadow_leads).where(mine))
                changed += done.rowcount
            for batch_id in sorted({s.batch_id for s in settlements}):
                left = conn.execute(sa.select(sa.func.count()).where(
                    t.batch_id == batch_id, t.status.in_(("pending", "in_doubt")))).scalar_one()
                if not left:
                    self._settle(conn, batch_id, "resolved_lookup",
                                 "settled by looking the leads up on the dialer")
            StepWriter(conn, self.target, "").bump_version()
        return changed

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
