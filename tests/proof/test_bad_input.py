"""Bad input: whatever the CRM holds, the dialer answers, or an operator writes in a spec or a
settings file, reconciler neither crashes nor sends what it should not.

- CRM rows full of unicode, empty and overlong values, `&`, `=`, `#`, `+`, `%`, quotes, newlines
  and SQL-looking text go through the real pipeline (a SQLite CRM, plan, apply, the real client,
  the sandbox dialer): every invalid row is rejected with its field and rule and none of it
  reaches the dialer; every valid row arrives as the CRM says after the documented
  normalisation (trimmed, phones reduced to digits), byte for byte.
- Arbitrary answer bodies never make the client raise anything but our own errors.
- A malformed spec or settings file is one error, on one line, naming the entry.

The expected outcome of each row is computed here from the rules as docs/spec.md and
docs/leads.md state them, not by calling the code under test.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer.client import ElisionClient
from reconciler.adapters.dialer.dialects import ELISION
from reconciler.adapters.state import db
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.config.load import load_settings
from reconciler.config.settings import CrmSettings, Settings, StateSettings
from reconciler.config.spec import Spec, load_spec
from reconciler.errors import ConfigError, DialerError, ReconcilerError, SpecError
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer
from tests.helpers import EXAMPLE_SPEC, dialer_settings

API_PASSWORD = "Api-Pw-9QxZ"
CAMPAIGNS = ("TESTCAMP", "SALES", "SUPPORT")
GROUPS = ("AGENTS", "ADMIN")
# Untyped columns: SQLite keeps each value as it was given (no affinity turns "007" into 7).
SCHEMA = (
    "CREATE TABLE agents (username, password, full_name, level, team, extension, email, "
    "is_active)",
    "CREATE TABLE calling_lists (id, name, campaign, is_active)",
    "CREATE TABLE crm_leads (id, list_id, phone, first_name, last_name, city, email, "
    "postal_code)",
)
# More examples for a deeper search: RECONCILER_PROOF_EXAMPLES=2000 pytest tests/proof
EXAMPLES_WANTED = int(os.environ.get("RECONCILER_PROOF_EXAMPLES", "100"))
PROPERTY = settings(max_examples=EXAMPLES_WANTED, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- generated CRM values ----------------------------------------------------------------------

SQL_LOOKING = ["'; DROP TABLE agents; --", "1' OR '1'='1", "Robert'); DELETE FROM crm_leads;--",
               '" OR ""="', "%' AND 1=1 --", "0x27 UNION SELECT password FROM agents"]
PIECES = ["&", "=", "#", "+", "%", "%20", "'", '"', "\n", "\r\n", "\t", "\x00", "\u2028", " ",
          "|", "-", "\\", "/", "?", ";", "<b>", "é", "ß", "Ω", "日本", "😀", "\u200b", "ǅ",
          "pass=", "\x7f", "\u0085"]
CHAR = st.characters(codec="utf-8", exclude_categories=("Cs",))
TEXT = st.one_of(
    st.sampled_from(["", "   ", " \t\n ", *SQL_LOOKING]),
    st.lists(st.one_of(st.sampled_from(PIECES), CHAR), max_size=24).map("".join),
    st.text(CHAR, max_size=40),
    st.tuples(st.sampled_from(["x", "é", "日", "😀", "a b"]), st.integers(0, 130)).map(
        lambda t: t[0] * t[1]),                                    # overlong, by characters
)
PADDING = st.sampled_from(["", "", " ", "  ", "\t", "\n", " \u3000"])


def padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(PADDING, values, PADDING).map("".join)


def nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


# Characters that break no rule (no control characters), and pieces chosen to trip a URL or
# form encoder, a SQL builder or a pipe-separated answer.
NICE_CHAR = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"))
NICE_PIECES = [p for p in PIECES if not any(unicodedata.category(c) in ("Cc", "Zl", "Zp")
                                                for c in p)] + SQL_LOOKING


def fit(text: str, low: int, high: int) -> str:
    text = text.strip()[:high].strip()
    return text + "x" * max(0, low - len(text))


def nice(low: int, high: int) -> st.SearchStrategy[str]:
    """Valid text of `low`-`high` characters once trimmed, as odd as it can be."""
    return st.lists(st.one_of(st.sampled_from(NICE_PIECES), NICE_CHAR), max_size=high).map(
        lambda parts: fit("".join(parts), low, high))


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any] = TEXT
           ) -> st.SearchStrategy[Any]:
    """Valid nine times in ten, per value: a row of eight values then gets through about
    every other time, enough to check what arrives as well as what is refused."""
    return st.integers(0, 9).flatmap(lambda n: invalid if n == 9 else valid)


YES = st.sampled_from([1, "1", "yes", " Y ", "true", "Active"])
YES_NO = st.one_of(YES, YES, st.sampled_from([0, "no", "N", "maybe", "", None]))

# Every value strategy is built once, here: a strategy built inside a draw is a new object that
# Hypothesis validates again on every example, which cost more than running the pipeline.
AGENT_VALUES = {
    "username": mostly(st.one_of(st.integers(1000, 1010).map(str), padded(nice(2, 20))),
                       st.sampled_from(["x", "", "u" * 21, "a\nb"])),
    "password": mostly(padded(nice(1, 20)), nullable(TEXT)),
    "full_name": mostly(padded(nice(1, 50)), nullable(TEXT)),
    "level": mostly(st.one_of(st.integers(1, 9), st.sampled_from(["3", " 9 "])),
                    st.sampled_from([0, 12, -1, "1.0", "x", None])),
    # Groups the dialer has, or values our rules refuse: a group that passes our rules
    # but does not exist is the dialer's business (tests/app/test_engine.py covers it).
    "team": mostly(nullable(padded(st.sampled_from(GROUPS))),
                   st.sampled_from(["G" * 21, "AG\nENTS"])),
    "extension": mostly(nullable(padded(nice(1, 20)))),
    "email": mostly(nullable(padded(nice(1, 100)))),
    "is_active": YES_NO,
}
LIST_VALUES = {
    "id": mostly(st.one_of(st.sampled_from(["1101", "1102", " 1103 "]), st.integers(10, 99999)),
                 st.sampled_from(["11a", "1", "123456789012345", ""])),
    "name": mostly(padded(nice(6, 30)), nullable(TEXT)),
    "campaign": mostly(padded(st.sampled_from(CAMPAIGNS)),
                       st.sampled_from(["X", "TOOLONGCAMP", "SA\tLES", None])),
    "is_active": YES_NO,
}
# Keys are not padded with spaces: see test_a_lead_key_padded_with_spaces_is_no_crash.
LEAD_KEY = mostly(st.one_of(st.integers(-5, 10**9), nice(1, 20)),
                  TEXT.filter(lambda k: k == k.strip() or not k.strip()))
# Phones unique per row (no lead is a duplicate of another by accident: `{n}` is the row's
# number), in every form: punctuated, bare, too short, with letters, too long, broken by a
# newline.
LEAD_PHONE = mostly(st.sampled_from(["+1 (555) 01{n:02d}-{n:04d}", "555.010.{n:04d}",
                                     " 0044 20 7946 {n:04d} ", "5550100{n:03d}"]),
                    st.sampled_from(["12{n}", "555-CALL-{n:03d}", "9" * 19 + "{n}",
                                     "555\n010{n:04d}", None]))
LEAD_LIST_PICK = mostly(st.integers(0, 2), st.sampled_from(["9999", " 1101 ", None]))
LEAD_VALUES = {
    "first_name": mostly(nullable(padded(nice(0, 30)))),
    "last_name": mostly(nullable(nice(0, 30))),
    "city": mostly(nullable(nice(0, 50))),
    "email": mostly(nullable(nice(0, 70))),
    "postal_code": mostly(nullable(st.one_of(nice(0, 10), st.integers(0, 99999)))),
}


def draw_row(draw: st.DrawFn, values: Mapping[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    return {column: draw(strategy) for column, strategy in values.items()}


@st.composite
def agents(draw: st.DrawFn) -> list[dict[str, Any]]:
    found = [draw_row(draw, AGENT_VALUES) for _ in range(draw(st.integers(0, 4)))]
    return [row for row in found if row["username"].strip() != "api"]  # the API account's name


@st.composite
def lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [draw_row(draw, LIST_VALUES) for _ in range(draw(st.integers(0, 3)))]


@st.composite
def leads(draw: st.DrawFn, list_ids: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for n in range(draw(st.integers(0, 8))):
        key, phone, pick = draw(LEAD_KEY), draw(LEAD_PHONE), draw(LEAD_LIST_PICK)
        rows.append({
            "id": key,
            # A list of this example (the CRM's or not valid), or one of no example.
            "list_id": (list_ids or ["1101"])[pick % len(list_ids or ["1101"])]
            if isinstance(pick, int) else pick,
            "phone": None if phone is None else phone.format(n=n),
            **draw_row(draw, LEAD_VALUES),
        })
    return rows


@st.composite
def crm_rows(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    list_rows = draw(lists())
    return {"agents": draw(agents()), "lists": list_rows,
            "leads": draw(leads([x["id"] for x in list_rows]))}


# --- the rules, as the documentation states them ------------------------------------------------

CONTROL = "must not contain control characters"
YES_NO_RULE = "must be a yes/no value (1/0, true/false, Y/N)"
TRUE, FALSE = {"1", "y", "yes", "true", "t", "on", "active"}, {"0", "n", "no", "false", "f",
                                                                  "off", "inactive"}


def phone_as_sent(text: str) -> str:
    """docs/leads.md: every space (of any kind, anywhere) and `+-.()/` dropped."""
    return re.sub(r"[\s+\-.()/]", "", text)


def normalised(raw: Any) -> str | None:
    """docs/spec.md "How values are normalised": text, trimmed; blank is absent."""
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def chars(low: int, high: int) -> Callable[[str], str | None]:
    def rule(value: str) -> str | None:
        if has_control(value):
            return CONTROL
        if low <= len(value) <= high:
            return None
        return f"must be at most {high} characters" if low == 0 else \
            f"must be {low}-{high} characters"
    return rule


def digits(low: int, high: int) -> Callable[[str], str | None]:
    def rule(value: str) -> str | None:
        if has_control(value):
            return CONTROL
        ok = low <= len(value) <= high and (not value or (value.isascii() and value.isdigit()))
        return None if ok else f"must be {low}-{high} digits"
    return rule


def one_of(*choices: str, text: str = "") -> Callable[[str], str | None]:
    def rule(value: str) -> str | None:
        if has_control(value):
            return CONTROL
        return None if value in choices else text or "must be " + " or ".join(choices)
    return rule


USER_RULES = {"agent_user": chars(2, 20), "agent_pass": chars(1, 20),
              "agent_user_level": one_of(*"123456789", text="must be 1 digit from 1 to 9"),
              "agent_full_name": chars(1, 50), "agent_user_group": chars(1, 20),
              "phone_login": chars(1, 20), "email": chars(1, 100), "active": one_of("Y", "N")}
LIST_RULES = {"list_id": digits(2, 14), "list_name": chars(6, 30), "campaign_id": chars(2, 8),
              "active": one_of("Y", "N")}
LEAD_RULES = {"phone_number": digits(6, 18), "list_id": digits(2, 14),
              "vendor_lead_code": chars(0, 20), "first_name": chars(0, 30),
              "last_name": chars(0, 30), "city": chars(0, 50), "email": chars(0, 70),
              "postal_code": chars(0, 10)}
USER_COLUMNS = {"agent_user": "username", "agent_pass": "password",
                "agent_full_name": "full_name", "agent_user_level": "level",
                "agent_user_group": "team", "phone_login": "extension", "email": "email",
                "active": "is_active"}
LIST_COLUMNS = {"list_id": "id", "list_name": "name", "campaign_id": "campaign",
                "active": "is_active"}


@dataclass
class Expected:
    rejects: set[tuple[str, str, str, str]] = field(default_factory=set)  # resource, key, ...
    blocked_leads: dict[str, str] = field(default_factory=dict)          # key -> list id
    users: dict[str, dict[str, str]] = field(default_factory=dict)       # created, as sent
    lists: dict[str, dict[str, str]] = field(default_factory=dict)
    leads: dict[str, dict[str, str]] = field(default_factory=dict)       # key -> as sent
    invalid_keys: dict[str, set[str]] = field(default_factory=dict)


def _yes_no(value: str) -> str | None:
    return "Y" if value.lower() in TRUE else "N" if value.lower() in FALSE else None


def expect_rows(resource: str, rows: list[dict[str, Any]], columns: Mapping[str, str],
                rules: Mapping[str, Callable[[str], str | None]], key_field: str,
                required: tuple[str, ...], defaults: Mapping[str, str],
                expected: Expected) -> dict[str, dict[str, str]]:
    """Users and lists (docs/spec.md "How rows are checked"): the valid rows by key."""
    valid: dict[str, dict[str, str]] = {}
    keyed: dict[str, list[int]] = {}
    for number, row in enumerate(rows):
        values: dict[str, str] = {}
        problems: list[tuple[str, str]] = []
        for name, column in columns.items():
            value = normalised(row[column]) or defaults.get(name)
            if value is None:
                continue
            if name == "active":
                flag = _yes_no(value)
                if flag is None:
                    problems.append((name, YES_NO_RULE))
                    continue
                value = flag
            broken = rules[name](value)
            if broken:
                problems.append((name, broken))
            values[name] = value
        reported = {name for name, _ in problems}
        problems += [(name, "is required") for name in (key_field, *required)
                     if name not in values and name not in reported]
        key = values.get(key_field, "")
        key_bad = any(name == key_field for name, _ in problems)
        if key and not key_bad:
            keyed.setdefault(key, []).append(number)
        shown = "" if key_bad else key
        for name, rule in problems:
            expected.rejects.add((resource, shown, name, rule))
        expected.invalid_keys.setdefault(resource, set()).add(shown) if problems else None
        if not problems:
            valid.setdefault(key, values)
    for key, numbers in keyed.items():
        if len(numbers) > 1:
            valid.pop(key, None)
            listed = ", ".join(str(n + 1) for n in numbers)
            expected.rejects.add((resource, key, key_field,
                                  f"duplicate key: CRM rows {listed} share it"))
            expected.invalid_keys.setdefault(resource, set()).add(key)
    return valid


def expect(crm: dict[str, list[dict[str, Any]]]) -> Expected:
    expected = Expected()
    users = expect_rows("users", crm["agents"], USER_COLUMNS, USER_RULES, "agent_user",
                        ("agent_pass", "agent_user_level", "agent_full_name",
                         "agent_user_group"), {"agent_user_group": "AGENTS"}, expected)
    # An inactive agent is never created (docs/spec.md, on_inactive).
    expected.users = {k: v for k, v in users.items() if v.get("active", "Y") == "Y"}
    lists = expect_rows("lists", crm["lists"], LIST_COLUMNS, LIST_RULES, "list_id",
                        ("list_name", "campaign_id"), {}, expected)
    expected.lists = {k: {**v, "active": v.get("active", "N")} for k, v in lists.items()}
    rejected_lists = {key for res, key, _, _ in expected.rejects if res == "lists" and key}
    expect_leads(crm["leads"], set(lists), rejected_lists - set(lists), expected)
    return expected


def expect_leads(rows: list[dict[str, Any]], usable: set[str], blocked: set[str],
                 expected: Expected) -> None:
    """docs/leads.md: key order, duplicate keys, keep_first phones, lists, field rules."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = normalised(row["id"])
        if key is None:
            expected.rejects.add(("leads", "", "lead_key", "is required"))
            continue
        by_key.setdefault(key, []).append(row)
    # keep_first: the first lead in key order with a list and a phone keeps it, even one
    # rejected for another reason (its key on several rows, a bad field).
    phones: dict[tuple[str, str], str] = {}
    for key in sorted(by_key):
        group = by_key[key]
        for row in group:
            token = (normalised(row["list_id"]) or "",
                     phone_as_sent(normalised(row["phone"]) or ""))
            if all(token):
                phones.setdefault(token, key)
        if len(group) > 1:
            expected.rejects.add(("leads", key, "lead_key",
                                  f"duplicate key: {len(group)} CRM rows share it"))
            expected.invalid_keys.setdefault("leads", set()).add(key)
            continue
        row = group[0]
        list_id = normalised(row["list_id"]) or ""
        token = (list_id, phone_as_sent(normalised(row["phone"]) or ""))
        problems: list[tuple[str, str]] = []
        if phones.get(token, key) != key:
            problems = [("phone_number", f"duplicate phone in list {list_id}: lead "
                                         f"{phones[token]} has it and comes first")]
        elif list_id in blocked:
            expected.blocked_leads[key] = list_id
        elif list_id not in usable:
            problems = [("list_id", f"list {list_id} is neither on the dialer nor in the CRM")]
        else:
            sent = {"list_id": list_id, "vendor_lead_code": key}
            for name in ("phone_number", "first_name", "last_name", "city", "email",
                         "postal_code"):
                value = normalised(row["phone" if name == "phone_number" else name])
                if value is not None:
                    sent[name] = phone_as_sent(value) if name == "phone_number" else value
            problems = [(name, rule) for name, value in sent.items()
                        if (rule := LEAD_RULES[name](value))]
            if "phone_number" not in sent:
                problems.append(("phone_number", "is required"))
            if not problems:
                expected.leads[key] = sent
        for name, rule in problems:
            expected.rejects.add(("leads", key, name, rule))
        if problems or key in expected.blocked_leads:
            expected.invalid_keys.setdefault("leads", set()).add(key)


