"""Plan leads: merge the CRM's and the state's key-ordered streams. Pure and bounded in memory.

Both inputs arrive sorted by key (byte order), so one pass decides every lead while holding
only the open batch of each list, a set of (list, phone) hashes for the duplicate policy, and
counters. The same generator serves `plan` (which keeps only keys and counts) and `apply`
(which sends each batch as it is produced), so both always agree.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.batching import BatchLimits, OpenBatch, lead_cost
from reconciler.model import DesiredLead, RecordedLead, RowRejection
from reconciler.plan import Reject

# What a lead in the CRM can be, against what we recorded of it.
SENT, IN_DOUBT, REJECTED_BEFORE, GONE = "sent", "in_doubt", "rejected_before", "gone"
CHANGED, MOVED = "changed_after_export", "moved_to_other_list"

LeadCheck = Callable[[Mapping[str, str]], list[tuple[str, str]]]


class LeadOrderError(Exception):
    """A stream was not in key order: merging it would give a wrong plan."""


@dataclass(frozen=True)
class LeadContext:
    usable_lists: frozenset[str]          # on the dialer, or created/adopted earlier in the plan
    list_blockers: Mapping[str, str]      # list_id -> why its leads cannot go (CRM row rejected)
    limits: BatchLimits
    check: LeadCheck                      # the dialer's field rules for one lead
    keep_first_phone: bool = True


@dataclass(frozen=True)
class LeadBatch:
    list_id: str
    seq: int
    items: tuple[tuple[str, Mapping[str, str], str], ...]     # (key, fields, digest)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _, _ in self.items)


@dataclass(frozen=True)
class LeadDrift:
    list_id: str
    topic: str                            # changed_after_export | moved_to_other_list
    key: str


@dataclass(frozen=True)
class LeadTotals:
    counts: Mapping[tuple[str, str], int]     # (list_id, state) -> leads
    digest: str                               # of every desired lead: part of the plan basis


LeadEvent = LeadBatch | Reject | LeadDrift | LeadTotals


@dataclass
class _Merge:
    ctx: LeadContext
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches: dict[str, OpenBatch] = field(default_factory=dict)
    seq: Counter[str] = field(default_factory=Counter)
    phones: set[int] = field(default_factory=set)
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def decide(self, lead: DesiredLead, have: RecordedLead | None) -> Iterator[LeadEvent]:
        self.digest.update(f"{lead.key}\x1f{lead.digest}\x1e".encode())
        duplicate = self._phone_taken(lead)
        if have is not None and have.status == SENT:
            self.counts[lead.list_id, SENT] += 1
            if have.digest != lead.digest:
                moved = have.list_id != lead.list_id
                yield LeadDrift(lead.list_id, MOVED if moved else CHANGED, lead.key)
        elif have is not None and have.status in ("pending", IN_DOUBT):
            self.counts[lead.list_id, IN_DOUBT] += 1       # never resent silently
        elif have is not None and have.digest == lead.digest:
            self.counts[lead.list_id, REJECTED_BEFORE] += 1  # resent once the CRM fixes it
        elif duplicate:
            yield self._reject(lead, "phone_number",
                               f"duplicate phone in list {lead.list_id}: an earlier lead has it")
        else:
            yield from self._send(lead)

    def _phone_taken(self, lead: DesiredLead) -> bool:
        if not self.ctx.keep_first_phone:
            return False
        token = hash((lead.list_id, lead.fields.get("phone_number", "")))
        if token in self.phones:
            return True
        self.phones.add(token)
        return False

    def _send(self, lead: DesiredLead) -> Iterator[LeadEvent]:
        blocker = self.ctx.list_blockers.get(lead.list_id)
        if blocker is not None or lead.list_id not in self.ctx.usable_lists:
            yield self._reject(lead, "list_id", blocker or (
                f"list {lead.list_id} is neither on the dialer nor in the CRM"))
            return
        problems = self.ctx.check(lead.fields)
        if problems:
            for name, rule in problems:
                yield self._reject(lead, name, rule)
            return
        cost = lead_cost(lead.fields)
        if not self.ctx.limits.fits_alone(cost):
            yield self._reject(lead, "multi_leads", "is too large to send in one request")
            return
        batch = self.batches.get(lead.list_id)
        if batch is not None and not batch.fits(cost):
            yield self._close(lead.list_id)
            batch = None
        if batch is None:
            batch = self.batches[lead.list_id] = OpenBatch(self.ctx.limits)
        batch.add(lead.key, lead.fields, lead.digest, cost)
        self.counts[lead.list_id, "to_send"] += 1

    def _close(self, list_id: str) -> LeadBatch:
        batch = self.batches.pop(list_id)
        self.seq[list_id] += 1
        return LeadBatch(list_id, self.seq[list_id], tuple(batch.items))

    def _reject(self, lead: DesiredLead, name: str, reason: str) -> Reject:
        self.counts[lead.list_id, "rejected"] += 1
        return Reject("leads", lead.key, name, reason)

    def finish(self) -> Iterator[LeadEvent]:
        for list_id in sorted(self.batches):
            yield self._close(list_id)
        yield LeadTotals(dict(self.counts), self.digest.hexdigest())


def lead_events(
    desired: Iterable[DesiredLead | RowRejection],
    recorded: Iterable[RecordedLead],
    ctx: LeadContext,
) -> Iterator[LeadEvent]:
    merge = _Merge(ctx)
    records = _ordered(iter(recorded), "state database")
    have = next(records, None)
    for group in _by_key(_ordered(iter(desired), "CRM")):
        key = group[0].key
        while have is not None and have.key < key:
            merge.counts[have.list_id, GONE] += 1
            have = next(records, None)
        mine = have if have is not None and have.key == key else None
        if mine is not None:
            have = next(records, None)
        if len(group) == 1 and isinstance(group[0], DesiredLead):
            yield from merge.decide(group[0], mine)
        else:
            yield from _group_rejections(group)
    while have is not None:
        merge.counts[have.list_id, GONE] += 1
        have = next(records, None)
    yield from merge.finish()


def _group_rejections(group: list[DesiredLead | RowRejection]) -> Iterator[Reject]:
    """A bad row, or one key on several rows (all of them refused: which one is meant?)."""
    if len(group) == 1:
        bad = group[0]
        assert isinstance(bad, RowRejection)
        yield Reject(bad.resource, bad.key, bad.field, bad.rule, bad.row)
        return
    for _ in group:
        yield Reject("leads", group[0].key, "lead_key",
                     f"duplicate key: {len(group)} CRM rows share it")


def _by_key(items: Iterator[DesiredLead | RowRejection]
            ) -> Iterator[list[DesiredLead | RowRejection]]:
    """Group adjacent rows with one key; rows whose key is unusable stand alone."""
    group: list[DesiredLead | RowRejection] = []
    for item in items:
        if group and item.key and item.key == group[0].key:
            group.append(item)
            continue
        if group:
            yield group
        group = [item]
    if group:
        yield group


def _ordered(items: Iterator[DesiredLead | RowRejection] | Iterator[RecordedLead], where: str
             ) -> Iterator[Any]:
    previous = ""
    for item in items:
        key = item.key
        if key:
            if key < previous:
                raise LeadOrderError(f"the {where} returned leads out of key order "
                                     f"({key!r} after {previous!r})")
            previous = key
        yield item
