"""Leads reach their dialer list exactly once, through crashes, lost answers and bad rows."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state.leads import LeadBook
from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.core.plan import AddLeads, AddList
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxData, SandboxDialer, SandboxList
from tests.helpers import EXAMPLE_SPEC, crm_execute, engine_context, make_crm

LISTS = [
    {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1},
    {"id": "1102", "name": "Win-back 2026", "campaign": "SALES", "is_active": 1},
]


def lead(lead_id: int, list_id: str = "1101", phone: str | None = None, **extra: Any
         ) -> dict[str, Any]:
    row = {"id": lead_id, "list_id": list_id, "phone": phone or f"555{lead_id:07d}",
           "first_name": "Lee", "last_name": f"Lead {lead_id}", "city": "Leeds", "email": None,
           "postal_code": "LS1"}
    row.update(extra)
    return row


def add_multi_lead_calls(sandbox: SandboxDialer) -> int:
    return sum(c["function"] == "add_multi_lead" for c in sandbox.snapshot()["calls"])


def dialer_leads(sandbox: SandboxDialer) -> Counter[tuple[str, str]]:
    """(list_id, vendor_lead_code) -> how many times the dialer holds it."""
    return Counter((x["list_id"], x.get("vendor_lead_code", ""))
                   for x in sandbox.snapshot()["leads"])


def run(ctx: Context, **kwargs: Any) -> Any:
    gathered = gather_and_plan(ctx)
    return gathered, apply_plan(ctx, gathered, **kwargs)


def test_new_list_and_its_leads_in_one_plan(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    leads = [lead(n, "1101" if n % 3 else "1102") for n in range(1, 61)]
    crm = make_crm(tmp_path, [], LISTS, leads)
    with engine_context(sandbox, state_engine, crm, tmp_path, leads_per_batch=25) as ctx:
        gathered, report = run(ctx)
        kinds = [op.kind for op in gathered.plan.ops]
        assert kinds[:2] == ["add_list", "add_list"] and set(kinds[2:]) == {"add_leads"}
        per_list = Counter(x["list_id"] for x in leads)
        assert add_multi_lead_calls(sandbox) == sum(math.ceil(n / 25) for n in per_list.values())
        assert report.outcome == "ok"
        again = gather_and_plan(ctx)
        assert not again.plan.has_changes
        assert ("1101", "sent", 40) in again.plan.lead_counts
    held = dialer_leads(sandbox)
    assert sum(held.values()) == 60 and max(held.values()) == 1
    assert held[("1102", "3")] == 1                    # vendor_lead_code carries the CRM key


def test_per_lead_failures_are_recorded_while_the_rest_succeed(
    state_engine: sa.Engine, tmp_path: Path
) -> None:
    sandbox = SandboxDialer(SandboxData(lists=(
        SandboxList("1101", "Spring Renewals", "TESTCAMP", active="Y"),
        SandboxList("1102", "Win-back 2026", "SALES", active="Y"))))
    crm = make_crm(tmp_path, [], LISTS, [lead(1), lead(2, "1102"), lead(3)])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        first = gather_and_plan(ctx)
        sandbox.store.delete_list("1102")             # gone from the dialer after planning
        report = apply_plan(ctx, first)
        assert report.outcome == "partial"
        statuses = dict(ctx.store.engine.connect().execute(
            sa.text("SELECT lead_key, status FROM shadow_leads")).all())
    assert statuses == {"1": "sent", "2": "rejected", "3": "sent"}
    assert set(dialer_leads(sandbox)) == {("1101", "1"), ("1101", "3")}


def test_dropped_connection_after_commit_leaves_batch_in_doubt_and_sends_nothing_twice(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 11)])
    sandbox.inject("drop", function="add_multi_lead")    # the dialer stores it, the answer is lost
    with engine_context(sandbox, state_engine, crm, tmp_path, leads_per_batch=4) as ctx:
        _, report = run(ctx)
        assert report.outcome == "failed"
        book = LeadBook(ctx.store)
        (doubtful,) = book.in_doubt_batches()
        assert doubtful["lead_count"] == 4
        for _ in range(2):                             # later runs send the rest, never those 4
            run(ctx)
        assert add_multi_lead_calls(sandbox) == 3
        plan = gather_and_plan(ctx).plan
        assert not plan.has_changes
        assert ("1101", "in_doubt", 4) in plan.lead_counts
    held = dialer_leads(sandbox)
    assert sum(held.values()) == 10 and max(held.values()) == 1


@pytest.mark.parametrize("sent", [True, False], ids=["resolved-sent", "resolved-not-sent"])
def test_resolve_settles_a_batch_both_ways(
    sent: bool, sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 4)])
    # A 503 after the request left: for add_multi_lead the outcome is unknown.
    sandbox.inject("status", function="add_multi_lead", status=503)
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        run(ctx)
        book = LeadBook(ctx.store)
        (batch,) = book.in_doubt_batches()
        assert sum(dialer_leads(sandbox).values()) == 0   # the 503 came before committing
        assert book.resolve(batch["batch_id"], sent=sent) == 3
        assert book.in_doubt_batches() == []
        after = gather_and_plan(ctx).plan
        if sent:
            assert not after.has_changes
        else:
            assert [op.kind for op in after.ops] == ["add_leads"]
            apply_plan(ctx, gather_and_plan(ctx))
    assert sum(dialer_leads(sandbox).values()) == (0 if sent else 3)


def test_interrupted_batch_is_settled_in_doubt_by_the_next_apply(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(1), lead(2)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        book = LeadBook(ctx.store)
        # A process recorded its intent and died before the answer was recorded.
        book.record_intent("dead-run", "1101", [("1", {}, "digest")])
        _, report = run(ctx)
        assert report.outcome == "ok"
        assert [b["state"] for b in book.in_doubt_batches()] == ["in_doubt"]
    assert set(dialer_leads(sandbox)) == {("1101", "2")}


def test_changed_or_moved_leads_are_drift_never_resent(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(1), lead(2), lead(3)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        run(ctx)
        crm_execute(crm, "UPDATE crm_leads SET city = 'York' WHERE id = 1")
        crm_execute(crm, "UPDATE crm_leads SET list_id = '1102' WHERE id = 2")
        plan = gather_and_plan(ctx).plan
    assert not plan.has_changes
    notes = {(n.key, n.message.split(" ", 1)[1][:30]): n.keys for n in plan.notes}
    assert notes == {("1101", "lead(s) changed in the CRM aft"): ("1",),
                     ("1102", "lead(s) moved to another list "): ("2",)}


def test_bad_leads_are_rejected_by_row_and_the_rest_go(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    lists = [*LISTS, {"id": "1105", "name": "Bad", "campaign": "TESTCAMP", "is_active": 1}]
    leads = [lead(1, phone="+1 (555) 000-0001"), *democrm.BAD_LEADS, lead(5, "1105"),
             lead(6), lead(6, "1102")]
    crm = make_crm(tmp_path, [], lists, leads)
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        gathered, report = run(ctx)
    assert report.outcome == "ok"
    rejects = {(r.key, r.field): r.reason for r in gathered.plan.rejects if r.resource == "leads"}
    assert rejects == {
        ("6", "lead_key"): "duplicate key: 2 CRM rows share it",
        ("90001", "phone_number"): "must be 6-18 digits",
        ("90002", "phone_number"): "must be 6-18 digits",
        ("90003", "list_id"): "list 9999 is neither on the dialer nor in the CRM",
        ("90004", "phone_number"): "duplicate phone in list 1101: lead 1 has it and comes first",
        ("5", "list_id"): "list 1105 is rejected in the CRM (list_name must be 6-30 characters)",
    }
    assert set(dialer_leads(sandbox)) == {("1101", "1")}
    assert dialer_phone(sandbox, "1") == "15550000001"


def dialer_phone(sandbox: SandboxDialer, key: str) -> str:
    (found,) = [x["phone_number"] for x in sandbox.snapshot()["leads"]
                if x.get("vendor_lead_code") == key]
    return str(found)


def test_leads_wait_when_their_list_cannot_be_created(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    lists = [{"id": "1101", "name": "Nowhere list", "campaign": "NOCAMP", "is_active": 1}]
    crm = make_crm(tmp_path, [], lists, [lead(1), lead(2)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        gathered, report = run(ctx)
        assert isinstance(gathered.plan.ops[0], AddList)
        assert isinstance(gathered.plan.ops[1], AddLeads)
        steps = ctx.store.steps(report.run_id)
    assert [(s["op"], s["outcome"]) for s in steps] == [("add_list", "rejected"),
                                                        ("add_leads", "skipped")]
    assert "campaign does not exist" in steps[1]["message"]
    assert sandbox.snapshot()["leads"] == []


def test_a_saved_plan_sends_exactly_the_planned_batches(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 8)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path, leads_per_batch=3) as ctx:
        gathered = gather_and_plan(ctx)
        planned = [op.keys for op in gathered.plan.ops if isinstance(op, AddLeads)]
        assert planned == [("1", "2", "3"), ("4", "5", "6"), ("7",)]
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (0, '1101', "
                         "'5550000000')")
        report = apply_plan(ctx, gather_and_plan(ctx), gathered.plan)
        assert report.outcome == "failed"
        assert "changed since the plan" in report.message
    assert sandbox.snapshot()["leads"] == []


def test_shared_phones_are_found_by_the_database_alike_on_both_backends(
    database_url: str, tmp_path: Path
) -> None:
    from reconciler.adapters.crm.shared_phones import shared_phones, shared_phones_by_reading
    from reconciler.config.spec import load_spec

    engine = democrm.create_crm(database_url, [], LISTS, [
        lead(7, phone="+1 (555) 000-0001"), lead(12, phone="1 555\t000\xa00001\r\n"),
        lead(3, "1102", phone="15550000001"), lead(4, phone="5550000099")])
    resource = load_spec(EXAMPLE_SPEC).leads
    assert resource is not None
    # Key order is text order: "12" comes before "7".
    assert shared_phones(engine, resource) == {("1101", "15550000001"): "12"}
    assert shared_phones_by_reading(engine, resource) == shared_phones(engine, resource)
    engine.dispose()


def test_keep_first_works_when_the_phone_is_mapped(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    """A default on the phone: reconciler finds the shared phones itself, not the database."""
    spec = tmp_path / "spec.toml"
    spec.write_text(EXAMPLE_SPEC.read_text().replace(
        'phone_number = "phone"', 'phone_number = { column = "phone", default = "5550000000" }'))
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(1, phone="555-000-0042"),
                                              lead(2, phone="5550000042"), lead(3)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path, spec_path=spec) as ctx:
        gathered = gather_and_plan(ctx)
    assert [(r.key, r.field) for r in gathered.plan.rejects] == [("2", "phone_number")]
    assert [op.keys for op in gathered.plan.ops if isinstance(op, AddLeads)] == [("1", "3")]
