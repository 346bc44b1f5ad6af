"""The CRM source on SQLite and on PostgreSQL: the same rows read the same, the connection
cannot write, and lead streams come in Python's key order on both.

The PostgreSQL cases use the session's private server (tests/conftest.py); they skip, saying
so, where its binaries are missing, and fail instead under RECONCILER_REQUIRE_POSTGRES=1 (CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.crm.leads import stream_leads
from reconciler.adapters.crm.source import CrmUnavailable, read_desired, read_only_connection
from reconciler.adapters.state.leads import LeadBook
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.config.spec import Spec, load_spec, parse_spec
from reconciler.core import plan
from reconciler.core.digests import keyed_digest
from reconciler.core.model import DesiredLead
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer
from tests.conftest import PostgresServer
from tests.helpers import EXAMPLE_SPEC, engine_context

KEY = b"k" * 32
AGENTS = [
    *democrm.sample_agents(12),
    *democrm.BAD_AGENTS,
    {"username": "3001", "password": "pässwörd-ß", "full_name": "Zoë Ångström-Ñúñez",
     "level": 1, "team": "AGENTS", "extension": "8301", "email": "zoë@exämple.com",
     "is_active": 1},
    {"username": "3002", "password": "密码-3002", "full_name": "王小明 (Wáng)", "level": 7,
     "team": " ADMIN ", "extension": None, "email": None, "is_active": 0},
    {"username": "3003", "password": "p&ss=w#rd+%'\"", "full_name": "O'Brien \"Bob\" & Co",
     "level": 3, "team": "AGENTS", "extension": "  8303  ", "email": "a+b@x.io",
     "is_active": 1},
]
LEADS = [*democrm.sample_leads(400, ("1101", "1102", "1103")), *democrm.BAD_LEADS,
         {"id": 95001, "list_id": "1101", "phone": "+44 (0) 20-7946.0958", "first_name": "Zoë",
          "last_name": "Ñúñez", "city": "Zürich", "email": "zoë@exämple.com",
          "postal_code": "8001"}]
# Keys as text: digits of several lengths, cases, accents, other scripts, punctuation and
# characters beyond the Basic Multilingual Plane. Python orders them by code point.
TEXT_KEYS = ["10", "9", "100", "a", "B", "b", "Z", "é", "e", "ü", "ÿ", "Ā", "Ω", "日本",
             "😀", "~", "a-1", "a_1", "a1", "A1", "z", "ß", "ss", "İ", "i"]
TEXT_LEAD_SPEC = """
version = 1
[lists]
query = "SELECT id, name, campaign, is_active FROM calling_lists"
[lists.fields]
list_id = "id"
list_name = "name"
campaign_id = "campaign"
active = { column = "is_active", yes_no = true }
[leads]
query = "SELECT code, list_id, phone FROM text_leads"
key = "code"
[leads.fields]
list_id = "list_id"
phone_number = "phone"
"""


def _crm(url: str, agents: list[dict[str, Any]] = AGENTS,
         leads: list[dict[str, Any]] = LEADS) -> sa.Engine:
    return democrm.create_crm(url, agents, democrm.LISTS, leads)


@pytest.fixture(params=["sqlite", "postgresql"])
def crm_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty CRM database, on each backend in turn."""
    if request.param == "sqlite":
        return democrm.sqlite_url(tmp_path / "crm.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def both_crms(postgres: PostgresServer, tmp_path: Path) -> Iterator[dict[str, sa.Engine]]:
    """The same CRM rows in a SQLite database and in a PostgreSQL one."""
    engines = {"sqlite": _crm(democrm.sqlite_url(tmp_path / "crm.db")),
               "postgresql": _crm(postgres.new_database())}
    yield engines
    for engine in engines.values():
        engine.dispose()


def _leads(engine: sa.Engine, spec: Spec) -> list[Any]:
    assert spec.leads is not None
    return list(stream_leads(engine, spec.leads))


def test_users_lists_and_leads_read_the_same_on_both_backends(
    both_crms: dict[str, sa.Engine]
) -> None:
    spec = load_spec(EXAMPLE_SPEC)
    read = {name: read_desired(engine, spec, lambda f, v: keyed_digest(KEY, f, v))
            for name, engine in both_crms.items()}
    assert read["sqlite"] == read["postgresql"]
    desired = read["postgresql"]
    # Not vacuous: the odd rows are there, normalised, and the bad ones rejected by row.
    assert desired.users["3001"].fields["agent_full_name"] == "Zoë Ångström-Ñúñez"
    assert desired.users["3002"].fields["agent_user_group"] == "ADMIN"
    assert desired.users["3003"].fields["phone_login"] == "8303"
    assert desired.users["3003"].secrets["agent_pass"] == "p&ss=w#rd+%'\""
    assert {(r.resource, r.key, r.field) for r in desired.rejections} >= {
        ("users", "2001", "agent_user_level"), ("users", "1003", "agent_user"),
        ("lists", "1105", "list_name")}
    leads = {name: _leads(engine, spec) for name, engine in both_crms.items()}
    assert leads["sqlite"] == leads["postgresql"]      # keys, lists, row digests, rows
    assert len(leads["sqlite"]) == len(LEADS)


def test_plans_from_either_backend_are_identical(
    both_crms: dict[str, sa.Engine], sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    """Same CRM rows, same state, same dialer: the same plan, down to its digest."""
    documents = {}
    for name, engine in both_crms.items():
        with engine_context(SandboxDialer(), sqlite_state, engine.url.render_as_string(
                hide_password=False), tmp_path, leads_per_batch=50) as ctx:
            documents[name] = plan.to_json(gather_and_plan(ctx).plan)
    assert documents["sqlite"] == documents["postgresql"]
    assert documents["sqlite"]["summary"]["leads_to_send"] == 401


@pytest.mark.parametrize("statement", [
    "UPDATE agents SET full_name = 'changed by reconciler'",
    "DELETE FROM crm_leads",
    "INSERT INTO calling_lists VALUES ('1199', 'Injected list', 'SALES', 1)",
    "DROP TABLE agents",
], ids=["update", "delete", "insert", "drop"])
def test_a_write_through_the_crm_connection_fails(crm_url: str, statement: str) -> None:
    engine = _crm(crm_url)
    try:
        before = _snapshot(engine)
        with pytest.raises(CrmUnavailable, match="CRM query failed"), \
                read_only_connection(engine, "users") as conn:
            conn.exec_driver_sql(statement)
        assert _snapshot(engine) == before
    finally:
        engine.dispose()


def test_a_spec_query_that_writes_is_refused_and_writes_nothing(crm_url: str) -> None:
    engine = _crm(crm_url)
    try:
        before = _snapshot(engine)
        spec = parse_spec({"users": {
            "query": "UPDATE agents SET full_name = 'Hacked' RETURNING username, password, "
                     "full_name, level, team",
            "fields": {"agent_user": "username", "agent_pass": "password",
                       "agent_full_name": "full_name", "agent_user_level": "level",
                       "agent_user_group": "team"}}}, Path("writer.toml"))
        with pytest.raises(CrmUnavailable) as raised:
            read_desired(engine, spec, lambda f, v: keyed_digest(KEY, f, v))
        assert str(raised.value).startswith("users: CRM query failed: ")
        assert "\n" not in str(raised.value)
        assert _snapshot(engine) == before
    finally:
        engine.dispose()


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {table: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {table}"))),
                              key=repr)
                for table in ("agents", "calling_lists", "crm_leads")}


def test_integer_keys_stream_in_pythons_text_order(crm_url: str) -> None:
    ids = [3, 1000, 20, 1, 100, 9, 10, 2, 11, 99999, 2_000_000_000]
    leads = [{**democrm.sample_leads(1, ("1101",))[0], "id": n,
              "phone": f"555{n % 10_000_000:07d}"} for n in ids]
    engine = _crm(crm_url, [], leads)
    try:
        keys = [x.key for x in _leads(engine, load_spec(EXAMPLE_SPEC))
                if isinstance(x, DesiredLead)]
    finally:
        engine.dispose()
    assert keys == sorted(str(n) for n in ids)      # "1" < "10" < "100" < "1000" < "11" ...
    assert keys != [str(n) for n in sorted(ids)]    # the order of numbers would be wrong


@pytest.fixture
def text_key_crm(crm_url: str, tmp_path: Path) -> Iterator[tuple[str, Spec]]:
    engine = _crm(crm_url, [], [])
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE text_leads (code TEXT, list_id TEXT, phone TEXT)")
        conn.execute(sa.text("INSERT INTO text_leads VALUES (:code, '1101', :phone)"),
                     [{"code": key, "phone": f"555010{n:04d}"}
                      for n, key in enumerate(TEXT_KEYS)])
    engine.dispose()
    path = tmp_path / "text-keys.toml"
    path.write_text(TEXT_LEAD_SPEC, encoding="utf-8")
    yield crm_url, load_spec(path)


def test_text_keys_stream_in_pythons_order(text_key_crm: tuple[str, Spec]) -> None:
    url, spec = text_key_crm
    engine = sa.create_engine(url)
    try:
        keys = [x.key for x in _leads(engine, spec)]
    finally:
        engine.dispose()
    assert keys == sorted(TEXT_KEYS)


def test_recorded_keys_stream_in_pythons_order(state_engine: sa.Engine) -> None:
    """The other stream of the merge: the state database's, on each backend."""
    book = LeadBook(StateStore(state_engine, "default"))
    half = len(TEXT_KEYS) // 2
    for keys in (TEXT_KEYS[:half], TEXT_KEYS[half:]):
        book.record_intent("run", "1101", [(key, {}, "digest") for key in keys])
    assert [r.key for r in book.stream_recorded()] == sorted(TEXT_KEYS)


def test_odd_keys_plan_apply_and_converge_across_backends(
    text_key_crm: tuple[str, Spec], state_engine: sa.Engine, tmp_path: Path
) -> None:
    """CRM and state each on SQLite or PostgreSQL: the merge of their streams sends every
    lead once and then finds nothing to do (a stream out of order would stop it)."""
    url, spec = text_key_crm
    sandbox = SandboxDialer()
    with engine_context(sandbox, state_engine, url, tmp_path, spec.path,
                        leads_per_batch=7) as ctx:
        first = gather_and_plan(ctx)
        assert apply_plan(ctx, first).outcome == "ok"
        again = gather_and_plan(ctx).plan
    assert not again.has_changes
    assert ("1101", "sent", len(TEXT_KEYS)) in again.lead_counts
    codes = sorted(x["vendor_lead_code"] for x in sandbox.snapshot()["leads"])
    assert codes == sorted(TEXT_KEYS)

