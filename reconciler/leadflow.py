"""Wire the lead merge to its edges: the CRM stream, the state stream, the client, the plan.

`plan_leads` folds the events into plan data (keys and counts only); `send_leads` runs the same
merge again from fresh streams and sends each batch as it comes.
"""

from __future__ import annotations

import hashlib
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import sqlalchemy as sa

from reconciler.batching import BatchLimits
from reconciler.crm_leads import LeadMapper, shared_phones_later, stream_leads
from reconciler.dialect import Dialect
from reconciler.dialer import requests
from reconciler.dialer.transport import encoded_size, login_of
from reconciler.executor import RunReport
from reconciler.leadexec import LeadSender, progress_bar
from reconciler.leadplan import CHANGED, LeadBatch, LeadContext, LeadDrift, LeadEvent, LeadTotals
from reconciler.leadplan import lead_events as merge_leads
from reconciler.leadsettle import as_recorded
from reconciler.leadsingle import OneByOneSender
from reconciler.model import Desired, Observed, Recorded
from reconciler.plan import REJECTED_EARLIER, AddLeads, AddList, AdoptList, Note, Plan, Reject
from reconciler.ports import DialerPort
from reconciler.settings import DialerSettings
from reconciler.spec import ResourceSpec
from reconciler.state.leads import LeadBook, LeadSettlement

NOTE_KEYS_SHOWN = 1000   # a drift note lists at most this many keys; its count says the rest


@dataclass(frozen=True)
class LeadPart:
    ops: tuple[AddLeads, ...]
    rejects: tuple[Reject, ...]
    notes: tuple[Note, ...]
    counts: tuple[tuple[str, str, int], ...]
    digest: str


def lead_context(settings: DialerSettings, crm: sa.Engine, resource: ResourceSpec, plan: Plan,
                 desired: Desired, recorded: Recorded, observed: Observed,
                 keep_first_phone: bool, dialect: Dialect,
                 book: LeadBook | None = None,
                 duplicate_check: tuple[str, ...] = ()) -> LeadContext:
    planned = {op.list_id for op in plan.ops if isinstance(op, (AddList, AdoptList))}
    usable = set(recorded.lists) | set(observed.lists or {}) | planned
    blockers = {
        r.key: f"list {r.key} is rejected in the CRM ({r.field} {r.rule})"
        for r in desired.rejections if r.resource == "lists" and r.key and r.key not in usable
    }
    blockers.update({   # its add_list is held back: the dialer refused it before
        n.key: f"list {n.key} was rejected by the dialer earlier"
        for n in plan.notes if n.resource == "lists" and n.topic == REJECTED_EARLIER
        and n.key not in usable})
    mapper = LeadMapper(resource)
    shared = shared_phones_later(crm, resource) if keep_first_phone else None
    return LeadContext(frozenset(usable), blockers,
                       batch_limits(settings, dialect.capabilities.sends_leads_one_by_one),
                       mapper.fields, mapper.phone,
                       partial(dialect.lead_problems, duplicate_check=duplicate_check),
                       keep_first_phone, shared,
                       book.phone_holders if book is not None else None)


def batch_limits(settings: DialerSettings, one_by_one: bool = False) -> BatchLimits:
    if one_by_one:   # each lead is its own request: a batch only groups them for bookkeeping
        return BatchLimits(settings.leads_per_batch, sys.maxsize, 0)
    empty = requests.api_request(login_of(settings), "add_multi_lead", {"multi_leads": "[]"})
    return BatchLimits(settings.leads_per_batch, settings.request_byte_limit,
                       encoded_size(settings, empty))


def events(crm: sa.Engine, resource: ResourceSpec, book: LeadBook, ctx: LeadContext,
           settled: tuple[LeadSettlement, ...] = ()) -> Iterator[LeadEvent]:
    """The lead merge; `settled` are look-ups not yet written, planned as if they were."""
    return merge_leads(stream_leads(crm, resource), as_recorded(book.stream_recorded(), settled),
                       ctx)


def plan_leads(stream: Iterator[LeadEvent]) -> LeadPart:
    ops: list[AddLeads] = []
    rejects: list[Reject] = []
    drift: dict[tuple[str, str], list[str]] = defaultdict(list)
    drift_counts: dict[tuple[str, str], int] = defaultdict(int)
    totals = LeadTotals({}, "")
    for event in stream:
        if isinstance(event, LeadBatch):
            ops.append(AddLeads(event.list_id, event.seq, event.keys))
        elif isinstance(event, Reject):
            rejects.append(event)
        elif isinstance(event, LeadDrift):
            where = (event.list_id, event.topic)
            drift_counts[where] += 1
            if len(drift[where]) < NOTE_KEYS_SHOWN:
                drift[where].append(event.key)
        else:
            totals = event
    notes = tuple(
        Note("leads", list_id, "drift",
             f"{drift_counts[list_id, topic]} lead(s) "
             + ("changed in the CRM after export" if topic == CHANGED
                else "moved to another list in the CRM after export")
             + "; the API has no update_lead, change them on the dialer",
             tuple(drift[list_id, topic]))
        for list_id, topic in sorted(drift)
    )
    counts = tuple(sorted((list_id, state, n) for (list_id, state), n in totals.counts.items()))
    return LeadPart(tuple(ops), tuple(rejects), notes, counts, totals.digest)


def with_leads(plan: Plan, part: LeadPart) -> Plan:
    basis = replace(plan.basis, desired_digest=hashlib.sha256(
        f"{plan.basis.desired_digest}:{part.digest}".encode()).hexdigest())
    return replace(plan, basis=basis, ops=plan.ops + part.ops,
                   rejects=plan.rejects + part.rejects, notes=plan.notes + part.notes,
                   lead_counts=part.counts)


def send_leads(client: DialerPort, book: LeadBook, stream: Iterator[LeadEvent], plan: Plan,
               report: RunReport, keep_going: Callable[[], bool], *,
               dialect: Dialect, concurrency: int = 1,
               duplicate_check: tuple[str, ...] = ()) -> None:
    planned = [op for op in plan.ops if isinstance(op, AddLeads)]
    if not planned:
        return
    # Lists whose add_list failed in this run: their leads wait for a later run.
    blocked = {key: message for op, key, message in report.failures if op == "add_list"}
    total = sum(len(op.keys) for op in planned)
    with progress_bar(total, enabled=sys.stderr.isatty()) as progress:
        if dialect.capabilities.sends_leads_one_by_one:
            sender: LeadSender = OneByOneSender(
                client, book, report.run_id, report, blocked_lists=blocked,
                keep_going=keep_going, progress=progress, concurrency=concurrency,
                duplicate_check=duplicate_check)
        else:
            sender = LeadSender(client, book, report.run_id, report, blocked_lists=blocked,
                                keep_going=keep_going, progress=progress)
        sender.send_all(stream, planned)
