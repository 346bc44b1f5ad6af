"""Plan leads: merge the CRM's and the state's key-ordered streams. Pure and bounded in memory.

Both inputs arrive sorted by key (byte order), a chunk at a time, so one pass decides every
lead while holding only a chunk of each stream, the open batch of each list, the phones
several CRM leads of a list share (for the duplicate policy, asked once a lead is about to be
sent), up to `HELD_CHUNK` leads waiting for their phone to be checked against what the dialer
holds, and counters. Runs of leads sent and unchanged since are counted in one step. The same
generator serves `plan` (which keeps only keys and counts) and `apply` (which sends each batch
as it is produced), so both always agree.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.leads.batching import BatchLimits, OpenBatch, encoded_cost, lead_json
from reconciler.core.leads.chunks import (
    CHUNK,
    Cursor,
    StateCursor,
    desired_chunks,
    new_run,
    one_lead,
    recorded_chunks,
    unchanged_run,
)
from reconciler.core.leads.chunks import (
    LeadOrderError as LeadOrderError,  # raised from here for the callers of the merge
)
from reconciler.core.model import (
    UNCERTAIN_LEAD_STATUSES,
    DesiredLead,
    LeadChunk,
    RecordedChunk,
    RecordedLead,
    RowRejection,
)
from reconciler.core.plan import Reject

# What a lead in the CRM can be, against what we recorded of it.
SENT, IN_DOUBT, REJECTED_BEFORE, GONE = "sent", "in_doubt", "rejected_before", "gone"
CHANGED, MOVED = "changed_after_export", "moved_to_other_list"

HELD_CHUNK = 500        # leads whose phones are checked against the dialer's in one question
DIGEST_FOLD = 5000      # leads folded into the digest of the desired state at once
FIRST_RUN = 64          # leads compared in one step after a difference; doubles while equal

LeadCheck = Callable[[Mapping[str, str]], list[tuple[str, str]]]
# CRM row -> (the lead's fields as sent, fields that could not be read)
FieldsOf = Callable[[tuple[Any, ...]], tuple[dict[str, str], list[tuple[str, str]]]]
PhoneOf = Callable[[tuple[Any, ...]], str]
Pair = tuple[str, str]                  # (list_id, phone as sent)
# Pairs -> the keys of recorded leads the dialer holds (or may hold) with them, in key order.
PhoneHolders = Callable[[Collection[Pair]], Mapping[Pair, tuple[str, ...]]]
# Pairs -> why each pair that is on the do-not-call list must not be called (core/leads/dnc.py).
DncCheck = Callable[[Collection[Pair]], Mapping[Pair, str]]
# (digest recorded, CRM row) -> whether it is the digest of the row in the format of an earlier
# version (which a digest of this version's format cannot equal).
EarlierDigest = Callable[[str, tuple[Any, ...]], bool]


@dataclass(frozen=True)
class LeadContext:
    usable_lists: frozenset[str]          # on the dialer, or created/adopted earlier in the plan
    list_blockers: Mapping[str, str]      # list_id -> why its leads cannot go (CRM row rejected)
    limits: BatchLimits
    fields_of: FieldsOf                   # mapping, done only for leads about to be sent
    phone_of: PhoneOf                     # the normalised phone, for the duplicate policy
    check: LeadCheck                      # the dialer's field rules for one lead
    keep_first_phone: bool = True
    # keep_first, asked of the CRM on the first lead about to be sent: (list, phone) -> the key
    # that keeps it, for phones shared by several leads of a list.
    shared_phones: Callable[[], Mapping[Pair, str]] | None = None
    # keep_first, asked of the state: which sent leads already hold a phone in a list.
    phone_holders: PhoneHolders | None = None
    # do-not-call, asked of the CRM a chunk of leads about to be sent at a time.
    dnc: DncCheck | None = None
    # A recorded digest of another length is of another format (an earlier version's): equal
    # or not says nothing, this does.
    matches_earlier_digest: EarlierDigest | None = None
    # keep_first: told once, at the first lead about to be sent, so that the CRM may start on
    # the shared phones while the merge goes on; `shared_phones` is asked only when the leads
    # waiting for their phone check are decided.
    shared_phones_soon: Callable[[], None] | None = None


@dataclass(frozen=True)
class LeadBatch:
    list_id: str
    seq: int
    items: tuple[tuple[str, Mapping[str, str], str], ...]     # (key, fields, digest)
    # The add_multi_lead `multi_leads` value of these leads, JSON made once when planned.
    multi_leads: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in self.items)


@dataclass(frozen=True)
class LeadDrift:
    list_id: str
    topic: str                            # changed_after_export | moved_to_other_list
    key: str


@dataclass(frozen=True)
class LeadDrifts:
    """Several LeadDrift of one run of leads, in key order."""

    items: tuple[LeadDrift, ...]


@dataclass(frozen=True)
class LeadSkipped:
    """Not sent, and not an error: its phone is on the do-not-call list."""

    list_id: str
    key: str
    reason: str


@dataclass(frozen=True)
class LeadRedigest:
    """A lead recorded with a digest of an earlier format, its row unchanged since: apply
    records the digest anew (`digest`, in place of `recorded`), so the next plan compares it
    in one step with its run."""

    key: str
    recorded: str
    digest: str


@dataclass(frozen=True)
class LeadTotals:
    counts: Mapping[tuple[str, str], int]     # (list_id, state) -> leads
    digest: str                               # of every desired lead: part of the plan basis


LeadEvent = (LeadBatch | Reject | LeadDrift | LeadDrifts | LeadSkipped | LeadRedigest
             | LeadTotals)
NOTHING: tuple[LeadEvent, ...] = ()


@dataclass
class _Merge:
    ctx: LeadContext
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches: dict[str, OpenBatch] = field(default_factory=dict)
    seq: Counter[str] = field(default_factory=Counter)
    waiting: list[DesiredLead] = field(default_factory=list)   # for `_send_unless_held`
    shared: Mapping[Pair, str] | None = None
    lists_sharing: frozenset[str] = frozenset()
    shared_phones_told: bool = False
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    pending_digests: list[str] = field(default_factory=list)
    unchanged_lists: list[str] = field(default_factory=list)    # list_id per lead, not counted
    sent_unchanged: Counter[str] = field(default_factory=Counter)     # list_id -> leads

    def remember(self, lead: DesiredLead) -> None:
        """Fold the lead into the digest of the desired state: its row digest, which covers
        its key and every column read (folded by chunks: this runs per lead)."""
        self.pending_digests.append(lead.digest)
        if len(self.pending_digests) >= DIGEST_FOLD:
            self._fold()

    def gone(self, list_id: str) -> None:
        self.counts[list_id, GONE] += 1

    def unchanged(self, list_ids: list[str], digests: list[str]) -> None:
        """A run of leads sent before and unchanged since: counted and remembered at once."""
        self.unchanged_lists += list_ids
        self.pending_digests += digests
        if len(self.pending_digests) >= DIGEST_FOLD:
            self._fold()

    def _fold(self) -> None:
        if self.pending_digests:
            self.digest.update(("\x1e".join(self.pending_digests) + "\x1e").encode())
            self.pending_digests.clear()
        self.sent_unchanged.update(self.unchanged_lists)
        self.unchanged_lists.clear()

    def decide(self, lead: DesiredLead, have: RecordedLead | None) -> tuple[LeadEvent, ...]:
        """What to do with one lead. Returns events; usually none (unchanged, already sent)."""
        self.remember(lead)
        if have is not None:
            status = have.status
            if status == SENT:
                self.counts[lead.list_id, SENT] += 1
                if have.digest == lead.digest:
                    return NOTHING
                if self._unchanged_since(have, lead):
                    return (LeadRedigest(lead.key, have.digest, lead.digest),)
                return (self.drift(lead.key, lead.list_id, have.list_id),)
            if status in UNCERTAIN_LEAD_STATUSES:
                self.counts[lead.list_id, IN_DOUBT] += 1       # never resent silently
                return NOTHING
            if have.digest == lead.digest:
                self.counts[lead.list_id, REJECTED_BEFORE] += 1  # resent once the CRM fixes it
                return NOTHING
            if self._unchanged_since(have, lead):
                self.counts[lead.list_id, REJECTED_BEFORE] += 1
                return (LeadRedigest(lead.key, have.digest, lead.digest),)
        if (self.ctx.keep_first_phone and self.ctx.phone_holders is not None) \
                or self.ctx.dnc is not None:
            # Decided HELD_CHUNK at a time (and at the end), never sooner: the same plan
            # whenever the CRM's answer about shared phones comes.
            if not self.shared_phones_told:
                self.shared_phones_told = True
                if self.ctx.keep_first_phone and self.ctx.shared_phones_soon is not None:
                    self.ctx.shared_phones_soon()
            self.waiting.append(lead)
            return tuple(self._send_unless_held()) if len(self.waiting) >= HELD_CHUNK \
                else NOTHING
        first = self._first_with_phone(lead)
        if first is not None:
            return (self._shared_phone_reject(lead, first),)
        return tuple(self._send(lead))

    def _shared_phone_reject(self, lead: DesiredLead, first: str) -> Reject:
        return self._reject(lead, "phone_number", f"duplicate phone in list {lead.list_id}: "
                            f"lead {first} has it and comes first")

    def drift(self, key: str, list_id: str, list_then: str) -> LeadDrift:
        """A lead sent, its CRM row changed since."""
        return LeadDrift(list_id, MOVED if list_then != list_id else CHANGED, key)

    def drifts(self, keys: list[str], list_ids: list[str], lists_then: list[str]) -> LeadDrifts:
        """Leads of a run, sent, their CRM rows changed since (`unchanged_run` counts and
        remembers them): one event, not one per lead."""
        return LeadDrifts(tuple(map(self.drift, keys, list_ids, lists_then)))

    def _unchanged_since(self, have: RecordedLead, lead: DesiredLead) -> bool:
        """Recorded with a digest of another format (another length): the row unchanged
        since? (`LeadContext.matches_earlier_digest`)"""
        earlier = self.ctx.matches_earlier_digest
        return len(have.digest) != len(lead.digest) and earlier is not None \
            and earlier(have.digest, lead.row)

    def _first_with_phone(self, lead: DesiredLead) -> str | None:
        """keep_first: the key of the lead that keeps this one's phone, when it is another."""
        if not self.ctx.keep_first_phone or self.ctx.shared_phones is None:
            return None
        if self.shared is None:             # first need: only now wait for the CRM's answer
            self.shared = self.ctx.shared_phones()
            self.lists_sharing = frozenset(list_id for list_id, _ in self.shared)
        if lead.list_id not in self.lists_sharing:
            return None
        first = self.shared.get((lead.list_id, self.ctx.phone_of(lead.row)))
        return first if first != lead.key else None

    def _send_unless_held(self) -> Iterator[LeadEvent]:
        """keep_first: send the waiting leads, except one whose phone an earlier CRM lead of its
        list has, or the dialer already holds in its list (a lead sent before, whatever its key,
        even one gone from the CRM since). Do-not-call: skip one whose phone is on the DNC for
        its list, after the first check."""
        waiting: list[DesiredLead] = []
        for lead in self.waiting:
            first = self._first_with_phone(lead)
            if first is None:
                waiting.append(lead)
            else:
                yield self._shared_phone_reject(lead, first)
        self.waiting = []
        pairs = [(lead.list_id, self.ctx.phone_of(lead.row)) for lead in waiting]
        asked = {pair for pair in pairs if all(pair)}
        holders = self.ctx.phone_holders(asked) if self.ctx.keep_first_phone \
            and self.ctx.phone_holders is not None else {}
        on_dnc = self.ctx.dnc(asked) if self.ctx.dnc is not None else {}
        for lead, pair in zip(waiting, pairs, strict=True):
            reason = on_dnc.get(pair)
            if reason is not None:
                self.counts[lead.list_id, "dnc"] += 1
                yield LeadSkipped(lead.list_id, lead.key, reason)
                continue
            holder = next((key for key in holders.get(pair, ()) if key != lead.key), None)
            if holder is None:
                yield from self._send(lead)
            else:
                yield self._reject(lead, "phone_number", f"duplicate phone in list "
                                   f"{lead.list_id}: lead {holder} has it on the dialer already")

    def _send(self, lead: DesiredLead) -> Iterator[LeadEvent]:
        blocker = self.ctx.list_blockers.get(lead.list_id)
        if blocker is not None or lead.list_id not in self.ctx.usable_lists:
            yield self._reject(lead, "list_id", blocker or (
                f"list {lead.list_id} is neither on the dialer nor in the CRM"))
            return
        fields, problems = self.ctx.fields_of(lead.row)
        problems += self.ctx.check(fields) if not problems else []
        if problems:
            for name, rule in problems:
                yield self._reject(lead, name, rule)
            return
        text = lead_json(fields)
        cost = encoded_cost(text)
        if not self.ctx.limits.fits_alone(cost):
            yield self._reject(lead, "multi_leads", "is too large to send in one request")
            return
        batch = self.batches.get(lead.list_id)
        if batch is not None and not batch.fits(cost):
            yield self._close(lead.list_id)
            batch = None
        if batch is None:
            batch = self.batches[lead.list_id] = OpenBatch(self.ctx.limits)
        batch.add(lead.key, fields, lead.digest, cost, text)
        self.counts[lead.list_id, "to_send"] += 1

    def _close(self, list_id: str) -> LeadBatch:
        batch = self.batches.pop(list_id)
        self.seq[list_id] += 1
        return LeadBatch(list_id, self.seq[list_id], tuple(batch.items), batch.multi_leads())

    def _reject(self, lead: DesiredLead, name: str, reason: str) -> Reject:
        self.counts[lead.list_id, "rejected"] += 1
        return Reject("leads", lead.key, name, reason)

    def finish(self) -> Iterator[LeadEvent]:
        self._fold()
        for list_id, leads in self.sent_unchanged.items():
            self.counts[list_id, SENT] += leads
        if self.waiting:
            yield from self._send_unless_held()
        for list_id in sorted(self.batches):
            yield self._close(list_id)
        yield LeadTotals(dict(self.counts), self.digest.hexdigest())


