"""Settle in-doubt leads by looking them up on the dialer (a dialect that can look leads up).

A lead whose add_lead answer was lost is in doubt. A dialer that can find leads by phone
(`find_lead`: same phone, list and vendor_lead_code) tells what happened: no match, it never
landed and is sent again; one match, it landed with that lead id; several, it was sent more
than once before, and an operator decides.

Two halves, so that `plan` writes nothing and `apply` sends exactly what the plan showed:
`look_up` runs while gathering (reads only); its findings shape the lead merge as if they were
recorded, and become a `settle_leads` op that apply records (`record`) before any lead is sent.

What is looked up is what was sent: the state keeps no lead fields, so the phone number and
vendor_lead_code come from the lead's CRM row, and only while that row is unchanged since it was
sent (its digest is the recorded one). A lead whose row changed or left the CRM, or that has no
vendor_lead_code, stays in doubt for an operator. So does one whose request could still be on its
way: a lead is looked up only once its last request is older than `landing_window`.

`as_sent` gives an operator the same view of a batch's doubtful leads (`leads in-doubt BATCH`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
import structlog

from reconciler.adapters.crm.leads import LeadMapper, stream_leads
from reconciler.adapters.crm.row_digest import matches_earlier_digest
from reconciler.adapters.state.leads import DoubtfulLead, LeadBook, LeadSettlement
from reconciler.adapters.state.store import now
from reconciler.config.settings import DialerSettings
from reconciler.config.spec import ResourceSpec
from reconciler.core.leads.chunks import recorded_chunks, recorded_leads
from reconciler.core.model import (
    UNCERTAIN_LEAD_STATUSES,
    DesiredLead,
    RecordedChunk,
    RecordedLead,
)
from reconciler.core.plan import Plan, SettleLeads
from reconciler.core.ports import DialerPort, lacking
from reconciler.errors import DialerError, DialerUnavailable

log = structlog.get_logger()

CLOCK_MARGIN_S = 5.0     # hosts sharing one state database may disagree on the time this much


def landing_window(dialer: DialerSettings) -> timedelta:
    """How long after a lead was marked as being sent its request could still land.

    Before the request leaves, the client may try every connection attempt and back off between
    them (a refused connection is retried: nothing was sent); then it waits up to `read_timeout`
    for the answer, and the dialer may still act on the request as long again after the client
    gave up. Until then, "not on the dialer" does not mean "never will be".
    """
    retries = max(0, dialer.max_retries)
    connecting = (1 + retries) * dialer.connect_timeout + retries * dialer.backoff_max
    return timedelta(seconds=connecting + 2 * dialer.read_timeout + CLOCK_MARGIN_S)


def look_up(client: DialerPort, crm: sa.Engine, resource: ResourceSpec, book: LeadBook,
            window: timedelta) -> tuple[LeadSettlement, ...]:
    """Look every settleable in-doubt lead up on the dialer. Reads only."""
    doubtful = {d.key: d for d in book.doubtful_leads(now() - window)}
    if not doubtful:
        return ()
    finder = client.lead_finder
    if finder is None:
        raise lacking("lead_all_info")
    mapper = LeadMapper(resource)
    rows = _crm_rows(crm, resource, mapper, doubtful.keys())
    found: list[LeadSettlement] = []
    for key, lead in sorted(doubtful.items()):
        wanted = _wanted(lead, rows.get(key), mapper)
        if isinstance(wanted, str):
            log.info("lead_left_in_doubt", key=key, list_id=lead.list_id, reason=wanted)
            continue
        phone, code = wanted
        try:
            matches = finder.find_lead(phone, list_id=lead.list_id, vendor_lead_code=code)
        except DialerUnavailable as exc:
            log.warning("lead_lookup_failed", key=key, error=str(exc))
            break                                # the dialer is away: look again next run
        except DialerError as exc:
            log.warning("lead_lookup_failed", key=key, error=str(exc))
            continue
        if len(matches) > 1:
            log.warning("lead_left_in_doubt", key=key, list_id=lead.list_id,
                        reason=f"{len(matches)} leads on the dialer match it: an operator "
                               f"decides", lead_ids=[m.lead_id for m in matches])
            continue
        found.append(LeadSettlement(key, lead.batch_id, matches[0].lead_id if matches else None))
    return tuple(found)


def saved(plan: Plan) -> tuple[LeadSettlement, ...]:
    """The look-ups a saved plan made: applying it records them rather than looking again."""
    return tuple(found for op in plan.ops if isinstance(op, SettleLeads) for found in from_op(op))


@dataclass(frozen=True)
class LeadAsSent:
    """An in-doubt lead as the dialer would hold it, for an operator to look for."""

    key: str
    list_id: str
    status: str
    phone_number: str | None             # None: unknown, the CRM row is gone
    vendor_lead_code: str | None
    crm: str                              # unchanged | changed (since sent) | gone


def as_sent(crm: sa.Engine, resource: ResourceSpec, leads: Sequence[DoubtfulLead]
            ) -> list[LeadAsSent]:
    """Each lead's phone number and vendor_lead_code, mapped from its CRM row by the spec."""
    mapper = LeadMapper(resource)
    rows = _crm_rows(crm, resource, mapper, {lead.key for lead in leads})
    found: list[LeadAsSent] = []
    for lead in leads:
        row = rows.get(lead.key)
        if row is None:
            found.append(LeadAsSent(lead.key, lead.list_id, lead.status, None, None, "gone"))
            continue
        fields, _ = mapper.fields(row.row)
        found.append(LeadAsSent(
            lead.key, lead.list_id, lead.status, fields.get("phone_number"),
            fields.get("vendor_lead_code"),
            "unchanged" if _unchanged(lead, row) else "changed"))
    return found


