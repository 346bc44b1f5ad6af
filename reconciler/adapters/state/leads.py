"""Leads in the state database: the exactly-once bookkeeping of add_multi_lead batches.

A batch's intent (its id and lead keys, status `pending`) is committed before it is sent; each
lead's outcome after the answer. A batch whose answer never came is `in_doubt` and is never
resent automatically: `reconciler leads resolve` settles it, or, with a dialer that can look
leads up, a look-up does (`doubtful_leads`, `settle_by_lookup`).

A dialer that takes leads one by one gets each lead's progress recorded instead: at intent the
batch's leads are `queued` (never sent: safe to send), each is `sending` from just before its
request, and has its outcome just after. A process that dies leaves in doubt only the few leads
it had on their way; its queued leads are planned again.

Lead statuses: queued, pending (its batch may have been sent), sending, sent, rejected,
in_doubt.

Each lead keeps the phone it was sent with (as sent: digits only), so that `keep_first` can ask
which lead already holds a phone in a list (`phone_holders`). A lead recorded before the phone
was kept has none (NULL) until `record_phones` fills it in; "" means it is not known.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa

from reconciler.adapters.keyorder import binary_key_order, stream_chunks, stream_rows
from reconciler.adapters.state import db, marks, queries
from reconciler.adapters.state.lead_writes import LeadWrites
from reconciler.adapters.state.schema import lead_batches, shadow_leads
from reconciler.adapters.state.store import StateStore, StepWriter, now
from reconciler.core.leads.chunks import recorded_leads
from reconciler.core.leads.merge import LeadRedigest
from reconciler.core.model import UNCERTAIN_LEAD_STATUSES, RecordedChunk, RecordedLead
from reconciler.errors import LeaseLost, StateError

QUEUED, SENDING = "queued", "sending"
UNCERTAIN = tuple(sorted(UNCERTAIN_LEAD_STATUSES))
AMBIGUOUS_SHOWN = 10          # batch ids named when a short id matches several


class ResolvedTooEarly(StateError):
    """"Not sent" said while a request still on its way could land on the dialer."""

    def __init__(self, batch_id: str, last_sent: datetime, earliest: datetime) -> None:
        super().__init__(f"lead batch {batch_id} cannot be resolved as not sent before "
                         f"{earliest:%Y-%m-%d %H:%M:%SZ}")
        self.batch_id, self.last_sent, self.earliest = batch_id, last_sent, earliest
# A lead in these states is on the dialer, or may be: its phone is taken in its list. A queued
# lead never left (it is planned again), so it holds nothing.
HOLDS_PHONE = ("sent", "pending", SENDING, "in_doubt")


# The statements an apply runs for every lead batch, made once: each built per call, with its
# cache key, cost more than its write; one transaction of them stands between two requests
# (`record_outcome` with `sending`).
_NEW_BATCH = sa.insert(lead_batches)
_MARK_SENDING = (
    sa.update(shadow_leads)
    .where(shadow_leads.c.target == sa.bindparam("for_target"),
           shadow_leads.c.batch_id == sa.bindparam("for_batch"),
           shadow_leads.c.status == QUEUED)
    .values(status="pending", updated_at=sa.bindparam("at", type_=shadow_leads.c.updated_at.type))
)
_KEEP_ANSWER = (
    sa.update(lead_batches).where(lead_batches.c.batch_id == sa.bindparam("for_batch"))
    .values(answer=sa.bindparam("kept"))
)
_SETTLE = (
    sa.update(lead_batches).where(lead_batches.c.batch_id == sa.bindparam("for_batch"))
    .values(state=sa.bindparam("new_state"),
            settled_at=sa.bindparam("at", type_=lead_batches.c.settled_at.type),
            message=sa.bindparam("why"))
)

# Made once, its lists of values bound as they are: a statement made per question, its hundreds
# of phones each made a bound parameter, cost more than the indexed look-up itself.
_PHONE_HOLDERS = (
    sa.select(shadow_leads.c.list_id, shadow_leads.c.phone, shadow_leads.c.lead_key)
    .where(shadow_leads.c.target == sa.bindparam("target"),
           shadow_leads.c.phone.in_(sa.bindparam("phones", expanding=True)),
           shadow_leads.c.list_id.in_(sa.bindparam("lists", expanding=True)),
           shadow_leads.c.status.in_(HOLDS_PHONE))
)


@dataclass(frozen=True)
class DoubtfulLead:
    key: str
    list_id: str
    digest: str
    batch_id: str
    status: str = "in_doubt"


@dataclass(frozen=True)
class LeadSettlement:
    """What a look-up on the dialer found for an in-doubt lead."""

    key: str
    batch_id: str
    dialer_lead_id: str | None        # it landed with this id; None: it never landed


class LeadResult(NamedTuple):
    """One lead's answer, as recorded (a tuple: a batch's answer makes hundreds at a time)."""

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
        return recorded_leads(self.stream_recorded_chunks())

    def stream_recorded_chunks(self) -> Iterator[RecordedChunk]:
        """The same leads, a chunk at a time, column by column (for the merge)."""
        t = shadow_leads.c
        statement = (
            sa.select(t.lead_key, t.list_id, t.fields_digest, t.status)
            .where(t.target == self.target, t.status != QUEUED)   # never sent: as if absent
            .order_by(binary_key_order(t.lead_key, self.engine.dialect.name, is_text=True))
        )
        try:
            with self.engine.connect() as conn:
                for rows in stream_chunks(conn, statement):
                    keys, list_ids, digests, statuses = map(list, zip(*rows, strict=True))
                    yield RecordedChunk(keys, list_ids, digests, statuses)
        except sa.exc.DBAPIError as exc:
            # Read from the driver's own cursor, past the engine's handle_error hook.
            raise db.unavailable(self.engine, exc) from exc

    def record_intent(self, run_id: str, list_id: str,
                      items: Sequence[tuple[str, Any, str]], status: str = "pending") -> str:
        """Commit, before sending, which leads this batch carries. Returns the batch id.

        `status`: `pending` for a batch sent whole at once; `queued` for one sent later (marked
        by `record_sending` just before) or lead by lead."""
        batch_id = str(uuid.uuid4())
        at = now()
        with self.engine.begin() as conn:
            self.store.fence(conn)          # a process whose lease was taken over stops here
            conn.execute(_NEW_BATCH, {
                "batch_id": batch_id, "target": self.target, "list_id": list_id,
                "run_id": run_id, "state": "intent", "lead_count": len(items), "created_at": at})
            self._writes.insert_leads.run(
                conn, [(key, digest, fields.get("phone_number")) for key, fields, digest in items],
                target=self.target, list_id=list_id, status=status, batch_id=batch_id, at=at)
            StepWriter(conn, self.target, run_id).bump_version()
        return batch_id

    def phone_holders(self, pairs: Collection[tuple[str, str]]
                      ) -> dict[tuple[str, str], tuple[str, ...]]:
        """(list, phone) -> the keys of the leads that hold it on the dialer, for each pair asked
        about that one holds. One indexed query; ask about a few hundred pairs at a time."""
        if not pairs:
            return {}
        found: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        with self.engine.connect() as conn:
            for list_id, phone, key in conn.execute(_PHONE_HOLDERS, {
                    "target": self.target, "phones": sorted({phone for _, phone in pairs}),
                    "lists": sorted({list_id for list_id, _ in pairs})}):
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

    def record_digests(self, leads: Iterable[LeadRedigest], chunk: int = 5000) -> int:
        """Record anew the digest of leads recorded with one of an earlier format, each only
        where the state still holds that earlier one. Committed a chunk at a time, fenced by
        the lease; the version stays (the leads mean what they meant). Returns how many."""
        t = shadow_leads.c
        statement = (sa.update(shadow_leads)
                     .where(t.target == self.target, t.lead_key == sa.bindparam("key"),
                            t.fields_digest == sa.bindparam("recorded"))
                     .values(fields_digest=sa.bindparam("digest")))
        done = 0
        items = iter(leads)
        while part := list(islice(items, chunk)):
            with self.engine.begin() as conn:
                self.store.fence(conn)
                done += conn.execute(statement, [
                    {"key": lead.key, "recorded": lead.recorded, "digest": lead.digest}
                    for lead in part]).rowcount
        return done

    def record_outcome(self, batch_id: str, results: Sequence[LeadResult], state: str,
                       message: str = "", *, sending: str | None = None) -> bool:
        """Commit a batch's answer: each lead's outcome, the batch `state`. Returns whether the
        answer was kept on the batch's row instead, for `write_answer` to write lead by lead.

        With `sending`, the batch about to be sent next is marked so in the same transaction
        (see record_sending). Since the next request waits for it, an answer that left no lead
        in doubt (`answered`) is then kept whole on the batch's own row, one write instead of
        one a lead: `write_answer` writes the leads' rows from it next (`write_kept_answers`
        after a crash), and until then its leads stay `pending`, never resent. An answer with
        a lead in doubt is written lead by lead at once, so that every batch an operator may
        resolve or look up has its leads' rows written. When the lease is lost, the answer is
        committed all the same, lead by lead, and LeaseLost raised."""
        keep = sending is not None and state == "answered"
        if sending is not None:
            try:
                with self.engine.begin() as conn:
                    self._mark_sending(conn, sending)
                    if keep:
                        conn.execute(_KEEP_ANSWER, {"for_batch": batch_id, "kept": json.dumps(
                            results, separators=(",", ":"))})
                        self._settle(conn, batch_id, state, message)
                        StepWriter(conn, self.target, "").bump_version()
                    else:
                        self._write_outcome(conn, batch_id, results, state, message)
                return keep
            except LeaseLost:
                self.record_outcome(batch_id, results, state, message)
                raise
        with self.engine.begin() as conn:
            self._write_outcome(conn, batch_id, results, state, message)
        return False

    def write_answer(self, batch_id: str, results: Sequence[LeadResult]) -> None:
        """Write the leads' rows of an answer kept on its batch's row (`record_outcome` with
        `sending`), and let the row go of it. Not fenced: the answer is the dialer's already."""
        with self.engine.begin() as conn:
            self._write_lead_outcomes(conn, batch_id, results)
            conn.execute(_KEEP_ANSWER, {"for_batch": batch_id, "kept": None})
            StepWriter(conn, self.target, "").bump_version()

    def write_kept_answers(self) -> int:
        """Write the leads' rows of every answer still kept on its batch's row: a process died
        between keeping it and writing them (until then its leads are `pending`: never
        resent). Call under the lease, before planning. Returns how many batches."""
        b = lead_batches.c
        with self.engine.connect() as conn:
            kept = conn.execute(sa.select(b.batch_id, b.answer).where(
                b.target == self.target, b.answer.is_not(None))).all()
        for batch_id, answer in kept:
            self.write_answer(batch_id, [LeadResult(*item) for item in json.loads(answer)])
        return len(kept)

    def record_sending(self, batch_id: str) -> None:
        """A batch recorded `queued` is about to be sent whole: its leads become `pending` (may
        be on the dialer), from now. Fenced, like an intent."""
        with self.engine.begin() as conn:
            self._mark_sending(conn, batch_id)
            StepWriter(conn, self.target, "").bump_version()

    def _mark_sending(self, conn: sa.Connection, batch_id: str) -> None:
        self.store.fence(conn)              # a process whose lease was taken over stops here
        conn.execute(_MARK_SENDING, {"for_target": self.target, "for_batch": batch_id,
                                     "at": now()})

    def _write_outcome(self, conn: sa.Connection, batch_id: str, results: Sequence[LeadResult],
                       state: str, message: str) -> None:
        self._write_lead_outcomes(conn, batch_id, results)
        self._settle(conn, batch_id, state, message)
        StepWriter(conn, self.target, "").bump_version()

    def _write_lead_outcomes(self, conn: sa.Connection, batch_id: str,
                             results: Sequence[LeadResult]) -> None:
        if results:     # one executemany for the batch, not a statement per lead
            self._writes.update_outcomes.run(
                conn, [(r.key, r.status, r.dialer_lead_id, r.message or None) for r in results],
                target=self.target, batch_id=batch_id, at=now())

    @cached_property
    def _writes(self) -> LeadWrites:
        return LeadWrites(self.engine.dialect)

    def record_progress(self, batch_id: str, answered: Sequence[LeadResult],
                        sending: Sequence[str]) -> None:
        """Leads sent one by one: commit together the outcomes of the leads just answered and
        `sending` for the leads about to go, so only those can be on their way at a crash."""
        t = shadow_leads.c
        mine = sa.and_(t.target == self.target, t.batch_id == batch_id)
        with self.engine.begin() as conn:
            if sending:
                self.store.fence(conn)      # a process whose lease was taken over stops here
            if answered:
                conn.execute(
                    sa.update(shadow_leads).where(mine, t.lead_key == sa.bindparam("key"))
                    .values(status=sa.bindparam("status"), dialer_lead_id=sa.bindparam("lead_id"),
                            message=sa.bindparam("why"), updated_at=now()),
                    [{"key": r.key, "status": r.status, "lead_id": r.dialer_lead_id,
                      "why": r.message or None} for r in answered])
            if sending:
                conn.execute(sa.update(shadow_leads).where(mine, t.lead_key.in_(list(sending)))
                             .values(status=SENDING, updated_at=now()))
            StepWriter(conn, self.target, "").bump_version()

    def finish_batch(self, batch_id: str, unsent: Sequence[str], state: str,
                     message: str = "") -> None:
        """Close a batch sent lead by lead: its leads that never reached the dialer are
        forgotten (planned again next run); the batch is `state` (answered, or in_doubt when a
        lead is)."""
        t = shadow_leads.c
        with self.engine.begin() as conn:
            if unsent:
                conn.execute(sa.delete(shadow_leads).where(
                    t.batch_id == batch_id, t.status.in_((QUEUED, SENDING)),
                    t.lead_key.in_(list(unsent))))
                marks.full_pass_due(conn, self.target)
            self._settle(conn, batch_id, state, message)
            StepWriter(conn, self.target, "").bump_version()

    def doubtful_leads(self, sent_before: datetime) -> list[DoubtfulLead]:
        """Leads in doubt whose last request started before `sent_before`: answers lost, and
        leads a process that died had on their way (their batch still at `intent`)."""
        t, b = shadow_leads.c, lead_batches.c
        statement = (
            sa.select(t.lead_key, t.list_id, t.fields_digest, t.batch_id, t.status)
            .join_from(shadow_leads, lead_batches, t.batch_id == b.batch_id)
            .where(t.target == self.target, t.status.in_(UNCERTAIN),
                   b.state.in_(("intent", "in_doubt")), t.updated_at <= sent_before)
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
                               t.batch_id == s.batch_id, t.status.in_(UNCERTAIN))
                if s.dialer_lead_id is not None:
                    done = conn.execute(sa.update(shadow_leads).where(mine).values(
                        status="sent", dialer_lead_id=s.dialer_lead_id, updated_at=now(),
                        message="found on the dialer by a look-up"))
                else:
                    done = conn.execute(sa.delete(shadow_leads).where(mine))
                    marks.full_pass_due(conn, self.target)
                changed += done.rowcount
            for batch_id in sorted({s.batch_id for s in settlements}):
                left = conn.execute(sa.select(sa.func.count()).where(
                    t.batch_id == batch_id, t.status.in_((*UNCERTAIN, QUEUED)))).scalar_one()
                if not left:
                    self._settle(conn, batch_id, "resolved_lookup",
                                 "settled by looking the leads up on the dialer")
            StepWriter(conn, self.target, "").bump_version()
        return changed

    def forget_unsent(self, batch_id: str, message: str) -> None:
        """The batch never reached the dialer: drop its intent so the leads are planned again."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(shadow_leads).where(shadow_leads.c.batch_id == batch_id))
            marks.full_pass_due(conn, self.target)
            self._settle(conn, batch_id, "not_sent", message)
            StepWriter(conn, self.target, "").bump_version()

    def settle_interrupted(self) -> int:
        """Close the batches a process that died left at `intent`. Call under the lease.

        Leads it may have sent are in doubt, keeping the time of their last request (a look-up
        or `resolve --not-sent` waits from then); leads it never attempted are forgotten, to be
        planned again. Returns how many batches are now in doubt."""
        t = shadow_leads.c
        in_doubt = 0
        with self.engine.begin() as conn:
            stuck = [row.batch_id for row in conn.execute(
                sa.select(lead_batches.c.batch_id).where(
                    lead_batches.c.target == self.target, lead_batches.c.state == "intent"))]
            if stuck:
                marks.full_pass_due(conn, self.target)
            for batch_id in stuck:
                conn.execute(sa.delete(shadow_leads).where(t.batch_id == batch_id,
                                                           t.status == QUEUED))
                doubtful = conn.execute(
                    sa.update(shadow_leads)
                    .where(t.batch_id == batch_id, t.status.in_(UNCERTAIN))
                    .values(status="in_doubt")).rowcount
                in_doubt += bool(doubtful)
                if doubtful:
                    self._settle(conn, batch_id, "in_doubt",
                                 "interrupted between sending and recording the answer")
                elif conn.execute(sa.select(sa.func.count()).where(
                        t.batch_id == batch_id)).scalar_one():
                    self._settle(conn, batch_id, "answered",
                                 "interrupted; its leads not yet sent are planned again")
                else:   # committed ahead of its request (queued), never sent
                    self._settle(conn, batch_id, "not_sent",
                                 "interrupted before it was sent; its leads are planned again")
        return in_doubt

    def in_doubt_batches(self) -> list[dict[str, Any]]:
        """The batches `status` shows in doubt (see queries.in_doubt_batches)."""
        return queries.in_doubt_batches(self.engine, self.target)

    def find_batch(self, batch_ref: str) -> dict[str, Any]:
        """A batch by its id, or by a prefix of it only one batch has (as `status` shows)."""
        b = lead_batches.c
        with self.engine.connect() as conn:
            found = [_aware(r) for r in conn.execute(
                sa.select(lead_batches)
                .where(b.target == self.target, b.batch_id.startswith(batch_ref, autoescape=True))
                .order_by(b.batch_id).limit(AMBIGUOUS_SHOWN + 1)).mappings()]
        exact = [r for r in found if r["batch_id"] == batch_ref]
        if exact:
            return exact[0]
        if not found or not batch_ref:
            raise StateError(f"no lead batch {batch_ref!r} for target {self.target!r}; "
                             f"`reconciler leads in-doubt` lists those in doubt")
        if len(found) > 1:
            names = ", ".join(r["batch_id"] for r in found[:AMBIGUOUS_SHOWN])
            more = " and more" if len(found) > AMBIGUOUS_SHOWN else ""
            raise StateError(f"lead batch id {batch_ref!r} is ambiguous: it may be {names}"
                             f"{more}; give more of it")
        return found[0]

    def last_sent_at(self, batch_id: str) -> datetime:
        with self.engine.connect() as conn:
            return queries.last_sent_at(conn, batch_id)

    def batch_leads(self, batch_id: str) -> list[DoubtfulLead]:
        """The leads of a batch whose outcome is unknown, in key order."""
        t = shadow_leads.c
        statement = (sa.select(t.lead_key, t.list_id, t.fields_digest, t.batch_id, t.status)
                     .where(t.target == self.target, t.batch_id == batch_id,
                            t.status.in_(UNCERTAIN))
                     .order_by(t.lead_key))
        with self.engine.connect() as conn:
            return [DoubtfulLead(*row) for row in conn.execute(statement)]

    def resolve(self, batch_id: str, *, sent: bool,
                landing_window: timedelta | None = None) -> int:
        """An operator checked the dialer: the batch's doubtful leads were sent, or were not.

        With `landing_window`, "not sent" is refused (ResolvedTooEarly) while a request that
        may have carried one of them could still land: until that long after it started."""
        t = shadow_leads.c
        with self.engine.begin() as conn:
            batch = conn.execute(sa.select(lead_batches).where(
                lead_batches.c.batch_id == batch_id,
                lead_batches.c.target == self.target)).mappings().first()
            if batch is None:
                raise StateError(f"no lead batch {batch_id} for target {self.target!r}")
            if batch["state"] not in ("intent", "in_doubt"):
                raise StateError(f"lead batch {batch_id} is {batch['state']}, not in doubt")
            if not sent and landing_window is not None:
                _refuse_early(batch_id, queries.last_sent_at(conn, batch_id), landing_window)
            # Leads queued and never attempted were not sent, whatever the verdict.
            never_sent = conn.execute(sa.delete(shadow_leads).where(
                t.batch_id == batch_id, t.status == QUEUED)).rowcount
            doubtful = sa.and_(t.batch_id == batch_id, t.status.in_(UNCERTAIN))
            if sent:
                changed = conn.execute(sa.update(shadow_leads).where(doubtful).values(
                    status="sent", message="confirmed sent by an operator", updated_at=now()))
            else:
                changed = conn.execute(sa.delete(shadow_leads).where(doubtful))
            if never_sent or not sent:
                marks.full_pass_due(conn, self.target)
            self._settle(conn, batch_id, "resolved_sent" if sent else "resolved_not_sent",
                         "resolved by an operator")
            StepWriter(conn, self.target, batch["run_id"] or "").bump_version()
            return int(changed.rowcount) + (0 if sent else int(never_sent))

    def _settle(self, conn: sa.Connection, batch_id: str, state: str, message: str) -> None:
        conn.execute(_SETTLE, {"for_batch": batch_id, "new_state": state, "at": now(),
                               "why": message or None})


def _aware(row: sa.RowMapping) -> dict[str, Any]:
    return {str(k): queries.as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _refuse_early(batch_id: str, last_sent: datetime, window: timedelta) -> None:
    if datetime.now(UTC) < last_sent + window:
        raise ResolvedTooEarly(batch_id, last_sent, last_sent + window)