def lead_events(
    desired: Iterable[DesiredLead | RowRejection],
    recorded: Iterable[RecordedLead],
    ctx: LeadContext,
) -> Iterator[LeadEvent]:
    """One pass over both streams, in key order, given lead by lead."""
    return lead_chunk_events(desired_chunks(desired), recorded_chunks(recorded), ctx)


def lead_chunk_events(
    desired: Iterable[LeadChunk],
    recorded: Iterable[RecordedChunk],
    ctx: LeadContext,
) -> Iterator[LeadEvent]:
    """One pass over both streams, in key order, given a chunk at a time.

    Where both streams go on with the same keys, a run of leads is compared in one step
    (`unchanged_run`); a run of CRM keys before the state's next one is new (`new_run`); a key
    only the state has, a duplicate key and a key out of order are met one by one (`one_lead`).
    """
    merge = _Merge(ctx)
    crm, state = Cursor(desired, 4), StateCursor(recorded)
    state.start()
    previous = ""                               # the last CRM key merged
    window = FIRST_RUN
    while (ahead := crm.ensure(2)) > 0:
        i, j = crm.at, state.at
        if ahead > 1 and state.ensure(1) and crm.columns[0][i] == state.columns[0][j] \
                and crm.columns[0][i] > previous:
            run = min(ahead - 1, len(state.columns[0]) - j, window)
            taken = yield from unchanged_run(merge, crm, state, run)
            if taken:
                previous = crm.columns[0][i + taken - 1]
                crm.at += taken
                state.advance(taken)
                window = min(2 * window, CHUNK) if taken == run else FIRST_RUN
                continue
        if ahead > 1 and crm.columns[0][i] > previous and (
                not state.ensure(1) or crm.columns[0][i] < state.columns[0][j]):
            taken = yield from new_run(merge, crm, state, ahead - 1)
            if taken:
                previous = crm.columns[0][i + taken - 1]
                crm.at += taken
                continue
        previous = yield from one_lead(merge, crm, state, previous)
    while state.ensure(1):
        merge.gone(state.columns[1][state.at])
        state.advance(1)
    yield from merge.finish()
