"""VicidialClient: stock VICIdial's NON-AGENT API over the shared transport.

What is VICIdial's own:
- answers are read by `parse_vicidial_response` (plain text everywhere, `: |` error data, bare
  data rows for the reads);
- every request is first checked against VICIdial's silent input rewrites: a value the dialer
  would alter in a way we refuse (a password, a key), or that would break its SQL (an empty
  HTTP 500), raises FieldInvalid before anything is sent;
- it has no active_lists and no add_multi_lead: those facets of the port are None, and lists are
  read one by one, leads sent one by one;
- reads (version, user_details, list_info, lead_search, lead_all_info), update_list and
  update_lead (it sets a status: sending it twice is harmless) are resent after an unclear
  failure; add_lead never is (RESENDABLE): a lead whose answer was lost
  raises DialerInDoubt, and `find_lead` tells afterwards whether it landed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

import httpx
import structlog

from reconciler.adapters.dialer import vicidial_requests as build
from reconciler.adapters.dialer.base import SharedVerbs
from reconciler.adapters.dialer.requests import DialerRequest
from reconciler.adapters.dialer.transport import Transport, expect, login_of
from reconciler.adapters.dialer.vicidial_fields import (
    vicidial_login_problems,
    vicidial_rewrite,
)
from reconciler.adapters.dialer.vicidial_responses import parse_vicidial_response
from reconciler.config.settings import DialerSettings
from reconciler.core.fields import FieldValue, Lead
from reconciler.core.vicidial_replies import (
    LeadAdded,
    LeadFound,
    LeadSearch,
    LeadsFound,
    LeadUpdated,
    ListInfo,
    ListUpdated,
    PhoneMatches,
    UserDetails,
    VersionInfo,
)
from reconciler.errors import (
    ConfigError,
    DialerInDoubt,
    DialerMalformed,
    DoesNotExist,
    FieldInvalid,
)

log = structlog.get_logger()

# Functions that may be sent again after an unclear failure: the writes that set an object to
# values, and the reads. add_lead is not: a lead sent twice is a lead called twice.
RESENDABLE = frozenset({"add_user", "update_user", "add_list", "update_list", "update_lead",
                        "version",
                        "user_details", "list_info", "lead_search", "lead_all_info"})
# Writes of one object. Stock VICIdial's SQL breaks on some values (a quote) with an empty HTTP
# 500: all 500s on one, while the dialer answers a probe, fail that object alone.
ROW_WRITES = frozenset({"add_user", "update_user", "add_list", "update_list", "update_lead"})
_LOGIN_PARAMS = frozenset({"source", "user", "pass", "function"})


def parse_vicidial(request: DialerRequest, status: int, body: bytes) -> object:
    return parse_vicidial_response(request.function, status, body, request.secrets)


class VicidialClient(SharedVerbs):
    """Talks to one VICIdial server (`.../vicidial/non_agent_api.php`)."""

    def __init__(
        self,
        settings: DialerSettings,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        broken = vicidial_login_problems(settings.user, settings.password)
        if broken is not None:
            key = {"user": "dialer.user", "pass": "dialer.password"}[broken[0]]
            raise ConfigError(f"{key} {broken[1]}: every call would fail to log in")
        super().__init__(login_of(settings), Transport(
            settings, parse=parse_vicidial, resendable=RESENDABLE, row_writes=ROW_WRITES,
            transport=transport, sleep=sleep))

    # --- the optional verbs it has (reconciler.core.ports) ---------------------------------------

    @property
    def user_reader(self) -> VicidialClient:
        return self

    @property
    def list_reader(self) -> VicidialClient:
        return self

    @property
    def list_updater(self) -> VicidialClient:
        return self

    @property
    def lead_sender(self) -> VicidialClient:
        return self

    @property
    def lead_finder(self) -> VicidialClient:
        return self

    @property
    def lead_updater(self) -> VicidialClient:
        return self

    # Not in VICIdial's API: lists are read one by one, leads sent one by one.
    active_list_reader: None = None
    lead_batch_sender: None = None

    # --- reads --------------------------------------------------------------------------------

    def version(self) -> VersionInfo:
        request = build.build_version()
        return expect(self._call(request), VersionInfo, request)

    def user_details(self, agent_user: FieldValue) -> UserDetails:
        """The agent as the dialer holds it; DoesNotExist when there is no such user."""
        request = build.build_user_details(self._login, agent_user)
        reply = expect(self._call(request), UserDetails, request)
        if reply.agent_user != str(agent_user):
            _mismatch(request, "another user")
        return reply

    def list_info(self, list_id: FieldValue, *, leads_counts: bool = False) -> ListInfo:
        """The list as the dialer holds it; DoesNotExist when there is no such list."""
        request = build.build_list_info(self._login, list_id, leads_counts=leads_counts)
        reply = expect(self._call(request), ListInfo, request)
        if reply.list_id != str(list_id):
            _mismatch(request, "another list")
        return reply

    def lead_search(
        self, phone_numbers: Sequence[FieldValue], *, records: int | None = None
    ) -> LeadSearch:
        """Lead ids per phone number, newest first; a number nobody has maps to no ids."""
        request = build.build_lead_search(self._login, phone_numbers, records=records)
        try:
            return expect(self._call(request), LeadSearch, request)
        except DoesNotExist:   # "NO MATCHES FOUND IN THE SYSTEM"
            return LeadSearch(tuple(PhoneMatches(str(p), ()) for p in phone_numbers))

    def lead_all_info(
        self, *, lead_id: FieldValue | None = None, phone_number: FieldValue | None = None
    ) -> tuple[LeadFound, ...]:
        """Every lead with this lead_id or phone number, newest first; () when there is none."""
        request = build.build_lead_all_info(self._login, lead_id=lead_id,
                                            phone_number=phone_number)
        try:
            return expect(self._call(request), LeadsFound, request).leads
        except DoesNotExist:   # "LEAD NOT FOUND"
            return ()

    def find_lead(
        self, phone_number: FieldValue, *, list_id: FieldValue, vendor_lead_code: FieldValue
    ) -> tuple[LeadFound, ...]:
        """The leads a lost add_lead may have created: same phone, list and vendor_lead_code.

        None found: the lead never landed and may be sent. One: it landed, with that lead_id.
        More: it was sent more than once before; an operator decides.
        """
        return tuple(
            lead for lead in self.lead_all_info(phone_number=phone_number)
            if lead.list_id == str(list_id) and lead.vendor_lead_code == str(vendor_lead_code))

    # --- writes -------------------------------------------------------------------------------

    def update_list(self, list_id: FieldValue, **changes: FieldValue) -> ListUpdated:
        """Change list_name, campaign_id and/or active; DoesNotExist when there is no such list."""
        request = build.build_update_list(self._login, list_id, changes)
        return expect(self._call(request), ListUpdated, request)

    def update_lead(self, *, status: str, lead_id: FieldValue | None = None,
                    vendor_lead_code: FieldValue | None = None) -> LeadUpdated:
        """Set one lead's status (DNC: never called again), found by lead_id or else by
        vendor_lead_code; DoesNotExist when the dialer has no such lead."""
        request = build.build_update_lead(self._login, status=status, lead_id=lead_id,
                                          vendor_lead_code=vendor_lead_code)
        return expect(self._call(request), LeadUpdated, request)

    def add_lead(
        self, lead: Lead, *, duplicate_check: Sequence[str] = (), list_exists_check: bool = True
    ) -> LeadAdded:
        """Send one lead, once. DialerInDoubt when it may have landed but no answer was read;
        DuplicateLead (an AlreadyExists) names the lead a duplicate_check found."""
        request = replace(build.build_add_lead(self._login, lead, duplicate_check=duplicate_check,
                                               list_exists_check=list_exists_check),
                          lead_count=1)
        reply = expect(self._call(request), LeadAdded, request)
        if reply.list_id != str(lead["list_id"]):
            raise DialerInDoubt(
                "add_lead: the dialer's answer names another list; the lead's outcome is unknown",
                function="add_lead")
        return reply

    def _call(self, request: DialerRequest) -> object:
        _refuse_rewrites(request)
        return super()._call(request)


def _refuse_rewrites(request: DialerRequest) -> None:
    """FieldInvalid for a value VICIdial would alter and we refuse to send; log the others."""
    rewritten = []
    options = str(dict(request.params).get("duplicate_check", ""))
    checks = tuple(options.split("-")) if options else ()
    for name, value in request.params:
        if name in _LOGIN_PARAMS:
            continue
        rewrite = vicidial_rewrite(request.function, name, value, duplicate_check=checks)
        if rewrite is None:
            continue
        if rewrite.action == "reject":
            raise FieldInvalid(request.function, name, rewrite.rule)
        rewritten.append(name)
    if rewritten:   # warned about when the row was checked; the dialer stores its own form
        log.info("dialer_input_rewritten", function=request.function, fields=rewritten)


def _mismatch(request: DialerRequest, what: str) -> NoReturn:
    raise DialerMalformed(f"{request.function}: the dialer's answer is about {what}",
                          function=request.function)

