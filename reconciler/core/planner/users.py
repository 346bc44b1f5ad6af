"""Plan the users: desired + recorded (+ observed, where the dialer reads users) -> ops. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.core.model import (
    USER_SECRET_FIELDS,
    USER_VISIBLE_FIELDS,
    Desired,
    DesiredUser,
    ObservedUser,
    Recorded,
    RecordedUser,
    SyncPolicy,
)
from reconciler.core.plan import AddUser, DeactivateUser, FieldChange, Op, UpdateUser
from reconciler.core.planner.lists import change_reason


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
