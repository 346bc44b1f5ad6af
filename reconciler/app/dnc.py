"""Do-not-call, wired: the merge's check of leads about to be sent, and drift of sent leads.

The check (`dnc_check`) is asked by the lead merge for a chunk of leads at a time: one query to
the DNC source per chunk, so a plan with nothing to send asks nothing. Drift (`find_drift`)
reads the DNC once and asks the state database, a chunk of phones at a time, which sent leads
hold them: its cost follows the DNC's size, never the leads'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace

from reconciler.adapters.crm.dnc import DncSource
from reconciler.adapters.state.dnc import DncBook
from reconciler.config.spec import LEAD_KEY, ResourceSpec
from reconciler.core.leads.dnc import DncDrift, DncEntry, dnc_reason, drift_part
from reconciler.core.leads.merge import DncCheck, Pair
from reconciler.core.model import Desired, Observed, Recorded
from reconciler.core.plan import Plan

DRIFT_CHUNK = 500        # DNC phones asked of the state database in one query
UNREADABLE_SHOWN = 100   # bad DNC rows named in the note; its count says the rest


def campaigns_of(desired: Desired, recorded: Recorded, observed: Observed) -> dict[str, str]:
    """list_id -> its campaign: as the CRM's lists say, else as the dialer or the state has it."""
    found = {list_id: r.fields.get("campaign_id", "") for list_id, r in recorded.lists.items()}
    found.update({list_id: o.campaign_id for list_id, o in (observed.lists or {}).items()})
    found.update({list_id: d.fields.get("campaign_id", "") for list_id, d in desired.lists.items()})
    return {list_id: campaign for list_id, campaign in found.items() if campaign}


def dnc_check(source: DncSource, campaigns: Mapping[str, str]) -> DncCheck:
    """For the merge: (list, phone) pairs -> why each one on the DNC must not be called."""
    def check(pairs: Collection[Pair]) -> dict[Pair, str]:
        entries = source.entries_for({phone for _, phone in pairs})
        reasons = {}
        for list_id, phone in pairs:
            if phone in entries:
                reason = dnc_reason(entries[phone], list_id, campaigns.get(list_id))
                if reason is not None:
                    reasons[list_id, phone] = reason
        return reasons
    return check


def find_drift(source: DncSource, book: DncBook, campaigns: Mapping[str, str],
               resource: ResourceSpec) -> DncDrift:
    """Sent leads, not flagged yet, whose phone is on the DNC for their list; and bad rows."""
    # A lead without a known dialer lead id is found by vendor_lead_code: when it is the key.
    vendor = resource.fields.get("vendor_lead_code")
    by_key = vendor is not None and vendor.column == resource.fields[LEAD_KEY].column \
        and vendor.value is None and not vendor.map
    found: dict[str, dict[str, tuple[str, str, str]]] = defaultdict(dict)
    bad = _BadRows()
    for chunk in _chunks(source, bad):
        for lead in book.sent_with_phones(chunk.keys()):
            reason = dnc_reason(chunk[lead.phone], lead.list_id, campaigns.get(lead.list_id))
            if reason is None:
                continue
            vendor_code = lead.key if by_key and not lead.dialer_lead_id else ""
            found[lead.list_id][lead.key] = (lead.key, lead.dialer_lead_id, vendor_code)
    return DncDrift({list_id: tuple(sorted(leads.values())) for list_id, leads in found.items()},
                    tuple(bad.shown), bad.count)


@dataclass
class _BadRows:
    """DNC rows that cannot be read: the first UNREADABLE_SHOWN named, the rest counted."""

    shown: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, number: int, why: str) -> None:
        self.count += 1
        if self.count <= UNREADABLE_SHOWN:
            self.shown.append(f"row {number}: {why}")


def with_drift(plan: Plan, drift: DncDrift, can_flag: bool) -> Plan:
    """The plan with DNC drift: flag_dnc ops where the dialer can set a lead's status."""
    ops, notes = drift_part(drift, can_flag)
    return replace(plan, ops=(*plan.ops, *ops), notes=(*plan.notes, *notes))


def _chunks(source: DncSource, bad: _BadRows) -> Iterator[dict[str, list[DncEntry]]]:
    """The DNC's entries by phone, DRIFT_CHUNK phones at a time; bad rows go to `bad`."""
    chunk: dict[str, list[DncEntry]] = defaultdict(list)
    for number, entry in source.stream():
        if isinstance(entry, str):
            bad.add(number, entry)
            continue
        chunk[entry.phone].append(entry)
        if len(chunk) >= DRIFT_CHUNK:
            yield chunk
            chunk = defaultdict(list)
    if chunk:
        yield chunk
