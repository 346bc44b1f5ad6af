"""Lead batches sent while the bookkeeping of the one before is done (apply/leads_batches.py).

Against the sandbox dialer, on SQLite and PostgreSQL: one request at a time, in plan order;
while a batch is on its way only it may be on the dialer unrecorded (the one before it answered,
the one after it `queued`); an intent committed ahead is forgotten when the batch before it
ends in doubt or the run stops; every step recorded in order.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from reconciler.adapters.state.leads import QUEUED, LeadBook, LeadResult
from reconciler.adapters.state.schema import lead_batches, run_steps, shadow_leads
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.core.plan import AddLeads
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.wire import Answer, Incoming, parse_params
from tests.helpers import HookedSandbox, engine_context, make_crm

BATCH = 20
LEADS = democrm.sample_leads(4 * BATCH, ("1101",))


def batch_states(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(sa.select(lead_batches.c.state)).scalars())


def lead_statuses(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(sa.select(shadow_leads.c.status)).scalars())


def steps_as_committed(engine: sa.Engine, run_id: str) -> list[tuple[int, str, str]]:
    """(seq, op, outcome) in the order the steps were committed."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(   # type: ignore[misc]
            sa.select(run_steps.c.seq, run_steps.c.op, run_steps.c.outcome)
            .where(run_steps.c.run_id == run_id).order_by(run_steps.c.id))]


def test_an_intent_committed_ahead_is_forgotten_when_the_batch_before_it_is_in_doubt(
    state_engine: sa.Engine, tmp_path: Path
) -> None:
    sandbox: HookedSandbox
    # While the first batch is answered: lose the answer of the next one (it lands all the same).
    sandbox = HookedSandbox("add_multi_lead", 1,
                            lambda: sandbox.inject("drop", function="add_multi_lead"))
    crm = make_crm(tmp_path, [], lists=democrm.LISTS[:1], leads=LEADS)
    with engine_context(sandbox, state_engine, crm, tmp_path, leads_per_batch=BATCH) as ctx:
        report = apply_plan(ctx, gather_and_plan(ctx))
        assert report.outcome == "failed"
        assert steps_as_committed(state_engine, report.run_id) == [
            (1, "add_list", "created"), (2, "add_leads", "sent"), (3, "add_leads", "in_doubt")]
        # The third batch's intent was committed while the second was on its way: forgotten.
        assert batch_states(state_engine) == {"answered": 1, "in_doubt": 1, "not_sent": 1}
        assert lead_statuses(state_engine) == {"sent": BATCH, "in_doubt": BATCH}
        assert len(sandbox.snapshot()["leads"]) == 2 * BATCH

        again = apply_plan(ctx, gather_and_plan(ctx))
    assert (again.outcome, again.counts) == ("ok", {"lead_batches_sent": 2})
    assert lead_statuses(state_engine) == {"sent": 3 * BATCH, "in_doubt": BATCH}
    codes = [lead["vendor_lead_code"] for lead in sandbox.snapshot()["leads"]]
    assert len(codes) == len(set(codes)) == len(LEADS)      # the one in doubt is not resent


def test_a_stop_forgets_the_intent_committed_ahead(state_engine: sa.Engine,
                                                   tmp_path: Path) -> None:
    sandbox = SandboxDialer()
    crm = make_crm(tmp_path, [], lists=democrm.LISTS[:1], leads=LEADS)
    asked: list[int] = []

    def keep_going() -> bool:       # asked before the first batch, then before the second
        asked.append(1)
        return len(asked) < 2

    with engine_context(sandbox, state_engine, crm, tmp_path, leads_per_batch=BATCH) as ctx:
        report = apply_plan(ctx, gather_and_plan(ctx), keep_going=keep_going)
    assert (report.outcome, report.counts) == ("stopped", {"created": 1, "lead_batches_sent": 1})
    assert steps_as_committed(state_engine, report.run_id) == [
        (1, "add_list", "created"), (2, "add_leads", "sent")]
    assert batch_states(state_engine) == {"answered": 1, "not_sent": 1}
    assert lead_statuses(state_engine) == {"sent": BATCH}
    assert len(sandbox.snapshot()["leads"]) == BATCH


