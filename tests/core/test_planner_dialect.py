"""The planner with a dialer that reads users and lists and has update_list, as tables.

(desired, recorded, observed) -> expected ops, with the capabilities of such a dialer. The
helpers are those of test_planner; observed users and inactive observed lists are new here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.config.settings import GuardSettings
from reconciler.core.model import (
    Capabilities,
    Desired,
    DesiredList,
    DesiredUser,
    Observed,
    ObservedList,
    ObservedUser,
    Recorded,
    RecordedList,
    RecordedUser,
    RowRejection,
    SyncPolicy,
)
from reconciler.core.plan import Basis, FieldChange, Plan, UpdateList, UpdateUser
from reconciler.core.planner import make_plan, observed_digest
from tests.core.test_planner import have, have_list, want, want_list

READS_ALL = Capabilities(reads_users=True, reads_lists_individually=True, has_update_list=True,
                         sends_leads_one_by_one=True, can_look_up_leads=True)
POLICY = SyncPolicy(user_fields=("agent_pass", "agent_full_name", "agent_user_level",
                                 "agent_user_group", "active"))


def seen_user(key: str, name: str = "Agent", group: str = "AGENTS", active: str = "Y"
              ) -> ObservedUser:
    return ObservedUser(key, {"agent_full_name": name, "agent_user_group": group,
                              "agent_user_level": "1", "active": active})


def seen_list(key: str, name: str = "Spring list", campaign: str = "TESTCAMP",
              active: str = "Y") -> ObservedList:
    return ObservedList(key, name, campaign, active)


@dataclass
class Case:
    desired_users: list[DesiredUser] = field(default_factory=list)
    recorded_users: list[RecordedUser] = field(default_factory=list)
    observed_users: list[ObservedUser] = field(default_factory=list)
    desired_lists: list[DesiredList] = field(default_factory=list)
    recorded_lists: list[RecordedList] = field(default_factory=list)
    observed_lists: list[ObservedList] = field(default_factory=list)
    rewrites: list[RowRejection] = field(default_factory=list)
    expected_ops: list[str] = field(default_factory=list)        # "kind key reason"
    expected_notes: list[str] = field(default_factory=list)      # "topic key"

    def plan(self) -> Plan:
        desired = Desired({u.agent_user: u for u in self.desired_users},
                          {x.list_id: x for x in self.desired_lists}, (), tuple(self.rewrites))
        recorded = Recorded({u.agent_user: u for u in self.recorded_users},
                            {x.list_id: x for x in self.recorded_lists})
        observed = Observed({x.list_id: x for x in self.observed_lists},
                            users={u.agent_user: u for u in self.observed_users})
        return make_plan(desired, recorded, observed, Basis("t", 0, "s", "d", "o"), POLICY,
                         GuardSettings(), READS_ALL)


def _shown(plan: Plan) -> list[str]:
    return [" ".join((op.kind, op.key, getattr(op, "reason", ""))).strip() for op in plan.ops]


CASES = {
    "as recorded and as seen: nothing": Case(
        desired_users=[want("1000")], recorded_users=[have("1000")],
        observed_users=[seen_user("1000")]),
    "renamed on the dialer: corrected": Case(
        desired_users=[want("1000")], recorded_users=[have("1000")],
        observed_users=[seen_user("1000", "Someone")],
        expected_ops=["update_user 1000 changed on the dialer"]),
    "renamed in both: one update": Case(
        desired_users=[want("1000", "New")], recorded_users=[have("1000", "Old")],
        observed_users=[seen_user("1000", "Someone", group="ADMIN")],
        expected_ops=["update_user 1000 changed in CRM and on the dialer"]),
    "renamed in CRM, dialer already has it: nothing": Case(
        desired_users=[want("1000", "New")], recorded_users=[have("1000", "Old")],
        observed_users=[seen_user("1000", "New")]),
    "recorded but gone from the dialer: added": Case(
        desired_users=[want("1000")], recorded_users=[have("1000")],
        expected_ops=["add_user 1000 missing on the dialer"]),
    "on the dialer, never recorded: added (and converged)": Case(
        desired_users=[want("1000")], observed_users=[seen_user("1000")],
        expected_ops=["add_user 1000 new in CRM"]),
    "removed from CRM, still active there: deactivated": Case(
        recorded_users=[have("1000", active="N")], observed_users=[seen_user("1000")],
        expected_ops=["deactivate_user 1000 removed from CRM"]),
    "removed from CRM, already inactive there: nothing": Case(
        recorded_users=[have("1000")], observed_users=[seen_user("1000", active="N")]),
    "inactive in CRM, not on the dialer: nothing": Case(desired_users=[want("1000", active="N")]),
    "list renamed in CRM: update_list": Case(
        desired_lists=[want_list("1101", "New name")], recorded_lists=[have_list("1101")],
        observed_lists=[seen_list("1101")], expected_ops=["update_list 1101 changed in CRM"]),
    "list deactivated on the dialer: update_list": Case(
        desired_lists=[want_list("1101")], recorded_lists=[have_list("1101")],
        observed_lists=[seen_list("1101", active="N")],
        expected_ops=["update_list 1101 changed on the dialer"]),
    "recorded list gone from the dialer: added": Case(
        desired_lists=[want_list("1101")], recorded_lists=[have_list("1101")],
        expected_ops=["add_list 1101"]),
    "list on the dialer, differing: adopted then updated": Case(
        desired_lists=[want_list("1101")], observed_lists=[seen_list("1101", "Other name")],
        expected_ops=["adopt_list 1101 already on the dialer",
                      "update_list 1101 differs from the CRM"]),
    "a rewritten value is a note": Case(
        desired_users=[want("1000")], recorded_users=[have("1000")],
        observed_users=[seen_user("1000")],
        rewrites=[RowRejection("users", "1000", "agent_full_name", "is altered", 1)],
        expected_notes=["rewritten 1000"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan_with_a_dialer_that_reads(case: Case) -> None:
    plan = case.plan()
    assert _shown(plan) == case.expected_ops
    assert [f"{n.topic} {n.key}" for n in plan.notes] == case.expected_notes


def test_changes_compare_with_what_the_dialer_shows() -> None:
    plan = CASES["renamed on the dialer: corrected"].plan()
    (op,) = plan.ops
    assert isinstance(op, UpdateUser)
    assert op.changes == (FieldChange("agent_full_name", "Someone", "Agent"),)
    plan = CASES["list deactivated on the dialer: update_list"].plan()
    (update,) = plan.ops
    assert isinstance(update, UpdateList) and update.changes == (FieldChange("active", "N", "Y"),)


def test_observed_digest_covers_users_and_inactive_lists() -> None:
    lists = {"1101": seen_list("1101")}
    elision_style = observed_digest(Observed(lists))
    assert observed_digest(Observed({"1101": ObservedList("1101", "Spring list", "TESTCAMP")})) \
        == elision_style
    assert observed_digest(Observed({"1101": seen_list("1101", active="N")})) != elision_style
    with_users = observed_digest(Observed(lists, users={"1000": seen_user("1000")}))
    assert with_users != elision_style
    assert with_users != observed_digest(Observed(lists, users={"1000": seen_user("1000", "X")}))
