"""Back off from a change the dialer refused: it is not sent again until its CRM row changes.

A refusal (an unknown user group, no such phone, a row the dialer's own SQL fails on) comes back
the same every time the same row is sent. So the executor records it with a digest of the CRM
row the change was made from (`row_digest`), and the planner holds that change back (`hold_back`)
while the row's digest is the same: the plan shows the row as rejected by the dialer earlier,
with the dialer's reason, and makes no call. An edit of the row gives a new digest and the change
is planned again; `resync` plans everything again. A later success clears the record.

Pure: no SQL, no HTTP, no clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from reconciler.core.model import Desired, RecordedRejection, SyncPolicy
from reconciler.core.plan import REJECTED_EARLIER, Note, Op, Plan

# The ops whose refusal is remembered, and the resource each changes. Lead batches keep their
# own record per lead (shadow_leads); adopting a list and settling leads make no call.
RESOURCE_OF_OP = {"add_user": "users", "update_user": "users", "deactivate_user": "users",
                  "add_list": "lists", "update_list": "lists"}


def row_digest(desired: Desired, resource: str, key: str) -> str:
    """A digest of the CRM row behind `key` as the run read it; a row absent from the CRM (a
    departure) has a digest too. Secrets count through their keyed digests only."""
    document: object = None
    if resource == "users" and key in desired.users:
        user = desired.users[key]
        document = {"fields": dict(user.fields), "digests": dict(user.digests)}
    elif resource == "lists" and key in desired.lists:
        document = {"fields": dict(desired.lists[key].fields)}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def hold_back(
    ops: Iterable[Op], desired: Desired,
    rejections: Mapping[tuple[str, str], RecordedRejection], *, resync: bool = False,
) -> tuple[list[Op], list[Note]]:
    """The ops to plan, and a note for each object whose change the dialer refused before from
    the same CRM row. A resync holds nothing back."""
    ops = list(ops)
    if resync or not rejections:
        return ops, []
    kept: list[Op] = []
    held: dict[tuple[str, str], Note] = {}
    for op in ops:
        resource = RESOURCE_OF_OP.get(op.kind)
        earlier = rejections.get((resource, op.key)) if resource is not None else None
        if earlier is None or earlier.row_digest != row_digest(desired, earlier.resource,
                                                               earlier.key):
            kept.append(op)
            continue
        held.setdefault((earlier.resource, earlier.key),
                        Note(earlier.resource, earlier.key, REJECTED_EARLIER, earlier.message))
    return kept, list(held.values())


def settled(recorded: Iterable[tuple[str, str]], plan: Plan,
            policy: SyncPolicy) -> list[tuple[str, str]]:
    """Recorded refusals `plan` has no more use for: of a resource it plans, with neither an op
    nor a held note for their object (its CRM row changed so that nothing is to be sent, or left
    the CRM). Forgetting them keeps `status` to the refusals that still hold something back."""
    planned = {name for name, on in (("users", policy.manage_users),
                                     ("lists", policy.manage_lists)) if on}
    live = {(RESOURCE_OF_OP[op.kind], op.key) for op in plan.ops if op.kind in RESOURCE_OF_OP}
    live |= {(n.resource, n.key) for n in plan.notes if n.topic == REJECTED_EARLIER}
    return sorted(key for key in recorded if key[0] in planned and key not in live)
