"""The planner: desired + recorded + observed -> Plan. Pure: no SQL, no HTTP, no clock.

Every mode uses it: a scheduled run and `plan` compare desired with recorded; `resync` pushes
every desired object again, as if nothing had been recorded, and lets the executor converge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from reconciler.model import (
    USER_SECRET_FIELDS,
    Desired,
    DesiredList,
    DesiredUser,
    Observed,
    ObservedList,
    Recorded,
    RecordedList,
    RecordedUser,
    SyncPolicy,
)
from reconciler.plan import (
    AddList,
    AddUser,
    AdoptList,
    Basis,
    DeactivateUser,
    FieldChange,
    GuardBreach,
    Note,
    Op,
    Plan,
    Reject,
    UpdateUser,
    sealed,
)
from reconciler.settings import GuardSettings


def make_plan(
    desired: Desired,
    recorded: Recorded,
    observed: Observed,
    basis: Basis,
    policy: SyncPolicy = SyncPolicy(),
    guards: GuardSettings = GuardSettings(),
) -> Plan:
    if observed.lists is None:
        return sealed(Plan(basis, unavailable=observed.unavailable_reason or "dialer not read"))
    rejects = tuple(
        Reject(r.resource, r.key, r.field, r.rule, r.row) for r in desired.rejections
    )
    ops: list[Op] = []
    notes: list[Note] = []
    if policy.manage_lists:
        list_ops, list_notes = plan_lists(desired, recorded, observed.lists or {}, policy,
                                          resync=basis.resync)
        ops += list_ops
        notes += list_notes
        notes += [Note("lists", "", "unreadable", f"active_lists entry not understood: {entry!r}")
                  for entry in observed.unparsed]
    if policy.manage_users:
        ops += plan_users(desired, recorded, policy, resync=basis.resync)
    breaches = check_guards(ops, desired, recorded, guards) if policy.manage_users else ()
    return sealed(Plan(basis, tuple(ops), rejects, tuple(notes), breaches))


# --- users ------------------------------------------------------------------------------------


def plan_users(
    desired: Desired, recorded: Recorded, policy: SyncPolicy, *, resync: bool = False
) -> list[Op]:
    rejected = desired.rejected_keys("users")
    ops: list[Op] = []
    for key in sorted(desired.users.keys() | recorded.users.keys()):
        if key in rejected:
            continue  # a bad CRM row is neither pushed nor taken for a departure
        want, have = desired.users.get(key), recorded.users.get(key)
        if want is None:
            assert have is not None
            if have.active and policy.on_user_removed == "deactivate":
                ops.append(DeactivateUser(key, "removed from CRM"))
        elif not want.active:
            # Never seen before, it may still exist on the dialer (made by hand): make sure.
            if policy.on_user_inactive == "deactivate" and (have is None or have.active or resync):
                ops.append(DeactivateUser(key, "inactive in CRM"))
        elif have is None or resync:
            ops.append(_add_user(want, "resync" if resync else "new in CRM"))
        else:
            changes = user_changes(want, have, policy.user_fields)
            if changes:
                ops.append(UpdateUser(key, changes))
    return ops


def _add_user(want: DesiredUser, reason: str) -> AddUser:
    plain = tuple(sorted((k, v) for k, v in want.fields.items() if k != "active"))
    return AddUser(want.agent_user, plain, tuple(sorted(want.digests)), reason)


def user_changes(
    want: DesiredUser, have: RecordedUser, owned: Iterable[str]
) -> tuple[FieldChange, ...]:
    """Only owned fields the CRM sets; the API cannot clear a field, so absence is no change."""
    changes: list[FieldChange] = []
    for name in owned:
        if name in USER_SECRET_FIELDS:
            if name in want.digests and want.digests[name] != have.digests.get(name):
                changes.append(FieldChange.of_secret(name))
        elif name in want.fields and want.fields[name] != have.fields.get(name):
            changes.append(FieldChange(name, have.fields.get(name), want.fields[name]))
    return tuple(changes)


def check_guards(
    ops: Iterable[Op], desired: Desired, recorded: Recorded, guards: GuardSettings
) -> tuple[GuardBreach, ...]:
    ops = list(ops)
    breaches: list[GuardBreach] = []
    # Only users we know to be active count: "make sure" deactivations of unknown users do not.
    deactivations = sum(
        isinstance(op, DeactivateUser) and op.agent_user in recorded.users
        and recorded.users[op.agent_user].active
        for op in ops
    )
    active_recorded = sum(u.active for u in recorded.users.values())
    if not desired.users and active_recorded and deactivations:
        breaches.append(GuardBreach(
            "empty_desired",
            f"the CRM returned no users while {active_recorded} are active on the dialer",
        ))
    if deactivations > guards.max_deactivations:
        breaches.append(GuardBreach(
            "max_deactivations",
            f"{deactivations} deactivations exceed the limit of {guards.max_deactivations}",
        ))
    changed = deactivations + sum(isinstance(op, UpdateUser) for op in ops)
    managed = len(recorded.users)
    if managed >= guards.min_users_for_share and changed / managed > guards.max_changed_share:
        breaches.append(GuardBreach(
            "max_changed_share",
            f"{changed} of {managed} users would change ({changed / managed:.0%}), "
            f"over the limit of {guards.max_changed_share:.0%}",
        ))
    return tuple(breaches)


# --- lists ------------------------------------------------------------------------------------


def plan_lists(
    desired: Desired,
    recorded: Recorded,
    observed: Mapping[str, ObservedList],
    policy: SyncPolicy,
    *,
    resync: bool = False,
) -> tuple[list[Op], list[Note]]:
    rejected = desired.rejected_keys("lists")
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
            notes += _dialer_differs(want.fields, seen, "differs from the CRM")
        else:
            notes += _list_notes(want, have, seen, policy.list_fields)
    for key in sorted(observed.keys() - desired.lists.keys() - recorded.lists.keys()):
        seen = observed[key]
        notes.append(Note("lists", key, "unmanaged",
                          f"on the dialer ({seen.campaign_id}: {seen.list_name!r}) but not in "
                          f"the CRM; left alone"))
    return ops, notes


def _place_list(want: DesiredList, seen: ObservedList | None) -> Op:
    f = want.fields
    if seen is None:
        return AddList(want.list_id, f["list_name"], f["campaign_id"], f.get("active", "N"))
    # Record what the dialer really holds; a CRM difference then shows as a note each plan.
    return AdoptList(want.list_id, seen.list_name, seen.campaign_id, "Y")


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


# --- basis ------------------------------------------------------------------------------------


def digest_of(document: object) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def desired_digest(desired: Desired) -> str:
    """Covers secrets through their keyed digests only."""
    return digest_of({
        "users": {k: [dict(u.fields), dict(u.digests)] for k, u in desired.users.items()},
        "lists": {k: dict(v.fields) for k, v in desired.lists.items()},
        "rejections": [list(r.__dict__.values()) for r in desired.rejections],
    })


def observed_digest(observed: Observed) -> str:
    lists = observed.lists or {}
    return digest_of(sorted((o.list_id, o.list_name, o.campaign_id) for o in lists.values()))
