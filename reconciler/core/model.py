"""Plain data for the three views of every object: desired, recorded and observed.

Nothing here does I/O. Secret field values (agent passwords) travel only inside `DesiredUser`,
never printed (repr=False) and never compared: the planner compares their keyed digests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

USER_SECRET_FIELDS = ("agent_pass", "phone_pass")
USER_FIELDS = (
    "agent_pass", "agent_user_level", "agent_full_name", "agent_user_group",
    "phone_login", "phone_pass", "voicemail_id", "email", "active",
)
# Fields add_user must carry; the others are optional on the dialer.
USER_REQUIRED_FIELDS = (
    "agent_pass", "agent_user_level", "agent_full_name", "agent_user_group",
)
LIST_FIELDS = ("list_name", "campaign_id", "active")
LIST_REQUIRED_FIELDS = ("list_name", "campaign_id")


@dataclass(frozen=True)
class DesiredUser:
    agent_user: str
    fields: Mapping[str, str]                        # non-secret dialer fields, normalised
    digests: Mapping[str, str]                       # secret field -> keyed digest
    secrets: Mapping[str, str] = field(repr=False, default_factory=dict, compare=False)

    @property
    def active(self) -> bool:
        return self.fields.get("active", "Y") == "Y"


@dataclass(frozen=True)
class DesiredList:
    list_id: str
    fields: Mapping[str, str]                        # list_name, campaign_id, active


@dataclass(frozen=True)
class RecordedUser:
    agent_user: str
    fields: Mapping[str, str]
    digests: Mapping[str, str]

    @property
    def active(self) -> bool:
        return self.fields.get("active", "Y") == "Y"


@dataclass(frozen=True)
class RecordedList:
    list_id: str
    fields: Mapping[str, str]
    origin: str                                      # created | adopted


@dataclass(frozen=True)
class ObservedList:
    """A list as the dialer shows it: an entry of active_lists (always active), or list_info."""

    list_id: str
    list_name: str
    campaign_id: str
    active: str = "Y"


# The user fields a dialer that reads users (user_details) shows; never a password.
USER_VISIBLE_FIELDS = ("agent_full_name", "agent_user_group", "agent_user_level", "active")


@dataclass(frozen=True)
class ObservedUser:
    """An agent as the dialer shows it, in our field names (USER_VISIBLE_FIELDS)."""

    agent_user: str
    fields: Mapping[str, str]

    @property
    def active(self) -> bool:
        return self.fields.get("active", "Y") == "Y"


@dataclass(frozen=True)
class RowRejection:
    """A CRM row that cannot be synced, and why. `key` may be empty when the key itself is bad."""

    resource: str
    key: str
    field: str
    rule: str
    row: int                                         # 1-based position in the CRM result; 0
                                                     # for leads, which stream in key order


@dataclass(frozen=True)
class Desired:
    users: Mapping[str, DesiredUser]
    lists: Mapping[str, DesiredList]
    rejections: tuple[RowRejection, ...] = ()
    # Values sent, but stored altered by the dialer (the fields hold the stored form); `rule`
    # says how. Shown as notes; never rejected.
    rewrites: tuple[RowRejection, ...] = ()

    def rejected_keys(self, resource: str) -> frozenset[str]:
        return frozenset(r.key for r in self.rejections if r.resource == resource and r.key)


@dataclass(frozen=True)
class RecordedRejection:
    """A change the dialer refused for one object, with the digest of the CRM row it was made
    from: the same change is not sent again while that row is unchanged (planner.backoff)."""

    resource: str                                    # users | lists
    key: str
    op: str                                          # the kind of op the dialer refused
    row_digest: str
    message: str                                     # the dialer's reason, redacted


@dataclass(frozen=True)
class Recorded:
    users: Mapping[str, RecordedUser]
    lists: Mapping[str, RecordedList]
    version: int = 0
    # (resource, key) -> the dialer's last refusal of a change to that object
    rejections: Mapping[tuple[str, str], RecordedRejection] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """What the dialer says now. `lists` is None when the dialer could not be read.

    `users` is None when the dialer has no read for users: the recorded view stands in for it.
    With a dialect that reads lists one by one, `lists` holds only the managed lists it has.
    """

    lists: Mapping[str, ObservedList] | None
    unavailable_reason: str = ""
    unparsed: tuple[str, ...] = ()                   # entries the dialer sent that we cannot read
    users: Mapping[str, ObservedUser] | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a dialer dialect can do, as the planner and the engine ask it (see dialects.py)."""

    reads_users: bool = False                # user_details: observed users, drift corrected
    reads_lists_individually: bool = False   # list_info per list, instead of active_lists
    has_update_list: bool = False            # list changes become update_list ops, not notes
    sends_leads_one_by_one: bool = False     # add_lead per lead, instead of add_multi_lead
    can_look_up_leads: bool = False          # an in-doubt lead is settled by a look-up
    updates_leads: bool = False              # update_lead: a sent lead's status can be set


@dataclass(frozen=True)
class SyncPolicy:
    """What the spec says about ownership and departures, as the planner needs it."""

    user_fields: tuple[str, ...] = USER_FIELDS       # fields we own and compare
    list_fields: tuple[str, ...] = LIST_FIELDS
    on_user_removed: str = "deactivate"              # deactivate | ignore
    on_user_inactive: str = "deactivate"             # deactivate | ignore
    manage_users: bool = True
    manage_lists: bool = True
    lead_duplicates: str = "keep_first"              # same phone in one list: keep_first|send_all



# --- leads: streamed, never held whole in memory ---------------------------------------------
# NamedTuples, not dataclasses: a plan makes millions of them, and tuples are built fastest.


class DesiredLead(NamedTuple):
    key: str                                         # the CRM's key of the lead
    list_id: str
    digest: str                                      # of the CRM row: tells a change after export
    row: tuple[Any, ...]                             # the CRM row, mapped only if it is sent


class RecordedLead(NamedTuple):
    key: str
    list_id: str
    digest: str
    status: str                                      # as in reconciler.adapters.state.leads


class LeadChunk(NamedTuple):
    """Consecutive CRM leads, column by column, in key order: compared a chunk at a time.

    A row that could not be read has the key "" and its RowRejection in `rows`.
    """

    keys: list[str]
    list_ids: list[str]
    digests: list[str]
    rows: list[Any]                                  # tuple[Any, ...] | RowRejection


class RecordedChunk(NamedTuple):
    """Consecutive recorded leads, column by column, in key order."""

    keys: list[str]
    list_ids: list[str]
    digests: list[str]
    statuses: list[str]


SENT_STATUS = "sent"                                 # a recorded lead the dialer took

# A lead whose outcome on the dialer is unknown: a request carrying it may have reached the
# dialer, and no answer was recorded. Never resent until a look-up or an operator settles it.
UNCERTAIN_LEAD_STATUSES = frozenset({"pending", "sending", "in_doubt"})


@dataclass(frozen=True)
class GuardSettings:
    """The safety guards' limits (`[guards]` in the settings), as the planner reads them."""

    max_deactivations: int = 10
    max_changed_share: float = 0.5   # of the users we manage, changed in one run
    min_users_for_share: int = 10    # below this many users the share guard does not apply
