"""keep_first: never a second lead with the same phone in the same dialer list.

Phones are compared as the dialer stores them (spaces of every kind and `+-.()/` dropped), the
same way whether the CRM database finds the shared phones or reconciler reads them itself, and
counting what the dialer already holds: leads sent before, even once gone from the CRM.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters.crm.leads import SPACES, phone_digits
from reconciler.adapters.crm.shared_phones import shared_phones, shared_phones_by_reading
from reconciler.adapters.state import db
from reconciler.app import lead_plan
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.config.spec import load_spec
from reconciler.core.plan import AddLeads, Plan
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer
from tests.app.test_leads import LISTS, dialer_leads, lead, run
from tests.cli.test_cli import _start
from tests.helpers import EXAMPLE_SPEC, crm_execute, engine_context, make_crm

PHONE = "5550000001"
# What a CRM may hold around or inside a phone: every one of them is dropped.
INVISIBLE = ["\t", "\r", "\n", "\r\n", "\xa0", "\u2009", "\u202f", "\u3000", "\x0b", "\x1f"]


def duplicate_rejects(plan: Plan) -> dict[str, str]:
    return {r.key: r.reason for r in plan.rejects
            if r.resource == "leads" and r.reason.startswith("duplicate phone")}


def to_send(plan: Plan) -> list[str]:
    return sorted(k for op in plan.ops if isinstance(op, AddLeads) for k in op.keys)


def phones_on_dialer(sandbox: SandboxDialer) -> Counter[tuple[str, str]]:
    return Counter((x["list_id"], x["phone_number"]) for x in sandbox.snapshot()["leads"])


# --- one rule for the phone, whichever way the shared phones are found -------------------------

def test_the_spaces_dropped_are_every_space_python_knows() -> None:
    assert set(SPACES) == {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}
    assert phone_digits("\u3000+1 (555)\t010-0123\xa0\r\n") == "15550100123"
    assert phone_digits("555-CALL-NOW") == "555CALLNOW"     # letters stay: the rules reject it


def _mapped_phone_spec(tmp_path: Path) -> Path:
    """The example spec with a map on the phone: reconciler reads the phones itself."""
    spec = tmp_path / "mapped.toml"
    spec.write_text(EXAMPLE_SPEC.read_text().replace(
        'phone_number = "phone"', 'phone_number = { column = "phone", map = { "0" = "0" } }'))
    return spec


@pytest.fixture
def crm_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A CRM on SQLite or PostgreSQL, with the example lists and no leads yet."""
    url = democrm.sqlite_url(tmp_path / "crm.db") if database_url.startswith("sqlite") \
        else database_url
    democrm.create_crm(url, [], LISTS, []).dispose()
    yield url


junk = st.sampled_from([*INVISIBLE, " ", "-", "(", ")", "+", ".", "/", "x"])
phones = st.one_of(
    st.none(), st.just(""), st.lists(st.sampled_from(INVISIBLE), min_size=1, max_size=3).map(
        "".join),
    st.tuples(st.sampled_from([PHONE, "5550000002", "15550000001"]),
              st.lists(st.tuples(st.integers(0, 11), junk), max_size=3)).map(
        lambda base: _sprinkle(*base)),
)
list_ids = st.sampled_from(["1101", "1102", " 1101", "1101\t", "\xa01102\r\n", None, "", "\t"])


def _sprinkle(phone: str, marks: list[tuple[int, str]]) -> str:
    for where, mark in marks:
        phone = phone[:where] + mark + phone[where:]
    return phone


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(list_ids, phones), min_size=1, max_size=12),
       keys=st.permutations([7, 12, 100, 99, 400, 500, 1000, 99999, 100000, 3, 30, 8]))
def test_the_database_and_reconciler_find_the_same_duplicate_phones(
    rows: list[tuple[str | None, str | None]], keys: list[int], crm_url: str,
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path,
) -> None:
    """Plain columns: the CRM database groups the phones. Mapped: reconciler does. Same plan."""
    leads = [{**lead(key), "list_id": list_id, "phone": phone}
             for key, (list_id, phone) in zip(keys, rows, strict=False)]
    with sa.create_engine(crm_url).begin() as conn:
        conn.exec_driver_sql("DELETE FROM crm_leads")
        democrm.insert_leads(conn, leads)
    plans = []
    for spec in (EXAMPLE_SPEC, _mapped_phone_spec(tmp_path)):
        with engine_context(sandbox, sqlite_state, crm_url, tmp_path, spec_path=spec) as ctx:
            plans.append(gather_and_plan(ctx).plan)
    by_database, by_reconciler = plans
    assert duplicate_rejects(by_database) == duplicate_rejects(by_reconciler)
    assert to_send(by_database) == to_send(by_reconciler)
    assert by_database.rejects == by_reconciler.rejects
    # Both are the documented rule: spaces of any kind and +-.()/ dropped; no list or no phone
    # (NULL, blank, only spaces) takes no part; the first key in text order keeps the phone.
    resource = load_spec(EXAMPLE_SPEC).leads
    assert resource is not None
    holders: dict[tuple[str, str], list[str]] = {}
    for lead_row in leads:
        list_id = (lead_row["list_id"] or "").strip()
        phone = re.sub(r"[\s+\-.()/]", "", lead_row["phone"] or "")
        if list_id and phone:
            holders.setdefault((list_id, phone), []).append(str(lead_row["id"]))
    expected = {pair: min(keys) for pair, keys in holders.items() if len(keys) > 1}
    crm = sa.create_engine(crm_url)
    assert shared_phones(crm, resource) == shared_phones_by_reading(crm, resource) == expected
    crm.dispose()


