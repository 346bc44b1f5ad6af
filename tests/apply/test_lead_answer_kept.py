"""A batch's answer kept on its batch's row: the commit the next request waits for holds the
answer whole, and its leads' rows are written just after. A run that stops in between leaves
those leads `pending` (never resent) and the next run writes them from the kept answer.

The stop is made by the state database itself: a trigger refuses the write that lets a kept
answer go, the very transaction that writes the leads' rows. `apply` runs in this process
against a sandbox dialer on loopback; state databases: SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state.leads import LeadBook, LeadResult
from reconciler.adapters.state.schema import lead_batches, run_steps, shadow_leads
from reconciler.adapters.state.store import StateStore
from reconciler.cli.main import main
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer, start_background
from tests.helpers import write_config

LEADS_PER_BATCH = 10
LEADS = democrm.sample_leads(5 * LEADS_PER_BATCH, ("1101",))

# A write failing as a failing disk fails it (an OperationalError, not a constraint), and
# only that write: SQLite's trigger fails where it runs (a table it names would be looked up
# when any UPDATE OF answer is prepared), with this message.
FAILED = {"sqlite": "malformed JSON", "postgresql": "the_state_disk_failed"}
REFUSE = {
    "sqlite": ["""
        CREATE TRIGGER refuse_written_answers BEFORE UPDATE OF answer ON lead_batches
        WHEN NEW.answer IS NULL AND OLD.answer IS NOT NULL
        BEGIN SELECT json('the_state_disk_failed'); END"""],
    "postgresql": ["""
        CREATE FUNCTION refuse_written_answers() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the_state_disk_failed' USING ERRCODE = '58030'; END $$
        LANGUAGE plpgsql""", """
        CREATE TRIGGER refuse_written_answers BEFORE UPDATE OF answer ON lead_batches
        FOR EACH ROW WHEN (NEW.answer IS NULL AND OLD.answer IS NOT NULL)
        EXECUTE FUNCTION refuse_written_answers()"""],
}
ALLOW = {
    "sqlite": ["DROP TRIGGER refuse_written_answers"],
    "postgresql": ["DROP TRIGGER refuse_written_answers ON lead_batches",
                   "DROP FUNCTION refuse_written_answers()"],
}


def ddl(engine: sa.Engine, statements: dict[str, list[str]]) -> None:
    with engine.begin() as conn:
        for statement in statements[engine.dialect.name]:
            conn.exec_driver_sql(statement)


def config(tmp_path: Path, dialer_url: str, state_url: str) -> Path:
    crm = democrm.sqlite_url(tmp_path / "crm.db")
    democrm.create_crm(crm, [], democrm.LISTS[:1], LEADS).dispose()
    return write_config(tmp_path / "reconciler.toml", dialer_url=dialer_url, crm_url=crm,
                        state_url=state_url,
                        dialer_extra=f"max_retries = 0\nleads_per_batch = {LEADS_PER_BATCH}")


def leads_recorded(engine: sa.Engine) -> dict[str, tuple[str, str | None]]:
    t = shadow_leads.c
    with engine.connect() as conn:
        return {key: (status, lead_id) for key, status, lead_id in conn.execute(
            sa.select(t.lead_key, t.status, t.dialer_lead_id))}


def kept_answers(engine: sa.Engine) -> list[list[list[Any]]]:
    """Each answer still kept on its batch's row: [key, status, dialer_lead_id, message] a lead."""
    b = lead_batches.c
    with engine.connect() as conn:
        return [json.loads(answer) for answer in conn.execute(
            sa.select(b.answer).where(b.answer.is_not(None))).scalars()]


@pytest.mark.parametrize("next_run", ["apply", "resync"])
def test_an_answer_kept_when_the_run_stopped_is_written_by_the_next_run(
    next_run: str, tmp_path: Path, database_url: str, state_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")

    def apply(command: str = "apply") -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--config", str(path), "--log-format", "json", command, "--yes"])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    sandbox = SandboxDialer()
    with start_background(sandbox) as server:
        path = config(tmp_path, server.url, database_url)
        ddl(state_engine, REFUSE)
        code, said = apply()
        assert code == 1, said
        assert "state database" in said and FAILED[state_engine.dialect.name] in said

        # The first batch's answer stayed kept: its leads are on the dialer, recorded `pending`
        # (so never sent again) while the kept answer names each one's lead id.
        (answer,) = kept_answers(state_engine)
        on_dialer = {lead["vendor_lead_code"]: str(lead["lead_id"])
                     for lead in sandbox.snapshot()["leads"]}
        assert len(answer) == LEADS_PER_BATCH
        assert {key: (status, lead_id) for key, status, lead_id, _ in answer} == {
            key: ("sent", on_dialer[key]) for key, *_ in answer}
        recorded = leads_recorded(state_engine)
        assert {recorded[key] for key, *_ in answer} == {("pending", None)}
        # ...and the batch is a step of the run all the same: it reached the dialer.
        with state_engine.connect() as conn:
            steps = conn.execute(sa.select(run_steps.c.key, run_steps.c.outcome).where(
                run_steps.c.op == "add_leads")).all()
        assert ("1101/1", "sent") in steps

        ddl(state_engine, ALLOW)
        code, said = apply(next_run)
        assert code == 0, said
        assert '"event": "lead_answers_written"' in said

    calls = Counter(lead["vendor_lead_code"] for lead in sandbox.snapshot()["leads"])
    assert calls == Counter({str(row["id"]): 1 for row in LEADS})      # each lead once
    on_dialer = {lead["vendor_lead_code"]: str(lead["lead_id"])
                 for lead in sandbox.snapshot()["leads"]}
    assert leads_recorded(state_engine) == {key: ("sent", lead_id)
                                            for key, lead_id in on_dialer.items()}
    assert kept_answers(state_engine) == []


def test_an_answer_with_a_lead_in_doubt_is_never_kept_but_written_lead_by_lead(
    state_engine: sa.Engine,
) -> None:
    """Only a wholly answered batch keeps its answer on its row: a batch in doubt is one an
    operator may resolve or look up at once, lead by lead, so its leads' rows are written in
    the same transaction that marks the next batch `pending`."""
    book = LeadBook(StateStore(state_engine, "default"))
    items = [(f"k{n}", {"phone_number": f"55500000{n}", "list_id": "1101"}, f"d{n}")
             for n in range(3)]
    answered = book.record_intent("run", "1101", items)
    following = book.record_intent("run", "1101", [("k9", items[0][1], "d9")], "queued")
    results = [LeadResult("k0", "sent", "1001"), LeadResult("k1", "in_doubt", None, "no answer"),
               LeadResult("k2", "rejected", None, "Invalid phone number")]

    assert book.record_outcome(answered, results, "in_doubt", sending=following) is False
    assert kept_answers(state_engine) == []
    assert leads_recorded(state_engine) == {"k0": ("sent", "1001"), "k1": ("in_doubt", None),
                                     "k2": ("rejected", None), "k9": ("pending", None)}

    again = book.record_intent("run", "1101", [("k5", items[0][1], "d5")])
    then = book.record_intent("run", "1101", [("k6", items[0][1], "d6")], "queued")
    assert book.record_outcome(again, [LeadResult("k5", "sent", "1005")], "answered",
                               sending=then) is True
    assert kept_answers(state_engine) == [[["k5", "sent", "1005", ""]]]
    assert leads_recorded(state_engine)["k5"] == ("pending", None)