class WatchedSandbox(SandboxDialer):
    """Counts the add_multi_lead requests being answered at once, and reads the state database
    while each is: the state a crash at that instant would leave."""

    def __init__(self, state: sa.Engine) -> None:
        super().__init__()
        self.state = state
        self.at_once = self.most_at_once = 0
        self.seen: list[Counter[str]] = []
        self._lock = threading.Lock()

    def handle(self, incoming: Incoming) -> Answer:
        if parse_params(incoming).get("function") != "add_multi_lead":
            return super().handle(incoming)
        with self._lock:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            time.sleep(0.01)       # room for a second request, were one sent
            self.seen.append(lead_statuses(self.state))
            return super().handle(incoming)
        finally:
            with self._lock:
                self.at_once -= 1


def test_one_batch_on_its_way_at_a_time_in_plan_order_and_only_it_unrecorded(
    state_engine: sa.Engine, tmp_path: Path
) -> None:
    sandbox = WatchedSandbox(state_engine)
    crm = make_crm(tmp_path, [], lists=democrm.LISTS[:1], leads=LEADS)
    with engine_context(sandbox, state_engine, crm, tmp_path, leads_per_batch=BATCH) as ctx:
        gathered = gather_and_plan(ctx)
        report = apply_plan(ctx, gathered)
    assert (report.outcome, report.counts) == ("ok", {"created": 1, "lead_batches_sent": 4})
    assert sandbox.most_at_once == 1
    planned = [key for op in gathered.plan.ops if isinstance(op, AddLeads) for key in op.keys]
    assert [lead["vendor_lead_code"] for lead in sandbox.snapshot()["leads"]] == planned
    # While batch n is answered: the n - 1 before it recorded sent, itself pending, and at most
    # the next one committed ahead, queued (a crash now leaves one batch in doubt, no more).
    for n, seen in enumerate(sandbox.seen, start=1):
        assert seen["sent"] == (n - 1) * BATCH and seen["pending"] == BATCH
        assert seen["queued"] in (0, BATCH) and seen.total() <= (n + 1) * BATCH
    assert steps_as_committed(state_engine, report.run_id) == [
        (1, "add_list", "created"), *((n, "add_leads", "sent") for n in range(2, 6))]
    assert lead_statuses(state_engine) == {"sent": len(LEADS)}


def test_a_batch_committed_ahead_by_a_process_that_died_is_not_sent_nor_answered(
    state_engine: sa.Engine,
) -> None:
    """Killed while a batch was `queued` ahead of its request: the next run closes it as
    not sent (no lead of it reached the dialer) and plans its leads again; a batch sent lead
    by lead with some leads answered is closed as answered."""
    book = LeadBook(StateStore(state_engine, "default"))
    ahead = book.record_intent("killed-run", "1101", [("1", {}, "d1"), ("2", {}, "d2")],
                               QUEUED)
    one_by_one = book.record_intent("killed-run", "1101", [("3", {}, "d3"), ("4", {}, "d4")],
                                    QUEUED)
    book.record_progress(one_by_one, [], ["3"])
    book.record_progress(one_by_one, [LeadResult("3", "sent", "103")], [])

    assert book.settle_interrupted() == 0
    with state_engine.connect() as conn:
        states = dict(conn.execute(sa.select(lead_batches.c.batch_id, lead_batches.c.state)).all())
        leads = dict(conn.execute(sa.select(shadow_leads.c.lead_key, shadow_leads.c.status)).all())
    assert states == {ahead: "not_sent", one_by_one: "answered"}
    assert leads == {"3": "sent"}                   # the others are planned again
