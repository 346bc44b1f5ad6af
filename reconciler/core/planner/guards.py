"""The safety guards: a plan that would change too much is refused without --force. Pure.

A broken CRM query must not deactivate every agent: the guards count what a plan would do to
the users we know, and name each limit it breaks.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.model import Desired, GuardSettings, Recorded
from reconciler.core.plan import DeactivateUser, GuardBreach, Op, UpdateUser


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
