"""The planner: desired + recorded + observed -> Plan. Pure: no SQL, no HTTP, no clock.

Every mode uses it: a scheduled run and `plan` compare desired with recorded; `resync` pushes
every desired object again, as if nothing had been recorded, and lets the executor converge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from reconciler.core.model import (
    USER_SECRET_FIELDS,
    USER_VISIBLE_FIELDS,
    Capabilities,
    Desired,
    DesiredUser,
    GuardSettings,
    Observed,
    ObservedUser,
    Recorded,
    RecordedUser,
    SyncPolicy,
)
from reconciler.core.plan import (
    AddUser,
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
from reconciler.core.planner.backoff import hold_back
from reconciler.core.planner.lists import change_reason, plan_lists


def make_plan(
    desired: Desired,
    recorded: Recorded,
    observed: Observed,
    basis: Basis,
    policy: SyncPolicy = SyncPolicy(),
    guards: GuardSettings = GuardSettings(),
    capabilities: Capabilities = Capabilities(),
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
                                          capabilities, resync=basis.resync)
        ops += list_ops
        notes += list_notes
        notes += [Note("lists", "", "unreadable", f"active_lists entry not understood: {entry!r}")
                  for entry in observed.unparsed]
    if policy.manage_users:
        ops += plan_users(desired, recorded, policy, resync=basis.resync,
                          observed_users=observed.users)
    notes += [Note(r.resource, r.key, "rewritten",
                   f"{r.field} {r.rule}; recorded as the dialer stores it")
              for r in desired.rewrites]
    # A change the dialer refused from this very CRM row is not planned again (nor counted by
    # the guards): the row is shown as rejected earlier until it changes, or a resync.
    ops, held = hold_back(ops, desired, recorded.rejections, resync=basis.resync)
    notes += held
    breaches = check_guards(ops, desired, recorded, guards) if policy.manage_users else ()
    return sealed(Plan(basis, tuple(ops), rejects, tuple(notes), breaches))


# --- users ------------------------------------------------------------------------------------


def plan_users(
    desired: Desired, recorded: Recorded, policy: SyncPolicy, *, resync: bool = False,
    observed_users: Mapping[str, ObservedUser] | None = None,
) -> list[Op]:
    """With `observed_users` (a dialer that reads users), what the dialer shows stands for the
    record in every field it shows: an edit made on the dialer is corrected like a CRM edit."""
    rejected = desired.rejected_keys("users")
    reads = observed_users is not None
    ops: list[Op] = []
    for key in sorted(desired.users.keys() | recorded.users.keys()):
        if key in rejected:
            continue  # a bad CRM row is neither pushed nor taken for a departure
        want, have = desired.users.get(key), recorded.users.get(key)
        seen = observed_users.get(key) if observed_users is not None else None
        if want is None:
            assert have is not None
            active_there = seen is not None and seen.active if reads else have.active
            if active_there and policy.on_user_removed == "deactivate":
                ops.append(DeactivateUser(key, "removed from CRM"))
        elif not want.active:
            # Unseen and unrecorded, it may still exist on the dialer (made by hand): make sure.
            needed = (seen is not None and seen.active) if reads \
                else have is None or have.active or resync
            if policy.on_user_inactive == "deactivate" and needed:
                ops.append(DeactivateUser(key, "inactive in CRM"))
        elif resync:
            ops.append(_add_user(want, "resync"))
        elif have is None:
            ops.append(_add_user(want, "new in CRM"))   # on the dialer already: converged
        elif reads and seen is None:
            ops.append(_add_user(want, "missing on the dialer"))
        else:
            changes = user_changes(want, have, policy.user_fields, seen)
            if changes:
                ops.append(UpdateUser(key, changes, change_reason(changes, have.fields)))
    return ops


def _add_user(want: DesiredUser, reason: str) -> AddUser:
    plain = tuple(sorted((k, v) for k, v in want.fields.items() if k != "active"))
    return AddUser(want.agent_user, plain, tuple(sorted(want.digests)), reason)


def user_changes(
    want: DesiredUser, have: RecordedUser, owned: Iterable[str], seen: ObservedUser | None = None
) -> tuple[FieldChange, ...]:
    """Only owned fields the CRM sets; the API cannot clear a field, so absence is no change.

    A field the dialer shows (`seen`) is compared with what it shows; the others, and the
    secrets (by keyed digest), with what we recorded."""
    changes: list[FieldChange] = []
    for name in owned:
        if name in USER_SECRET_FIELDS:
            if name in want.digests and want.digests[name] != have.digests.get(name):
                changes.append(FieldChange.of_secret(name))
        elif name in want.fields:
            shown = seen is not None and name in USER_VISIBLE_FIELDS
            current = seen.fields.get(name) if seen is not None and shown \
                else have.fields.get(name)
            if want.fields[name] != current:
                changes.append(FieldChange(name, current, want.fields[name]))
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
    lists = sorted((o.list_id, o.list_name, o.campaign_id, *(() if o.active == "Y" else
                                                             (o.active,)))
                   for o in (observed.lists or {}).values())
    if observed.users is None:
        return digest_of(lists)
    users = {k: dict(u.fields) for k, u in observed.users.items()}
    return digest_of({"lists": lists, "users": users})
