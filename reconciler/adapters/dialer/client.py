"""The Elision dialer's client: its five API verbs over the shared transport.

Elision's dialer reads its lists all at once (`active_lists`) and takes leads in batches
(`add_multi_lead`); it has no reads of single users or lists, no update_list and no add_lead, so
those facets of the port are None. add_multi_lead is not resendable (adapters.dialer.transport):
a batch whose answer was lost raises DialerInDoubt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import httpx
import structlog

from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.base import SharedVerbs
from reconciler.adapters.dialer.requests import DialerRequest
from reconciler.adapters.dialer.responses import parse_response
from reconciler.adapters.dialer.transport import Transport, encoded_size, expect, login_of
from reconciler.config.settings import DialerSettings
from reconciler.core.fields import Lead
from reconciler.core.replies import ActiveLists, LeadOutcome, LeadResults
from reconciler.errors import FieldInvalid
from reconciler.redact import excerpt

log = structlog.get_logger()

# Functions that may be sent again after an unclear failure (DESIGN.md, "Safe retries"): each
# sets an object to values. add_multi_lead is not: a lead sent twice is a lead called twice.
RESENDABLE = frozenset({"add_user", "update_user", "add_list", "active_lists"})
# Writes of one object: all HTTP 500s on one, while the dialer answers a probe, fail it alone.
ROW_WRITES = frozenset({"add_user", "update_user", "add_list"})


def parse_elision(request: DialerRequest, status: int, body: bytes) -> object:
    return parse_response(request.function, status, body, request.secrets,
                          lead_count=request.lead_count)


class ElisionClient(SharedVerbs):
    """Talks to one Elision dialer. Use as a context manager, or call close()."""

    def __init__(
        self,
        settings: DialerSettings,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(login_of(settings), Transport(
            settings, parse=parse_elision, resendable=RESENDABLE, row_writes=ROW_WRITES,
            transport=transport, sleep=sleep))

    # --- the optional verbs it has (reconciler.core.ports) ---------------------------------------

    @property
    def active_list_reader(self) -> ElisionClient:
        return self

    @property
    def lead_batch_sender(self) -> ElisionClient:
        return self

    # Not in Elision's API: observing, list changes and lead look-ups go without them.
    user_reader: None = None
    list_reader: None = None
    list_updater: None = None
    lead_sender: None = None
    lead_finder: None = None
    lead_updater: None = None     # no update_lead: a lead cannot be changed once sent

    # --- verbs --------------------------------------------------------------------------------

    def active_lists(self) -> ActiveLists:
        request = requests.build_active_lists(self._login)
        reply = expect(self._call(request), ActiveLists, request)
        if reply.unparsed:
            log.warning("active_lists_unparsed", count=len(reply.unparsed),
                        entries=[excerpt(entry, limit=80) for entry in reply.unparsed[:10]])
        return reply

    def add_multi_lead(self, leads: Sequence[Lead]) -> list[LeadOutcome]:
        """Send one batch; split larger sets with `lead_batches` first.

        One outcome per lead, in the order sent; `success=None` marks a lead the answer did not
        cover. Raises DialerInDoubt when the batch may have been applied but no answer was read.
        """
        return self._send_batch(requests.build_add_multi_lead(self._login, leads))

    def add_multi_lead_encoded(self, multi_leads: str, lead_count: int) -> list[LeadOutcome]:
        """Send one batch planned by the lead merge: its leads were checked there by the same
        field rules `add_multi_lead` checks, and `multi_leads` is their JSON, made once. The
        batch's size limits are checked here all the same."""
        return self._send_batch(requests.build_add_multi_lead_encoded(
            self._login, multi_leads, lead_count))

    def _send_batch(self, request: DialerRequest) -> list[LeadOutcome]:
        if request.lead_count > self.settings.leads_per_batch:
            raise FieldInvalid("add_multi_lead", "multi_leads",
                               f"must hold at most {self.settings.leads_per_batch} leads")
        limit = self.settings.request_byte_limit
        if encoded_size(self.settings, request) > limit:
            raise FieldInvalid("add_multi_lead", "multi_leads",
                               f"must encode to at most {limit} bytes")
        return list(expect(self._call(request), LeadResults, request).outcomes)


def lead_batches(settings: DialerSettings, leads: Iterable[Lead]) -> Iterator[list[Lead]]:
    """Split `leads`, in order, into add_multi_lead batches within both limits.

    Each batch holds at most `leads_per_batch` leads and its request encodes to at most
    `request_byte_limit`. Batches are filled greedily, which gives the fewest batches an
    order-keeping split can have. A lead too big to travel alone raises FieldInvalid.
    """
    login = login_of(settings)
    limit = settings.request_byte_limit

    def size_with(multi_leads: str) -> int:
        request = requests.api_request(login, "add_multi_lead", {"multi_leads": multi_leads})
        return encoded_size(settings, request)

    # Form and URL encoding work character by character, so a batch's size is the size of an
    # empty list plus each lead's encoded JSON plus one encoded comma between leads.
    empty = size_with("[]")
    comma = size_with("[,]") - empty
    batch: list[Lead] = []
    size = empty
    for position, lead in enumerate(leads, start=1):
        cost = size_with(requests.encode_leads([lead])) - empty
        if empty + cost > limit:
            raise FieldInvalid("add_multi_lead", "multi_leads",
                               f"lead {position} alone encodes to more than {limit} bytes")
        if batch and (len(batch) >= settings.leads_per_batch or size + comma + cost > limit):
            yield batch
            batch, size = [], empty
        size += cost + (comma if batch else 0)
        batch.append(lead)
    if batch:
        yield batch


