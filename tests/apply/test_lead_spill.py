"""Apply sends the plan's own lead batches, kept in a temporary file: planned once, sent as
planned, in the fewest requests, the file gone when the run ends, one batch in memory at a time.
"""

from __future__ import annotations

import gc
import json
import math
import tempfile
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.apply.leads_spill import BatchSpill, SpillFailed
from reconciler.core.leads.merge import LeadBatch, LeadEvent
from reconciler.core.plan import AddLeads
from reconciler.sandbox import SandboxDialer
from tests.helpers import crm_execute, engine_context, make_crm

LISTS = [
    {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1},
    {"id": "1102", "name": "Win-back 2026", "campaign": "SALES", "is_active": 1},
]


def lead(n: int, list_id: str = "1101", **extra: Any) -> dict[str, Any]:
    row = {"id": n, "list_id": list_id, "phone": f"555{n:07d}", "first_name": "Lee",
           "last_name": f"Lead {n}", "city": "Leeds", "email": None, "postal_code": "LS1"}
    row.update(extra)
    return row


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temporary files made during the test go here, so that the test can see what is left."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    yield where


def test_apply_sends_the_planned_batches_from_the_spill(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path, private_tmp: Path
) -> None:
    leads = [lead(n, "1101" if n % 3 else "1102") for n in range(1, 41)]
    crm = make_crm(tmp_path, [], LISTS, leads)
    with engine_context(sandbox, sqlite_state, crm, tmp_path, leads_per_batch=6) as ctx:
        gathered = gather_and_plan(ctx)
        planned = [op for op in gathered.plan.ops if isinstance(op, AddLeads)]
        assert gathered.spill is not None and gathered.spill.count == len(planned)
        # Changed after the plan read the CRM: a new lead that sorts first, and another row's
        # name. Merging again would find other batches; apply sends the planned ones.
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (0, '1101', "
                         "'5550000000')")
        crm_execute(crm, "UPDATE crm_leads SET first_name = 'Changed' WHERE id = 1")
        report = apply_plan(ctx, gathered)
        assert report.outcome == "ok", report.message
        assert report.counts["lead_batches_sent"] == len(planned)
        per_list = Counter(x["list_id"] for x in leads)
        calls = [c for c in sandbox.snapshot()["calls"] if c["function"] == "add_multi_lead"]
        assert len(calls) == len(planned) == sum(math.ceil(n / 6) for n in per_list.values())
        # Every planned key once, none other; lead 1 as the plan read it.
        held = Counter(x["vendor_lead_code"] for x in sandbox.snapshot()["leads"])
        assert held == Counter(key for op in planned for key in op.keys)
        (first,) = [x for x in sandbox.snapshot()["leads"] if x["vendor_lead_code"] == "1"]
        assert first["first_name"] == "Lee"
        # The next plan sees both changes: the new lead to send, lead 1 as drift.
        again = gather_and_plan(ctx, keep_batches=False).plan
        assert [op.keys for op in again.ops if isinstance(op, AddLeads)] == [("0",)]
        assert [n.keys for n in again.notes if n.topic == "drift"] == [("1",)]
    assert gathered.spill.closed
    assert list(private_tmp.iterdir()) == []


def test_the_spill_is_removed_when_the_run_fails(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path, private_tmp: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 8)])
    sandbox.inject("drop", function="add_multi_lead")     # the first batch's answer is lost
    with engine_context(sandbox, sqlite_state, crm, tmp_path, leads_per_batch=3) as ctx:
        gathered = gather_and_plan(ctx)
        report = apply_plan(ctx, gathered)
    assert report.outcome == "failed"
    assert report.counts["lead_batches_in_doubt"] == 1
    assert gathered.spill is not None and gathered.spill.closed
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(ValueError, match="already sent"):
        next(gathered.spill.batches())


def test_a_run_cut_short_removes_the_spill_too(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 4)])

    def cut_short() -> bool:
        raise RuntimeError("the state database went away")

    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        gathered = gather_and_plan(ctx)
        with pytest.raises(RuntimeError, match="went away"):
            apply_plan(ctx, gathered, keep_going=cut_short)
    assert gathered.spill is not None and gathered.spill.closed
    assert sandbox.snapshot()["leads"] == []


