"""One apply path: lead batches are steps of the executor like any other, numbered by the same
counter, asked about by the same stop and lease checks, counted among the steps not attempted
when a run stops. Against the sandbox dialer, for both ways of sending leads."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer
from tests.helpers import agent, engine_context, make_crm

LEADS = democrm.sample_leads(60, ("1101",))     # three batches of 20


def stop_at_call(n: int) -> tuple[list[int], object]:
    """A keep_going that says stop the n-th time it is asked; the list counts the questions."""
    asked: list[int] = []

    def keep_going() -> bool:
        asked.append(1)
        return len(asked) < n

    return asked, keep_going


# One by one, the sender also asks after each lead: there, stop before the first batch.
@pytest.mark.parametrize(("dialect", "stop_at"), [
    ("elision", 1), ("elision", 3), ("elision", 4), ("elision", 5),
    ("vicidial", 1), ("vicidial", 3),
])
def test_a_stop_counts_the_lead_batches_among_the_steps_not_attempted(
    dialect: str, stop_at: int, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    sandbox = SandboxDialer(mode="vicidial") if dialect == "vicidial" else SandboxDialer()
    crm = make_crm(tmp_path, [agent("1000"), agent("1001")], lists=democrm.LISTS[:1],
                   leads=LEADS)
    with engine_context(sandbox, sqlite_state, crm, tmp_path, dialect=dialect,
                        leads_per_batch=20, lead_concurrency=1) as ctx:
        gathered = gather_and_plan(ctx)
        kinds = [op.kind for op in gathered.plan.ops]
        assert kinds == ["add_list", "add_user", "add_user", *["add_leads"] * 3]
        asked, keep_going = stop_at_call(stop_at)
        report = apply_plan(ctx, gathered, keep_going=keep_going)   # type: ignore[arg-type]
        steps = ctx.store.steps(report.run_id)
    # The first step goes without asking; every later one is asked about once, before it.
    assert len(asked) == stop_at and len(steps) == stop_at
    assert [s["op"] for s in steps] == kinds[:stop_at]
    assert [s["seq"] for s in steps] == list(range(1, stop_at + 1))
    assert report.outcome == "stopped"
    assert report.message == (f"stopped on request; {len(kinds) - stop_at} later step(s) "
                              f"not attempted")
    sent = sum(s["op"] == "add_leads" for s in steps)
    assert len(sandbox.snapshot()["leads"]) == 20 * sent


@pytest.mark.parametrize("dialect", ["elision", "vicidial"])
def test_a_plan_of_leads_alone_asks_before_its_first_batch(
    dialect: str, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    """Reading a batch from the CRM may take a while: a stop asked meanwhile sends nothing."""
    sandbox = SandboxDialer(mode="vicidial") if dialect == "vicidial" else SandboxDialer()
    crm = make_crm(tmp_path, [], lists=democrm.LISTS[:1], leads=LEADS)
    with engine_context(sandbox, sqlite_state, crm, tmp_path, dialect=dialect,
                        leads_per_batch=20, lead_concurrency=1) as ctx:
        first = apply_plan(ctx, gather_and_plan(ctx), keep_going=lambda: False)
        assert [s["op"] for s in ctx.store.steps(first.run_id)] == ["add_list"]
        leads_only = gather_and_plan(ctx)
        assert [op.kind for op in leads_only.plan.ops] == ["add_leads"] * 3
        report = apply_plan(ctx, leads_only, keep_going=lambda: False)
        assert ctx.store.steps(report.run_id) == []
        assert (report.outcome, report.message) == (
            "stopped", "stopped on request; 3 later step(s) not attempted")
        assert sandbox.snapshot()["leads"] == []
        done = apply_plan(ctx, gather_and_plan(ctx))
    assert (done.outcome, done.counts) == ("ok", {"lead_batches_sent": 3})
    assert len(sandbox.snapshot()["leads"]) == 60