def _unchanged(lead: DoubtfulLead, row: DesiredLead) -> bool:
    return row.digest == lead.digest or matches_earlier_digest(lead.digest, row.row)


def _crm_rows(crm: sa.Engine, resource: ResourceSpec, mapper: LeadMapper,
              keys: Iterable[str]) -> dict[str, DesiredLead]:
    wanted = set(keys)
    return {lead.key: lead for lead in stream_leads(crm, resource, mapper)
            if isinstance(lead, DesiredLead) and lead.key in wanted}


def _wanted(lead: DoubtfulLead, row: DesiredLead | None, mapper: LeadMapper
            ) -> tuple[str, str] | str:
    """(phone, vendor_lead_code) as sent, or why the lead cannot be looked up."""
    if row is None:
        return "no longer in the CRM"
    if not _unchanged(lead, row):
        return "its CRM row changed since it was sent"
    fields, _ = mapper.fields(row.row)
    phone, code = fields.get("phone_number", ""), fields.get("vendor_lead_code", "")
    if not phone or not code:
        return "it has no phone number or vendor_lead_code to look it up by"
    return phone, code


def as_recorded(recorded: Iterable[RecordedLead], settlements: Iterable[LeadSettlement]
                ) -> Iterator[RecordedLead]:
    """The recorded stream as it will be once `settlements` are written (for planning)."""
    by_key: Mapping[str, LeadSettlement] = {s.key: s for s in settlements}
    if not by_key:
        yield from recorded
        return
    for lead in recorded:
        found = by_key.get(lead.key)
        if found is None or lead.status not in UNCERTAIN_LEAD_STATUSES:
            yield lead
        elif found.dialer_lead_id is not None:
            yield lead._replace(status="sent")
        # not found: as if never sent; it is planned to be sent again


def as_recorded_chunks(recorded: Iterable[RecordedChunk],
                       settlements: Sequence[LeadSettlement]) -> Iterator[RecordedChunk]:
    """`as_recorded`, for the recorded stream read a chunk at a time."""
    if not settlements:
        return iter(recorded)
    return recorded_chunks(as_recorded(recorded_leads(recorded), settlements))


def as_op(settlements: Iterable[LeadSettlement]) -> SettleLeads:
    found = tuple((s.key, s.batch_id, s.dialer_lead_id) for s in settlements
                  if s.dialer_lead_id is not None)
    not_found = tuple((s.key, s.batch_id) for s in settlements if s.dialer_lead_id is None)
    return SettleLeads(found, not_found)


def from_op(op: SettleLeads) -> tuple[LeadSettlement, ...]:
    return (*(LeadSettlement(key, batch_id, lead_id) for key, batch_id, lead_id in op.found),
            *(LeadSettlement(key, batch_id, None) for key, batch_id in op.not_found))


def record(book: LeadBook, settlements: Iterable[LeadSettlement]) -> int:
    """Write the look-ups' findings (call under the write lease, before sending leads)."""
    settlements = tuple(settlements)
    if not settlements:
        return 0
    changed = book.settle_by_lookup(settlements)
    for s in settlements:
        if s.dialer_lead_id is not None:
            log.info("lead_settled", key=s.key, batch_id=s.batch_id, outcome="sent",
                     dialer_lead_id=s.dialer_lead_id, how="found on the dialer")
        else:
            log.info("lead_settled", key=s.key, batch_id=s.batch_id, outcome="not_sent",
                     how="not on the dialer; sent again")
    return changed
