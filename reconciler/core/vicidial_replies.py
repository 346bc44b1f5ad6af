"""Typed replies of VICIdial's NON-AGENT API functions that Elision's dialer does not offer.

add_user, update_user and add_list answer with the replies of `reconciler.core.replies`
(UserAdded, UserUpdated, ListAdded), whichever dialect sent them; the types here are for the
reads (version, user_details, list_info, lead_search, lead_all_info) and for the writes only
VICIdial has (update_list, add_lead). Every value is text as the dialer printed it, secrets masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from reconciler.errors import AlreadyExists

# lead_all_info's columns, in the order of its pipe-delimited answer (NON-AGENT_API:
# "status|user|vendor_lead_code|source_id|list_id|gmt_offset_now|phone_code|phone_number|...").
LEAD_ALL_INFO_COLUMNS: tuple[str, ...] = (
    "status", "user", "vendor_lead_code", "source_id", "list_id", "gmt_offset_now",
    "phone_code", "phone_number", "title", "first_name", "middle_initial", "last_name",
    "address1", "address2", "address3", "city", "state", "province", "postal_code",
    "country_code", "gender", "date_of_birth", "alt_phone", "email", "security_phrase",
    "comments", "called_count", "last_local_call_time", "rank", "owner", "entry_list_id",
    "lead_id",
)
# list_info's columns; `leads_counts=Y` appends all_leads_count and new_leads_count.
LIST_INFO_COLUMNS: tuple[str, ...] = (
    "list_id", "list_name", "campaign_id", "active", "list_changedate", "list_lastcalldate",
    "expiration_date", "resets_today",
)
USER_DETAILS_COLUMNS: tuple[str, ...] = (
    "user", "full_name", "user_group", "user_level", "active")
LEAD_SEARCH_COLUMNS: tuple[str, ...] = ("search_key", "records_found", "lead_ids")


@dataclass(frozen=True)
class VersionInfo:
    """version: `VERSION: 2.14-202|BUILD: 250720-1841|DATE: ...|EPOCH: ...|...`."""

    version: str
    build: str
    items: tuple[tuple[str, str], ...]   # every `NAME: value` pair, in order

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.items if key == name), None)


@dataclass(frozen=True)
class UserDetails:
    """user_details: one agent as the dialer holds it (no password: the API never shows it)."""

    agent_user: str
    full_name: str
    user_group: str
    user_level: int
    active: str


@dataclass(frozen=True)
class ListInfo:
    """list_info: one list's settings; the lead counts only when asked for (`leads_counts`)."""

    list_id: str
    list_name: str
    campaign_id: str
    active: str
    changed_at: str              # list_changedate
    last_call_at: str            # list_lastcalldate, "" before the first call
    expiration_date: str
    resets_today: int
    all_leads: int | None = None
    new_leads: int | None = None


@dataclass(frozen=True)
class LeadUpdated:
    """update_lead succeeded: `SUCCESS: update_lead LEAD HAS BEEN UPDATED - api|lead_id`."""

    lead_id: str
    message: str
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListUpdated:
    """update_list succeeded: `SUCCESS: update_list LIST HAS BEEN UPDATED - api|list_id`."""

    list_id: str
    message: str
    notices: tuple[str, ...] = ()   # NOTICE lines that came with the answer


@dataclass(frozen=True)
class LeadAdded:
    """add_lead succeeded. VICIdial 2.14 answers `phone|list_id|lead_id|gmt_offset|api user`."""

    phone_number: str
    list_id: str
    lead_id: str
    gmt_offset: str
    message: str
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhoneMatches:
    """One searched phone number of lead_search: its lead ids, most recently added first."""

    phone_number: str
    lead_ids: tuple[str, ...]


@dataclass(frozen=True)
class LeadSearch:
    """lead_search: one entry per searched phone number (none when nothing matched at all)."""

    matches: tuple[PhoneMatches, ...]

    def lead_ids(self, phone_number: str) -> tuple[str, ...]:
        return next((m.lead_ids for m in self.matches if m.phone_number == phone_number), ())


@dataclass(frozen=True)
class LeadFound:
    """One lead of lead_all_info, keyed by what settles an in-doubt lead: id, list, vendor code."""

    lead_id: str
    list_id: str
    vendor_lead_code: str
    phone_number: str
    phone_code: str
    status: str
    columns: tuple[tuple[str, str], ...]   # every column of the answer, in order

    def get(self, column: str) -> str | None:
        return next((value for key, value in self.columns if key == column), None)


@dataclass(frozen=True)
class LeadsFound:
    """lead_all_info: the matching leads, most recently added first (none: not on the dialer)."""

    leads: tuple[LeadFound, ...]


class DuplicateLead(AlreadyExists):
    """add_lead's duplicate_check found the phone number already there.

    `lead_id` and `list_id` name the lead that is already on the dialer (`DUPLICATE PHONE NUMBER
    IN LIST - 7275551212|1001|8`); `scope` is LIST, CAMPAIGN LISTS or SYSTEM.
    """

    def __init__(self, message: str, *, function: str, excerpt: str, scope: str,
                 phone_number: str | None, list_id: str | None, lead_id: str | None) -> None:
        super().__init__(message, function=function, excerpt=excerpt)
        self.scope = scope
        self.phone_number = phone_number
        self.list_id = list_id
        self.lead_id = lead_id


VicidialReply: TypeAlias = (
    VersionInfo | UserDetails | ListInfo | ListUpdated | LeadAdded | LeadSearch | LeadsFound
    | LeadUpdated
)
