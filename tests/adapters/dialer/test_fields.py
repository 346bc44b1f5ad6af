"""The API's field rules: one value at a time, as the CRM-row checker and the builders use them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import fields
from reconciler.core.fields import (
    RULE_CONTROL,
    RULE_REQUIRED,
    RULE_TYPE,
    check_field,
    check_login,
    lead_problems,
)

OK = None
c = pytest.param
USER, UPD, LIST, LEAD = "add_user", "update_user", "add_list", "add_multi_lead"
CH_1_20, CH_2_20, CH_1_50, CH_1_100 = (f"must be {n} characters" for n in
                                       ("1-20", "2-20", "1-50", "1-100"))
CH_6_30, CH_2_8 = "must be 6-30 characters", "must be 2-8 characters"
DIG_1_10, DIG_2_14, PHONE = "must be 1-10 digits", "must be 2-14 digits", "must be 6-18 digits"
LEVEL = "must be 1 digit from 1 to 9"


@pytest.mark.parametrize(
    ("function", "field", "value", "expected"),
    [
        c(USER, "agent_user", "1000", OK, id="agent_user-ok"),
        c(USER, "agent_user", 1000, OK, id="agent_user-int-ok"),
        c(USER, "agent_user", "1", CH_2_20, id="agent_user-short"),
        c(USER, "agent_user", "x" * 21, CH_2_20, id="agent_user-long"),
        c(USER, "agent_pass", "", CH_1_20, id="agent_pass-empty"),
        c(USER, "agent_pass", "p" * 20, OK, id="agent_pass-20"),
        c(USER, "agent_user_level", 1, OK, id="level-1"),
        c(USER, "agent_user_level", "9", OK, id="level-9"),
        c(USER, "agent_user_level", 0, LEVEL, id="level-0"),
        c(USER, "agent_user_level", 10, LEVEL, id="level-10"),
        c(USER, "agent_user_level", "01", LEVEL, id="level-01"),
        c(USER, "agent_full_name", "Testing Person", OK, id="full_name-ok"),
        c(USER, "agent_full_name", "n" * 51, CH_1_50, id="full_name-long"),
        c(USER, "agent_full_name", "é" * 50, OK, id="full_name-50-non-ascii"),
        c(USER, "agent_user_group", "", CH_1_20, id="group-empty"),
        c(USER, "phone_login", "p" * 21, CH_1_20, id="phone_login-long"),
        c(USER, "phone_pass", "", CH_1_20, id="phone_pass-empty"),
        c(USER, "voicemail_id", "1234567890", OK, id="voicemail-10"),
        c(USER, "voicemail_id", "12345678901", DIG_1_10, id="voicemail-11"),
        c(USER, "voicemail_id", "12a", DIG_1_10, id="voicemail-letters"),
        c(USER, "voicemail_id", "١٢٣", DIG_1_10, id="voicemail-arabic-digits"),
        c(USER, "email", "e" * 101, CH_1_100, id="email-long"),
        c(USER, "active", "Y", "is not a field of add_user", id="add_user-no-active"),
        c(UPD, "active", "N", OK, id="active-N"),
        c(UPD, "active", "y", "must be Y or N", id="active-lowercase"),
        c(UPD, "active", "", "must be Y or N", id="active-empty"),
        c(LIST, "list_id", "1101", OK, id="list_id-ok"),
        c(LIST, "list_id", 1101, OK, id="list_id-int"),
        c(LIST, "list_id", "1", DIG_2_14, id="list_id-short"),
        c(LIST, "list_id", "1" * 15, DIG_2_14, id="list_id-long"),
        c(LIST, "list_id", "11a1", DIG_2_14, id="list_id-letters"),
        c(LIST, "list_id", -11, DIG_2_14, id="list_id-negative"),
        c(LIST, "list_name", "short", CH_6_30, id="list_name-5"),
        c(LIST, "list_name", "Test API list", OK, id="list_name-ok"),
        c(LIST, "list_name", "n" * 31, CH_6_30, id="list_name-31"),
        c(LIST, "campaign_id", "TESTCAMP", OK, id="campaign-8"),
        c(LIST, "campaign_id", "TESTCAMP9", CH_2_8, id="campaign-9"),
        c(LIST, "campaign_id", "T", CH_2_8, id="campaign-1"),
        c(LEAD, "phone_number", 1234567893, OK, id="phone-int"),
        c(LEAD, "phone_number", "12345", PHONE, id="phone-5"),
        c(LEAD, "phone_number", "1" * 19, PHONE, id="phone-19"),
        c(LEAD, "phone_number", "+1234567", PHONE, id="phone-plus"),
        c(LEAD, "email", "", OK, id="lead-email-empty"),
        c(LEAD, "email", "e" * 71, "must be at most 70 characters", id="lead-email-71"),
        c(LEAD, "postal_code", 91, OK, id="postal-int"),
        c(LEAD, "state", "GJ", OK, id="state-2"),
        c(LEAD, "state", "Guj", "must be at most 2 characters", id="state-3"),
        c(LEAD, "gender", "X", "must be M, F, U or empty", id="gender-X"),
        c(LEAD, "first_name", "f" * 31, "must be at most 30 characters", id="first-31"),
        c(LEAD, "nickname", "x", "is not a field of add_multi_lead", id="lead-unknown"),
        c("delete_user", "agent_user", "1000", "is not checked: unknown function 'delete_user'",
                     id="unknown-function"),
    ],
)
def test_check_field(function: str, field: str, value: object, expected: str | None) -> None:
    assert check_field(function, field, value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Testing\nPerson", id="newline"),
        pytest.param("Testing\rPerson", id="carriage-return"),
        pytest.param("Testing\tPerson", id="tab"),
        pytest.param("Testing\x00", id="nul"),
        pytest.param("Testing\x7f", id="del"),
        pytest.param("Testing\x85", id="c1-next-line"),
        pytest.param("Testing\u2028Person", id="line-separator"),
        pytest.param("Testing\u2029Person", id="paragraph-separator"),
    ],
)
@pytest.mark.parametrize("function_field", [("add_user", "agent_full_name"),
                                            ("update_user", "agent_pass"),
                                            ("add_multi_lead", "first_name")],
                         ids=lambda pair: ".".join(pair))
def test_control_characters_are_rejected(value: str, function_field: tuple[str, str]) -> None:
    assert check_field(*function_field, value) == RULE_CONTROL


@pytest.mark.parametrize(
    "value",
    [pytest.param(True, id="bool"), pytest.param(1.5, id="float"), pytest.param(None, id="none"),
     pytest.param(b"1000", id="bytes"), pytest.param(["1000"], id="list")],
)
def test_values_must_be_text_or_whole_numbers(value: object) -> None:
    assert check_field("add_user", "agent_user", value) == RULE_TYPE


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        pytest.param({"phone_number": 1234567893, "list_id": "1101"}, [], id="minimal"),
        pytest.param({"city": "Ahmedabad", "email": "", "phone_number": 1234567893,
                      "first_name": "test", "last_name": "test", "vendor_lead_code": 1236,
                      "list_id": "1101", "postal_code": 91}, [], id="document-example"),
        pytest.param({"list_id": "1101"}, [("phone_number", RULE_REQUIRED)], id="no-phone"),
        pytest.param({"phone_number": "1234567893"}, [("list_id", RULE_REQUIRED)], id="no-list"),
        pytest.param({"phone_number": "123", "list_id": "1101", "shoe_size": 9},
                     [("phone_number", PHONE),
                      ("shoe_size", "is not a field of add_multi_lead")], id="several"),
    ],
)
def test_lead_problems(lead: dict[str, object], expected: list[tuple[str, str]]) -> None:
    assert lead_problems(lead) == expected


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        pytest.param(("api", "1234", "test"), None, id="ok"),
        pytest.param(("api", "1234", "t"), ("source", CH_2_20), id="source-short"),
        pytest.param(("api", "1234", "s" * 21), ("source", CH_2_20), id="source-long"),
        pytest.param(("", "1234", "test"), ("user", CH_1_20), id="user-empty"),
        pytest.param(("api", "", "test"), ("pass", CH_1_100), id="pass-empty"),
        pytest.param(("api", "12\n34", "test"), ("pass", RULE_CONTROL), id="pass-newline"),
    ],
)
def test_check_login(login: tuple[str, str, str], expected: tuple[str, str] | None) -> None:
    assert check_login(*login) == expected


_KNOWN_RULES = {rule.rule for table in (fields.LOGIN_RULES, *fields.RULES.values())
                for rule in table.values()} | {RULE_CONTROL, RULE_TYPE}


@settings(max_examples=200)
@given(
    target=st.sampled_from([(fn, name) for fn, table in fields.RULES.items() for name in table]),
    value=st.one_of(st.text(max_size=40), st.integers(), st.booleans(), st.none()),
)
def test_a_rule_is_one_of_the_fixed_strings(target: tuple[str, str], value: object) -> None:
    # Rules are fixed text, so a rejected value (maybe a password) can never leak through them.
    problem = check_field(*target, value)
    assert problem is None or problem in _KNOWN_RULES
