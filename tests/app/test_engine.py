"""The whole loop (CRM -> plan -> executor -> sandbox -> state) on SQLite and PostgreSQL state."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.config.settings import GuardSettings
from reconciler.errors import PlanRefused
from reconciler.sandbox import SandboxData, SandboxDialer, SandboxList, SandboxUser
from reconciler.sandbox.store import ApiUser
from tests.helpers import agent, crm_execute, engine_context, make_crm


def calls(sandbox: SandboxDialer) -> list[str]:
    return [c["function"] for c in sandbox.snapshot()["calls"]]


def test_apply_then_plan_again_has_no_changes(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path)
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        assert first.plan.has_changes
        report = apply_plan(ctx, first)
        assert report.outcome == "ok"
        before = len(calls(sandbox))
        again = gather_and_plan(ctx)
        assert not again.plan.has_changes
        assert calls(sandbox)[before:] == ["active_lists"]
    users = {u["agent_user"]: u for u in sandbox.snapshot()["users"]}
    assert len(users) == 24
    assert sandbox.store.check_password("1001", "pw-7000")
    lists = {x["list_id"]: x for x in sandbox.snapshot()["lists"]}
    assert set(lists) == {"1101", "1102", "1103", "1104"}
    assert lists["1104"]["active"] == "N"


def test_planning_writes_nothing(sandbox: SandboxDialer, sqlite_state: sa.Engine,
                                 tmp_path: Path) -> None:
    with engine_context(sandbox, sqlite_state, make_crm(tmp_path), tmp_path) as ctx:
        gather_and_plan(ctx)
        assert ctx.store.load_recorded().users == {}
        assert ctx.store.version() == 0
    assert calls(sandbox) == ["active_lists"]


def test_crm_edits_become_minimal_updates(sandbox: SandboxDialer, state_engine: sa.Engine,
                                          tmp_path: Path) -> None:
    crm = make_crm(tmp_path, [agent("1000"), agent("1001"), agent("1002")], lists=[])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        apply_plan(ctx, first)
        crm_execute(crm, "UPDATE agents SET full_name = 'Renamed' WHERE username = '1000'")
        crm_execute(crm, "UPDATE agents SET password = 'fresh-pass' WHERE username = '1001'")
        crm_execute(crm, "DELETE FROM agents WHERE username = '1002'")
        second = gather_and_plan(ctx)
        assert [(op.kind, op.key) for op in second.plan.ops] == [
            ("update_user", "1000"), ("update_user", "1001"), ("deactivate_user", "1002")]
        mark = len(sandbox.snapshot()["calls"])
        report = apply_plan(ctx, second)
        assert report.counts == {"updated": 2, "deactivated": 1}
        sent = sandbox.snapshot()["calls"][mark:]
        assert sent[0]["params"] == {
            "source": "test", "user": "api", "function": "update_user",
            "agent_user": "1000", "agent_full_name": "Renamed"}
        assert not gather_and_plan(ctx).plan.has_changes
    users = {u["agent_user"]: u for u in sandbox.snapshot()["users"]}
    assert users["1000"]["full_name"] == "Renamed"
    assert sandbox.store.check_password("1001", "fresh-pass")
    assert users["1002"]["active"] == "N"


def test_existing_dialer_objects_are_converged_and_adopted(
    state_engine: sa.Engine, tmp_path: Path
) -> None:
    sandbox = SandboxDialer(SandboxData(
        users=(SandboxUser("1000", agent_pass="old", full_name="By hand"),),
        lists=(SandboxList("1101", "Spring Renewals", "TESTCAMP", active="Y"),
               SandboxList("1102", "Win-back 2026", "SALES", active="N")),
    ))
    crm = make_crm(tmp_path, [agent("1000")], lists=[
        {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1},
        {"id": "1102", "name": "Win-back 2026", "campaign": "SALES", "is_active": 1}])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        plan = gather_and_plan(ctx)
        assert [(op.kind, op.key) for op in plan.plan.ops] == [
            ("adopt_list", "1101"), ("add_list", "1102"), ("add_user", "1000")]
        report = apply_plan(ctx, plan)
        # 1102 is on the dialer but inactive (absent from active_lists): add_list adopts it.
        assert report.counts == {"adopted": 2, "converged": 1}
        assert not gather_and_plan(ctx).plan.has_changes
    users = {u["agent_user"]: u for u in sandbox.snapshot()["users"]}
    assert users["1000"]["full_name"] == "Agent 1000"
    assert sandbox.store.check_password("1000", "pw-1000")


def test_user_deleted_on_dialer_is_recreated(sandbox: SandboxDialer, sqlite_state: sa.Engine,
                                             tmp_path: Path) -> None:
    crm = make_crm(tmp_path, [agent("1000")], lists=[])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        apply_plan(ctx, first)
        sandbox.store.delete_user("1000")
        crm_execute(crm, "UPDATE agents SET full_name = 'Renamed' WHERE username = '1000'")
        second = gather_and_plan(ctx)
        report = apply_plan(ctx, second)
        assert report.counts == {"recreated": 1}
    assert {u["agent_user"] for u in sandbox.snapshot()["users"]} == {"1000"}


def test_dialer_rejection_is_recorded_and_the_run_goes_on(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000", team="NIGHTS"), agent("1001")], lists=[])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx, capture_logs() as logs:
        first = gather_and_plan(ctx)
        report = apply_plan(ctx, first)
        steps = ctx.store.steps(report.run_id)
    assert report.outcome == "partial"
    assert report.counts == {"rejected": 1, "created": 1}
    assert [(s["key"], s["outcome"]) for s in steps] == [("1000", "rejected"),
                                                         ("1001", "created")]
    assert "USER GROUP DOES NOT EXIST" in steps[0]["message"]
    events = [e["event"] for e in logs if e["event"].startswith(("run_", "step_"))]
    assert events == ["run_started", "step_failed", "step_applied", "run_finished"]
    assert all(e.get("run_id") == report.run_id for e in logs if e["event"].startswith("step"))


def test_missing_permission_stops_the_run(state_engine: sa.Engine, tmp_path: Path) -> None:
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", "1234", level=7),)))
    crm = make_crm(tmp_path, [agent("1000"), agent("1001")], lists=[])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        report = apply_plan(ctx, first)
        steps = ctx.store.steps(report.run_id)
    assert report.outcome == "refused"
    assert "permission" in report.message.lower()
    assert [s["outcome"] for s in steps] == ["refused"]   # the second user was not attempted
    assert ctx.store.load_recorded().users == {}


def test_guard_refuses_mass_deactivation_without_force(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent(str(1000 + n)) for n in range(4)], lists=[])
    with engine_context(sandbox, sqlite_state, crm, tmp_path,
                        guards=GuardSettings(max_deactivations=2)) as ctx:
        first = gather_and_plan(ctx)
        apply_plan(ctx, first)
        crm_execute(crm, "DELETE FROM agents")          # a broken CRM query looks like this
        second = gather_and_plan(ctx)
        assert {b.guard for b in second.plan.breaches} == {"empty_desired", "max_deactivations"}
        with pytest.raises(PlanRefused, match="--force"):
            apply_plan(ctx, second)
    assert all(u["active"] == "Y" for u in sandbox.snapshot()["users"])


def test_resync_rebuilds_records_and_leaves_an_empty_plan(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path)
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        apply_plan(ctx, first)
        # Someone edits the dialer by hand and the state database is lost.
        sandbox.store.put_user("1001", full_name="Edited by hand", agent_pass="zzz")
        with ctx.store.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM shadow_users")
            conn.exec_driver_sql("DELETE FROM shadow_lists")
        resync = gather_and_plan(ctx, resync=True)
        report = apply_plan(ctx, resync, kind="resync")
        assert report.outcome == "ok"
        assert report.counts == {"adopted": 4, "converged": 24, "crm_rejected": 1}
        assert not gather_and_plan(ctx).plan.has_changes
    users = {u["agent_user"]: u for u in sandbox.snapshot()["users"]}
    assert users["1001"]["full_name"] == "Asha Patel"
    assert sandbox.store.check_password("1001", "pw-7000")


def test_stop_request_finishes_the_current_step_and_records_it(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000"), agent("1001"), agent("1002")], lists=[])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        report = apply_plan(ctx, first, keep_going=lambda: False)
        assert report.outcome == "stopped"
        assert "2 later step(s) not attempted" in report.message
        assert [s["key"] for s in ctx.store.steps(report.run_id)] == ["1000"]
        assert set(ctx.store.load_recorded().users) == {"1000"}
        rest = gather_and_plan(ctx)
        assert [op.key for op in rest.plan.ops] == ["1001", "1002"]
    assert {u["agent_user"] for u in sandbox.snapshot()["users"]} == {"1000"}
