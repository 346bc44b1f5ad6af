"""VICIdial's silent input rewrites: which are refused, which are sent with a warning, and what
the dialer then stores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer.vicidial_fields import (
    vicidial_input_problems,
    vicidial_login_problems,
    vicidial_rewrite,
    vicidial_stored,
)
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.app import VICIDIAL_API_PATH


@pytest.mark.parametrize(("function", "field", "value", "action", "stored"), [
    ("add_user", "agent_pass", "pa$$word", "reject", ""),
    ("update_user", "phone_pass", "pä55", "reject", ""),
    ("add_user", "agent_user", "u" * 21, "reject", "u" * 20),
    ("add_user", "agent_user_group", "AGENTS!", "reject", "AGENTS"),
    ("add_user", "agent_full_name", "José O'Brien", "warn", "Jos OBrien"),
    ("add_user", "agent_full_name", "Zoë", "warn", "Zo"),
    ("add_user", "agent_full_name", "éé", "reject", ""),   # nothing left: breaks 1-50
    ("add_list", "list_name", "Liste d'été 2026", "warn", "Liste dt 2026"),
    ("update_list", "list_name", "Éte", "reject", "te"),   # under 6 characters
    ("add_lead", "first_name", "Ann+Marie", "warn", "Ann Marie"),
    ("add_lead", "last_name", "Müller", "warn", "Mller"),
    ("add_lead", "comments", "call #2; ok", "warn", "call 2 ok"),
    ("add_lead", "vendor_lead_code", "CRM+1", "reject", "CRM 1"),
    ("add_lead", "vendor_lead_code", "CRM|1", "reject", "CRM|1"),
    ("add_lead", "source_id", "a|b", "reject", "a|b"),
    ("add_lead", "email", "a+b@example.com", "warn", "a b@example.com"),
])
def test_rewrites_are_judged(function: str, field: str, value: str, action: str,
                             stored: str) -> None:
    rewrite = vicidial_rewrite(function, field, value)
    assert rewrite is not None
    assert (rewrite.action, rewrite.stored) == (action, stored)
    assert value not in rewrite.rule and value not in repr(rewrite)
    problem = vicidial_input_problems(function, field, value)
    assert (problem is not None) == (action == "reject")


@pytest.mark.parametrize(("function", "field", "value"), [
    ("add_user", "agent_pass", "Pass-word_99"), ("add_user", "agent_full_name", "Testing Person"),
    ("add_user", "agent_user", "u" * 20), ("add_lead", "first_name", "O'Brien"),
    ("add_lead", "phone_number", 7275551212), ("add_lead", "vendor_lead_code", "CRM-1"),
    ("add_list", "list_name", "Spring renewals 2026"), ("add_multi_lead", "first_name", "Zoë"),
    ("add_lead", "nickname", "Zoë"), ("add_lead", "first_name", True),
])
def test_values_vicidial_keeps_are_not_rewrites(function: str, field: str, value: Any) -> None:
    assert vicidial_rewrite(function, field, value) is None
    assert vicidial_input_problems(function, field, value) is None


# --- values VICIdial writes into its SQL unescaped: the call dies with an empty HTTP 500 -------

@pytest.mark.parametrize(("function", "field", "value", "duplicate_check", "breaks"), [
    ("add_user", "email", "pat.o'brien@example.com", (), "'"),
    ("update_user", "email", "o'neil+news@example.com", (), "'"),
    ("add_user", "agent_user", "o'neil", (), "'"),
    ("update_user", "agent_user", "back\\slash", (), "\\"),
    ("add_lead", "comments", 'said "call me later"', (), '"'),
    ("add_lead", "comments", "ends in a backslash \\", (), "\\"),
    ("add_lead", "source_id", 'web "form"', (), '"'),
    ("add_lead", "vendor_lead_code", 'CRM"7', (), '"'),
    ("add_lead", "first_name", "O'Brien", ("DUPNAMEPHONELIST",), "'"),
    ("add_lead", "last_name", "D'Souza", ("DUPLIST", "DUPNAMEPHONESYS90DAY"), "'"),
    ("add_lead", "title", "M'me", ("DUPTITLEALTPHONECAMP",), "'"),
])
def test_values_that_break_vicidials_sql_are_rejected(
    function: str, field: str, value: str, duplicate_check: tuple[str, ...], breaks: str
) -> None:
    problem = vicidial_input_problems(function, field, value, duplicate_check=duplicate_check)
    assert problem is not None and value not in problem
    assert problem.startswith(f"must not contain {breaks} ") and "empty HTTP 500" in problem


@pytest.mark.parametrize(("function", "field", "value", "duplicate_check"), [
    ("add_lead", "first_name", "O'Brien", ()),                  # "..." in the lead's INSERT
    ("add_lead", "first_name", "O'Brien", ("DUPLIST", "DUPTITLEALTPHONELIST")),
    ("add_lead", "email", "pat.o'brien@example.com", ()),
    ("add_lead", "comments", "it's fine", ()),
    ("update_user", "agent_full_name", "Pat O'Brien", ()),       # the filter drops the '
    ("add_list", "list_name", "Liste d'ete 2026", ()),
])
def test_quotes_the_sql_does_not_break_on_are_sent(
    function: str, field: str, value: str, duplicate_check: tuple[str, ...]
) -> None:
    assert vicidial_input_problems(function, field, value,
                                   duplicate_check=duplicate_check) is None


def test_stored_value_and_login() -> None:
    assert vicidial_stored("add_user", "agent_full_name", "René") == "Ren"
    assert vicidial_stored("add_user", "agent_pass", "pa$$") == "pa$$"   # never exposed
    assert vicidial_login_problems("apiuser", "test1234") is None
    broken = vicidial_login_problems("apiuser", "s3cr3t!")
    assert broken is not None and broken[0] == "pass" and "s3cr3t!" not in broken[1]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(["agent_full_name", "first_name", "comments", "city", "email",
                              "list_name", "agent_pass", "postal_code"]),
       value=st.text(max_size=30))
def test_a_rewrite_is_idempotent_and_never_shows_the_value(field: str, value: str) -> None:
    function = {"agent_full_name": "add_user", "agent_pass": "add_user",
                "list_name": "add_list"}.get(field, "add_lead")
    rewrite = vicidial_rewrite(function, field, value)
    if rewrite is None:
        return
    if rewrite.rule.startswith("must not contain"):   # its SQL would break: not a rewrite
        assert rewrite.action == "reject" and "HTTP 500" in rewrite.rule
        return
    assert vicidial_rewrite(function, field, rewrite.stored) is None or rewrite.stored == ""
    assert rewrite.rule.startswith(("would be altered", "is altered"))


# --- the rules against the sandbox's own transcription of VICIdial's filters ------------------

_TRICKY = st.sampled_from(list("+;#'|%&?:/@.,-_ éÉüßñ漢\t"))
_VALUES = st.lists(st.one_of(_TRICKY, st.characters(codec="utf-8",
                                                    exclude_categories=("Cc", "Cs"))),
                   max_size=24).map("".join)
_LEAD_FIELDS = ("first_name", "last_name", "title", "middle_initial", "address1", "city",
                "state", "province", "postal_code", "country_code", "date_of_birth", "alt_phone",
                "email", "security_phrase", "comments", "owner", "source_id")


def _post(dialer: SandboxDialer, **params: str) -> tuple[int, str]:
    form = {"user": "api", "pass": "1234", "source": "test", **params}
    with httpx.Client(transport=dialer.transport(), base_url="http://sandbox") as client:
        answer = client.post(VICIDIAL_API_PATH, data=form)
    return answer.status_code, answer.text


def _send(dialer: SandboxDialer, **params: str) -> str:
    return _post(dialer, **params)[1]


def _breaks_sql(function: str, field: str, value: str, checks: tuple[str, ...] = ()) -> bool:
    rewrite = vicidial_rewrite(function, field, value, duplicate_check=checks)
    return rewrite is not None and "HTTP 500" in rewrite.rule


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(_LEAD_FIELDS), value=_VALUES.map(lambda v: v + '"\\' [len(v) % 3:]),
       checks=st.sampled_from([(), ("DUPNAMEPHONELIST",), ("DUPTITLEALTPHONESYS",)]))
@example(field="source_id", value='++|"\\', checks=())   # a pipe and a quote: the SQL dies first
def test_the_sandbox_stores_the_lead_values_the_rules_predict(
    field: str, value: str, checks: tuple[str, ...]
) -> None:
    dialer = SandboxDialer(mode="vicidial")
    status, answer = _post(dialer, function="add_lead", phone_number="7275551212",
                           list_id="1001", duplicate_check="-".join(checks), **{field: value})
    if _breaks_sql("add_lead", field, value, checks):     # predicted: its SQL dies
        assert (status, answer, dialer.snapshot()["leads"]) == (500, "", [])
        return
    assert answer.startswith("SUCCESS"), answer
    stored = dialer.snapshot()["leads"][0].get(field, "")
    assert stored == vicidial_stored("add_lead", field, value)


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["email", "agent_full_name", "agent_user"]),
       value=_VALUES.filter(lambda v: 5 <= len(v) <= 20))
def test_the_sandbox_fails_on_exactly_the_user_values_the_rules_reject_for_sql(
    field: str, value: str
) -> None:
    dialer = SandboxDialer(mode="vicidial")
    fields = {"agent_user": "1000", "agent_pass": "9999", "agent_user_level": "1",
              "agent_full_name": "Pat", "agent_user_group": "AGENTS", field: value}
    status, answer = _post(dialer, function="add_user", **fields)
    assert (status == 500) == _breaks_sql("add_user", field, value), answer
    assert (answer == "") == (status == 500)


@settings(max_examples=100, deadline=None)
@given(name=_VALUES.filter(lambda v: 6 <= len(v) <= 30))
def test_the_sandbox_stores_the_list_names_the_rules_predict(name: str) -> None:
    dialer = SandboxDialer(mode="vicidial")
    _send(dialer, function="add_list", list_id="1001", list_name=name, campaign_id="TESTCAMP")
    rewrite = vicidial_rewrite("add_list", "list_name", name)
    stored = vicidial_stored("add_list", "list_name", name)
    if len(stored) < 2:   # VICIdial's own minimum: the list is not added at all
        assert dialer.snapshot()["lists"] == []
        return
    assert dialer.snapshot()["lists"][0]["list_name"] == stored
    assert (rewrite is None) == (stored == name)
