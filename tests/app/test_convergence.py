"""The convergence law, over generated CRM states and dialers that already hold objects.

For any CRM state the dialer can accept: after apply, a new plan has no changes, a second apply
makes no API call but the read, and the sandbox holds exactly what the CRM says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters.state import db
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxData, SandboxDialer, SandboxList, SandboxUser
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