@pytest.mark.parametrize("mark", INVISIBLE, ids=[ascii(c) for c in INVISIBLE])
def test_phones_that_differ_only_by_invisible_characters_are_exported_once(
    mark: str, crm_url: str, sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    variants = [PHONE, PHONE + mark, mark + PHONE, PHONE[:3] + mark + PHONE[3:],
                f"{mark}+{PHONE[:3]}{mark}-{PHONE[3:]}{mark}"]
    with sa.create_engine(crm_url).begin() as conn:
        democrm.insert_leads(conn, [lead(n, phone=p) for n, p in enumerate(variants, 1)])
    with engine_context(sandbox, sqlite_state, crm_url, tmp_path) as ctx:
        gathered, report = run(ctx)
        assert report.outcome == "ok"
        assert not gather_and_plan(ctx).plan.has_changes
    assert phones_on_dialer(sandbox) == {("1101", PHONE): 1}
    assert set(dialer_leads(sandbox)) == {("1101", "1")}
    assert duplicate_rejects(gathered.plan) == {
        str(n): "duplicate phone in list 1101: lead 1 has it and comes first"
        for n in range(2, len(variants) + 1)}


# --- counting what the dialer already holds --------------------------------------------------

@pytest.mark.parametrize(("sent", "new"), [(99999, 100000), (500, 400)], ids=["99999-100000",
                                                                             "500-400"])
def test_a_new_lead_sorting_before_a_sent_one_with_its_phone_is_not_sent(
    sent: int, new: int, sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(sent, phone=PHONE)])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        run(ctx)
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (:id, '1101', :p)",
                    id=new, p=f"+{PHONE[:3]} {PHONE[3:]}")
        gathered, report = run(ctx)
        assert report.outcome == "ok"
        assert duplicate_rejects(gathered.plan) == {
            str(new): f"duplicate phone in list 1101: lead {sent} has it on the dialer already"}
        assert to_send(gathered.plan) == []
    assert phones_on_dialer(sandbox) == {("1101", PHONE): 1}


def test_a_phone_sent_for_a_lead_since_deleted_from_the_crm_is_not_sent_again(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(1, phone=PHONE), lead(2)])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        run(ctx)
        crm_execute(crm, "DELETE FROM crm_leads WHERE id = 1")
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (3, '1101', :p)",
                    p=PHONE + "\t")
        gathered, _ = run(ctx)
        assert duplicate_rejects(gathered.plan) == {
            "3": "duplicate phone in list 1101: lead 1 has it on the dialer already"}
    assert phones_on_dialer(sandbox)[("1101", PHONE)] == 1


def test_the_same_phone_in_two_lists_is_sent_to_both(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(500, "1101", PHONE)])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        run(ctx)
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES "
                         "(400, '1102', :p), (600, '1102', :p)", p=PHONE)
        gathered, _ = run(ctx)
        assert to_send(gathered.plan) == ["400"]
        assert duplicate_rejects(gathered.plan) == {
            "600": "duplicate phone in list 1102: lead 400 has it and comes first"}
    assert phones_on_dialer(sandbox) == {("1101", PHONE): 1, ("1102", PHONE): 1}


def test_keep_first_converges_plan_apply_plan(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    """Sent, new, moved and deleted leads sharing phones: one apply, then nothing to do."""
    crm = make_crm(tmp_path, [], LISTS, [
        lead(500, phone=PHONE), lead(9, phone="5550000002"), lead(8, "1102", phone=PHONE),
        lead(77, phone="5550000003")])
    with engine_context(sandbox, state_engine, crm, tmp_path, leads_per_batch=2) as ctx:
        run(ctx)
        crm_execute(crm, "DELETE FROM crm_leads WHERE id = 77")
        crm_execute(crm, "UPDATE crm_leads SET list_id = '1101' WHERE id = 8")  # drift
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES "
                         "(400, '1101', :a), (10, '1101', :b), (11, '1102', :a), "
                         "(12, '1101', :c), (13, '1101', '5550000004'), (14, '1101', :d)",
                    a=f"({PHONE[:3]})\xa0{PHONE[3:]}", b="5550000002\r\n",
                    c="5550000003", d="5550000004 ")
        gathered, report = run(ctx)
        assert report.outcome == "ok"
        assert to_send(gathered.plan) == ["13"]
        assert duplicate_rejects(gathered.plan) == {
            "400": "duplicate phone in list 1101: lead 500 has it on the dialer already",
            "10": "duplicate phone in list 1101: lead 9 has it on the dialer already",
            "11": "duplicate phone in list 1102: lead 8 has it on the dialer already",
            "12": "duplicate phone in list 1101: lead 77 has it on the dialer already",
            "14": "duplicate phone in list 1101: lead 13 has it and comes first"}
        again = gather_and_plan(ctx).plan
        assert not again.has_changes
        assert duplicate_rejects(again) == duplicate_rejects(gathered.plan)
        assert apply_plan(ctx, gather_and_plan(ctx)).outcome == "ok"
    held = phones_on_dialer(sandbox)
    assert max(held.values()) == 1 and sum(held.values()) == 5


