"""Phones of leads recorded before the state kept them, filled in from the CRM.

`keep_first` counts the leads the dialer already holds by the phone each was sent with. A lead
recorded before that phone was kept has none; the phone it was sent with is the one its CRM row
gives now, as long as that row is unchanged since export (the same digest). A lead whose row
changed since, or that left the CRM, cannot tell: its phone is recorded as not known (""), does
not count for `keep_first`, and is not looked for again.

Both streams come in key order, so this is one merge with bounded memory, like the plan's. It
writes: `fill_in` runs under the write lease, before planning (`lead_plan.fill_in_lead_phones`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import sqlalchemy as sa
import structlog

from reconciler.adapters.crm.leads import LeadMapper, stream_leads
from reconciler.adapters.crm.row_digest import matches_earlier_digest
from reconciler.adapters.state.leads import LeadBook
from reconciler.config.spec import ResourceSpec
from reconciler.core.leads.merge import PhoneOf
from reconciler.core.model import DesiredLead, RecordedLead, RowRejection

log = structlog.get_logger()


def sent_phones(desired: Iterable[DesiredLead | RowRejection], unknown: Iterable[RecordedLead],
                phone_of: PhoneOf) -> Iterator[tuple[str, str]]:
    """(key, phone it was sent with, or "" when that cannot be known) for each `unknown` lead.

    Pure: both inputs in byte order of the key.
    """
    rows = (lead for lead in desired if isinstance(lead, DesiredLead))
    row = next(rows, None)
    for lead in unknown:
        while row is not None and row.key < lead.key:
            row = next(rows, None)
        phone = ""
        while row is not None and row.key == lead.key:
            if not phone and (row.digest == lead.digest
                              or matches_earlier_digest(lead.digest, row.row)):
                try:
                    phone = phone_of(row.row)
                except ValueError:
                    phone = ""
            row = next(rows, None)
        yield lead.key, phone


def fill_in(crm: sa.Engine, resource: ResourceSpec, book: LeadBook) -> int:
    """Fill in every phone not yet known. Returns how many leads were settled (0: none left)."""
    if not book.unknown_phones():
        return 0
    mapper = LeadMapper(resource)
    known = 0

    def counted(phones: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        nonlocal known
        for key, phone in phones:
            known += bool(phone)
            yield key, phone

    filled = book.record_phones(counted(sent_phones(
        stream_leads(crm, resource, mapper), book.stream_unknown_phones(), mapper.phone)))
    log.info("lead_phones_filled_in", leads=filled, known=known, unknown=filled - known)
    return filled
