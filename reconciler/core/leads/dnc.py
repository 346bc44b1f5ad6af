"""Do-not-call: which entries of the DNC source forbid a lead, and the plan's part of drift.

Pure: the entries come from the CRM (adapters/crm/dnc.py), the leads from the merge or the
state database; this module only decides. An entry names a phone (as sent: digits only) and
optionally a list or a campaign: with neither it applies everywhere, with a list to that list,
with a campaign to every list of that campaign (as the lists spec or the dialer knows them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.core.plan import FlagDnc, Note

DNC = "dnc"                          # the lead count's state of a lead not sent for the DNC
DNC_SKIPPED, DNC_DRIFT, DNC_UNREADABLE = "dnc_skipped", "dnc_drift", "dnc_unreadable"
NOTE_KEYS_SHOWN = 1000


@dataclass(frozen=True)
class DncEntry:
    phone: str                       # as sent: `phone_digits` of the CRM's value
    list_id: str = ""                # "": any list
    campaign_id: str = ""            # "": any campaign


def dnc_reason(entries: Iterable[DncEntry], list_id: str, campaign_id: str | None
               ) -> str | None:
    """Why a lead of `list_id` (in `campaign_id`) must not be called; None when it may be.

    The widest entry wins, so the reason given is the same whatever order entries came in."""
    reasons = set()
    for entry in entries:
        if not entry.list_id and not entry.campaign_id:
            return "on the do-not-call list"
        if entry.list_id and entry.list_id == list_id:
            reasons.add(f"on the do-not-call list of list {list_id}")
        elif entry.campaign_id and campaign_id and entry.campaign_id == campaign_id:
            reasons.add(f"on the do-not-call list of campaign {campaign_id}")
    return min(reasons) if reasons else None


@dataclass(frozen=True)
class DncDrift:
    """Sent leads whose phone is now on the DNC, per list, and DNC rows that could not be read."""

    # list_id -> ((key, dialer lead id, vendor_lead_code), ...), as FlagDnc takes them
    keys: Mapping[str, tuple[tuple[str, str, str], ...]]
    unreadable: tuple[str, ...] = ()                  # why bad DNC rows were left out
    bad_rows: int = 0                                 # how many: more than named, at times


def drift_part(drift: DncDrift, can_flag: bool) -> tuple[tuple[FlagDnc, ...], tuple[Note, ...]]:
    """The plan's ops and notes for DNC drift: where the dialer can set a lead's status, a
    flag_dnc op per list (the note says so); elsewhere a note only, to act on the dialer."""
    ops: list[FlagDnc] = []
    notes: list[Note] = []
    for list_id in sorted(drift.keys):
        found = drift.keys[list_id]
        keys = tuple(key for key, _, _ in found)
        if can_flag:
            ops.append(FlagDnc(list_id, found))
            then = "their status is set to DNC on the dialer (flag_dnc)"
        else:
            then = "the API cannot change a lead: set them to DNC on the dialer"
        notes.append(Note("leads", list_id, DNC_DRIFT,
                          f"{len(keys)} lead(s) sent before are now on the do-not-call list; "
                          f"{then}", keys[:NOTE_KEYS_SHOWN]))
    if drift.unreadable:
        notes.append(Note("dnc", "source", DNC_UNREADABLE,
                          f"{max(drift.bad_rows, len(drift.unreadable))} do-not-call row(s) "
                          f"left out: "
                          f"{'; '.join(drift.unreadable[:5])}",
                          drift.unreadable[:NOTE_KEYS_SHOWN]))
    return tuple(ops), tuple(notes)
