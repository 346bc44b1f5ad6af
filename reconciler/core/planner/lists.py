"""Plan the lists: desired + recorded + observed -> ops and notes. Pure: no SQL, no HTTP.

What the dialer can do decides what a difference becomes. Without update_list, a list changed in
the CRM or on the dialer is a note for an operator; with it, an `update_list` op. A dialer that
reads each list (list_info) shows inactive lists too, so a recorded list it does not have is
gone, and is created again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.core.model import (
    Capabilities,
    Desired,
    DesiredList,
    ObservedList,
    Recorded,
    RecordedList,
    SyncPolicy,
)
from reconciler.core.plan import AddList, AdoptList, FieldChange, Note, Op, UpdateList

CHANGED_IN_CRM = "changed in CRM"
CHANGED_ON_DIALER = "changed on the dialer"
CHANGED_IN_BOTH = "changed in CRM and on the dialer"


def plan_lists(
    desired: Desired,
    recorded: Recorded,
    observed: Mapping[str, ObservedList],
    policy: SyncPolicy,
    capabilities: Capabilities = Capabilities(),
    *,
    resync: bool = False,
) -> tuple[list[Op], list[Note]]:
    rejected = desired.rejected_keys("lists")
    owned = policy.list_fields
    ops: list[Op] = []
    notes: list[Note] = []
    for key in sorted(desired.lists.keys() | recorded.lists.keys()):
        if key in rejected:
            continue
        want, have, seen = desired.lists.get(key), recorded.lists.get(key), observed.get(key)
        if want is None:
            notes.append(Note("lists", key, "orphaned",
                              "no longer in the CRM; left on the dialer (the API cannot "
                              "delete lists)"))
        elif have is None or resync:
            ops.append(_place_list(want, seen))
            if seen is not None and capabilities.has_update_list:
                changes = list_changes(want, seen_fields(seen), owned)
                if changes:
                    ops.append(UpdateList(key, changes, "differs from the CRM"))
            else:
                notes += _dialer_differs(want.fields, seen, "differs from the CRM")
        elif seen is None and capabilities.reads_lists_individually:
            ops.append(_place_list(want, None))      # recorded, but gone from the dialer
        elif capabilities.has_update_list:
            on_dialer = seen_fields(seen) if seen is not None else have.fields
            changes = list_changes(want, on_dialer, owned)
            if changes:
                ops.append(UpdateList(key, changes, change_reason(changes, have.fields)))
        else:
            notes += _list_notes(want, have, seen, owned)
    for key in sorted(observed.keys() - desired.lists.keys() - recorded.lists.keys()):
        seen = observed[key]
        notes.append(Note("lists", key, "unmanaged",
                          f"on the dialer ({seen.campaign_id}: {seen.list_name!r}) but not in "
                          f"the CRM; left alone"))
    return ops, notes


def seen_fields(seen: ObservedList) -> dict[str, str]:
    return {"list_name": seen.list_name, "campaign_id": seen.campaign_id, "active": seen.active}


def list_changes(want: DesiredList, current: Mapping[str, str], owned: Iterable[str]
                 ) -> tuple[FieldChange, ...]:
    return tuple(FieldChange(name, current.get(name), want.fields[name]) for name in owned
                 if name in want.fields and want.fields[name] != current.get(name))


def change_reason(changes: Iterable[FieldChange], recorded: Mapping[str, str]) -> str:
    """Whose edit a change undoes: the CRM's (it differs from the record) or the dialer's."""
    from_crm = [c.secret or recorded.get(c.field) != c.new for c in changes]
    if all(from_crm):
        return CHANGED_IN_CRM
    return CHANGED_IN_BOTH if any(from_crm) else CHANGED_ON_DIALER


def _place_list(want: DesiredList, seen: ObservedList | None) -> Op:
    f = want.fields
    if seen is None:
        return AddList(want.list_id, f["list_name"], f["campaign_id"], f.get("active", "N"))
    # Record what the dialer really holds; a CRM difference then shows as a note each plan
    # (or, with update_list, as an update_list op right after).
    return AdoptList(want.list_id, seen.list_name, seen.campaign_id, seen.active)


def _list_notes(
    want: DesiredList, have: RecordedList, seen: ObservedList | None, owned: Iterable[str]
) -> list[Note]:
    notes: list[Note] = []
    crm_changes = [
        f"{name}: {have.fields.get(name)!r} → {want.fields[name]!r}"
        for name in owned
        if name in want.fields and want.fields[name] != have.fields.get(name)
    ]
    if crm_changes:
        notes.append(Note("lists", want.list_id, "cannot_update",
                          "changed in the CRM (" + ", ".join(crm_changes) + "); the API has no "
                          "update_list, change it on the dialer"))
    if seen is None and have.fields.get("active") == "Y":
        notes.append(Note("lists", want.list_id, "drift",
                          "recorded as active but no longer active on the dialer"))
    notes += _dialer_differs(have.fields, seen, "changed on the dialer")
    return notes


def _dialer_differs(
    fields: Mapping[str, str], seen: ObservedList | None, what: str
) -> list[Note]:
    if seen is None:
        return []
    diffs = [
        f"{name}: {fields.get(name)!r} → {value!r}"
        for name, value in (("list_name", seen.list_name), ("campaign_id", seen.campaign_id))
        if fields.get(name) != value
    ]
    if not diffs:
        return []
    return [Note("lists", seen.list_id, "drift", f"{what} (" + ", ".join(diffs) + ")")]
