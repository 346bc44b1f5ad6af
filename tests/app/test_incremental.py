"""Incremental lead passes: only the rows changed past the mark are read, with full passes
that see deletions; the mark moves only after a run that finished ok (docs/incremental.md).

Every case runs on SQLite and PostgreSQL, for integer, timestamp and text change columns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import marks
from reconciler.adapters.state.leads import LeadBook
from reconciler.adapters.state.schema import sync_marks
from reconciler.app import incremental
from reconciler.app.engine import Context, apply_plan, gather_and_plan, stale_reasons
from reconciler.app.render import render_plan
from reconciler.config.settings import DaemonSettings
from reconciler.config.spec import load_spec
from reconciler.core import plan as plan_data
from reconciler.core.leads.passes import SyncMark, choose_pass
from reconciler.core.plan import FULL, INCREMENTAL, AddLeads, Plan
from reconciler.daemon.metrics import Stats
from reconciler.daemon.runner import Runner
from reconciler.errors import LeaseLost
from reconciler.sandbox import SandboxDialer
from tests.app.incremental_crm import (
    change_value,
    crm_sql,
    crm_with_change_column,
    incremental_spec,
    write_leads,
)
from tests.app.test_leads import dialer_leads, lead
from tests.helpers import engine_context


@pytest.fixture(params=["integer", "timestamp", "text"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def crm_url(database_url: str, tmp_path: Path, kind: str) -> str:
    url = f"sqlite:///{tmp_path / 'crm.db'}" if database_url.startswith("sqlite") \
        else database_url
    return crm_with_change_column(url, kind)


@pytest.fixture
def ctx(sandbox: SandboxDialer, state_engine: sa.Engine, crm_url: str, tmp_path: Path
        ) -> Iterator[Context]:
    with engine_context(sandbox, state_engine, crm_url, tmp_path,
                        spec_path=incremental_spec(tmp_path)) as context:
        yield context


def row(key: int, at: int | None, kind: str, **extra: object) -> dict[str, object]:
    return {**lead(key), "updated_at": change_value(kind, at), **extra}


def counts(plan: Plan) -> dict[str, int]:
    found: dict[str, int] = {}
    for _, state, n in plan.lead_counts:
        found[state] = found.get(state, 0) + n
    return found


def sent_keys(plan: Plan) -> list[str]:
    return sorted((k for op in plan.ops if isinstance(op, AddLeads) for k in op.keys), key=int)


def test_a_first_full_pass_then_only_changed_rows_are_read(
        ctx: Context, crm_url: str, kind: str, sandbox: SandboxDialer) -> None:
    write_leads(crm_url, [row(n, n, kind) for n in range(1, 31)])
    first = gather_and_plan(ctx)
    assert first.plan.lead_pass == plan_data.LeadPass(FULL, reason="no mark yet")
    assert len(sent_keys(first.plan)) == 30
    assert apply_plan(ctx, first).outcome == "ok"

    quiet = gather_and_plan(ctx).plan
    assert quiet.lead_pass is not None and quiet.lead_pass.kind == INCREMENTAL
    if kind != "timestamp":              # a timestamp's text depends on the backend
        assert quiet.lead_pass.since == str(change_value(kind, 30))
    assert quiet.ops == () and counts(quiet) == {}        # no row read at all

    # A touch without a data change is read, and is no drift; a new lead is sent; an edit is
    # drift; a deleted lead is not "gone" in an incremental pass.
    write_leads(crm_url, [row(3, 40, kind), row(31, 41, kind),
                          row(4, 42, kind, city="York")])
    crm_sql(crm_url, "DELETE FROM crm_leads WHERE id = 5")
    changed = gather_and_plan(ctx)
    assert sent_keys(changed.plan) == ["31"]
    assert counts(changed.plan) == {"sent": 2, "to_send": 1}
    assert [n.keys for n in changed.plan.notes if n.topic == "drift"] == [("4",)]
    assert "incremental pass" in render_plan(changed.plan)
    assert apply_plan(ctx, changed).outcome == "ok"
    assert all(n == 1 for n in dialer_leads(sandbox).values())
    assert len(dialer_leads(sandbox)) == 31

    full = gather_and_plan(ctx, full=True).plan
    assert full.lead_pass == plan_data.LeadPass(FULL, reason="--full was asked for")
    assert counts(full)["gone"] == 1 and full.ops == ()


def test_the_mark_moves_only_after_a_run_that_finished_ok(
        ctx: Context, crm_url: str, kind: str) -> None:
    store = ctx.store
    write_leads(crm_url, [row(n, n, kind) for n in range(1, 5)])
    gathered = gather_and_plan(ctx)
    assert marks.load(store.engine, store.target) is None          # a plan writes no mark
    stopped = apply_plan(ctx, gathered, keep_going=lambda: False)
    assert stopped.outcome == "stopped"
    assert marks.load(store.engine, store.target) is None          # nor a stopped run
    assert gather_and_plan(ctx).plan.lead_pass == plan_data.LeadPass(FULL, reason="no mark yet")

    assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
    kept = marks.load(store.engine, store.target)
    assert kept is not None and kept.mark is not None and kept.full_pass_at is not None
    assert kept.mark_type == ("timestamp" if kind == "timestamp" and
                              ctx.crm.dialect.name == "postgresql" else
                              "text" if kind != "integer" else "integer")

    write_leads(crm_url, [row(9, 9, kind)])
    incremental = gather_and_plan(ctx)
    assert incremental.plan.lead_pass is not None
    assert incremental.plan.lead_pass.kind == INCREMENTAL
    assert apply_plan(ctx, incremental).outcome == "ok"
    moved = marks.load(store.engine, store.target)
    assert moved is not None and moved.mark != kept.mark
    assert moved.full_pass_at == kept.full_pass_at          # an incremental pass is not full


def test_a_mark_is_kept_when_the_lease_was_lost_before_it_was_saved(
        ctx: Context, crm_url: str, kind: str) -> None:
    write_leads(crm_url, [row(1, 1, kind)])
    gathered = gather_and_plan(ctx)

    def lost(conn: sa.Connection) -> None:
        raise LeaseLost("taken over by another process")
    incremental.advance(ctx.store.fenced(lost), gathered.lead_read)      # logged, not raised
    assert marks.load(ctx.store.engine, ctx.store.target) is None
    incremental.advance(ctx.store, gathered.lead_read, "partial")
    assert marks.load(ctx.store.engine, ctx.store.target) is None
    incremental.advance(ctx.store, gathered.lead_read)
    assert marks.load(ctx.store.engine, ctx.store.target) is not None


def test_a_saved_plan_is_refused_when_gathered_as_another_kind_of_pass(
        ctx: Context, crm_url: str, kind: str) -> None:
    write_leads(crm_url, [row(n, n, kind) for n in range(1, 4)])
    apply_plan(ctx, gather_and_plan(ctx))
    saved = plan_data.from_json(plan_data.to_json(gather_and_plan(ctx).plan))
    assert saved.basis.lead_pass.startswith("incremental since ")
    assert saved.lead_pass is not None and saved.lead_pass.kind == INCREMENTAL
    assert stale_reasons(saved.basis, gather_and_plan(ctx).plan.basis) == []
    reasons = stale_reasons(saved.basis, gather_and_plan(ctx, full=True).plan.basis)
    assert any("full pass vs an incremental one" in reason for reason in reasons)


def test_forgotten_leads_make_the_next_pass_full(ctx: Context, crm_url: str, kind: str) -> None:
    write_leads(crm_url, [row(n, n, kind) for n in range(1, 4)])
    apply_plan(ctx, gather_and_plan(ctx))
    book = LeadBook(ctx.store)
    batch = book.record_intent("r", "1101", [("99", {}, "d")])
    book.forget_unsent(batch, "never left")
    chosen = gather_and_plan(ctx).plan.lead_pass
    assert chosen is not None and chosen.kind == FULL and "forgotten" in chosen.reason
    apply_plan(ctx, gather_and_plan(ctx))
    after = gather_and_plan(ctx).plan.lead_pass
    assert after is not None and after.kind == INCREMENTAL


def test_a_mark_of_another_type_makes_the_pass_full(ctx: Context, crm_url: str, kind: str
                                                    ) -> None:
    write_leads(crm_url, [row(1, 1, kind)])
    apply_plan(ctx, gather_and_plan(ctx))
    with ctx.store.engine.begin() as conn:
        conn.execute(sa.update(sync_marks).values(mark_type="decimal", mark="1"))
    chosen = gather_and_plan(ctx).plan.lead_pass
    assert chosen is not None and chosen.kind == FULL and "the mark is decimal" in chosen.reason


def test_keep_first_holds_in_an_incremental_pass(ctx: Context, crm_url: str, kind: str) -> None:
    write_leads(crm_url, [row(10, 1, kind, phone="5550000010"),
                          row(20, 2, kind, phone="5550000020")])
    apply_plan(ctx, gather_and_plan(ctx))
    # New: 5 shares the phone of 10 (sent, and first in key order: "10" < "5"); 30 and 40 share
    # one, 30 comes first; 15 comes before 20 but 20 holds the phone on the dialer already.
    write_leads(crm_url, [row(5, 3, kind, phone="555-000-0010"),
                          row(30, 4, kind, phone="5550000030"),
                          row(40, 5, kind, phone="5550000030"),
                          row(15, 6, kind, phone="5550000020")])
    plan = gather_and_plan(ctx).plan
    assert plan.lead_pass is not None and plan.lead_pass.kind == INCREMENTAL
    assert sent_keys(plan) == ["30"]
    reasons = {r.key: r.reason for r in plan.rejects if r.field == "phone_number"}
    assert "lead 10 has it and comes first" in reasons["5"]
    assert "lead 30 has it and comes first" in reasons["40"]
    assert "lead 20 has it on the dialer already" in reasons["15"]
    assert set(reasons) == {"5", "40", "15"}
    full = gather_and_plan(ctx, full=True).plan
    assert sent_keys(full) == ["30"]
    assert {r.key: r.reason for r in full.rejects if r.field == "phone_number"} == reasons
    apply_plan(ctx, gather_and_plan(ctx))
    # Another phone of 10's, new and first in key order: 10 holds it on the dialer already.
    write_leads(crm_url, [row(1, 7, kind, phone="5550000010")])
    held = {r.key: r.reason for r in gather_and_plan(ctx).plan.rejects}
    assert "lead 10 has it on the dialer already" in held["1"]


def test_rows_without_a_change_value_are_read_by_full_passes_only(
        ctx: Context, crm_url: str, kind: str) -> None:
    write_leads(crm_url, [row(1, 1, kind)])
    apply_plan(ctx, gather_and_plan(ctx))
    write_leads(crm_url, [row(2, None, kind)])
    assert sent_keys(gather_and_plan(ctx).plan) == []
    assert sent_keys(gather_and_plan(ctx, full=True).plan) == ["2"]


def test_a_full_pass_is_due_once_full_pass_every_has_passed() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    mark = SyncMark("5", "integer", now - timedelta(seconds=100))
    assert choose_pass(mark, 101, now).kind == INCREMENTAL
    due = choose_pass(mark, 100, now)
    assert due.kind == FULL and "full_pass_every = 100" in due.reason
    assert choose_pass(mark, 101, now, resync=True).kind == FULL
    assert choose_pass(mark, 101, now, settled=True).kind == FULL
    assert choose_pass(SyncMark(None, None, now), 101, now).kind == FULL
    forgotten = SyncMark("5", "integer", now - timedelta(seconds=9), now - timedelta(seconds=1))
    assert "forgotten" in choose_pass(forgotten, 101, now).reason


def test_a_plan_without_a_change_column_is_as_before(tmp_path: Path) -> None:
    plan = Plan(basis=plan_data.Basis("t", 0, "s", "d", "o"))
    document = plan_data.to_json(plan)
    assert "lead_pass" not in document and "lead_pass" not in document["basis"]
    assert load_spec(incremental_spec(tmp_path)).leads is not None


def test_the_daemon_runs_incremental_passes_between_full_ones(
        ctx: Context, crm_url: str, kind: str, sandbox: SandboxDialer) -> None:
    runner = Runner(ctx, DaemonSettings(lease_ttl=60.0), threading.Event(),
                    Stats(ctx.settings.dialer.target))
    write_leads(crm_url, [row(n, n, kind) for n in range(1, 4)])
    assert runner.run() == "ok"
    first = marks.load(ctx.store.engine, ctx.store.target)
    assert first is not None and first.full_pass_at is not None
    write_leads(crm_url, [row(4, 4, kind)])
    assert runner.run() == "ok"
    second = marks.load(ctx.store.engine, ctx.store.target)
    assert second is not None and second.full_pass_at == first.full_pass_at   # incremental
    assert second.mark != first.mark
    assert sorted(dialer_leads(sandbox).values()) == [1, 1, 1, 1]
