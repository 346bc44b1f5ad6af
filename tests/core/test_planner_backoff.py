"""Backing off from dialer rejections, as planner tables: (desired, recorded with the dialer's
earlier refusals, observed) -> ops, and the rows held back. Pure: no sandbox, no database."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.app.render import render_plan
from reconciler.config.settings import GuardSettings
from reconciler.core.model import (
    Capabilities,
    Desired,
    DesiredList,
    Observed,
    ObservedList,
    Recorded,
    RecordedRejection,
    RecordedUser,
)
from reconciler.core.plan import REJECTED_EARLIER, Basis, Plan
from reconciler.core.planner import make_plan
from reconciler.core.planner.backoff import row_digest
from tests.core.test_planner import have, want, want_list

REFUSED = "add_user: dialer rejected the request: USER GROUP DOES NOT EXIST"
VICIDIAL = Capabilities(reads_users=True, reads_lists_individually=True, has_update_list=True)


@dataclass(frozen=True)
class Refusal:
    """The dialer refused `op` on `key`, made from the CRM row `made_from` (None: absent)."""

    resource: str
    key: str
    op: str
    made_from: object = None


@dataclass
class Case:
    desired_users: list = field(default_factory=list)        # type: ignore[type-arg]
    recorded_users: list[RecordedUser] = field(default_factory=list)
    desired_lists: list[DesiredList] = field(default_factory=list)
    observed_lists: list[ObservedList] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    capabilities: Capabilities = field(default_factory=Capabilities)
    resync: bool = False
    guards: GuardSettings = field(default_factory=GuardSettings)
    expected_ops: list[str] = field(default_factory=list)     # "kind key"
    expected_held: list[str] = field(default_factory=list)    # "resource key"

    def plan(self) -> Plan:
        desired = Desired({u.agent_user: u for u in self.desired_users},
                          {x.list_id: x for x in self.desired_lists})
        rejections = {}
        for r in self.refusals:
            # The row the refused change was made from: the same row as now, or another one.
            source = Desired(
                {r.key: r.made_from} if r.resource == "users" and r.made_from else {},
                {r.key: r.made_from} if r.resource == "lists" and r.made_from else {})
            rejections[r.resource, r.key] = RecordedRejection(
                r.resource, r.key, r.op, row_digest(source, r.resource, r.key), REFUSED)
        recorded = Recorded({u.agent_user: u for u in self.recorded_users}, {}, 3, rejections)
        observed = Observed({x.list_id: x for x in self.observed_lists},
                            users={} if self.capabilities.reads_users else None)
        basis = Basis("default", 3, "s", "d", "o", resync=self.resync)
        return make_plan(desired, recorded, observed, basis, guards=self.guards,
                         capabilities=self.capabilities)


CASES = {
    "refused add_user, same CRM row: held back, no op": Case(
        desired_users=[want("1000")], refusals=[Refusal("users", "1000", "add_user",
                                                        want("1000"))],
        expected_held=["users 1000"]),
    "refused add_user, the CRM row changed since: sent again": Case(
        desired_users=[want("1000", "Renamed")],
        refusals=[Refusal("users", "1000", "add_user", want("1000"))],
        expected_ops=["add_user 1000"]),
    "refused add_user, a new password in the CRM: sent again": Case(
        desired_users=[want("1000", pw="d2")],
        refusals=[Refusal("users", "1000", "add_user", want("1000", pw="d1"))],
        expected_ops=["add_user 1000"]),
    "refused add_user, resync: sent again": Case(
        desired_users=[want("1000")], refusals=[Refusal("users", "1000", "add_user",
                                                        want("1000"))],
        resync=True, expected_ops=["add_user 1000"]),
    "refused update_user, same row: held back": Case(
        desired_users=[want("1000", phone_login="8100")],
        recorded_users=[have("1000")],
        refusals=[Refusal("users", "1000", "update_user", want("1000", phone_login="8100"))],
        expected_held=["users 1000"]),
    "refused update_user, another user changes: only that one is sent": Case(
        desired_users=[want("1000", phone_login="8100"), want("1001", "New")],
        recorded_users=[have("1000"), have("1001", "Old")],
        refusals=[Refusal("users", "1000", "update_user", want("1000", phone_login="8100"))],
        expected_ops=["update_user 1001"], expected_held=["users 1000"]),
    "refused deactivation of a departed user: held back while it stays gone": Case(
        recorded_users=[have("1000")],
        refusals=[Refusal("users", "1000", "deactivate_user", None)],
        expected_held=["users 1000"]),
    "refused deactivation, the user is back in the CRM, inactive: sent again": Case(
        desired_users=[want("1000", active="N")], recorded_users=[have("1000")],
        refusals=[Refusal("users", "1000", "deactivate_user", None)],
        expected_ops=["deactivate_user 1000"]),
    "a held deactivation is no change for the guards": Case(
        recorded_users=[have(f"10{n:02d}") for n in range(12)],
        desired_users=[want(f"10{n:02d}") for n in range(1, 12)],
        refusals=[Refusal("users", "1000", "deactivate_user", None)],
        guards=GuardSettings(max_deactivations=0), expected_held=["users 1000"]),
    "refused add_list, same row: held back": Case(
        desired_lists=[want_list("1101", campaign="NOCAMP")],
        refusals=[Refusal("lists", "1101", "add_list", want_list("1101", campaign="NOCAMP"))],
        expected_held=["lists 1101"]),
    "refused add_list, campaign fixed in the CRM: sent again": Case(
        desired_lists=[want_list("1101")],
        refusals=[Refusal("lists", "1101", "add_list", want_list("1101", campaign="NOCAMP"))],
        expected_ops=["add_list 1101"]),
    "refused update_list: the list is adopted, its update held back": Case(
        desired_lists=[want_list("1101", campaign="NOCAMP")],
        observed_lists=[ObservedList("1101", "Spring list", "TESTCAMP")],
        refusals=[Refusal("lists", "1101", "update_list",
                          want_list("1101", campaign="NOCAMP"))],
        capabilities=VICIDIAL, expected_ops=["adopt_list 1101"],
        expected_held=["lists 1101"]),
    "a refusal of another object holds nothing back": Case(
        desired_users=[want("1001")],
        refusals=[Refusal("users", "1000", "add_user", want("1000"))],
        expected_ops=["add_user 1001"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_backoff_table(case: Case) -> None:
    plan = case.plan()
    assert [f"{op.kind} {op.key}" for op in plan.ops] == case.expected_ops
    held = [n for n in plan.notes if n.topic == REJECTED_EARLIER]
    assert [f"{n.resource} {n.key}" for n in held] == case.expected_held
    assert all(n.message == REFUSED for n in held)
    assert plan.breaches == ()


def test_a_held_row_is_no_change_and_reads_as_rejected_earlier() -> None:
    plan = CASES["refused add_user, same CRM row: held back, no op"].plan()
    assert not plan.has_changes
    assert plan.count() == {REJECTED_EARLIER: 1}
    text = render_plan(plan)
    assert f"  ! user 1000: rejected by the dialer earlier: {REFUSED}\n" in text
    assert text.endswith("No changes. (1 rejected by the dialer earlier)\n")