def test_a_saved_plan_whose_batches_changed_is_refused_and_nothing_is_sent(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 8)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path, leads_per_batch=3) as ctx:
        saved = gather_and_plan(ctx, keep_batches=False).plan
        crm_execute(crm, "DELETE FROM crm_leads WHERE id = 2")
        fresh = gather_and_plan(ctx)         # what `apply PLANFILE` gathers again
        assert fresh.spill is not None and fresh.spill.count == 2
        report = apply_plan(ctx, fresh, saved)
        assert report.outcome == "failed"
        assert "changed since the plan" in report.message
        assert fresh.spill.closed
    assert sandbox.snapshot()["leads"] == []


def test_a_plan_only_shown_keeps_no_batches(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path, private_tmp: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 8)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path, leads_per_batch=3) as ctx:
        shown = gather_and_plan(ctx, keep_batches=False)
        assert shown.spill is None
        report = apply_plan(ctx, shown)       # without a spill, the leads are merged again
    assert report.outcome == "ok"
    assert len(sandbox.snapshot()["leads"]) == 7
    assert list(private_tmp.iterdir()) == []


def fake_batches(count: int, size: int) -> Iterator[LeadEvent]:
    for seq in range(1, count + 1):
        items = tuple((f"{seq:04d}-{n:03d}", {"list_id": "1101",
                                              "phone_number": f"55500{seq:04d}{n:03d}",
                                              "first_name": "x" * 40}, f"digest-{seq}-{n}")
                      for n in range(size))
        multi_leads = "[" + ",".join(json.dumps(fields, separators=(",", ":"))
                                     for _, fields, _ in items) + "]"
        yield LeadBatch("1101", seq, items, multi_leads)


def test_the_spill_holds_one_batch_at_a_time() -> None:
    """Written as the merge goes and read back batch by batch: no batch outlives its turn."""
    spill = BatchSpill()
    written: list[weakref.ref[LeadEvent]] = []
    for event in spill.keep(fake_batches(30, 50)):
        written.append(weakref.ref(event))
        del event
        gc.collect()
        # The spill keeps none of them (the merge's generator only the one it last gave).
        assert all(ref() is None for ref in written[:-1])
    read: list[weakref.ref[LeadBatch]] = []
    expected = fake_batches(30, 50)
    for batch in spill.batches():
        assert batch == next(expected)                  # the very batch, fields and all
        assert all(ref() is None for ref in read)       # the one before is gone
        read.append(weakref.ref(batch))
        del batch
        gc.collect()
    assert len(read) == 30
    spill.close()
    assert spill.closed


def test_the_spill_costs_no_more_memory_for_more_batches() -> None:
    import tracemalloc

    def peak(count: int) -> int:
        tracemalloc.start()
        spill = BatchSpill()
        for _ in spill.keep(fake_batches(count, 50)):
            pass
        for _ in spill.batches():
            pass
        spill.close()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(10), peak(100)
    assert large < small * 1.5       # ten times the batches, not ten times the memory


def test_leads_sent_one_by_one_come_from_the_spill_too(
    sqlite_state: sa.Engine, tmp_path: Path, private_tmp: Path
) -> None:
    vicidial = SandboxDialer(mode="vicidial")
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 8)])
    with engine_context(vicidial, sqlite_state, crm, tmp_path, dialect="vicidial",
                        read_timeout=0.001, leads_per_batch=3) as ctx:
        gathered = gather_and_plan(ctx)
        planned = [op.keys for op in gathered.plan.ops if isinstance(op, AddLeads)]
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (0, '1101', "
                         "'5550000000')")
        report = apply_plan(ctx, gathered)
        assert report.outcome == "ok", report.message
    calls = [c for c in vicidial.snapshot()["calls"] if c["function"] == "add_lead"]
    assert len(calls) == 7
    held = Counter(x["vendor_lead_code"] for x in vicidial.snapshot()["leads"])
    assert held == Counter(key for keys in planned for key in keys)
    assert gathered.spill is not None and gathered.spill.closed
    assert list(private_tmp.iterdir()) == []


def test_a_temporary_directory_that_cannot_hold_the_batches_is_named(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-dir"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 4)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx, \
            pytest.raises(SpillFailed) as caught:
        gather_and_plan(ctx)
    assert str(caught.value) == (f"cannot keep the planned lead batches in the temporary "
                                 f"directory {missing} (set TMPDIR to another): No such file "
                                 f"or directory")
    assert sandbox.snapshot()["leads"] == []
