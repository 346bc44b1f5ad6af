"""The whole loop against stock VICIdial: the sandbox in vicidial mode, through VicidialClient.

What the dialect adds over Elision, each proved end to end: users read back with user_details
(an edit made on the dialer is corrected), lists read with list_info and changed with
update_list, leads sent one by one with add_lead (exactly once, several in flight), in-doubt
leads settled by a look-up, and VICIdial's silent input rewrites refused or recorded as stored.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from reconciler.adapters.state.leads import LeadBook
from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.app.render import render_plan
from reconciler.config.load import load_settings
from reconciler.core.plan import AddLeads, SettleLeads, UpdateList, UpdateUser, from_json, to_json
from reconciler.errors import ConfigError
from reconciler.sandbox import SandboxDialer, SandboxTransport
from tests.helpers import (
    EXAMPLE_SPEC,
    agent,
    backdate_lead_sends,
    crm_execute,
    engine_context,
    make_crm,
)

LISTS = [
    {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1},
    {"id": "1102", "name": "Win-back 2026", "campaign": "SALES", "is_active": 1},
]
VICIDIAL: dict[str, Any] = {"dialect": "vicidial", "read_timeout": 0.001}


def lead(n: int, list_id: str = "1101", **extra: Any) -> dict[str, Any]:
    row = {"id": n, "list_id": list_id, "phone": f"555{n:07d}", "first_name": "Lee",
           "last_name": f"Lead {n}", "city": "Leeds", "email": None, "postal_code": "LS1"}
    row.update(extra)
    return row


@pytest.fixture
def vicidial() -> SandboxDialer:
    return SandboxDialer(mode="vicidial")


def calls(sandbox: SandboxDialer, function: str | None = None) -> list[dict[str, Any]]:
    return [c for c in sandbox.snapshot()["calls"] if function in (None, c["function"])]


def held(sandbox: SandboxDialer) -> Counter[tuple[str, str]]:
    """(list_id, vendor_lead_code) -> how many leads the dialer holds with them."""
    return Counter((x["list_id"], x.get("vendor_lead_code", ""))
                   for x in sandbox.snapshot()["leads"])


def run(ctx: Context) -> Any:
    gathered = gather_and_plan(ctx)
    return gathered, apply_plan(ctx, gathered)


def test_users_lists_and_leads_converge(
    vicidial: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, leads=[lead(n, "1101" if n % 2 else "1102") for n in range(1, 21)])
    with engine_context(vicidial, state_engine, crm, tmp_path, **VICIDIAL) as ctx:
        gathered, report = run(ctx)
        assert report.outcome == "ok", report.failures
        assert {op.kind for op in gathered.plan.ops} == {"add_list", "add_user", "add_leads"}
        mark = len(calls(vicidial))
        again = gather_and_plan(ctx).plan
        assert not again.has_changes, render_plan(again)
        assert {c["function"] for c in calls(vicidial)[mark:]} == {"list_info", "user_details"}
    assert len(calls(vicidial, "add_lead")) == 20
    assert set(held(vicidial).values()) == {1} and len(held(vicidial)) == 20
    assert not calls(vicidial, "active_lists") and not calls(vicidial, "add_multi_lead")
    users = {u["agent_user"]: u for u in vicidial.snapshot()["users"]}
    assert len(users) == 24 and vicidial.store.check_password("1001", "pw-7000")


def test_an_edit_on_the_dialer_is_seen_and_corrected(
    vicidial: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000"), agent("1001")], lists=[])
    with engine_context(vicidial, sqlite_state, crm, tmp_path, **VICIDIAL) as ctx:
        run(ctx)
        vicidial.store.put_user("1000", agent_pass="pw-1000", full_name="Edited By Hand",
                                user_level=1, user_group="ADMIN", active="N")
        plan = gather_and_plan(ctx).plan
        (op,) = plan.ops
        assert isinstance(op, UpdateUser) and op.reason == "changed on the dialer"
        assert {(c.field, c.old, c.new) for c in op.changes} == {
            ("agent_full_name", "Edited By Hand", "Agent 1000"),
            ("agent_user_group", "ADMIN", "AGENTS"), ("active", "N", "Y")}
        assert "~ user 1000 [changed on the dialer]" in render_plan(plan)
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
        assert not gather_and_plan(ctx).plan.has_changes
        vicidial.store.delete_user("1001")            # deleted by hand: created again
        (op,) = gather_and_plan(ctx).plan.ops
        assert (op.kind, op.key, getattr(op, "reason", "")) == (
            "add_user", "1001", "missing on the dialer")
        run(ctx)
        assert not gather_and_plan(ctx).plan.has_changes
    user = next(u for u in vicidial.snapshot()["users"] if u["agent_user"] == "1000")
    assert (user["full_name"], user["user_group"], user["active"]) == ("Agent 1000", "AGENTS", "Y")


def test_list_changes_become_update_list(
    vicidial: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS)
    with engine_context(vicidial, sqlite_state, crm, tmp_path, **VICIDIAL) as ctx:
        run(ctx)
        crm_execute(crm, "UPDATE calling_lists SET name = 'Spring Renewals 2', campaign = "
                         "'SUPPORT' WHERE id = '1101'")
        vicidial.store.put_list("1102", "Renamed By Hand", "SALES", "N")
        plan = gather_and_plan(ctx).plan
        assert [(op.key, op.reason) for op in plan.ops if isinstance(op, UpdateList)] == [
            ("1101", "changed in CRM"), ("1102", "changed on the dialer")]
        assert not [n for n in plan.notes if n.topic == "cannot_update"]
        assert "~ list 1101" in render_plan(plan)
        assert from_json(to_json(plan)) == plan
        report = apply_plan(ctx, gather_and_plan(ctx))
        assert report.counts == {"updated": 2}
        assert not gather_and_plan(ctx).plan.has_changes
    lists = {x["list_id"]: x for x in vicidial.snapshot()["lists"]}
    assert (lists["1101"]["list_name"], lists["1101"]["campaign_id"]) == (
        "Spring Renewals 2", "SUPPORT")
    assert (lists["1102"]["list_name"], lists["1102"]["active"]) == ("Win-back 2026", "Y")


@pytest.mark.parametrize("fault", ["drop", "status"], ids=["landed", "never-landed"])
def test_an_in_doubt_lead_is_settled_by_a_look_up(
    fault: Any, vicidial: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(n) for n in range(1, 9)])
    # drop: the dialer stores the lead, the answer is lost; status: a 503, nothing stored.
    vicidial.inject(fault, function="add_lead")
    with engine_context(vicidial, state_engine, crm, tmp_path, lead_concurrency=1,
                        **VICIDIAL) as ctx:
        _, report = run(ctx)
        assert report.outcome == "failed" and "unavailable" in report.message
        (doubtful,) = LeadBook(ctx.store).in_doubt_batches()
        backdate_lead_sends(state_engine)            # past the time it could still land
        gathered = gather_and_plan(ctx)
        (settle,) = [op for op in gathered.plan.ops if isinstance(op, SettleLeads)]
        landed = fault == "drop"
        assert (len(settle.found), len(settle.not_found)) == ((1, 0) if landed else (0, 1))
        assert all(batch == doubtful["batch_id"] for _, batch, *_ in
                   (*settle.found, *settle.not_found))
        assert sum(len(op.keys) for op in gathered.plan.ops if isinstance(op, AddLeads)) == (
            7 if landed else 8)
        assert from_json(to_json(gathered.plan)) == gathered.plan
        report = apply_plan(ctx, gathered)
        assert report.outcome == "ok", report.failures
        assert not LeadBook(ctx.store).in_doubt_batches()
        assert not gather_and_plan(ctx).plan.has_changes
    assert held(vicidial) == Counter({("1101", str(n)): 1 for n in range(1, 9)})


def test_a_lead_whose_row_changed_stays_in_doubt(
    vicidial: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(1)])
    vicidial.inject("drop", function="add_lead")
    with engine_context(vicidial, sqlite_state, crm, tmp_path, **VICIDIAL) as ctx:
        run(ctx)
        crm_execute(crm, "UPDATE crm_leads SET phone = '5550009999'")
        backdate_lead_sends(sqlite_state)
        plan = gather_and_plan(ctx).plan
        assert not plan.has_changes and ("1101", "in_doubt", 1) in plan.lead_counts
    assert len(calls(vicidial, "add_lead")) == 1 and not calls(vicidial, "lead_all_info")


class Overlapping(SandboxDialer):
    """A sandbox that slows each add_lead a little and counts how many were in flight at once."""

    def __init__(self) -> None:
        super().__init__(mode="vicidial")
        self.lock = threading.Lock()
        self.in_flight = self.most = 0

    def transport(self) -> SandboxTransport:
        return _Counting(self)


class _Counting(SandboxTransport):
    def __init__(self, dialer: Overlapping) -> None:
        super().__init__(dialer)
        self.owner = dialer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        adding = b"add_lead" in request.url.query + request.read()
        if adding:
            with self.owner.lock:
                self.owner.in_flight += 1
                self.owner.most = max(self.owner.most, self.owner.in_flight)
            time.sleep(0.005)
        try:
            return super().handle_request(request)
        finally:
            if adding:
                with self.owner.lock:
                    self.owner.in_flight -= 1


def test_leads_sent_concurrently_arrive_exactly_once(
    sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    dialer = Overlapping()
    crm = make_crm(tmp_path, [], LISTS, [lead(n, "1101" if n % 3 else "1102")
                                         for n in range(1, 61)])
    with engine_context(dialer, sqlite_state, crm, tmp_path, lead_concurrency=4,
                        leads_per_batch=25, **VICIDIAL) as ctx:
        gathered, report = run(ctx)
        assert report.outcome == "ok", report.failures
        assert report.counts["lead_batches_sent"] == len(
            [op for op in gathered.plan.ops if isinstance(op, AddLeads)])
        assert not gather_and_plan(ctx).plan.has_changes
    assert 1 < dialer.most <= 4
    assert len(calls(dialer, "add_lead")) == 60
    assert set(held(dialer).values()) == {1} and len(held(dialer)) == 60


def test_rewrites_are_rejected_or_recorded_as_stored(
    vicidial: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000", password="secret!1"),
                              agent("1001", full_name="José O'Neil")], lists=[])
    with engine_context(vicidial, sqlite_state, crm, tmp_path, **VICIDIAL) as ctx:
        gathered, _ = run(ctx)
        (reject,) = gathered.plan.rejects
        assert (reject.key, reject.field) == ("1000", "agent_pass")
        assert "VICIdial" in reject.reason and "secret" not in reject.reason
        (note,) = [n for n in gathered.plan.notes if n.topic == "rewritten"]
        assert (note.key, note.message.split()[0]) == ("1001", "agent_full_name")
        again = gather_and_plan(ctx).plan
        assert not again.has_changes, render_plan(again)
    assert [u["agent_user"] for u in vicidial.snapshot()["users"]] == ["1001"]
    assert vicidial.snapshot()["users"][0]["full_name"] == "Jos ONeil"


def _spec_with(tmp_path: Path, line: str) -> Path:
    text = EXAMPLE_SPEC.read_text().replace('duplicates = "keep_first"',
                                            f'duplicates = "keep_first"\n{line}')
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_duplicate_check_names_the_lead_already_there(
    vicidial: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    spec = _spec_with(tmp_path, 'duplicate_check = "DUPLIST"')
    crm = make_crm(tmp_path, [], LISTS[:1], [lead(1), lead(2)])
    vicidial.store.put_list("1101", "Spring Renewals", "TESTCAMP", "Y")
    theirs = vicidial.store.insert_lead("1101", "5550000001", {"vendor_lead_code": "X-9"})
    ours = vicidial.store.insert_lead("1101", "5550000002", {"vendor_lead_code": "2"})
    with engine_context(vicidial, sqlite_state, crm, tmp_path, spec_path=spec,
                        **VICIDIAL) as ctx:
        run(ctx)
        assert {c["params"].get("duplicate_check") for c in calls(vicidial, "add_lead")} == {
            "DUPLIST"}
        with ctx.store.engine.connect() as conn:
            rows = {r.lead_key: r for r in conn.execute(sa.text(
                "SELECT lead_key, status, dialer_lead_id, message FROM shadow_leads"))}
        assert rows["1"].status == "rejected" and f"|{theirs}" in rows["1"].message
        assert (rows["2"].status, rows["2"].dialer_lead_id) == ("sent", str(ours))
    assert len(vicidial.snapshot()["leads"]) == 2


@pytest.mark.parametrize(("extra", "error"), [
    ('dialect = "asterisk"', "dialer.dialect must be one of elision, vicidial, not 'asterisk'"),
    ("lead_concurrency = 0", "dialer.lead_concurrency must be between 1 and 64, not 0"),
])
def test_dialect_settings_are_checked(extra: str, error: str, tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(f'[dialer]\nurl = "http://d/x"\nuser = "api"\n{extra}\n'
                    '[crm]\nurl = "sqlite://"\n')
    with pytest.raises(ConfigError, match=error.replace("(", r"\(")):
        load_settings(path, {})
    path.write_text('[dialer]\nurl = "http://d/x"\nuser = "api"\ndialect = "vicidial"\n'
                    'lead_concurrency = 8\n[crm]\nurl = "sqlite://"\n')
    dialer = load_settings(path, {}).dialer
    assert (dialer.dialect, dialer.lead_concurrency) == ("vicidial", 8)


def test_background_sandbox_serves_the_vicidial_path() -> None:
    from reconciler.sandbox import VICIDIAL_API_PATH, start_background

    with start_background(SandboxDialer(mode="vicidial")) as server:
        assert server.url.endswith(VICIDIAL_API_PATH)
        answer = httpx.get(server.url, params={"function": "version"}, timeout=5)
    assert answer.text.startswith("VERSION: 2.14")