# --- leads recorded before the state kept their phone ----------------------------------------

def test_phones_of_leads_recorded_before_are_filled_in_from_unchanged_crm_rows(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(500, phone=PHONE), lead(6), lead(7)])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        run(ctx)
        with state_engine.begin() as conn:        # as a state from before the phone column
            conn.execute(sa.text("UPDATE shadow_leads SET phone = NULL"))
        crm_execute(crm, "UPDATE crm_leads SET city = 'York' WHERE id = 6")   # changed since
        crm_execute(crm, "DELETE FROM crm_leads WHERE id = 7")
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (400, '1101', :p)",
                    p=PHONE)
        preview = gather_and_plan(ctx).plan
        assert [n.message for n in preview.notes if n.topic == "phones_unknown"] == [
            "3 lead(s) were recorded before their phone was kept: the next apply fills it in "
            "from the CRM row when unchanged since export; until then keep_first cannot count "
            "them"]
        assert lead_plan.fill_in_lead_phones(ctx) == 3
        assert lead_plan.fill_in_lead_phones(ctx) == 0                       # done once
        recorded = dict(state_engine.connect().execute(
            sa.text("SELECT lead_key, phone FROM shadow_leads")).all())
        assert recorded == {"500": PHONE, "6": "", "7": ""}        # "": not known
        gathered, _ = run(ctx)
        assert duplicate_rejects(gathered.plan) == {
            "400": "duplicate phone in list 1101: lead 500 has it on the dialer already"}
        assert not [n for n in gathered.plan.notes if n.topic == "phones_unknown"]
    assert phones_on_dialer(sandbox)[("1101", PHONE)] == 1


def test_apply_from_the_command_line_fills_phones_in_before_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for setup in _start(tmp_path, monkeypatch, SandboxDialer(), leads=[lead(500, phone=PHONE)]):
        assert setup.run("apply", "--yes") == 0
        state = db.open_engine(f"sqlite:///{tmp_path / 'state.db'}")
        with state.begin() as conn:
            conn.execute(sa.text("UPDATE shadow_leads SET phone = NULL"))
        crm_execute(setup.crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES "
                               "(400, '1101', :p)", p=PHONE)
        capsys.readouterr()
        assert setup.run("apply", "--yes") in (0, 3)
        out = capsys.readouterr().out
        assert "'400': phone_number duplicate phone in list 1101: lead 500 has it on the " \
               "dialer already" in out
        assert setup.functions().count("add_multi_lead") == 1
        state.dispose()


def test_fill_in_keeps_a_saved_plan_honest(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    """Filling phones in is a write: a plan saved before it is stale, never half-true."""
    crm = make_crm(tmp_path, [], LISTS, [lead(500, phone=PHONE)])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        run(ctx)
        with sqlite_state.begin() as conn:
            conn.execute(sa.text("UPDATE shadow_leads SET phone = NULL"))
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (400, '1101', :p)",
                    p=PHONE)
        saved = gather_and_plan(ctx).plan
        before = saved.basis.state_version
        assert lead_plan.fill_in_lead_phones(ctx) == 1
        assert gather_and_plan(ctx).plan.basis.state_version != before



# --- the CRM is asked about shared phones only when a lead is about to be sent ---------------

def test_the_crm_groups_phones_only_when_a_lead_is_about_to_be_sent(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(1, phone=PHONE), lead(2), lead(3)])
    statements: list[str] = []

    def grouping() -> int:
        return sum("GROUP BY" in sql for sql in statements)

    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        sa.event.listen(ctx.crm, "checkout", lambda driver, *_: driver.set_trace_callback(
            statements.append))
        run(ctx)
        assert grouping() >= 1                               # new leads: asked
        statements.clear()
        crm_execute(crm, "UPDATE crm_leads SET city = 'York' WHERE id = 2")   # drift only
        plan = gather_and_plan(ctx).plan
        assert not plan.has_changes and grouping() == 0      # nothing to send: never asked
        crm_execute(crm, "INSERT INTO crm_leads (id, list_id, phone) VALUES (4, '1101', :p)",
                    p=PHONE)
        plan = gather_and_plan(ctx).plan
        assert grouping() == 1
        assert duplicate_rejects(plan) == {
            "4": "duplicate phone in list 1101: lead 1 has it and comes first"}
