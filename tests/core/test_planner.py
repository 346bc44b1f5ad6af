"""The planner as tables: (desired, recorded, observed) -> expected ops and notes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.config.settings import GuardSettings
from reconciler.core.model import (
    Desired,
    DesiredList,
    DesiredUser,
    Observed,
    ObservedList,
    Recorded,
    RecordedList,
    RecordedUser,
    RowRejection,
    SyncPolicy,
)
from reconciler.core.plan import (
    AddList,
    AddUser,
    AdoptList,
    Basis,
    FieldChange,
    UpdateUser,
    to_json,
)
from reconciler.core.planner import make_plan

BASIS = Basis("default", 0, "spec", "desired", "observed")


def want(key: str, name: str = "Agent", active: str = "Y", pw: str = "d1", **extra: str
         ) -> DesiredUser:
    fields = {"agent_full_name": name, "agent_user_level": "1", "agent_user_group": "AGENTS",
              "active": active, **extra}
    return DesiredUser(key, fields, {"agent_pass": pw}, {"agent_pass": "canary-agent-pw"})


def have(key: str, name: str = "Agent", active: str = "Y", pw: str = "d1") -> RecordedUser:
    fields = {"agent_full_name": name, "agent_user_level": "1", "agent_user_group": "AGENTS",
              "active": active}
    return RecordedUser(key, fields, {"agent_pass": pw})


def want_list(key: str, name: str = "Spring list", campaign: str = "TESTCAMP",
              active: str = "Y") -> DesiredList:
    return DesiredList(key, {"list_name": name, "campaign_id": campaign, "active": active})


def have_list(key: str, name: str = "Spring list", campaign: str = "TESTCAMP",
              active: str = "Y") -> RecordedList:
    return RecordedList(key, {"list_name": name, "campaign_id": campaign, "active": active},
                        "created")


def seen(key: str, name: str = "Spring list", campaign: str = "TESTCAMP") -> ObservedList:
    return ObservedList(key, name, campaign)


@dataclass
class Case:
    desired_users: list[DesiredUser] = field(default_factory=list)
    recorded_users: list[RecordedUser] = field(default_factory=list)
    desired_lists: list[DesiredList] = field(default_factory=list)
    recorded_lists: list[RecordedList] = field(default_factory=list)
    observed_lists: list[ObservedList] = field(default_factory=list)
    rejections: list[RowRejection] = field(default_factory=list)
    policy: SyncPolicy = field(default_factory=SyncPolicy)
    resync: bool = False
    expected_ops: list[str] = field(default_factory=list)      # "kind key"
    expected_notes: list[str] = field(default_factory=list)    # "topic key"

    def plan(self):  # type: ignore[no-untyped-def]
        desired = Desired({u.agent_user: u for u in self.desired_users},
                          {x.list_id: x for x in self.desired_lists}, tuple(self.rejections))
        recorded = Recorded({u.agent_user: u for u in self.recorded_users},
                            {x.list_id: x for x in self.recorded_lists})
        observed = Observed({x.list_id: x for x in self.observed_lists})
        basis = Basis("default", 0, "s", "d", "o", resync=self.resync)
        return make_plan(desired, recorded, observed, basis, self.policy, GuardSettings())


CASES = {
    "new user is added": Case(desired_users=[want("1000")], expected_ops=["add_user 1000"]),
    "recorded and unchanged: nothing": Case(desired_users=[want("1000")],
                                            recorded_users=[have("1000")]),
    "renamed in CRM: update": Case(desired_users=[want("1000", "New")],
                                   recorded_users=[have("1000", "Old")],
                                   expected_ops=["update_user 1000"]),
    "password changed: update": Case(desired_users=[want("1000", pw="d2")],
                                     recorded_users=[have("1000", pw="d1")],
                                     expected_ops=["update_user 1000"]),
    "removed from CRM: deactivate": Case(recorded_users=[have("1000")],
                                         expected_ops=["deactivate_user 1000"]),
    "removed, policy ignore: nothing": Case(
        recorded_users=[have("1000")], policy=SyncPolicy(on_user_removed="ignore")),
    "removed and already inactive: nothing": Case(recorded_users=[have("1000", active="N")]),
    "inactive in CRM: deactivate": Case(desired_users=[want("1000", active="N")],
                                        recorded_users=[have("1000")],
                                        expected_ops=["deactivate_user 1000"]),
    "inactive, never seen: make sure it is off": Case(
        desired_users=[want("1000", active="N")], expected_ops=["deactivate_user 1000"]),
    "inactive and recorded inactive: nothing": Case(
        desired_users=[want("1000", active="N")], recorded_users=[have("1000", active="N")]),
    "inactive, policy ignore: nothing": Case(
        desired_users=[want("1000", active="N")], recorded_users=[have("1000")],
        policy=SyncPolicy(on_user_inactive="ignore")),
    "back to active: update": Case(desired_users=[want("1000")],
                                   recorded_users=[have("1000", active="N")],
                                   expected_ops=["update_user 1000"]),
    "rejected row is not taken for a departure": Case(
        recorded_users=[have("1000")],
        rejections=[RowRejection("users", "1000", "agent_full_name", "too long", 1)]),
    "new list is added": Case(desired_lists=[want_list("1101")],
                              expected_ops=["add_list 1101"]),
    "list already on dialer is adopted": Case(desired_lists=[want_list("1101")],
                                              observed_lists=[seen("1101")],
                                              expected_ops=["adopt_list 1101"]),
    "adopted list that differs is noted": Case(
        desired_lists=[want_list("1101")], observed_lists=[seen("1101", name="Other name")],
        expected_ops=["adopt_list 1101"], expected_notes=["drift 1101"]),
    "CRM renames a list: cannot update": Case(
        desired_lists=[want_list("1101", name="Renamed list")],
        recorded_lists=[have_list("1101")], observed_lists=[seen("1101")],
        expected_notes=["cannot_update 1101"]),
    "renamed on the dialer: drift": Case(
        desired_lists=[want_list("1101")], recorded_lists=[have_list("1101")],
        observed_lists=[seen("1101", name="Changed by hand")], expected_notes=["drift 1101"]),
    "list no longer active on dialer: drift": Case(
        desired_lists=[want_list("1101")], recorded_lists=[have_list("1101")],
        expected_notes=["drift 1101"]),
    "inactive list missing from active_lists: fine": Case(
        desired_lists=[want_list("1101", active="N")],
        recorded_lists=[have_list("1101", active="N")]),
    "unmanaged dialer list is reported": Case(observed_lists=[seen("900")],
                                              expected_notes=["unmanaged 900"]),
    "list gone from CRM is left alone": Case(recorded_lists=[have_list("1101")],
                                             observed_lists=[seen("1101")],
                                             expected_notes=["orphaned 1101"]),
    "resync pushes recorded users again": Case(
        desired_users=[want("1000")], recorded_users=[have("1000")], resync=True,
        expected_ops=["add_user 1000"]),
    "resync re-checks recorded lists": Case(
        desired_lists=[want_list("1101")], recorded_lists=[have_list("1101")],
        observed_lists=[seen("1101")], resync=True, expected_ops=["adopt_list 1101"]),
    "resync pushes inactive users' state": Case(
        desired_users=[want("1000", active="N")], resync=True,
        expected_ops=["deactivate_user 1000"]),
    "lists come before users": Case(
        desired_users=[want("1000")], desired_lists=[want_list("1101")],
        expected_ops=["add_list 1101", "add_user 1000"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan_table(case: Case) -> None:
    plan = case.plan()
    assert [f"{op.kind} {op.key}" for op in plan.ops] == case.expected_ops
    assert sorted(f"{n.topic} {n.key}" for n in plan.notes) == sorted(case.expected_notes)


def test_update_carries_only_changed_fields_and_hides_secrets() -> None:
    plan = Case(desired_users=[want("1000", "New", pw="d2")],
                recorded_users=[have("1000", "Old", pw="d1")]).plan()
    (op,) = plan.ops
    assert isinstance(op, UpdateUser)
    assert op.changes == (FieldChange("agent_pass", None, "(changed)", secret=True),
                          FieldChange("agent_full_name", "Old", "New"))


def test_owned_fields_limit_the_comparison() -> None:
    policy = SyncPolicy(user_fields=("agent_full_name",))
    plan = Case(desired_users=[want("1000", pw="d2")], recorded_users=[have("1000", pw="d1")],
                policy=policy).plan()
    assert plan.ops == ()


def test_add_user_never_holds_a_secret_value() -> None:
    plan = Case(desired_users=[want("1000")]).plan()
    (op,) = plan.ops
    assert isinstance(op, AddUser)
    assert op.secret_fields == ("agent_pass",)
    assert "canary-agent-pw" not in repr(plan)
    assert "canary-agent-pw" not in str(to_json(plan))


def test_adopt_records_what_the_dialer_holds() -> None:
    plan = Case(desired_lists=[want_list("1101")],
                observed_lists=[seen("1101", name="Dialer name", campaign="SALES")]).plan()
    assert plan.ops == (AdoptList("1101", "Dialer name", "SALES", "Y"),)


def test_new_list_keeps_crm_active_flag() -> None:
    plan = Case(desired_lists=[want_list("1101", active="N")]).plan()
    assert plan.ops == (AddList("1101", "Spring list", "TESTCAMP", "N"),)


def test_unreadable_dialer_gives_an_unavailable_plan_not_an_empty_one() -> None:
    desired = Desired({"1000": want("1000")}, {})
    plan = make_plan(desired, Recorded({}, {}), Observed(None, "active_lists failed: 503"), BASIS)
    assert plan.unavailable == "active_lists failed: 503"
    assert plan.ops == ()


def test_plan_is_deterministic() -> None:
    case = Case(desired_users=[want(str(k)) for k in (1003, 1001, 1002)],
                desired_lists=[want_list("1102"), want_list("1101")])
    assert case.plan() == case.plan()
    assert case.plan().digest == case.plan().digest


# --- guards -----------------------------------------------------------------------------------


def test_empty_crm_query_breaches_a_guard_even_for_few_users() -> None:
    plan = Case(recorded_users=[have("1000"), have("1001")]).plan()
    assert [op.kind for op in plan.ops] == ["deactivate_user", "deactivate_user"]
    assert [b.guard for b in plan.breaches] == ["empty_desired"]


def test_too_many_deactivations_breach() -> None:
    recorded = [have(str(1000 + n)) for n in range(12)]
    desired = [want("1000")]
    plan = Case(desired_users=desired, recorded_users=recorded).plan()
    guards = {b.guard for b in plan.breaches}
    assert "max_deactivations" in guards     # 11 > 10
    assert "max_changed_share" in guards     # 11 of 12 changed


def test_share_guard_ignores_additions() -> None:
    plan = Case(desired_users=[want(str(1000 + n)) for n in range(50)]).plan()
    assert len(plan.ops) == 50
    assert plan.breaches == ()


def test_deactivating_unknown_users_is_not_counted_by_guards() -> None:
    plan = Case(desired_users=[want(str(1000 + n), active="N") for n in range(30)]).plan()
    assert len(plan.ops) == 30
    assert plan.breaches == ()


def test_ordinary_change_breaches_nothing() -> None:
    recorded = [have(str(1000 + n)) for n in range(20)]
    desired = [want(str(1000 + n), name="Renamed" if n == 0 else "Agent") for n in range(20)]
    plan = Case(desired_users=desired, recorded_users=recorded).plan()
    assert [op.kind for op in plan.ops] == ["update_user"]
    assert plan.breaches == ()
