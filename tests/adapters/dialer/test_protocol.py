"""Requests and responses of the dialer API, against the document and real VICIdial recordings."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.requests import ApiLogin
from reconciler.adapters.dialer.responses import parse_response, retry_after_seconds
from reconciler.core.fields import ADD_USER_REQUIRED
from reconciler.core.replies import (
    ActiveList,
    ActiveLists,
    LeadOutcome,
    LeadResults,
    ListAdded,
    PlainReply,
    UserAdded,
    UserUpdated,
)
from reconciler.errors import (
    AlreadyExists,
    DialerError,
    DialerMalformed,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    DoesNotExist,
    FieldInvalid,
)
from reconciler.redact import MASK
from tests.helpers import API_DOCUMENT, VICIDIAL_RECORDINGS

DOC_LOGIN = ApiLogin(user="api", password="1234", source="test")
CANARY_API = "canary-Pw-8271"
CANARY_AGENT = "agent-canary-5531"
CANARIES = (CANARY_API, CANARY_AGENT)


# --- requests: the document's example URLs ----------------------------------------------------

DOC_URLS = {
    "add_user": "http://ServerIP/dialer/elision_api.php?source=test&user=api&pass=1234"
                "&function=add_user&agent_user=1000&agent_pass=9999&agent_user_level=1"
                "&agent_full_name=Testing+Person&agent_user_group=AGENTS",
    "update_user": "http://ServerIP/dialer/elision_api.php?source=test&user=api&pass=1234"
                   "&function=update_user&agent_user=1000&agent_pass=9876&agent_user_level=5"
                   "&agent_full_name=Testing+Person&agent_user_group=AGENTS",
    "add_list": "http://ServerIP/dialer/elision_api.php?source=test&user=api&pass=1234"
                "&function=add_list&list_id=1101&list_name=Test+API+list&campaign_id=TESTCAMP",
    "active_lists": "http://ServerIP/dialer/elision_api.php?source=test&user=api&pass=1234"
                    "&function=active_lists",
    "add_multi_lead": 'http://ServerIP/dialer/elision_api.php?source=test&user=api&pass=1234'
                      '&function=add_multi_lead&multi_leads=[{"city":"Ahmedabad","email":"",'
                      '"phone_number":1234567893,"first_name":"test","last_name":"test",'
                      '"vendor_lead_code":1236,"list_id":"1101","postal_code":91}]',
}

DOC_LEAD: dict[str, str | int] = {
    "city": "Ahmedabad", "email": "", "phone_number": 1234567893, "first_name": "test",
    "last_name": "test", "vendor_lead_code": 1236, "list_id": "1101", "postal_code": 91}

DOC_BUILDS = {
    "add_user": lambda: requests.build_add_user(
        DOC_LOGIN, agent_user="1000", agent_pass="9999", agent_user_level=1,
        agent_full_name="Testing Person", agent_user_group="AGENTS"),
    "update_user": lambda: requests.build_update_user(
        DOC_LOGIN, "1000", {"agent_pass": "9876", "agent_user_level": 5,
                            "agent_full_name": "Testing Person", "agent_user_group": "AGENTS"}),
    "add_list": lambda: requests.build_add_list(DOC_LOGIN, "1101", "Test API list", "TESTCAMP"),
    "active_lists": lambda: requests.build_active_lists(DOC_LOGIN),
    "add_multi_lead": lambda: requests.build_add_multi_lead(DOC_LOGIN, [DOC_LEAD]),
}


def test_example_urls_are_the_documents() -> None:
    document = re.sub(r"\s+", "", API_DOCUMENT.read_text())
    for url in DOC_URLS.values():
        assert url in document


@pytest.mark.parametrize("function", list(DOC_URLS))
def test_builders_produce_the_documents_params(function: str) -> None:
    request = DOC_BUILDS[function]()
    assert request.function == function
    assert request.params == tuple(parse_qsl(urlsplit(DOC_URLS[function]).query,
                                             keep_blank_values=True))


@pytest.mark.parametrize("function", ["add_user", "update_user", "add_list", "active_lists"])
def test_encoded_get_url_is_the_documents(function: str) -> None:
    request = DOC_BUILDS[function]()
    url = httpx.Request("GET", "http://ServerIP/dialer/elision_api.php", params=request.params).url
    assert url.query.decode() == urlsplit(DOC_URLS[function]).query


@pytest.mark.parametrize(
    ("function", "secrets"),
    [("add_user", {"1234", "9999"}), ("update_user", {"1234", "9876"}), ("add_list", {"1234"}),
     ("active_lists", {"1234"}), ("add_multi_lead", {"1234"})],
)
def test_requests_know_their_secrets_and_hide_them(function: str, secrets: set[str]) -> None:
    request = DOC_BUILDS[function]()
    assert request.secrets == secrets
    assert not any(repr(secret) in repr(request) for secret in secrets)
    assert "('pass', '***')" in repr(request)


def test_add_user_optional_fields_follow_the_document_order() -> None:
    request = requests.build_add_user(
        DOC_LOGIN, email="a@b.c", voicemail_id=77, phone_pass="pp", phone_login="9001",
        agent_user_group="AGENTS", agent_full_name="X", agent_user_level="2",
        agent_pass="pw", agent_user="1000")
    assert [name for name, _ in request.params][4:] == [
        "agent_user", "agent_pass", "agent_user_level", "agent_full_name", "agent_user_group",
        "phone_login", "phone_pass", "voicemail_id", "email"]
    assert request.secrets == {"1234", "pw", "pp"}


def test_update_user_orders_changes_by_the_document() -> None:
    request = requests.build_update_user(DOC_LOGIN, 1000, {"active": "N", "agent_pass": "x"})
    assert request.params[4:] == (("agent_user", "1000"), ("agent_pass", "x"), ("active", "N"))


def test_add_list_sends_active_only_when_given() -> None:
    request = requests.build_add_list(DOC_LOGIN, 1101, "Test API list", "TESTCAMP", "Y")
    assert request.params[-1] == ("active", "Y")


def test_add_multi_lead_counts_its_leads() -> None:
    leads = [{"phone_number": f"55500{i:04d}", "list_id": "1101"} for i in range(3)]
    request = requests.build_add_multi_lead(DOC_LOGIN, leads)
    assert request.lead_count == 3
    assert json.loads(dict(request.params)["multi_leads"]) == leads


def _user(**over: Any) -> requests.DialerRequest:
    given: dict[str, Any] = dict(agent_user="1000", agent_pass="9999", agent_user_level=1,
                                 agent_full_name="Testing Person", agent_user_group="AGENTS")
    return requests.build_add_user(DOC_LOGIN, **{**given, **over})


@pytest.mark.parametrize(
    ("build", "field", "rule"),
    [
        pytest.param(lambda: _user(agent_user="1"), "agent_user", "must be 2-20 characters",
                     id="agent_user-short"),
        pytest.param(lambda: _user(agent_pass=CANARY_AGENT + "x" * 10), "agent_pass",
                     "must be 1-20 characters", id="agent_pass-long"),
        pytest.param(lambda: _user(agent_user_level=10), "agent_user_level",
                     "must be 1 digit from 1 to 9", id="level-10"),
        pytest.param(lambda: _user(agent_full_name=None), "agent_full_name", "is required",
                     id="full_name-missing"),
        pytest.param(lambda: _user(agent_full_name="Testing\nPerson"), "agent_full_name",
                     "must not contain control characters", id="full_name-newline"),
        pytest.param(lambda: _user(voicemail_id="12a"), "voicemail_id", "must be 1-10 digits",
                     id="voicemail-letters"),
        pytest.param(lambda: requests.build_add_user(
            ApiLogin("api", "1234", "t"), agent_user="1000", agent_pass="9", agent_user_level=1,
            agent_full_name="X", agent_user_group="AGENTS"), "source", "must be 2-20 characters",
            id="source-short"),
        pytest.param(lambda: requests.build_active_lists(ApiLogin("api", "12\n34", "test")),
                     "pass", "must not contain control characters", id="api-pass-newline"),
        pytest.param(lambda: requests.build_update_user(DOC_LOGIN, "1000", {}), "changes",
                     "must name at least one field to change", id="update-nothing"),
        pytest.param(lambda: requests.build_update_user(DOC_LOGIN, "1000", {"agent_user": "x"}),
                     "agent_user", "is not a field update_user can change", id="update-rename"),
        pytest.param(lambda: requests.build_update_user(DOC_LOGIN, "1000", {"active": "yes"}),
                     "active", "must be Y or N", id="update-active"),
        pytest.param(lambda: requests.build_update_user(DOC_LOGIN, "1", {"active": "Y"}),
                     "agent_user", "must be 2-20 characters", id="update-agent_user"),
        pytest.param(lambda: requests.build_add_list(DOC_LOGIN, "1", "Test API list", "TESTCAMP"),
                     "list_id", "must be 2-14 digits", id="list_id-short"),
        pytest.param(lambda: requests.build_add_list(DOC_LOGIN, "1101", "short", "TESTCAMP"),
                     "list_name", "must be 6-30 characters", id="list_name-short"),
        pytest.param(lambda: requests.build_add_list(DOC_LOGIN, "1101", "Test list", "TESTCAMP9"),
                     "campaign_id", "must be 2-8 characters", id="campaign-long"),
        pytest.param(lambda: requests.build_add_list(DOC_LOGIN, "1101", "Test list", "TC", "y"),
                     "active", "must be Y or N", id="list-active"),
        pytest.param(lambda: requests.build_add_multi_lead(DOC_LOGIN, []), "multi_leads",
                     "must hold at least 1 lead", id="no-leads"),
        pytest.param(lambda: requests.build_add_multi_lead(
            DOC_LOGIN, [DOC_LEAD, {"list_id": "1101"}]), "lead 2.phone_number", "is required",
            id="lead-2-no-phone"),
        pytest.param(lambda: requests.build_add_multi_lead(
            DOC_LOGIN, [{"phone_number": "12345", "list_id": "1101"}]), "lead 1.phone_number",
            "must be 6-18 digits", id="lead-phone-short"),
        pytest.param(lambda: requests.build_add_multi_lead(
            DOC_LOGIN, [{**DOC_LEAD, "last_name": "a\r\nb"}]), "lead 1.last_name",
            "must not contain control characters", id="lead-crlf"),
    ],
)
def test_builders_reject_broken_fields(build: Any, field: str, rule: str) -> None:
    with pytest.raises(FieldInvalid) as caught:
        build()
    assert (caught.value.function, caught.value.field, caught.value.rule)[1:] == (field, rule)
    assert CANARY_AGENT not in str(caught.value) and "12\n34" not in str(caught.value)


# --- responses: the document's examples -------------------------------------------------------

SECRETS = frozenset({"1234", "9999"})


def outcome(function: str, body: bytes | str, status: int = 200, secrets: Any = SECRETS,
            lead_count: int = 0) -> Any:
    raw = body.encode() if isinstance(body, str) else body
    try:
        return parse_response(function, status, raw, secrets, lead_count=lead_count)
    except DialerError as error:
        return error


@dataclass(frozen=True)
class Err:
    kind: type[DialerError]
    says: str = ""


DOC_ERRORS = [
    ("add_user", "ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS - api|0",
     Err(DialerRefused, "API user lacks permission to add users")),
    ("add_user", "ERROR: add_user YOU MUST USE ALL REQUIRED FIELDS - api|1000|",
     Err(DialerRejected, "YOU MUST USE ALL REQUIRED FIELDS")),
    ("add_user", "ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS IN THIS\n"
                 "USER LEVEL - api|8",
     Err(DialerRejected, "API user lacks permission to add users in this user level")),
    ("add_user", "ERROR: add_user USER GROUP DOES NOT EXIST - api|ADFHR",
     Err(DialerRejected, "USER GROUP DOES NOT EXIST")),
    ("add_user", "ERROR: add_user USER ALREADY EXISTS - api|api", Err(AlreadyExists)),
    ("update_user", "ERROR: update_user USER DOES NOT HAVE PERMISSION TO UPDATE USERS - api|0",
     Err(DialerRefused, "API user lacks permission to update users")),
    ("update_user", "ERROR: update_user YOU MUST USE ALL REQUIRED FIELDS - api||",
     Err(DialerRejected)),
    ("update_user", "ERROR: update_user USER DOES NOT EXIST - api|78789", Err(DoesNotExist)),
    ("update_user", "ERROR: update_user USER DOES NOT HAVE PERMISSION TO UPDATE THIS USER - "
                    "api|7878",
     Err(DialerRejected, "API user lacks permission to update this user")),
    *(("update_user", f"ERROR: update_user YOU MUST USE A VALID {what}, THIS IS AN OPTIONAL "
                      f"FIELD - {data}", Err(DialerRejected, f"YOU MUST USE A VALID {what}"))
      for what, data in [("FULL NAME", "api|"), ("USER LEVEL", "api|0|9|1"),
                         ("USER GROUP", "api|FAKEGROUP|0"), ("PHONE LOGIN", "api|fakephone|0|0"),
                         ("PHONE PASSWORD", "api|0"), ("VOICEMAIL ID", "api"),
                         ("EMAIL", "api")]),
    ("update_user", "ERROR: update_user ACTIVE MUST BE Y OR N, THIS IS AN OPTIONAL FIELD - api",
     Err(DialerRejected, "ACTIVE MUST BE Y OR N")),
    ("add_list", '{"success":false,"message":"api User does not have permission to add list in '
                 'the system","data":{"user":"api","password":"1234"}}',
     Err(DialerRefused, "API user lacks permission to add list")),
    ("add_list", '{"success":false,"message":"Please send list id , campaign id and list name",'
                 '"data":{"list_id":"","list_name":"Test API list","campaign_id":"TESTCAMP"}}',
     Err(DialerRejected, "Please send list id")),
    ("add_list", '{"success":false,"message":"TESTCAMP campaign does not exist","data":'
                 '{"list_id":"1101","list_name":"Test API list","campaign_id":"TESTCAMP"}}',
     Err(DialerRejected, "TESTCAMP campaign does not exist")),
    ("add_list", '{"success":false,"message":"1101 list already exist","data":'
                 '{"list_id":"1101","list_name":"Test API list","campaign_id":"TESTCAMP"}}',
     Err(AlreadyExists, "1101 list already exist")),
    ("add_multi_lead", '["ERROR","add_multi_lead YOU MUST USE ALL REQUIRED FIELDS","api",""]',
     Err(DialerRejected, "YOU MUST USE ALL REQUIRED FIELDS")),
]

DOC_ACTIVE_LISTS = (
    '{"success":true,"message":"lists are listed successfully","data":["NIKHIL-1101-Test API '
    'list","kartik-2018-kartik jagani","TESTING-20042018-20042018-hardik","NIKHIL-26042018-'
    '26042018_custom-form","TESTING-6547-testA","radhika-522018-522018","testcmp-1652018-'
    '1652018","Elision-2352018-2352018","test_plk-260518-260518 test"]}')

DOC_SUCCESSES = [
    ("add_user", "SUCCESS: add_user USER HAS BEEN ADDED - api|10000|9999|1|Testing Person|\n"
                 "AGENTS\n",
     UserAdded("USER HAS BEEN ADDED", ("api", "10000", "***", "1", "Testing Person", "AGENTS"))),
    ("update_user", "SUCCESS: update_user USER HAS BEEN UPDATED - api|1000",
     UserUpdated("USER HAS BEEN UPDATED", ("api", "1000"))),
    ("add_list", '{"success":true,"message":"1101 list created","data":  \n'
                 '{"list_id":"1101","list_name":"Test API list","campaign_id":"TESTCAMP"}}',
     ListAdded("1101", "Test API list", "TESTCAMP", "1101 list created")),
    ("active_lists", DOC_ACTIVE_LISTS, ActiveLists((
        ActiveList("NIKHIL", "1101", "Test API list"),
        ActiveList("kartik", "2018", "kartik jagani"),
        ActiveList("TESTING", "20042018", "20042018-hardik"),
        ActiveList("NIKHIL", "26042018", "26042018_custom-form"),
        ActiveList("TESTING", "6547", "testA"),
        ActiveList("radhika", "522018", "522018"),
        ActiveList("testcmp", "1652018", "1652018"),
        ActiveList("Elision", "2352018", "2352018"),
        ActiveList("test_plk", "260518", "260518 test"),
    ), ())),
    ("add_multi_lead", '{"lead 1":{"success":false,"message":"Invalid phone number",'
                       '"data":"1293"}}',
     LeadResults((LeadOutcome(1, False, "Invalid phone number", phone_number="1293"),))),
    ("add_multi_lead", '{"lead 1":{"success":true,"message":"Record(s) Created",'
                       '"data":"1234567893|1101|1036||NEW|"}}',
     LeadResults((LeadOutcome(1, True, "Record(s) Created", "1234567893", "1101", "1036",
                              "NEW"),))),
]


def _ids(cases: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{fn}-{i}" for i, (fn, _, _) in enumerate(cases)]


@pytest.mark.parametrize(("function", "body", "expected"), DOC_ERRORS, ids=_ids(DOC_ERRORS))
def test_document_error_answers(function: str, body: str, expected: Err) -> None:
    error = outcome(function, body, lead_count=1)
    assert type(error) is expected.kind
    assert expected.says in str(error)
    assert error.function == function
    assert "1234" not in str(error)   # add_list's permission error echoes the password


@pytest.mark.parametrize(("function", "body", "expected"), DOC_SUCCESSES, ids=_ids(DOC_SUCCESSES))
def test_document_success_answers(function: str, body: str, expected: Any) -> None:
    assert outcome(function, body, lead_count=1) == expected


# --- responses: a real VICIdial 2.14 ----------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    number: int
    params: dict[str, str]
    status: int
    body: bytes


def read_recordings() -> list[Recording]:
    recordings = []
    for block in re.split(r"^=== ", VICIDIAL_RECORDINGS.read_text(), flags=re.MULTILINE)[1:]:
        number = re.match(r"\[(\d+)\]", block)
        url = re.search(r"^REQUEST : \w+ (\S+)", block, re.MULTILINE)
        form = re.search(r"^POSTBODY: (\S+)", block, re.MULTILINE)
        status = re.search(r"^STATUS  : HTTP/1\.1 (\d+)", block, re.MULTILINE)
        body = re.search(r"^BODY\(repr\): (b'.*')$", block, re.MULTILINE)
        assert number and url and status and body, block[:60]
        query = form.group(1) if form else urlsplit(url.group(1)).query
        recordings.append(Recording(int(number.group(1)), dict(parse_qsl(query)),
                                    int(status.group(1)), ast.literal_eval(body.group(1))))
    return recordings


RECORDED = {recording.number: recording for recording in read_recordings()}

RECORDED_OUTCOMES: dict[int, type[Any]] = {
    1: DialerMalformed,     # version: not an answer form of the five functions
    2: DialerRefused,       # ERROR: NO FUNCTION SPECIFIED
    5: DialerRefused,       # Login incorrect (echoes the password)
    11: UserAdded, 12: AlreadyExists, 13: UserAdded, 17: DialerRejected, 20: DialerRejected,
    21: UserAdded,          # VICIdial accepts level 10; our builder does not send it
    32: UserUpdated, 33: UserUpdated, 38: DoesNotExist, 42: DialerRejected,
    49: ListAdded, 51: AlreadyExists, 52: DialerRejected,
    64: DialerMalformed,    # list_info's bare data line
    67: DoesNotExist,       # list_info LIST DOES NOT EXIST
    68: PlainReply, 69: DialerRejected, 71: DialerRejected,
}


def test_every_recording_has_an_expected_outcome() -> None:
    assert set(RECORDED) == set(RECORDED_OUTCOMES)


@pytest.mark.parametrize("number", sorted(RECORDED_OUTCOMES), ids=lambda n: f"recording-{n}")
def test_recorded_vicidial_answers(number: int) -> None:
    recording = RECORDED[number]
    secrets = {recording.params.get("pass", ""), recording.params.get("agent_pass", "")}
    result = outcome(recording.params["function"], recording.body, recording.status, secrets)
    assert type(result) is RECORDED_OUTCOMES[number]
    for secret in secrets - {""}:
        assert secret not in str(result) and secret not in repr(result)


def test_recorded_login_error_masks_the_echoed_password_even_unasked() -> None:
    error = outcome("add_user", RECORDED[5].body, secrets=())
    assert "wrongpw" not in str(error)
    assert "|apiuser|***|BAD" in error.excerpt


def test_recorded_add_list_success_reads_vicidial_data() -> None:
    assert outcome("add_list", RECORDED[49].body) == ListAdded(
        "1001", "Test List", "TESTCAMP", "LIST HAS BEEN ADDED")


_FIELDS_BUILDERS: dict[str, Callable[[dict[str, str]], requests.DialerRequest]] = {
    "add_user": lambda p: requests.build_add_user(
        ApiLogin(p["user"], p["pass"], p["source"]),
        # A field the recording left out goes in as None: the builder names it as required.
        **cast("dict[str, Any]", {name: p.get(name) for name in ADD_USER_REQUIRED})),
    "update_user": lambda p: requests.build_update_user(
        ApiLogin(p["user"], p["pass"], p["source"]), p["agent_user"],
        {k: v for k, v in p.items() if k not in ("user", "pass", "source", "function",
                                                 "agent_user")}),
    "add_list": lambda p: requests.build_add_list(
        ApiLogin(p["user"], p["pass"], p["source"]), p["list_id"], p["list_name"],
        p["campaign_id"]),
}
# Recorded requests our own rules refuse to send.
_REFUSED_BY_US = {17: ("agent_full_name", "is required"),
                  21: ("agent_user_level", "must be 1 digit from 1 to 9")}


@pytest.mark.parametrize(
    "number",
    [n for n, r in sorted(RECORDED.items()) if r.params.get("function") in _FIELDS_BUILDERS],
    ids=lambda n: f"recording-{n}")
def test_builders_send_what_vicidial_was_sent(number: int) -> None:
    params = RECORDED[number].params
    build = _FIELDS_BUILDERS[params["function"]]
    if number in _REFUSED_BY_US:
        with pytest.raises(FieldInvalid) as caught:
            build(params)
        assert (caught.value.field, caught.value.rule) == _REFUSED_BY_US[number]
    else:
        assert dict(build(params).params) == params


# --- responses: forms and failures ------------------------------------------------------------

FORMS = [
    pytest.param("add_user", "\r\n\n  SUCCESS: add_user USER HAS BEEN ADDED - api|1000|x|1|N|G|"
                 "  \r\n\r\n", UserAdded("USER HAS BEEN ADDED", ("api", "1000", "***", "1", "N",
                                                                 "G")), id="blank-lines-crlf"),
    pytest.param("update_user", "<br />\n<b>Deprecated</b>:  strlen(): Passing null in <b>/x.php"
                 "</b> on line <b>9</b><br />\nSUCCESS: update_user USER HAS BEEN UPDATED - "
                 "api|1000|", UserUpdated("USER HAS BEEN UPDATED", ("api", "1000")),
                 id="php-notice-first"),
    pytest.param("add_user", "SUCCESS: add_user USER HAS BEEN ADDED - a|b|c\nNOTICE: x - y",
                 UserAdded("USER HAS BEEN ADDED", ("a", "b", "***")), id="second-line-ignored"),
    pytest.param("add_user", "ERROR: add_user USER ALREADY EXISTS: |apiuser|10000",
                 Err(AlreadyExists), id="vicidial-colon-form"),
    pytest.param("add_user", "SUCCESS: add_list LIST HAS BEEN ADDED - a|b",
                 Err(DialerMalformed, "another function"), id="success-of-other-function"),
    pytest.param("add_user", "", Err(DialerMalformed, "empty"), id="empty"),
    pytest.param("add_user", " \n\t\n", Err(DialerMalformed, "empty"), id="whitespace"),
    pytest.param("add_user", "<html><body><h1>502 Bad Gateway</h1></body></html>",
                 Err(DialerMalformed, "HTML"), id="html"),
    pytest.param("add_user", "OK", Err(DialerMalformed, "neither"), id="no-status"),
    pytest.param("add_list", '{"success":true,"message":"1101 list cre',
                 Err(DialerMalformed, "truncated"), id="truncated-json"),
    pytest.param("add_list", '{"success":"maybe"}', Err(DialerMalformed), id="success-unclear"),
    pytest.param("add_list", '{"status":"ok"}', Err(DialerMalformed), id="json-no-success"),
    pytest.param("add_list", '["OK"]', Err(DialerMalformed), id="json-array-unknown"),
    pytest.param("active_lists", '{"success":true,"message":"x","data":"NIKHIL-1101-x"}',
                 Err(DialerMalformed), id="active-lists-data-not-list"),
    pytest.param("active_lists", '{"success":true,"message":"none","data":null}',
                 ActiveLists((), ()), id="active-lists-null"),
    pytest.param("active_lists", '{"success":true,"message":"x","data":["A-B-1101-x y",'
                 '"nolistid",7,"C-12-"]}',
                 ActiveLists((ActiveList("A-B", "1101", "x y"), ActiveList("C", "12", "")),
                             ("nolistid", "7")), id="active-lists-odd-entries"),
    pytest.param("active_lists", "SUCCESS: active_lists X - a|b", Err(DialerMalformed),
                 id="active-lists-plain-success"),
    pytest.param("add_multi_lead", '{"success":true,"message":"done"}',
                 Err(DialerMalformed), id="leads-without-results"),
    pytest.param("add_multi_lead", '{"lead 1":{"success":true,"data":"5550001|1101|7||NEW|"},'
                 '"lead 3":{"success":false,"message":"Invalid phone number","data":"12"}}',
                 LeadResults((LeadOutcome(1, True, "", "5550001", "1101", "7", "NEW"),
                              LeadOutcome(2, None, "no answer for this lead"),
                              LeadOutcome(3, False, "Invalid phone number", "12"))),
                 id="lead-missing-from-answer"),
    pytest.param("add_multi_lead", '{"lead 1":"garbage","lead 2":{"success":"?"},'
                 '"lead 3":{"success":1,"data":null}}',
                 LeadResults((LeadOutcome(1, None, "unreadable answer for this lead"),
                              LeadOutcome(2, None, "unreadable answer for this lead"),
                              LeadOutcome(3, True, ""))), id="unreadable-leads"),
    pytest.param("add_multi_lead", '{"lead 4":{"success":true}}', Err(DialerMalformed, "4"),
                 id="lead-not-sent"),
    pytest.param("add_multi_lead", '{"lead 0":{"success":true}}', Err(DialerMalformed),
                 id="lead-zero"),
    pytest.param("add_multi_lead", '{"row 1":{"success":true}}', Err(DialerMalformed),
                 id="not-a-lead-key"),
    pytest.param("add_multi_lead", '{"lead 3":{"success":true},"LEAD2":{"success":false},'
                 '"lead  1":{"success":true,"data":"5550001|1101|7||NEW|"}}',
                 LeadResults((LeadOutcome(1, True, "", "5550001", "1101", "7", "NEW"),
                              LeadOutcome(2, False, ""), LeadOutcome(3, True, ""))),
                 id="lead-keys-spelled-otherwise-and-out-of-order"),
    pytest.param("add_multi_lead", '{"lead 0000000001":{"success":true}}',
                 Err(DialerMalformed), id="lead-number-too-long"),
    pytest.param("add_multi_lead", '{"lead \uff12":{"success":true}}',
                 LeadResults((LeadOutcome(1, None, "no answer for this lead"),
                              LeadOutcome(2, True, ""),
                              LeadOutcome(3, None, "no answer for this lead"))),
                 id="lead-number-in-other-digits"),
    pytest.param("add_multi_lead", "{}", LeadResults(tuple(
        LeadOutcome(i, None, "no answer for this lead") for i in (1, 2, 3))),
        id="empty-lead-map"),
    pytest.param("add_lead", "SUCCESS: add_lead LEAD HAS BEEN ADDED - 7275551212|1001",
                 PlainReply("add_lead", "LEAD HAS BEEN ADDED", ("7275551212", "1001")),
                 id="other-function"),
]


@pytest.mark.parametrize(("function", "body", "expected"), FORMS)
def test_answer_forms(function: str, body: str, expected: Any) -> None:
    result = outcome(function, body, lead_count=3)
    if isinstance(expected, Err):
        assert type(result) is expected.kind
        assert expected.says in str(result)
    else:
        assert result == expected


def test_a_lead_answer_masks_a_field_that_is_a_secret_and_only_that_field() -> None:
    body = ('{"lead 1":{"success":true,"message":"by pw9x","data":"5550001|1101|pw9x||NEW|"},'
            '"lead 2":{"success":false,"message":"bad","data":" pw9x2 |1234"}}')
    assert outcome("add_multi_lead", body, secrets={"pw9x", "1234"}, lead_count=2) == \
        LeadResults((LeadOutcome(1, True, f"by {MASK}", "5550001", "1101", MASK, "NEW"),
                     LeadOutcome(2, False, "bad", "pw9x2", "1234")))


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [
        pytest.param(500, DialerUnavailable, "HTTP 500", id="500"),
        pytest.param(502, DialerUnavailable, "HTTP 502", id="502"),
        pytest.param(503, DialerUnavailable, "busy", id="503"),
        pytest.param(429, DialerUnavailable, "busy", id="429"),
        pytest.param(408, DialerUnavailable, "HTTP 408", id="408"),
        pytest.param(404, DialerRefused, "no dialer API at this URL", id="404"),
        pytest.param(401, DialerRefused, "refused access", id="401"),
        pytest.param(403, DialerRefused, "refused access", id="403"),
        pytest.param(414, DialerRefused, "max_request_bytes", id="414"),
        pytest.param(400, DialerRefused, "HTTP 400", id="400"),
        pytest.param(301, DialerRefused, "redirect", id="301"),
        pytest.param(101, DialerMalformed, "HTTP status 101", id="101"),
        pytest.param(0, DialerMalformed, "HTTP status 0", id="0"),
        pytest.param(700, DialerMalformed, "HTTP status 700", id="700"),
    ],
)
def test_http_status(status: int, kind: type[DialerError], says: str) -> None:
    body = b"SUCCESS: add_user USER HAS BEEN ADDED - pass=1234|x"
    error = outcome("add_user", body, status)
    assert type(error) is kind
    assert says in str(error)
    assert "1234" not in str(error)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 120 ", 120.0), ("1.5", 1.5), (None, None), ("", None), ("-3", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("soon", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header) == expected


# --- secrets ----------------------------------------------------------------------------------

CANARY_BODIES = [
    pytest.param("add_user", f"ERROR: Login incorrect, please try again: |api|{CANARY_API}|BAD|",
                 id="login-echo"),
    pytest.param("add_list", '{"success":false,"message":"api User does not have permission to '
                 f'add list in the system","data":{{"user":"api","password":"{CANARY_API}"}}}}',
                 id="add-list-permission-echo"),
    pytest.param("add_user", f"SUCCESS: add_user USER HAS BEEN ADDED - api|1000|{CANARY_AGENT}|"
                 "1|Testing Person|AGENTS", id="add-user-success-echo"),
    pytest.param("add_user", f"ERROR: add_user {CANARY_API} - {CANARY_AGENT}|x",
                 id="error-message-echo"),
    pytest.param("add_list", f'{{"success":false,"message":"bad {CANARY_API}"}}',
                 id="json-message-echo"),
    pytest.param("add_list", f'{{"success":false,"message":"{CANARY_API}',
                 id="truncated-json-echo"),
    pytest.param("add_multi_lead", f'{{"lead 1":{{"success":false,"message":"{CANARY_API}",'
                 f'"data":"{CANARY_AGENT}"}}}}', id="lead-echo"),
    pytest.param("add_multi_lead", f'["ERROR","add_multi_lead {CANARY_API}","{CANARY_AGENT}"]',
                 id="json-array-echo"),
    pytest.param("active_lists", f'{{"success":true,"message":"{CANARY_API}","data":["C-11-'
                 f'{CANARY_AGENT}","{CANARY_API}"]}}', id="active-lists-echo"),
    pytest.param("add_user", f"<html>pass={CANARY_API}&agent_pass={CANARY_AGENT}</html>",
                 id="html-echo"),
]


@pytest.mark.parametrize(("function", "body"), CANARY_BODIES)
@pytest.mark.parametrize("known", [True, False], ids=["secrets-known", "secrets-not-passed"])
def test_canary_passwords_never_come_back(function: str, body: str, known: bool) -> None:
    result = outcome(function, body, secrets=CANARIES if known else (), lead_count=1)
    texts = [str(result), repr(result)]
    if isinstance(result, DialerError):
        texts += [repr(result.args), result.excerpt]
    for canary in CANARIES:
        if known or canary in _ECHOED_BY_POSITION_OR_SHAPE.get(body, ()):
            assert not any(canary in text for text in texts), canary


# Without the secrets, only the echoes we know by position or shape are masked.
_ECHOED_BY_POSITION_OR_SHAPE = {
    CANARY_BODIES[0].values[1]: (CANARY_API,),
    CANARY_BODIES[1].values[1]: (CANARY_API,),
    CANARY_BODIES[2].values[1]: (CANARY_AGENT,),
    CANARY_BODIES[9].values[1]: (CANARY_API, CANARY_AGENT),
}


def test_malformed_json_does_not_carry_the_body_along() -> None:
    error = outcome("add_list", f'{{"success":false,"password":"{CANARY_API}'.encode())
    assert type(error) is DialerMalformed
    assert error.__context__ is None and error.__cause__ is None


def test_json_escaped_secret_is_masked_too() -> None:
    secret = 'pa"ss\\wörd'
    body = json.dumps({"success": False, "message": f"bad {secret}"}).encode()
    error = outcome("add_list", body + b"!", secrets={secret})   # truncated: excerpt is raw
    assert json.dumps(secret)[1:-1] not in error.excerpt
    assert secret not in str(error)


# --- the parser never fails in any other way --------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
_lead_maps = st.dictionaries(
    st.sampled_from(["lead 1", "lead 2", "lead 3", "lead 0", "lead 9", "LEAD1", "x"]),
    _json_values | st.fixed_dictionaries(
        {"success": st.booleans() | st.text(max_size=3), "message": _json_values,
         "data": st.text(alphabet="0123456789|NEW", max_size=20) | _json_values}),
    max_size=4,
).map(json.dumps)
_plain_lines = st.tuples(
    st.sampled_from(["SUCCESS: ", "ERROR: ", "ERROR:", "VERSION: ", "<br />\n", ""]),
    st.sampled_from(["add_user ", "update_user ", "add_list ", "active_lists ", "x_y ", ""]),
    st.text(max_size=40),
    st.sampled_from([" - ", ": |", "|", "\n", ""]),
    st.text(alphabet="ab1|: -\n\r", max_size=30),
).map("".join)
_bodies = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=80).map(str.encode),
    _plain_lines.map(str.encode),
    _json_values.map(json.dumps).map(str.encode),
    _lead_maps.map(str.encode),
    st.tuples(_json_values.map(json.dumps), st.integers(0, 30)).map(
        lambda pair: pair[0][: pair[1]].encode()),
)


@settings(max_examples=400, deadline=None)
@given(
    function=st.sampled_from(["add_user", "update_user", "add_list", "active_lists",
                              "add_multi_lead", "list_info"]),
    status=st.one_of(st.just(200), st.integers(min_value=-(2**31), max_value=2**31)),
    body=_bodies,
    lead_count=st.integers(0, 4),
)
def test_parser_raises_only_dialer_errors(function: str, status: int, body: bytes,
                                          lead_count: int) -> None:
    try:
        parse_response(function, status, body, {"s3cret"}, lead_count=lead_count)
    except DialerError as error:
        assert "s3cret" not in str(error)


def test_deep_json_is_malformed_not_a_crash() -> None:
    assert type(outcome("add_list", "[" * 100_000)) is DialerMalformed


def _echo_bodies(function: str, secret: str) -> list[str]:
    pair = {"list_id": secret, "password": secret}
    return [
        f"ERROR: {function} BAD {secret} THING - a|{secret}|b",
        f"ERROR: {function} BAD THING: |a|{secret}|",
        f"ERROR: Login incorrect, please try again: |api|{secret}|BAD|",
        f"SUCCESS: {function} DONE {secret} - a|{secret}|b|\n{secret}",
        f"<html>{secret}</html>",
        json.dumps({"success": False, "message": f"x {secret}", "data": pair}),
        json.dumps({"success": True, "message": f"x {secret}", "data": pair}),
        json.dumps({"success": True, "message": "x", "data": [f"C-11-{secret}", secret]}),
        json.dumps(["ERROR", f"{function} {secret}", secret]),
        json.dumps({"lead 1": {"success": True, "message": secret,
                               "data": f"{secret}|1101|{secret}||NEW|"}}),
        json.dumps({"success": False, "message": f"x {secret}", "data": pair})[:-3],
    ]


@settings(max_examples=150, deadline=None)
@given(
    function=st.sampled_from(["add_user", "update_user", "add_list", "active_lists",
                              "add_multi_lead"]),
    # Marked at both ends so that no fixed text of the answer can contain it by coincidence.
    secret=st.text(alphabet="abc123-_.!@#$%^&*|:/\\\"'é+=", min_size=1, max_size=12).map(
        lambda core: f"Zq{core}Zq"),
    status=st.sampled_from([200, 200, 500, 404]),
)
def test_an_echoed_secret_never_comes_back(function: str, secret: str, status: int) -> None:
    for body in _echo_bodies(function, secret):
        result = outcome(function, body, status, secrets={secret}, lead_count=1)
        texts = [str(result), repr(result)]
        if isinstance(result, DialerError):
            texts += [repr(result.args), result.excerpt]
        assert not any(secret in text for text in texts), (body, texts)
