"""The planner: desired + recorded + observed -> Plan. Pure: no SQL, no HTTP, no clock.

`make_plan` puts the parts together: lists (`lists.py`), users (`users.py`), the back-off from
dialer refusals (`backoff.py`), the guards (`guards.py`); `basis.py` digests what it read.

Every mode uses it: a scheduled run and `plan` compare desired with recorded; `resync` pushes
every desired object again, as if nothing had been recorded, and lets the executor converge.
"""

from __future__ import annotations

from reconciler.core.model import (
    Capabilities,
    Desired,
    GuardSettings,
    Observed,
    Recorded,
    SyncPolicy,
)
from reconciler.core.plan import Basis, Note, Op, Plan, Reject, sealed
from reconciler.core.planner.backoff import hold_back
from reconciler.core.planner.basis import desired_digest, digest_of, observed_digest
from reconciler.core.planner.guards import check_guards
from reconciler.core.planner.lists import plan_lists
from reconciler.core.planner.users import plan_users, user_changes

# The planner's whole surface, for the engine and the tests: each part lives in its own module.
__all__ = ["check_guards", "desired_digest", "digest_of", "make_plan", "observed_digest",
           "plan_lists", "plan_users", "user_changes"]


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
