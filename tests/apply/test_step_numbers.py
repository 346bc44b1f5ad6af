"""Step numbers: one counter per run, shared by the executor and the lead senders, and the
database refuses a second step with the same number in one run."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.schema import run_steps, runs
from reconciler.adapters.state.store import now
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer
from tests.helpers import agent, engine_context, make_crm

USERS = 1001                      # past the 1,000 where lead steps used to be numbered from
LEADS = 60                        # three batches of 20


@pytest.mark.parametrize("dialect", ["elision", "vicidial"])
def test_every_step_of_a_run_has_its_own_number_in_order(
    dialect: str, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    sandbox = SandboxDialer(mode="vicidial") if dialect == "vicidial" else SandboxDialer()
    crm = make_crm(tmp_path, [agent(str(5000 + n)) for n in range(USERS)],
                   lists=democrm.LISTS[:1], leads=democrm.sample_leads(LEADS, ("1101",)))
    with engine_context(sandbox, sqlite_state, crm, tmp_path, dialect=dialect,
                        leads_per_batch=20, lead_concurrency=1) as ctx:
        report = apply_plan(ctx, gather_and_plan(ctx))
        steps = ctx.store.steps(report.run_id)
    assert report.outcome == "ok", report.message
    ops = [s["op"] for s in steps]
    assert ops.count("add_user") == USERS and ops.count("add_leads") == LEADS // 20
    # Unique and gapless, in the order the steps were taken: the lead batches come last.
    assert [s["seq"] for s in steps] == list(range(1, len(steps) + 1))
    assert ops[-3:] == ["add_leads"] * 3
    assert [s["id"] for s in steps] == sorted(s["id"] for s in steps)


def test_the_database_refuses_two_steps_with_one_number(state_engine: sa.Engine) -> None:
    with state_engine.begin() as conn:
        conn.execute(sa.insert(runs).values(run_id="r1", target="default", kind="apply",
                                            started_at=now()))
        conn.execute(sa.insert(run_steps).values(run_id="r1", seq=1001, op="add_user", key="1",
                                                 outcome="created", duration_ms=1, at=now()))
    with pytest.raises(sa.exc.IntegrityError), state_engine.begin() as conn:
        conn.execute(sa.insert(run_steps).values(run_id="r1", seq=1001, op="add_leads",
                                                 key="1101/1", outcome="sent", duration_ms=1,
                                                 at=now()))


def test_upgrading_an_existing_database_renumbers_clashing_steps_and_adds_the_constraint(
    database_url: str,
) -> None:
    engine = db.open_engine(database_url)
    try:
        db.upgrade(engine, "0001_baseline")
        with engine.begin() as conn:
            conn.execute(sa.insert(runs), [
                {"run_id": run_id, "target": "default", "kind": "apply", "started_at": now()}
                for run_id in ("clashing", "clean")])
            # What the old numbering wrote: the executor's steps from 1, lead steps from 1001.
            conn.execute(sa.insert(run_steps), [
                {"run_id": run_id, "seq": seq, "op": op, "key": key, "outcome": "ok",
                 "duration_ms": 1, "at": now()}
                for run_id, seq, op, key in (
                    ("clashing", 1, "add_list", "1101"), ("clashing", 1000, "add_user", "a"),
                    ("clashing", 1001, "add_user", "b"), ("clashing", 1001, "add_leads", "1101/1"),
                    ("clashing", 1002, "add_leads", "1101/2"),
                    ("clean", 1, "add_user", "c"), ("clean", 1001, "add_leads", "1101/1"))])
        db.upgrade(engine)

        unique = {tuple(u["column_names"]) for u in sa.inspect(engine).get_unique_constraints(
            "run_steps")}
        assert ("run_id", "seq") in unique
        with engine.connect() as conn:
            numbered = [tuple(row) for row in conn.execute(
                sa.select(run_steps.c.run_id, run_steps.c.seq, run_steps.c.key)
                .order_by(run_steps.c.run_id, run_steps.c.id))]
        # The run that clashed is numbered again in the order its steps were written; a run
        # that did not clash keeps its numbers.
        assert numbered == [
            ("clashing", 1, "1101"), ("clashing", 2, "a"), ("clashing", 3, "b"),
            ("clashing", 4, "1101/1"), ("clashing", 5, "1101/2"),
            ("clean", 1, "c"), ("clean", 1001, "1101/1")]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(run_steps).values(run_id="clean", seq=1, op="add_user",
                                                     key="d", outcome="ok", duration_ms=1,
                                                     at=now()))
    finally:
        engine.dispose()
