"""Do-not-call: a lead whose phone is on the CRM's DNC is never sent; one sent before is drift.

Against the sandbox dialer (Elision and stock VICIdial) with the CRM and the state database on
SQLite and on PostgreSQL: skipped leads are counted and shown, not rejected; entries scoped to
a list or a campaign apply there only; a phone added after export is a note on Elision and a
flag_dnc op on VICIdial, applied once and recorded; bad DNC rows are reported, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state.dnc import DncBook
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.app.render import render_plan
from reconciler.cli.commands.runs import dialer_rejected
from reconciler.cli.commands.status import gather_status, render_status
from reconciler.config.spec import DncSpec, parse_spec
from reconciler.core.plan import AddLeads, FlagDnc, Plan, from_json, to_json
from reconciler.demo import crm as democrm
from reconciler.errors import SpecError
from reconciler.sandbox import SandboxDialer
from tests.app.test_leads import LISTS, lead
from tests.helpers import EXAMPLE_SPEC, crm_execute, engine_context

DNC_SPEC = """
[dnc]
table = "crm_dnc"
phone = "phone"
list_id = "list_id"
campaign_id = "campaign_id"
"""
VICIDIAL: dict[str, Any] = {"dialect": "vicidial", "read_timeout": 0.001}


def phone(n: int) -> str:
    return f"555{n:07d}"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "dnc.toml"
    path.write_text(EXAMPLE_SPEC.read_text() + DNC_SPEC)
    return path


@pytest.fixture
def crm_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A CRM on SQLite or PostgreSQL: the example lists, 12 leads, and an empty DNC table."""
    url = democrm.sqlite_url(tmp_path / "crm.db") if database_url.startswith("sqlite") \
        else database_url
    leads = [lead(n, "1101" if n <= 8 else "1102") for n in range(1, 13)]
    democrm.create_crm(url, [], LISTS, leads).dispose()
    crm_execute(url, "CREATE TABLE crm_dnc (phone VARCHAR(40), list_id VARCHAR(14), "
                     "campaign_id VARCHAR(8))")
    crm_execute(url, "CREATE INDEX ix_crm_dnc_phone ON crm_dnc (phone)")
    yield url


def on_dnc(url: str, number: str | None, list_id: str | None = None,
           campaign_id: str | None = None) -> None:
    crm_execute(url, "INSERT INTO crm_dnc (phone, list_id, campaign_id) VALUES (:p, :l, :c)",
                p=number, l=list_id, c=campaign_id)


def sent_keys(plan: Plan) -> set[str]:
    return {k for op in plan.ops if isinstance(op, AddLeads) for k in op.keys}


def counts(plan: Plan) -> dict[tuple[str, str], int]:
    return {(list_id, state): n for list_id, state, n in plan.lead_counts}


def notes(plan: Plan, topic: str) -> dict[str, tuple[str, ...]]:
    return {n.key: n.keys for n in plan.notes if n.topic == topic}


def dialer_phones(sandbox: SandboxDialer) -> set[str]:
    return {x["phone_number"] for x in sandbox.snapshot()["leads"]}


