"""The convergence law, over generated CRM states and dialers that already hold objects.

For any CRM state the dialer can accept: after apply, a new plan has no changes, a second apply
makes no API call but the read, and the sandbox holds exactly what the CRM says. Leads converge
alike whether passes are incremental or full (docs/incremental.md).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.adapters.state import db
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxData, SandboxDialer, SandboxList, SandboxUser
from tests.app.incremental_crm import crm_with_change_column, incremental_spec
from tests.helpers import engine_context

USERNAMES = [f"{1000 + n}" for n in range(8)] + ["x", "agent_with_a_very_long_username"]
LIST_IDS = ["1101", "1102", "1103", "1104", "7"]
NAMES = st.sampled_from(["Asha Patel", "Ben O'Neil", "Chloé Durand", "Dev & Co", "N" * 51, ""])
PASSWORDS = st.sampled_from(["pw1", "p&ss=word", "héllo", "x" * 21, "new-secret"])

agent_rows = st.fixed_dictionaries({
    "username": st.sampled_from(USERNAMES),
    "password": PASSWORDS,
    "full_name": NAMES,
    "level": st.sampled_from([1, 5, 9, 0, 12]),
    "team": st.sampled_from(["AGENTS", "ADMIN", None]),
    "extension": st.sampled_from([None, "8101", "ext 9"]),
    "email": st.sampled_from([None, "a@example.com"]),
    "is_active": st.sampled_from([1, 1, 1, 0]),
})
list_rows = st.fixed_dictionaries({
    "id": st.sampled_from(LIST_IDS),
    "name": st.sampled_from(["Spring Renewals", "Win-back 2026", "Bad", "Ünïcode list name"]),
    "campaign": st.sampled_from(["TESTCAMP", "SALES"]),
    "is_active": st.sampled_from([0, 1]),
})
crm_states = st.tuples(st.lists(agent_rows, max_size=10), st.lists(list_rows, max_size=5))
dialer_history = st.tuples(
    st.lists(st.sampled_from(USERNAMES[:8]), max_size=3, unique=True),
    st.lists(st.sampled_from([*LIST_IDS[:4], "900"]), max_size=3, unique=True),
)


def _sandbox(history: tuple[list[str], list[str]]) -> SandboxDialer:
    users, lists = history
    return SandboxDialer(SandboxData(
        users=tuple(SandboxUser(u, agent_pass="by-hand", full_name="By hand")
                    for u in users),
        lists=tuple(SandboxList(x, "Made by hand", "TESTCAMP", active="Y") for x in lists),
    ))


def _write_crm(url: str, state: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    agents, lists = state
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM agents")
        conn.exec_driver_sql("DELETE FROM calling_lists")
        democrm.insert_agents(conn, agents)
        if lists:
            conn.execute(sa.text("INSERT INTO calling_lists VALUES "
                                 "(:id, :name, :campaign, :is_active)"), lists)
    engine.dispose()


def _assert_dialer_matches(sandbox: SandboxDialer, desired: Any) -> None:
    users = {u["agent_user"]: u for u in sandbox.snapshot()["users"]}
    for key, want in desired.users.items():
        if not want.active:
            assert key not in users or users[key]["active"] == "N"
            continue
        have = users[key]
        assert have["active"] == "Y"
        assert have["full_name"] == want.fields["agent_full_name"]
        assert str(have["user_level"]) == want.fields["agent_user_level"]
        assert sandbox.store.check_password(key, want.secrets["agent_pass"])
    lists = {x["list_id"] for x in sandbox.snapshot()["lists"]}
    assert set(desired.lists) <= lists


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=crm_states, second=crm_states, history=dialer_history)
def test_apply_converges_and_a_second_apply_makes_no_call(
    first: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    second: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    history: tuple[list[str], list[str]],
) -> None:
    sandbox = _sandbox(history)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        crm_url = democrm.sqlite_url(tmp_path / "crm.db")
        democrm.create_crm(crm_url, [], []).dispose()
        state = db.open_engine(f"sqlite:///{tmp_path / 'state.db'}")
        db.upgrade(state)
        with engine_context(sandbox, state, crm_url, tmp_path) as ctx:
            for crm_state in (first, second):
                _write_crm(crm_url, crm_state)
                gathered = gather_and_plan(ctx)
                report = apply_plan(ctx, gathered, force=True)
                assert report.outcome == "ok", report.failures
                again = gather_and_plan(ctx)
                assert again.plan.ops == (), again.plan.ops
                before = len(sandbox.snapshot()["calls"])
                apply_plan(ctx, again)
                assert [c["function"] for c in sandbox.snapshot()["calls"][before:]] == []
                _assert_dialer_matches(sandbox, again.desired)
        state.dispose()


# --- leads, in incremental passes and full ones ------------------------------------------------

LEAD_KEYS = st.integers(1, 12)
# A lead's own phone, or one it shares with others (keep_first then decides, by history).
LEAD_PHONES = st.sampled_from(["own", "own", "own", "common", "bad"])
lead_edits = st.lists(st.one_of(
    st.tuples(st.just("put"), LEAD_KEYS, LEAD_PHONES, st.sampled_from(["1101", "1102"]),
              st.sampled_from(["Leeds", "York"])),          # new, or its data changed
    st.tuples(st.just("touch"), LEAD_KEYS),                   # change value bumped, data kept
    st.tuples(st.just("delete"), LEAD_KEYS),
    st.tuples(st.just("late"), LEAD_KEYS, LEAD_PHONES),       # committed below the mark
    st.tuples(st.just("null"), LEAD_KEYS, LEAD_PHONES),       # no change value at all
), max_size=5)
lead_steps = st.lists(st.tuples(lead_edits, st.sampled_from(["by_rule", "by_rule", "full"])),
                      min_size=2, max_size=5)


def _edit_crm(url: str, edits: list[tuple[Any, ...]], tick: int) -> int:
    """Apply the edits; each change gets a higher change value than any before. Returns tick."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for edit in edits:
            kind, key = edit[0], edit[1]
            tick += 1
            if kind == "touch":
                conn.execute(sa.text("UPDATE crm_leads SET updated_at = :t WHERE id = :id"),
                             {"t": tick, "id": key})
                continue
            conn.execute(sa.text("DELETE FROM crm_leads WHERE id = :id"), {"id": key})
            if kind == "delete":
                continue
            phone = {"own": f"555{key:07d}", "common": "5550009999", "bad": "12"}[edit[2]]
            at = {"put": tick, "late": 0, "null": None}[kind]
            conn.execute(sa.text(
                "INSERT INTO crm_leads (id, list_id, phone, first_name, last_name, city, "
                "postal_code, updated_at) VALUES (:id, :list, :phone, 'Lee', 'Lead', :city, "
                "'LS1', :at)"), {"id": key, "list": edit[3] if kind == "put" else "1101",
                                 "phone": phone, "city": edit[4] if kind == "put" else "Leeds",
                                 "at": at})
    engine.dispose()
    return tick


