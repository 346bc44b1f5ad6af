"""The dialer port: what the engine, the executor and the lead senders need from a dialer client.

Every dialect's client offers the verbs all dialers share (add_user, update_user, add_list). The
verbs only some dialects have are facets of the port: each is the client itself when its dialect
has the verb, or None when it does not. Code reaches an optional verb through its facet, after
asking the dialect's capabilities whether to use it at all; no client switches a verb off, and
nothing asks a client's type at run time. `offered` reads the capabilities a client's facets
give, so that a test can hold each client to what its dialect claims.

Pure: this module imports nothing with I/O; the reply and request types it names are plain
frozen dataclasses, imported for the type checker only.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from reconciler.core.model import Capabilities
from reconciler.errors import DialerRefused

if TYPE_CHECKING:
    from reconciler.core.fields import FieldValue, Lead
    from reconciler.core.replies import (
        ActiveLists,
        LeadOutcome,
        ListAdded,
        UserAdded,
        UserUpdated,
    )
    from reconciler.core.vicidial_replies import (
        LeadAdded,
        LeadFound,
        LeadUpdated,
        ListInfo,
        ListUpdated,
        UserDetails,
    )


# --- optional verbs, one facet each ------------------------------------------------------------


class ReadsActiveLists(Protocol):
    """Every active list in one call (a dialect that does not read lists one by one)."""

    def active_lists(self) -> ActiveLists: ...


class SendsLeadBatches(Protocol):
    """Leads in batches (a dialect that does not send them one by one)."""

    def add_multi_lead(self, leads: Sequence[Lead]) -> list[LeadOutcome]: ...

    def add_multi_lead_encoded(self, multi_leads: str, lead_count: int) -> list[LeadOutcome]:
        """The same, for leads already checked and encoded (the plan's lead batches)."""
        ...


class ReadsUsers(Protocol):
    def user_details(self, agent_user: FieldValue) -> UserDetails: ...


class ReadsLists(Protocol):
    def list_info(self, list_id: FieldValue, *, leads_counts: bool = False) -> ListInfo: ...


class UpdatesLists(Protocol):
    def update_list(self, list_id: FieldValue, **changes: FieldValue) -> ListUpdated: ...


class SendsOneLead(Protocol):
    def add_lead(self, lead: Lead, *, duplicate_check: Sequence[str] = (),
                 list_exists_check: bool = True) -> LeadAdded: ...


class LooksUpLeads(Protocol):
    def find_lead(self, phone_number: FieldValue, *, list_id: FieldValue,
                  vendor_lead_code: FieldValue) -> tuple[LeadFound, ...]: ...

    def lead_all_info(self, *, lead_id: FieldValue | None = None,
                      phone_number: FieldValue | None = None) -> tuple[LeadFound, ...]: ...


class UpdatesLeads(Protocol):
    """Set a lead's status once sent (DNC for a phone added to the do-not-call list)."""

    def update_lead(self, *, status: str, lead_id: FieldValue | None = None,
                    vendor_lead_code: FieldValue | None = None) -> LeadUpdated: ...


# --- the port ----------------------------------------------------------------------------------


class DialerPort(Protocol):
    """One dialer, whatever its dialect. Use as a context manager, or call close()."""

    def __enter__(self) -> DialerPort: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None: ...

    def close(self) -> None: ...

    def add_user(self, agent_user: FieldValue, agent_pass: str, agent_user_level: FieldValue,
                 agent_full_name: str, agent_user_group: str, *,
                 phone_login: FieldValue | None = None, phone_pass: str | None = None,
                 voicemail_id: FieldValue | None = None,
                 email: str | None = None) -> UserAdded: ...

    def update_user(self, agent_user: FieldValue, **changes: FieldValue) -> UserUpdated: ...

    def add_list(self, list_id: FieldValue, list_name: str, campaign_id: str,
                 active: str | None = None) -> ListAdded: ...

    @property
    def active_list_reader(self) -> ReadsActiveLists | None: ...

    @property
    def lead_batch_sender(self) -> SendsLeadBatches | None: ...

    @property
    def user_reader(self) -> ReadsUsers | None: ...

    @property
    def list_reader(self) -> ReadsLists | None: ...

    @property
    def list_updater(self) -> UpdatesLists | None: ...

    @property
    def lead_sender(self) -> SendsOneLead | None: ...

    @property
    def lead_finder(self) -> LooksUpLeads | None: ...

    @property
    def lead_updater(self) -> UpdatesLeads | None: ...


def offered(port: DialerPort) -> Capabilities:
    """The capabilities a client's facets give; its dialect must claim exactly these."""
    return Capabilities(
        reads_users=port.user_reader is not None,
        reads_lists_individually=port.list_reader is not None,
        has_update_list=port.list_updater is not None,
        sends_leads_one_by_one=port.lead_sender is not None,
        can_look_up_leads=port.lead_finder is not None,
        updates_leads=port.lead_updater is not None,
    )


def lacking(function: str) -> DialerRefused:
    """For a client without a call its dialect's capabilities promise: a configuration error."""
    return DialerRefused(f"{function}: this dialer's client cannot do it", function=function)
