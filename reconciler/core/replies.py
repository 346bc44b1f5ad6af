"""Typed replies of the dialer API: what a successful answer means, with secrets masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias


@dataclass(frozen=True)
class UserAdded:
    """add_user succeeded. `data` is the dialer's echo, with the agent's password masked."""

    message: str
    data: tuple[str, ...]

    @property
    def agent_user(self) -> str | None:
        return self.data[1] if len(self.data) > 1 else None


@dataclass(frozen=True)
class UserUpdated:
    message: str
    data: tuple[str, ...]

    @property
    def agent_user(self) -> str | None:
        return self.data[1] if len(self.data) > 1 else None


@dataclass(frozen=True)
class ListAdded:
    """add_list succeeded; fields are the dialer's echo ("" where it did not echo them)."""

    list_id: str
    list_name: str
    campaign_id: str
    message: str


@dataclass(frozen=True, order=True)
class ActiveList:
    campaign_id: str
    list_id: str
    list_name: str


@dataclass(frozen=True)
class ActiveLists:
    """active_lists. Entries that do not read as CAMPAIGN-LISTID-NAME are kept in `unparsed`,
    so a caller never takes an unreadable list for an absent one."""

    lists: tuple[ActiveList, ...]
    unparsed: tuple[str, ...]


class LeadOutcome(NamedTuple):
    """One lead of an add_multi_lead batch, the `number`-th sent (from 1). A tuple: a batch's
    answer makes hundreds, each while the next request waits.

    `success` is None when the answer said nothing readable about this lead: its outcome is
    unknown and the lead must not be resent blindly.
    """

    number: int
    success: bool | None
    message: str
    phone_number: str | None = None
    list_id: str | None = None
    lead_id: str | None = None
    status: str | None = None

    @classmethod
    def unknown(cls, number: int, message: str) -> LeadOutcome:
        return cls(number, None, message)


@dataclass(frozen=True)
class LeadResults:
    outcomes: tuple[LeadOutcome, ...]


@dataclass(frozen=True)
class PlainReply:
    """A success answer of a function this client has no typed reply for."""

    function: str
    message: str
    data: tuple[str, ...]


Reply: TypeAlias = (
    UserAdded | UserUpdated | ListAdded | ActiveLists | LeadResults | PlainReply
)
