"""Rows the dialer refuses, end to end on the sandbox in both dialects.

A refused change is recorded with its CRM row's digest and not sent again until the row changes
(or a resync); a row the dialer fails on (HTTP 500 every time, while it answers a probe) is such
a refusal and the run goes on, while a real outage still stops the run; and with VICIdial a row
its SQL would break on is rejected before anything is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.app.render import render_plan
from reconciler.apply.executor import RunReport
from reconciler.core.plan import REJECTED_EARLIER, Plan
from reconciler.sandbox import SandboxData, SandboxDialer
from reconciler.sandbox.app import DialerMode
from tests.helpers import agent, crm_execute, engine_context, make_crm

WRITES = ("add_user", "update_user", "add_list", "update_list")


@pytest.fixture(params=["elision", "vicidial"])
def mode(request: pytest.FixtureRequest) -> DialerMode:
    mode: DialerMode = request.param
    return mode


def writes(dialer: SandboxDialer, since: int = 0) -> list[tuple[str, str]]:
    """The write calls the dialer received: (function, agent_user or list_id)."""
    return [(c["function"], c["params"].get("agent_user") or c["params"].get("list_id", ""))
            for c in dialer.snapshot()["calls"][since:] if c["function"] in WRITES]


def run(ctx: Context) -> RunReport:
    return apply_plan(ctx, gather_and_plan(ctx))


def held(plan: Plan) -> list[tuple[str, str, str]]:
    return [(n.resource, n.key, n.message) for n in plan.notes if n.topic == REJECTED_EARLIER]


def test_a_refused_row_is_sent_once_and_again_only_when_its_crm_row_changes(
    mode: DialerMode, state_engine: sa.Engine, tmp_path: Path
) -> None:
    dialer = SandboxDialer(mode=mode)
    crm = make_crm(tmp_path, [agent("1000", team="NIGHTS"), agent("1001")], lists=[])
    with engine_context(dialer, state_engine, crm, tmp_path, dialect=mode) as ctx:
        # Run 1: sent, refused by the dialer, recorded with the reason.
        first = run(ctx)
        assert (first.outcome, first.counts) == ("partial", {"rejected": 1, "created": 1})
        assert writes(dialer) == [("add_user", "1000"), ("add_user", "1001")]
        refusal = ctx.store.load_recorded().rejections["users", "1000"]
        assert refusal.op == "add_user" and "USER GROUP DOES NOT EXIST" in refusal.message

        # Run 2: the same CRM row: no call for it, no change, no new rejection.
        mark = len(dialer.snapshot()["calls"])
        plan = gather_and_plan(ctx).plan
        assert not plan.has_changes
        assert held(plan) == [("users", "1000", refusal.message)]
        assert f"! user 1000: rejected by the dialer earlier: {refusal.message}" \
            in render_plan(plan)
        second = run(ctx)
        assert writes(dialer, mark) == []
        assert (second.outcome, second.counts, second.failures) == ("ok", {}, [])

        # Run 3: the row is edited in the CRM: sent again (and refused again).
        crm_execute(crm, "UPDATE agents SET full_name = 'Night Owl' WHERE username = '1000'")
        mark = len(dialer.snapshot()["calls"])
        third = run(ctx)
        assert writes(dialer, mark) == [("add_user", "1000")]
        assert third.counts == {"rejected": 1}

        # Fixed in the CRM: created, the refusal cleared, and the loop converges.
        crm_execute(crm, "UPDATE agents SET team = 'AGENTS' WHERE username = '1000'")
        assert run(ctx).counts == {"created": 1}
        assert ctx.store.load_recorded().rejections == {}
        again = gather_and_plan(ctx).plan
        assert not again.has_changes and held(again) == []
    assert {u["agent_user"] for u in dialer.snapshot()["users"]} == {"1000", "1001"}


def test_a_refused_update_waits_for_the_crm_and_resync_sends_it_again(
    mode: DialerMode, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    dialer = SandboxDialer(SandboxData(phones=("8100", "8101")), mode=mode)
    crm = make_crm(tmp_path, [agent("1000", extension="8100")], lists=[])
    with engine_context(dialer, sqlite_state, crm, tmp_path, dialect=mode) as ctx:
        assert run(ctx).counts == {"created": 1}
        crm_execute(crm, "UPDATE agents SET extension = '8199' WHERE username = '1000'")
        refused = run(ctx)
        assert refused.counts == {"rejected": 1}
        assert "PHONE LOGIN" in refused.failures[0][2]
        mark = len(dialer.snapshot()["calls"])
        assert not gather_and_plan(ctx).plan.has_changes
        assert run(ctx).counts == {} and writes(dialer, mark) == []

        resync = gather_and_plan(ctx, resync=True)           # resync holds nothing back
        assert [op.kind for op in resync.plan.ops] == ["add_user"]
        assert apply_plan(ctx, resync, kind="resync").counts == {"rejected": 1}
        assert {key for _, key in writes(dialer, mark)} == {"1000"}      # sent again

        # The CRM goes back to the phone the dialer has: nothing to send, nothing held.
        crm_execute(crm, "UPDATE agents SET extension = '8100' WHERE username = '1000'")
        plan = gather_and_plan(ctx).plan
        assert not plan.has_changes and held(plan) == []
        run(ctx)
        assert ctx.store.load_recorded().rejections == {}    # forgotten: it holds nothing


def test_a_refused_list_holds_back_its_leads_too(
    mode: DialerMode, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    dialer = SandboxDialer(mode=mode)
    leads = [{"id": n, "list_id": "1101", "phone": f"555000{n:04d}", "first_name": "Lee",
              "last_name": None, "city": None, "email": None, "postal_code": None}
             for n in (1, 2)]
    crm = make_crm(tmp_path, [], [{"id": "1101", "name": "Spring Renewals",
                                   "campaign": "NOCAMP", "is_active": 1}], leads)
    with engine_context(dialer, sqlite_state, crm, tmp_path, dialect=mode) as ctx:
        first = run(ctx)
        assert first.counts.get("rejected") == 1 and writes(dialer) == [("add_list", "1101")]
        mark = len(dialer.snapshot()["calls"])
        plan = gather_and_plan(ctx).plan
        assert [x[:2] for x in held(plan)] == [("lists", "1101")]
        assert {(r.key, r.reason) for r in plan.rejects} == {
            ("1", "list 1101 was rejected by the dialer earlier"),
            ("2", "list 1101 was rejected by the dialer earlier")}
        run(ctx)
        assert writes(dialer, mark) == [] and dialer.snapshot()["leads"] == []
        crm_execute(crm, "UPDATE calling_lists SET campaign = 'SALES' WHERE id = '1101'")
        assert run(ctx).outcome == "ok"
    assert len(dialer.snapshot()["leads"]) == 2


# --- a row the dialer fails on, and a dialer that is down -------------------------------------


def test_a_row_the_dialer_fails_on_is_rejected_and_the_run_goes_on(
    mode: DialerMode, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    dialer = SandboxDialer(mode=mode)
    crm = make_crm(tmp_path, [agent("1000"), agent("1001"), agent("1002")], lists=[])
    with engine_context(dialer, sqlite_state, crm, tmp_path, dialect=mode) as ctx:
        gathered = gather_and_plan(ctx)
        # Every attempt at the first user dies with HTTP 500; the dialer answers the rest.
        fault = dialer.inject("status", function="add_user", status=500, times=4)
        report = apply_plan(ctx, gathered)
        assert fault.fired == 4
        assert (report.outcome, report.counts) == ("partial", {"rejected": 1, "created": 2})
        (failure,) = report.failures
        assert failure[:2] == ("add_user", "1000") and "HTTP 500 on all 4 attempts" in failure[2]
        assert [c["function"] for c in dialer.snapshot()["calls"]].count("version") == 1
        plan = gather_and_plan(ctx).plan                # shown as rejected, not sent again
        assert not plan.has_changes
        assert [(r, k) for r, k, _ in held(plan)] == [("users", "1000")]
    assert {u["agent_user"] for u in dialer.snapshot()["users"]} == {"1001", "1002"}


@pytest.mark.parametrize("fault", [
    pytest.param({"kind": "status", "status": 500}, id="every-call-500"),
    pytest.param({"kind": "status", "status": 503}, id="every-call-503"),
    pytest.param({"kind": "timeout"}, id="every-call-times-out"),
])
def test_an_outage_still_stops_the_run(
    mode: DialerMode, fault: dict[str, Any], sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    dialer = SandboxDialer(mode=mode)
    crm = make_crm(tmp_path, [agent("1000"), agent("1001")], lists=[])
    with engine_context(dialer, sqlite_state, crm, tmp_path, dialect=mode) as ctx:
        gathered = gather_and_plan(ctx)
        dialer.inject(times=None, **fault)
        report = apply_plan(ctx, gathered)
        assert report.outcome == "failed"
        assert report.message.startswith("dialer unavailable: add_user:")
        assert report.message.endswith("1 later step(s) not attempted")
        assert ctx.store.load_recorded().rejections == {}   # nothing is held back
        dialer.clear_faults()
        assert [op.key for op in gather_and_plan(ctx).plan.ops] == ["1000", "1001"]


def test_a_row_vicidials_sql_breaks_on_is_rejected_before_sending(
    sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    dialer = SandboxDialer(mode="vicidial")
    crm = make_crm(tmp_path, [agent("1000", email="pat.o'brien@example.com"), agent("1001"),
                              agent("1002", email="ok@example.com")], lists=[])
    with engine_context(dialer, sqlite_state, crm, tmp_path, dialect="vicidial") as ctx:
        gathered = gather_and_plan(ctx)
        (reject,) = gathered.plan.rejects
        assert (reject.resource, reject.key, reject.field, reject.row) == ("users", "1000",
                                                                           "email", 1)
        assert reject.reason.startswith("must not contain '") and "HTTP 500" in reject.reason
        report = apply_plan(ctx, gathered)
        assert (report.outcome, report.counts) == ("ok", {"created": 2, "crm_rejected": 1})
    assert writes(dialer) == [("add_user", "1001"), ("add_user", "1002")]