def _vendor_codes(sandbox: SandboxDialer) -> Counter[str]:
    return Counter(x.get("vendor_lead_code", "") for x in sandbox.snapshot()["leads"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=lead_steps)
def test_leads_converge_alike_in_incremental_and_full_passes(
    steps: list[tuple[list[tuple[Any, ...]], str]],
) -> None:
    """One CRM history, two dialers: one kept by passes as the rule chooses them (incremental
    between full ones), one by full passes only. Every lead reaches each dialer at most once;
    after a last full pass the first converges, and holds the same leads of the CRM as the
    other (when no phone is shared: keep_first's choice depends on history)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        crm_url = crm_with_change_column(democrm.sqlite_url(tmp_path / "crm.db"), "integer")
        spec = incremental_spec(tmp_path)
        worlds = []
        with ExitStack() as stack:
            for name in ("incremental", "full"):
                state = db.open_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
                db.upgrade(state)
                stack.callback(state.dispose)
                sandbox = SandboxDialer()
                worlds.append((sandbox, stack.enter_context(engine_context(
                    sandbox, state, crm_url, tmp_path, spec_path=spec))))
            (mixed_dialer, mixed), (full_dialer, full_only) = worlds
            tick = 0
            for edits, mode in steps:
                tick = _edit_crm(crm_url, edits, tick)
                for ctx, full in ((mixed, mode == "full"), (full_only, True)):
                    gathered = gather_and_plan(ctx, full=full)
                    assert gathered.plan.lead_pass is not None
                    event(f"{gathered.plan.lead_pass.kind} pass")
                    report = apply_plan(ctx, gathered, force=True)
                    assert report.outcome == "ok", report.failures
                for sandbox in (mixed_dialer, full_dialer):
                    assert set(_vendor_codes(sandbox).values()) <= {1}
            assert apply_plan(mixed, gather_and_plan(mixed, full=True)).outcome == "ok"
            assert set(_vendor_codes(mixed_dialer).values()) <= {1}
            for full in (True, False):
                assert gather_and_plan(mixed, full=full).plan.ops == ()
            shared = any(len(e) > 2 and e[2] == "common" for edits, _ in steps for e in edits)
            if not shared:
                crm = sa.create_engine(crm_url)
                with crm.connect() as conn:
                    keys = {str(k) for (k,) in conn.execute(sa.text("SELECT id FROM crm_leads"))}
                crm.dispose()
                assert set(_vendor_codes(mixed_dialer)) & keys == \
                    set(_vendor_codes(full_dialer)) & keys