def test_leads_on_the_dnc_are_skipped_counted_and_never_sent(
    crm_url: str, spec: Path, sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    on_dnc(crm_url, phone(1))                                  # everywhere
    on_dnc(crm_url, f"+1 (555) 000-000{2}"[3:])                # written otherwise: same phone
    on_dnc(crm_url, phone(3), list_id="1101")                  # its own list
    on_dnc(crm_url, phone(9), list_id="1101")                  # another list: 9 is in 1102
    on_dnc(crm_url, phone(4), campaign_id="TESTCAMP")          # 1101's campaign
    on_dnc(crm_url, phone(10), campaign_id="TESTCAMP")         # 1102 is in SALES
    on_dnc(crm_url, None)                                      # bad rows: reported, left out
    on_dnc(crm_url, "  ")
    on_dnc(crm_url, "call me")
    with engine_context(sandbox, state_engine, crm_url, tmp_path, spec_path=spec) as ctx:
        gathered = gather_and_plan(ctx)
        plan = gathered.plan
        assert sent_keys(plan) == {str(n) for n in range(5, 13)}
        assert counts(plan)["1101", "dnc"] == 4 and ("1102", "dnc") not in counts(plan)
        assert not plan.rejects                       # skipped, not an error
        skipped = {n.message: n.keys for n in plan.notes if n.topic == "dnc_skipped"}
        assert skipped == {
            "2 lead(s) not sent: their phone is on the do-not-call list": ("1", "2"),
            "1 lead(s) not sent: their phone is on the do-not-call list of campaign TESTCAMP":
                ("4",),
            "1 lead(s) not sent: their phone is on the do-not-call list of list 1101": ("3",),
        }
        unreadable = [n for n in plan.notes if n.topic == "dnc_unreadable"]
        assert len(unreadable) == 1 and len(unreadable[0].keys) == 3
        assert unreadable[0].message.startswith("3 do-not-call row(s) left out: ")
        message = unreadable[0].message
        assert "a blank phone" in message and "not 6-18 digits" in message
        assert "call me" not in unreadable[0].message          # plans hold no phones
        text = render_plan(plan)
        assert "4 on the do-not-call list" in text
        report = apply_plan(ctx, gathered)
        assert report.outcome == "ok" and "crm_rejected" not in report.counts
        assert not dialer_rejected(report)                  # no exit code 3 for it
        again = gather_and_plan(ctx).plan
        assert not again.has_changes, render_plan(again)
        assert counts(again)["1101", "dnc"] == 4 and counts(again)["1101", "sent"] == 4
    assert dialer_phones(sandbox) == {phone(n) for n in range(5, 13)}


def test_a_phone_put_on_the_dnc_after_export_is_a_note_on_elision(
    crm_url: str, spec: Path, sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    with engine_context(sandbox, state_engine, crm_url, tmp_path, spec_path=spec) as ctx:
        gathered = gather_and_plan(ctx)
        assert apply_plan(ctx, gathered).outcome == "ok"
        on_dnc(crm_url, phone(2))
        on_dnc(crm_url, phone(9), campaign_id="SALES")
        on_dnc(crm_url, phone(10), list_id="1101")           # 10 is in 1102: not drift
        calls = len(sandbox.snapshot()["calls"])
        plan = gather_and_plan(ctx).plan
        assert not plan.has_changes and not any(isinstance(op, FlagDnc) for op in plan.ops)
        assert notes(plan, "dnc_drift") == {"1101": ("2",), "1102": ("9",)}
        drift = [n for n in plan.notes if n.topic == "dnc_drift"]
        assert all("set them to DNC on the dialer" in n.message for n in drift)
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
        assert notes(gather_and_plan(ctx).plan, "dnc_drift") == {"1101": ("2",), "1102": ("9",)}
    # Nothing was sent again: exactly once holds.
    assert len(sandbox.snapshot()["leads"]) == 12
    assert not [c for c in sandbox.snapshot()["calls"][calls:]
                if c["function"] == "add_multi_lead"]


def test_a_phone_put_on_the_dnc_after_export_is_flagged_once_on_vicidial(
    crm_url: str, spec: Path, state_engine: sa.Engine, tmp_path: Path
) -> None:
    vicidial = SandboxDialer(mode="vicidial")
    with engine_context(vicidial, state_engine, crm_url, tmp_path, spec_path=spec,
                        **VICIDIAL) as ctx:
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
        on_dnc(crm_url, phone(3))
        on_dnc(crm_url, phone(11), list_id="1102")
        gathered = gather_and_plan(ctx)
        flags = [op for op in gathered.plan.ops if isinstance(op, FlagDnc)]
        assert [(op.list_id, [key for key, _, _ in op.leads]) for op in flags] == [
            ("1101", ["3"]), ("1102", ["11"])]
        assert all(lead_id for op in flags for _, lead_id, _ in op.leads)
        assert "2 leads to set to DNC" in render_plan(gathered.plan)
        assert from_json(to_json(gathered.plan)) == gathered.plan      # a saved plan keeps them
        report = apply_plan(ctx, gathered)
        assert report.outcome == "ok" and report.counts.get("flagged") == 2, report.failures
        assert DncBook(ctx.store).flagged() == {"3": "flagged", "11": "flagged"}
        assert gather_status(ctx.settings, ctx.store.engine)["dnc_flags"] == {"flagged": 2}
        again = gather_and_plan(ctx).plan
        assert not again.has_changes, render_plan(again)
        assert not notes(again, "dnc_drift")
        apply_plan(ctx, gather_and_plan(ctx))
    statuses = {x["vendor_lead_code"]: x["status"] for x in vicidial.snapshot()["leads"]}
    assert statuses["3"] == statuses["11"] == "DNC"
    assert {k: v for k, v in statuses.items() if v != "NEW"} == {"3": "DNC", "11": "DNC"}
    updates = [c for c in vicidial.snapshot()["calls"] if c["function"] == "update_lead"]
    assert len(updates) == 2 and {c["params"]["status"] for c in updates} == {"DNC"}
    assert len(vicidial.snapshot()["leads"]) == 12          # exactly once, still


def test_a_lead_gone_from_the_dialer_is_recorded_and_not_flagged_again(
    crm_url: str, spec: Path, state_engine: sa.Engine, tmp_path: Path
) -> None:
    vicidial = SandboxDialer(mode="vicidial")
    with engine_context(vicidial, state_engine, crm_url, tmp_path, spec_path=spec,
                        **VICIDIAL) as ctx:
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
        on_dnc(crm_url, phone(5))
        gathered = gather_and_plan(ctx)
        vicidial.store._leads[:] = [x for x in vicidial.store.leads()
                                    if x.phone_number != phone(5)]   # deleted by hand
        report = apply_plan(ctx, gathered)
        assert report.outcome == "ok", report.failures
        assert DncBook(ctx.store).flagged() == {"5": "absent"}
        assert not gather_and_plan(ctx).plan.has_changes
        report_of_status = gather_status(ctx.settings, ctx.store.engine)
    assert report_of_status["dnc_flags"] == {"absent": 1}
    assert "Leads set to DNC on the dialer (their phone went on the do-not-call list): 0; " \
        "no longer on the dialer: 1" in render_status(report_of_status)


LEADS_SPEC: dict[str, Any] = {
    "leads": {"table": "crm_leads", "key": "id",
              "fields": {"list_id": "list_id", "phone_number": "phone"}},
}


@pytest.mark.parametrize(("dnc", "error"), [
    ({"phone": "phone"}, "[dnc]: give exactly one of 'query' or 'table'"),
    ({"table": "a", "query": "SELECT 1", "phone": "p"}, "give exactly one of"),
    ({"table": "crm dnc", "phone": "p"}, "[dnc]: 'table' must be a table name"),
    ({"query": "  ", "phone": "p"}, "[dnc]: 'query' must be a non-empty SQL string"),
    ({"table": "crm_dnc"}, "[dnc]: 'phone' must name the column of the phone"),
    ({"table": "crm_dnc", "phone": 5}, "[dnc]: 'phone' must be a column name"),
    ({"table": "crm_dnc", "phone": "p", "list_id": "a.b"}, "[dnc]: 'list_id' must be a column"),
    ({"table": "crm_dnc", "phone": "p", "campaign_id": ""}, "'campaign_id' must be a column"),
    ({"table": "crm_dnc", "phone": "p", "lists": "x"}, "[dnc]: unknown entry 'lists'"),
    ("crm_dnc", "[dnc] must be a table"),
], ids=lambda value: str(value)[:30])
def test_a_bad_dnc_section_is_refused_naming_the_key(dnc: Any, error: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec({**LEADS_SPEC, "dnc": dnc}, Path("crm.toml"))
    assert error in str(refused.value) and str(refused.value).startswith("spec crm.toml: ")


def test_a_dnc_section_needs_leads() -> None:
    with pytest.raises(SpecError, match=r"\[dnc\] needs a \[leads\] section"):
        parse_spec({"lists": {"table": "l", "fields": {"list_id": "id", "list_name": "n",
                                                        "campaign_id": "c"}},
                    "dnc": {"table": "crm_dnc", "phone": "p"}}, Path("crm.toml"))


def test_a_dnc_section_is_read() -> None:
    spec = parse_spec({**LEADS_SPEC, "dnc": {"query": "SELECT phone FROM optouts",
                                             "phone": "phone", "campaign_id": "camp"}},
                      Path("crm.toml"))
    assert spec.dnc == DncSpec("SELECT phone FROM optouts", None, "phone", None, "camp")
    assert parse_spec(LEADS_SPEC, Path("crm.toml")).dnc is None


def test_a_lead_of_unknown_dialer_id_is_flagged_by_its_vendor_lead_code(
    crm_url: str, spec: Path, state_engine: sa.Engine, tmp_path: Path
) -> None:
    """A lead confirmed sent by an operator has no dialer lead id: found by vendor_lead_code,
    which the spec leaves to the CRM key."""
    vicidial = SandboxDialer(mode="vicidial")
    with engine_context(vicidial, state_engine, crm_url, tmp_path, spec_path=spec,
                        **VICIDIAL) as ctx:
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
        with state_engine.begin() as conn:
            conn.execute(sa.text("UPDATE shadow_leads SET dialer_lead_id = NULL "
                                 "WHERE lead_key = '6'"))
        on_dnc(crm_url, phone(6))
        gathered = gather_and_plan(ctx)
        (flag,) = [op for op in gathered.plan.ops if isinstance(op, FlagDnc)]
        assert flag.leads == (("6", "", "6"),)
        assert apply_plan(ctx, gathered).outcome == "ok"
        assert DncBook(ctx.store).flagged() == {"6": "flagged"}
    (update,) = [c for c in vicidial.snapshot()["calls"] if c["function"] == "update_lead"]
    assert update["params"]["search_method"] == "VENDOR_LEAD_CODE"
    statuses = {x["vendor_lead_code"]: x["status"] for x in vicidial.snapshot()["leads"]}
    assert statuses["6"] == "DNC"


def test_a_lead_the_dialer_cannot_flag_does_not_stop_the_others(
    crm_url: str, spec: Path, state_engine: sa.Engine, tmp_path: Path
) -> None:
    vicidial = SandboxDialer(mode="vicidial")
    with engine_context(vicidial, state_engine, crm_url, tmp_path, spec_path=spec,
                        **VICIDIAL) as ctx:
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
        with state_engine.begin() as conn:     # an id update_lead cannot take (1-9 digits)
            conn.execute(sa.text("UPDATE shadow_leads SET dialer_lead_id = '1234567890' "
                                 "WHERE lead_key = '7'"))
        on_dnc(crm_url, phone(7))
        on_dnc(crm_url, phone(8))
        report = apply_plan(ctx, gather_and_plan(ctx))
        assert report.outcome == "partial" and report.counts.get("rejected") == 1
        assert dialer_rejected(report)
        (failure,) = report.failures
        assert failure[0] == "flag_dnc" and "lead 7: update_lead: field 'lead_id'" in failure[2]
        assert DncBook(ctx.store).flagged() == {"8": "flagged"}
        again = gather_and_plan(ctx).plan      # the refused one is planned again, alone
        assert [op.leads for op in again.ops if isinstance(op, FlagDnc)] == [
            (("7", "1234567890", ""),)]
