"""Incremental lead passes, at the edge: the clock, the CRM's high-water mark and the state's
marks meet here; the merge itself (core/leads/merge.py) is the same in both kinds of pass.

An incremental pass reads the CRM rows changed past the mark, and from the state only the
recorded leads of those keys, a chunk at a time in the same key order: so the merge sees every
lead it reads exactly as a full pass would, and no recorded lead looks gone (a deletion is seen
by full passes only). See docs/incremental.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from typing import Any

import sqlalchemy as sa
import structlog

from reconciler.adapters.crm.changes import ChangeMark, high_water, shared_phones_of_changes
from reconciler.adapters.crm.leads import stream_leads
from reconciler.adapters.crm.shared_phones import SharedPhonesLater, in_database
from reconciler.adapters.state import marks
from reconciler.adapters.state.store import StateStore
from reconciler.config.spec import ResourceSpec
from reconciler.core.leads.passes import choose_pass
from reconciler.core.model import DesiredLead, RecordedLead, RowRejection
from reconciler.core.plan import FULL, LeadPass
from reconciler.errors import LeaseLost

log = structlog.get_logger()

KEYS_ASKED = 1000          # recorded leads looked up per state query
# Only a run that finished ok moves the mark (a lead in doubt that is later forgotten makes the
# next pass a full one).
MARK_ADVANCES = ("ok",)
# Stands for "nothing recorded" in the aligned stream: the merge treats it as no record at all
# (not sent, not in doubt, and a digest no row has).
NOT_RECORDED = "not_recorded"


@dataclass(frozen=True)
class LeadRead:
    """How a run reads the CRM's leads, when the spec names a change column."""

    lead_pass: LeadPass
    high_water: ChangeMark | None    # read before the rows: kept as the mark once applied
    began: datetime                  # when the pass was chosen, before any row was read
    since: ChangeMark | None = None  # incremental: the rows past this mark are read

    @property
    def since_value(self) -> Any:
        return None if self.since is None else self.since.value()


def choose(crm: sa.Engine, store: StateStore, resource: ResourceSpec, *, resync: bool,
           full: bool, settled: bool, now: datetime | None = None) -> LeadRead | None:
    """The pass this run makes; None when the spec names no change column (always full)."""
    if resource.change_column is None:
        return None
    now = now or datetime.now(UTC)
    mark = marks.load(store.engine, store.target)
    lead_pass = choose_pass(mark, resource.full_pass_every, now,
                            resync=resync, full=full, settled=settled)
    top = high_water(crm, resource)          # before the rows: a later commit is read again
    if lead_pass.kind == FULL or mark is None or mark.mark is None or mark.mark_type is None:
        return LeadRead(lead_pass, top, now)
    if top is not None and top.type != mark.mark_type:    # another column, or it was retyped
        return LeadRead(LeadPass(FULL, reason=f"the change column now holds {top.type} values, "
                                              f"the mark is {mark.mark_type}"), top, now)
    return LeadRead(lead_pass, top, now, ChangeMark(mark.mark, mark.mark_type))


def advance(store: StateStore, read: LeadRead | None, outcome: str = "ok") -> None:
    """After an apply or resync that finished `ok` (or had nothing to apply): the next
    incremental pass starts past what this one read. Not after a plan, nor a run that failed,
    stopped, ended partial or lost its lease: the next pass reads the same rows again. Call with
    the write lease held; a lease lost meanwhile keeps the old mark, harmlessly."""
    if read is None or outcome not in MARK_ADVANCES:
        return
    top = read.high_water or read.since          # no value at all now: keep the old mark
    try:
        marks.save(store, top.text if top else None, top.type if top else None,
                   at=read.began, full=read.lead_pass.kind == FULL)
    except LeaseLost as lost:
        log.warning("sync_mark_kept", reason=str(lost),
                    note="the next pass reads the same lead rows again")


def changed_leads(crm: sa.Engine, resource: ResourceSpec, store: StateStore, read: LeadRead
                  ) -> tuple[Iterator[DesiredLead | RowRejection], Iterator[RecordedLead]]:
    """The two streams of an incremental merge: the rows changed past the mark, and the
    recorded leads of their keys."""
    return aligned(stream_leads(crm, resource, since=read.since_value),
                   partial(marks.recorded_by_key, store.engine, store.target))


def shared_phones_later(crm: sa.Engine, resource: ResourceSpec, read: LeadRead
                        ) -> SharedPhonesLater:
    """keep_first in an incremental pass: asked about the changed leads' phones only, when
    first needed."""
    return SharedPhonesLater(partial(shared_phones_of_changes, crm, resource, read.since_value),
                             crm, in_database=in_database(crm, resource))


def aligned(desired: Iterable[DesiredLead | RowRejection],
            lookup: Callable[[list[str]], dict[str, RecordedLead]],
            chunk: int = KEYS_ASKED
            ) -> tuple[Iterator[DesiredLead | RowRejection], Iterator[RecordedLead]]:
    """The desired stream, and the recorded stream of just its keys: one recorded lead (or a
    NOT_RECORDED stand-in) per key, in the same order. Both read the CRM a chunk at a time, so
    neither runs more than a chunk ahead of the other."""
    rows = iter(desired)
    wanted: deque[DesiredLead | RowRejection] = deque()
    recorded: deque[RecordedLead] = deque()
    last: list[str] = [""]

    def load() -> bool:
        items = list(islice(rows, chunk))
        keys: list[str] = []
        for item in items:
            if isinstance(item, DesiredLead) and item.key != last[0]:
                keys.append(item.key)
                last[0] = item.key
        found = lookup(keys)
        wanted.extend(items)
        recorded.extend(found.get(key) or RecordedLead(key, "", "", NOT_RECORDED)
                        for key in keys)
        return bool(items)

    def drain(queue: deque[Any]) -> Iterator[Any]:
        while queue or load():
            while queue:
                yield queue.popleft()
    return drain(wanted), drain(recorded)


