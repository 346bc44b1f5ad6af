"""The plan's lead part, from the lead merge. Pure: no SQL, HTTP or clock.

`usable_lists` says which lists leads may go to when the plan is applied, and why the others
cannot take any; `plan_leads` folds the merge's events into plan data (keys and counts only,
never a lead's fields); `with_leads` adds that part to the plan and to its basis.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from reconciler.core.leads.merge import (
    CHANGED,
    LeadBatch,
    LeadDrift,
    LeadDrifts,
    LeadEvent,
    LeadRedigest,
    LeadSkipped,
    LeadTotals,
)
from reconciler.core.model import Desired, Observed, Recorded
from reconciler.core.plan import REJECTED_EARLIER, AddLeads, AddList, AdoptList, Note, Plan, Reject

NOTE_KEYS_SHOWN = 1000   # a drift note lists at most this many keys; its count says the rest


@dataclass(frozen=True)
class LeadPart:
    ops: tuple[AddLeads, ...]
    rejects: tuple[Reject, ...]
    notes: tuple[Note, ...]
    counts: tuple[tuple[str, str, int], ...]
    digest: str


def usable_lists(plan: Plan, desired: Desired, recorded: Recorded, observed: Observed
                 ) -> tuple[frozenset[str], dict[str, str]]:
    """The lists leads may go to (on the dialer, or created or adopted by `plan` before any
    lead is sent), and list_id -> why leads cannot go to a list the CRM or the dialer refused."""
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
    return frozenset(usable), blockers


def plan_leads(stream: Iterable[LeadEvent]) -> LeadPart:
    ops: list[AddLeads] = []
    rejects: list[Reject] = []
    drift: dict[tuple[str, str], list[str]] = defaultdict(list)
    drift_counts: dict[tuple[str, str], int] = defaultdict(int)
    skipped: dict[tuple[str, str], list[str]] = defaultdict(list)
    skipped_counts: dict[tuple[str, str], int] = defaultdict(int)
    totals = LeadTotals({}, "")
    redigested = 0
    for event in stream:
        if isinstance(event, LeadBatch):
            ops.append(AddLeads(event.list_id, event.seq, event.keys))
        elif isinstance(event, Reject):
            rejects.append(event)
        elif isinstance(event, (LeadDrift, LeadDrifts)):
            for one in event.items if isinstance(event, LeadDrifts) else (event,):
                where = (one.list_id, one.topic)
                drift_counts[where] += 1
                if len(drift[where]) < NOTE_KEYS_SHOWN:
                    drift[where].append(one.key)
        elif isinstance(event, LeadSkipped):
            where = (event.list_id, event.reason)
            skipped_counts[where] += 1
            if len(skipped[where]) < NOTE_KEYS_SHOWN:
                skipped[where].append(event.key)
        elif isinstance(event, LeadRedigest):
            redigested += 1
        else:
            totals = event
    notes = tuple(
        Note("leads", list_id, "drift",
             f"{drift_counts[list_id, topic]} lead(s) "
             + ("changed in the CRM after export" if topic == CHANGED
                else "moved to another list in the CRM after export")
             + "; exported leads are never changed by reconciler: change them on the dialer",
             tuple(drift[list_id, topic]))
        for list_id, topic in sorted(drift)
    ) + tuple(
        Note("leads", list_id, "dnc_skipped",
             f"{skipped_counts[list_id, reason]} lead(s) not sent: their phone is {reason}",
             tuple(skipped[list_id, reason]))
        for list_id, reason in sorted(skipped)
    ) + ((Note("leads", "state", "earlier_digests",
               f"{redigested} lead(s) were recorded with the digest of an earlier version: "
               f"they are unchanged, and the next apply records their digest anew"),)
         if redigested else ())
    counts = tuple(sorted((list_id, state, n) for (list_id, state), n in totals.counts.items()))
    return LeadPart(tuple(ops), tuple(rejects), notes, counts, totals.digest)


def with_leads(plan: Plan, part: LeadPart) -> Plan:
    basis = replace(plan.basis, desired_digest=hashlib.sha256(
        f"{plan.basis.desired_digest}:{part.digest}".encode()).hexdigest())
    return replace(plan, basis=basis, ops=plan.ops + part.ops,
                   rejects=plan.rejects + part.rejects, notes=plan.notes + part.notes,
                   lead_counts=part.counts)