# --- the pipeline ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    """What every example shares: opening databases and reading the spec anew for each cost
    more than planning and applying one."""

    state: sa.Engine              # one state database: each example is its own dialer target
    directory: Path
    crm_url: str                  # one CRM database, its rows replaced for each example
    crm_writer: sa.Engine
    crm: sa.Engine
    spec: Spec


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    directory = tmp_path_factory.mktemp("bad-input")
    engine = db.open_engine(f"sqlite:///{directory / 'state.db'}")
    db.upgrade(engine)
    crm_url = f"sqlite:///{directory / 'crm.db'}"
    writer, reader = sa.create_engine(crm_url), sa.create_engine(crm_url)
    with writer.begin() as conn:
        for statement in SCHEMA:
            conn.exec_driver_sql(statement)
    yield Bench(engine, directory, crm_url, writer, reader, load_spec(EXAMPLE_SPEC))
    for opened in (engine, writer, reader):
        opened.dispose()


EXAMPLES = itertools.count()


def fill_crm(engine: sa.Engine, crm: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        for table, rows in (("agents", crm["agents"]), ("calling_lists", crm["lists"]),
                            ("crm_leads", crm["leads"])):
            conn.exec_driver_sql(f"DELETE FROM {table}")
            if rows:
                columns = list(rows[0])
                conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                     f"({', '.join(f':{c}' for c in columns)})"), rows)


@contextmanager
def pipeline(bench: Bench, crm: dict[str, list[dict[str, Any]]]
             ) -> Iterator[tuple[Context, SandboxDialer]]:
    fill_crm(bench.crm_writer, crm)
    target = f"example-{next(EXAMPLES)}"
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", API_PASSWORD),)))
    settings_ = Settings(
        dialer=dialer_settings(password=API_PASSWORD, target=target, leads_per_batch=3),
        crm=CrmSettings(bench.crm_url),
        state=StateSettings(url=str(bench.state.url),
                            digest_key_file=bench.directory / "digest.key"),
        spec_path=EXAMPLE_SPEC)
    with ElisionClient(settings_.dialer, transport=sandbox.transport()) as client:
        yield Context(settings_, bench.spec, StateStore(bench.state, target), bench.crm, client,
                      b"k" * 32, ELISION), sandbox


@PROPERTY
@given(crm=crm_rows())
def test_each_crm_row_arrives_byte_for_byte_or_is_rejected_by_field_and_rule(
    bench: Bench, crm: dict[str, list[dict[str, Any]]]
) -> None:
    expected = expect(crm)
    for what, count in (("users created", len(expected.users)), ("lists", len(expected.lists)),
                        ("leads sent", len(expected.leads)),
                        ("rows rejected", len(expected.rejects))):
        event(f"{what}: {'some' if count else 'none'}")
    with pipeline(bench, crm) as (ctx, sandbox):
        gathered = gather_and_plan(ctx)
        report = apply_plan(ctx, gathered)
        again = gather_and_plan(ctx).plan
    plan = gathered.plan

    # Invalid rows: rejected, each problem with its field and rule.
    found = {(r.resource, r.key, r.field, r.reason) for r in plan.rejects}
    blocked = {(r.key, r.reason) for r in plan.rejects
               if r.resource == "leads" and r.key in expected.blocked_leads}
    assert found - {("leads", key, "list_id", reason) for key, reason in blocked} \
        == expected.rejects
    assert {key for key, _ in blocked} == set(expected.blocked_leads)
    for key, reason in blocked:
        assert reason.startswith(f"list {expected.blocked_leads[key]} is rejected in the CRM (")

    # Valid rows: on the dialer exactly as the CRM says, and nothing else is.
    assert report.outcome == "ok" and not report.failures, report
    snapshot = sandbox.snapshot()
    users = {u["agent_user"]: u for u in snapshot["users"]}
    assert set(users) == set(expected.users)
    for key, sent in expected.users.items():
        user = users[key]
        assert (user["full_name"], str(user["user_level"]), user["user_group"]) == (
            sent["agent_full_name"], sent["agent_user_level"], sent["agent_user_group"])
        assert (user["phone_login"], user["email"], user["active"]) == (
            sent.get("phone_login", ""), sent.get("email", ""), "Y")
        assert sandbox.store.check_password(key, sent["agent_pass"])
    on_dialer = {x["list_id"]: x for x in snapshot["lists"]}
    assert set(on_dialer) == set(expected.lists)
    for key, sent in expected.lists.items():
        assert (on_dialer[key]["list_name"], on_dialer[key]["campaign_id"],
                on_dialer[key]["active"]) == (sent["list_name"], sent["campaign_id"],
                                              sent["active"])
    held = {x["vendor_lead_code"]: x for x in snapshot["leads"]}
    assert len(held) == len(snapshot["leads"]) and set(held) == set(expected.leads)
    for key, sent in expected.leads.items():
        stored = {k: str(v) for k, v in held[key].items() if k not in ("lead_id", "status")}
        assert stored == sent, key

    # And the law: applied, then planned again, nothing is left to do.
    assert not again.has_changes


def test_a_lead_key_padded_with_spaces_is_no_crash(bench: Bench) -> None:
    row = {"list_id": "1101", "first_name": None, "last_name": None, "city": None,
           "email": None, "postal_code": None}
    crm = {"agents": [], "lists": [{"id": "1101", "name": "Spring Renewals",
                                    "campaign": "TESTCAMP", "is_active": 1}],
           "leads": [{**row, "id": 0, "phone": "5550100000"},
                     {**row, "id": " 00", "phone": "5550100001"}]}
    with pipeline(bench, crm) as (ctx, _):
        plan = gather_and_plan(ctx).plan
    # Keys are taken as the database sorted them: a padded one is refused, never trimmed.
    assert [(r.field, r.reason) for r in plan.rejects] == [
        ("lead_key", "must not start or end with spaces")]
    assert [op.keys for op in plan.ops if op.kind == "add_leads"] == [("0",)]


# --- what the dialer answers --------------------------------------------------------------------

BODY = st.one_of(
    st.text(CHAR, max_size=200),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(CHAR, max_size=20)),
                 lambda inner: st.one_of(st.lists(inner, max_size=4),
                                         st.dictionaries(st.text(CHAR, max_size=8), inner,
                                                         max_size=4)),
                 max_leaves=12).map(lambda v: __import__("json").dumps(v)),
    st.sampled_from(['{"lead 1": {"success": true, "data": "|||"}}', '{"lead 0": {}}',
                     '["ERROR"]', "SUCCESS:", "ERROR: ", '{"success": "maybe"}',
                     '{"success":true,"message":"lists are listed","data":[1, null]}']),
)
VERBS: dict[str, Callable[[ElisionClient], Any]] = {
    "add_user": lambda c: c.add_user("1000", "Agent-Pw-1", 1, "Test Agent", "AGENTS"),
    "update_user": lambda c: c.update_user("1000", agent_full_name="Renamed"),
    "add_list": lambda c: c.add_list("1101", "Spring Renewals", "TESTCAMP", "Y"),
    "active_lists": lambda c: c.active_lists(),
    "add_multi_lead": lambda c: c.add_multi_lead([{"phone_number": "5550100001",
                                                   "list_id": "1101"}] * 2),
}


@settings(max_examples=150, deadline=None)
@given(verb=st.sampled_from(sorted(VERBS)), body=BODY)
def test_arbitrary_answers_reach_the_caller_as_our_errors_or_replies(verb: str, body: str
                                                                     ) -> None:
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", API_PASSWORD),)))
    sandbox.inject("garbage", body=body, times=None)
    settings_ = dialer_settings(password=API_PASSWORD, max_retries=1)
    with ElisionClient(settings_, transport=sandbox.transport(), sleep=lambda s: None) as client:
        try:
            VERBS[verb](client)
        except DialerError as exc:
            assert API_PASSWORD not in str(exc)


# --- specs and settings -------------------------------------------------------------------------

EXAMPLE = tomllib.loads(EXAMPLE_SPEC.read_text(encoding="utf-8"))
ODD_NAMES = st.one_of(st.sampled_from(["bogus", "pass", "Users", "fields", "query "]),
                      st.text(CHAR, min_size=1, max_size=12))
ODD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                       st.text(CHAR, max_size=20), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.sampled_from(["column", "value", "lower", "map"]),
                                       st.one_of(st.text(max_size=5), st.integers()),
                                       max_size=2))


@st.composite
def broken_specs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """The example spec with one entry broken; and a word the error must name."""
    spec = {name: dict(value) if isinstance(value, dict) else value
            for name, value in EXAMPLE.items()}
    for name in ("users", "lists", "leads"):
        spec[name] = {k: dict(v) if isinstance(v, dict) else v for k, v in spec[name].items()}
    section = draw(st.sampled_from(["users", "lists", "leads"]))
    how = draw(st.sampled_from(["top", "section", "key", "field", "drop_field", "value"]))
    if how == "top":
        name = draw(ODD_NAMES.filter(lambda n: n not in spec))
        spec[name] = draw(ODD_VALUES)
        return spec, repr(name)
    if how == "section":
        spec[section] = draw(ODD_VALUES.filter(lambda v: not isinstance(v, dict)))
        return spec, f"[{section}]"
    if how == "key":
        name = draw(ODD_NAMES.filter(lambda n: n not in spec[section]))
        spec[section][name] = draw(ODD_VALUES)
        return spec, repr(name)
    fields = spec[section]["fields"]
    if how == "drop_field":
        dropped = draw(st.sampled_from(sorted(fields)))
        del fields[dropped]
        return spec, dropped
    if how == "field":
        target = draw(st.sampled_from(sorted(fields)))
        fields[target] = draw(ODD_VALUES.filter(lambda v: not isinstance(v, str)))
        return spec, target
    option = draw(st.sampled_from(["query", "on_removed", "duplicates", "key", "owned_fields"]))
    spec[section][option] = draw(ODD_VALUES)
    return spec, option


def toml_text(document: Mapping[str, Any]) -> str:
    """A TOML writer (tomllib only reads), enough for specs and settings: every section a
    table, everything inside it inline. None means "absent": TOML has no null."""
    plain = [f"{_string(k)} = {_value(v)}\n" for k, v in document.items()
             if v is not None and not isinstance(v, dict)]
    tables = [f"[{_string(name)}]\n" + "".join(f"{_string(k)} = {_value(v)}\n"
                                               for k, v in table.items() if v is not None)
              for name, table in document.items() if isinstance(table, dict)]
    return "".join(plain) + "\n".join(tables)


def _string(text: str) -> str:
    escaped = "".join(c if c.isprintable() and c not in '"\\' else
                      f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                      for c in text)
    return f'"{escaped}"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()
                               if v is not None) + "}"
    raise TypeError(f"no TOML for {value!r}")


@PROPERTY
@given(case=broken_specs())
def test_a_broken_spec_is_one_line_naming_the_entry(case: tuple[dict[str, Any], str],
                                                    tmp_path_factory: pytest.TempPathFactory
                                                    ) -> None:
    document, entry = case
    path = tmp_path_factory.mktemp("spec") / "crm.toml"
    path.write_text(toml_text(document), encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8")) is not None
    try:
        load_spec(path)
        event("spec accepted")
    except SpecError as exc:
        event("spec refused")
        message = str(exc)
        assert message.startswith(f"spec {path}: ") and "\n" not in message, message
        assert entry in message or entry.strip("'") in message, (entry, message)


SETTING_KEYS = {
    "dialer": ["url", "user", "source", "target", "method", "connect_timeout", "read_timeout",
               "max_retries", "backoff_base", "backoff_max", "leads_per_batch",
               "max_request_bytes"],
    "crm": ["url"], "state": ["url", "digest_key_file"],
    "guards": ["max_deactivations", "max_changed_share", "min_users_for_share"],
}
GOOD_SETTINGS = {"reconciler": {"spec": "specs/example.toml"},
                 "dialer": {"url": "http://127.0.0.1:1/dialer/elision_api.php", "user": "api"},
                 "crm": {"url": "sqlite:///crm.db"}}


@st.composite
def broken_settings(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    document = {k: dict(v) for k, v in GOOD_SETTINGS.items()}
    how = draw(st.sampled_from(["value", "unknown_key", "unknown_section", "password"]))
    section = draw(st.sampled_from(sorted(SETTING_KEYS)))
    document.setdefault(section, {})
    if how == "value":
        key = draw(st.sampled_from(SETTING_KEYS[section]))
        document[section][key] = draw(st.one_of(ODD_VALUES.filter(
            lambda v: v is not None and not isinstance(v, dict)), st.just(float("nan"))))
        return document, f"{section}.{key}"
    # Names without control characters: see test_a_settings_key_named_with_a_newline_*.
    if how == "unknown_key":
        key = draw(ODD_NAMES.filter(lambda n: n not in SETTING_KEYS[section] and not has_control(n)
                                    and n not in ("password_env", "password_file")))
        document[section][key] = draw(st.integers())
        return document, f"{section}.{key}"
    if how == "unknown_section":
        name = draw(ODD_NAMES.filter(lambda n: n not in (*SETTING_KEYS, "reconciler",
                                                         "daemon") and not has_control(n)))
        document[name] = {"x": 1}
        return document, f"[{name}]"
    document["dialer"]["password"] = draw(st.text(CHAR, max_size=20).map("Cfg-Secret-".__add__))
    return document, "dialer.password"


@PROPERTY
@given(case=broken_settings())
def test_a_broken_settings_file_is_one_line_naming_the_key(
    case: tuple[dict[str, Any], str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    document, key = case
    path = tmp_path_factory.mktemp("config") / "reconciler.toml"
    path.write_text(toml_text(document), encoding="utf-8")
    try:
        load_settings(path, {"RECONCILER_DIALER_PASSWORD": "x"})
        event("settings accepted")
    except ConfigError as exc:
        event("settings refused")
        message = str(exc)
        assert "\n" not in message and key in message, (key, message)
        if key == "dialer.password":
            assert document["dialer"]["password"] not in message
    except ReconcilerError as exc:  # pragma: no cover - the wrong kind of error
        raise AssertionError(f"{type(exc).__name__} instead of ConfigError: {exc}") from exc


def test_a_settings_key_named_with_a_newline_is_still_one_line(tmp_path: Path) -> None:
    path = tmp_path / "reconciler.toml"
    path.write_text(toml_text({**GOOD_SETTINGS, "crm": {"url": "sqlite://", "a\nb": 1}}),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, {})
    assert "\n" not in str(raised.value)
