"""The vicidial dialect's protocol layer: recorded VICIdial 2.14 answers, NON-AGENT_API's forms
and the request builders (the input rewrites are in test_vicidial_rewrites.py)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer import vicidial_requests as build
from reconciler.adapters.dialer.requests import ApiLogin
from reconciler.adapters.dialer.vicidial_responses import parse_vicidial_response
from reconciler.core.replies import ListAdded, UserAdded, UserUpdated
from reconciler.core.vicidial_replies import (
    DuplicateLead,
    LeadAdded,
    LeadSearch,
    LeadsFound,
    ListInfo,
    ListUpdated,
    PhoneMatches,
    UserDetails,
    VersionInfo,
)
from reconciler.errors import (
    AlreadyExists,
    DialerError,
    DialerMalformed,
    DialerRefused,
    DialerRejected,
    DoesNotExist,
    FieldInvalid,
)
from tests.helpers import VICIDIAL_RECORDINGS

LOGIN = ApiLogin("apiuser", "test1234", "test")


@dataclass(frozen=True)
class Recording:
    number: int
    method: str
    path: str
    params: dict[str, str]
    raw_query: str        # the query string or form body, as sent
    content_type: str
    body: bytes


def read_recordings() -> dict[int, Recording]:
    """Every request/answer pair of tests/fixtures/vicidial-2.14-responses.txt, by number."""
    found = {}
    for block in re.split(r"^=== ", VICIDIAL_RECORDINGS.read_text(), flags=re.MULTILINE)[1:]:
        number = re.match(r"\[(\d+)\]", block)
        request = re.search(r"^REQUEST : (\w+) (\S+)", block, re.MULTILINE)
        form = re.search(r"^POSTBODY: (\S+)", block, re.MULTILINE)
        ctype = re.search(r"^CTYPE   : (.+)$", block, re.MULTILINE)
        body = re.search(r"^BODY\(repr\): (b'.*')$", block, re.MULTILINE)
        assert number and request and ctype and body, block[:60]
        url = urlsplit(request.group(2))
        query = form.group(1) if form else url.query
        found[int(number.group(1))] = Recording(
            int(number.group(1)), request.group(1), url.path, dict(parse_qsl(query)), query,
            ctype.group(1).strip(), ast.literal_eval(body.group(1)))
    return found


RECORDED = read_recordings()


def outcome(function: str, body: str | bytes, secrets: Any = (), status: int = 200) -> Any:
    raw = body.encode() if isinstance(body, str) else body
    try:
        return parse_vicidial_response(function, status, raw, secrets)
    except DialerError as error:
        return error


# --- every recorded answer ----------------------------------------------------------------------

RECORDED_OUTCOMES: dict[int, type[Any]] = {
    1: VersionInfo, 2: DialerRefused, 5: DialerRefused,
    11: UserAdded, 12: AlreadyExists, 13: UserAdded, 17: DialerRejected, 20: DialerRejected,
    21: UserAdded, 32: UserUpdated, 33: UserUpdated, 38: DoesNotExist, 42: DialerRejected,
    49: ListAdded, 51: AlreadyExists, 52: DialerRejected, 64: ListInfo, 67: DoesNotExist,
    68: LeadAdded, 69: DuplicateLead, 71: DialerRejected,
}


def test_every_recording_has_an_expected_outcome() -> None:
    assert set(RECORDED) == set(RECORDED_OUTCOMES)


@pytest.mark.parametrize("number", sorted(RECORDED_OUTCOMES), ids=lambda n: f"recording-{n}")
def test_recorded_answers_read_as_the_right_reply(number: int) -> None:
    recording = RECORDED[number]
    secrets = {recording.params.get("pass", ""), recording.params.get("agent_pass", "")} - {""}
    result = outcome(recording.params["function"], recording.body, secrets)
    assert type(result) is RECORDED_OUTCOMES[number]
    texts = [str(result), repr(result)]
    if isinstance(result, DialerError):
        texts.append(result.excerpt)
    assert not any(secret in text for secret in secrets for text in texts)


def test_recorded_values() -> None:
    version = outcome("version", RECORDED[1].body)
    assert (version.version, version.build, version.get("TZ")) == ("2.14-202", "250720-1841",
                                                                    "-5.00")
    assert outcome("list_info", RECORDED[64].body) == ListInfo(
        "1001", "Renamed List", "TESTCAMP", "Y", "2026-11-26 23:57:44", "", "2099-12-31", 1)
    assert outcome("add_lead", RECORDED[68].body) == LeadAdded(
        "7275551212", "1001", "8", "-5.00", "LEAD HAS BEEN ADDED")
    duplicate = outcome("add_lead", RECORDED[69].body)
    assert (duplicate.scope, duplicate.phone_number, duplicate.list_id, duplicate.lead_id) == (
        "LIST", "7275551212", "1001", "8")
    assert outcome("add_list", RECORDED[49].body) == ListAdded(
        "1001", "Test List", "TESTCAMP", "LIST HAS BEEN ADDED")
    assert outcome("update_user", RECORDED[32].body) == UserUpdated(
        "USER HAS BEEN UPDATED", ("apiuser", "10000"))


def test_a_lead_id_equal_to_the_password_is_read_not_masked() -> None:
    # "1234" is the example password and, sooner or later, a lead id: the lead must not be left
    # in doubt because its id looks like a credential.
    body = "SUCCESS: add_lead LEAD HAS BEEN ADDED - 7275551212|1001|1234|-5.00|apiuser\n"
    assert outcome("add_lead", body, {"1234"}) == LeadAdded(
        "7275551212", "1001", "1234", "-5.00", "LEAD HAS BEEN ADDED")
    updated = outcome("update_lead", "SUCCESS: update_lead LEAD HAS BEEN UPDATED - "
                      "apiuser|1234\n", {"1234"})
    assert updated.lead_id == "1234"
    # Elsewhere a field equal to the password is still masked.
    assert outcome("update_user", "SUCCESS: update_user USER HAS BEEN UPDATED - 1234|10000\n",
                   {"1234"}) == UserUpdated("USER HAS BEEN UPDATED", ("***", "10000"))


def test_echoed_agent_password_is_masked_even_when_rewritten() -> None:
    # VICIdial echoes the password it stored, which need not be the one sent.
    added = outcome("add_user", RECORDED[11].body, secrets={"99!99"})
    assert added.data[2] == "***"
    missing = outcome("add_user", RECORDED[17].body, secrets=())
    assert "9999" not in missing.excerpt and "|10003|***|1||AGENTS" in missing.excerpt
    login = outcome("add_user", RECORDED[5].body)
    assert "wrongpw" not in str(login) and "|apiuser|***|BAD|" in login.excerpt


# --- answer forms NON-AGENT_API documents ------------------------------------------------------

DOC_LEAD_ROW = ("TD|6666|554443||501|-4.00|1|9998887112|Mr|Billy'Oj|U|O'Reillyo|ad1|ad2|ad3|"
                "city next|FL|U|33777||U|0000-00-00|bobo'brien|test@test.com||2017-06-01 "
                "18:38:41|79|2017-06-09 14:53:27|0|4646|0|98234789")


@pytest.mark.parametrize(("function", "body", "expected"), [
    ("user_details", "11111|test user|ADMIN|6|Y\n",
     UserDetails("11111", "test user", "ADMIN", 6, "Y")),
    ("user_details", "user|full_name|user_group|user_level|active\n11111|a|b|c|ADMIN|6|Y|\n",
     UserDetails("11111", "a|b|c", "ADMIN", 6, "Y")),
    ("list_info", "list_id|list_name|campaign_id|active|list_changedate|list_lastcalldate|"
     "expiration_date|resets_today|all_leads_count|new_leads_count\n1101|performance list|"
     "TESTCAMP|Y|2019-09-02 08:52:50|2019-11-07 10:12:12|2099-12-31|0|59896|3\n",
     ListInfo("1101", "performance list", "TESTCAMP", "Y", "2019-09-02 08:52:50",
              "2019-11-07 10:12:12", "2099-12-31", 0, 59896, 3)),
    ("lead_search", "9998885112|4|1949076-1946517-1943958-1941399\n9998886112|1|1946891\n"
     "4075551212|0|\n",
     LeadSearch((PhoneMatches("9998885112", ("1949076", "1946517", "1943958", "1941399")),
                 PhoneMatches("9998886112", ("1946891",)), PhoneMatches("4075551212", ())))),
    ("update_list", "SUCCESS: update_list LIST HAS BEEN UPDATED - 6666|1101\n",
     ListUpdated("1101", "LIST HAS BEEN UPDATED")),
    ("update_list", "NOTICE: update_list LEADS IN LIST HAVE BEEN RESET - 6666|1101|324\n"
     "SUCCESS: update_list LIST HAS BEEN UPDATED - 6666|1101\n",
     ListUpdated("1101", "LIST HAS BEEN UPDATED",
                 ("NOTICE: update_list LEADS IN LIST HAVE BEEN RESET - 6666|1101|324",))),
    ("add_lead", "SUCCESS: add_lead LEAD HAS BEEN ADDED - 7275551111|999|193715|-4|6666\n"
     "NOTICE: add_lead ADDED TO HOPPER - 7275551111|6666|193715|1677922\n",
     LeadAdded("7275551111", "999", "193715", "-4", "LEAD HAS BEEN ADDED",
               ("NOTICE: add_lead ADDED TO HOPPER - 7275551111|6666|193715|1677922",))),
])
def test_documented_answers(function: str, body: str, expected: Any) -> None:
    assert outcome(function, body) == expected


def test_lead_all_info_reads_every_column_and_folds_pipes_into_comments() -> None:
    leads = outcome("lead_all_info", DOC_LEAD_ROW + "\n")
    assert isinstance(leads, LeadsFound) and len(leads.leads) == 1
    lead = leads.leads[0]
    assert (lead.lead_id, lead.list_id, lead.vendor_lead_code, lead.phone_number,
            lead.status) == ("98234789", "501", "554443", "9998887112", "TD")
    assert lead.get("last_name") == "O'Reillyo" and lead.get("called_count") == "79"
    # The document's row holds a date in comments; VICIdial lets `|` through in comments only.
    piped = DOC_LEAD_ROW.replace("|2017-06-01 18:38:41|", "|call a|b|later|")
    folded = outcome("lead_all_info", piped).leads[0]
    assert folded.get("comments") == "call a|b|later" and folded.lead_id == "98234789"
    two = outcome("lead_all_info", f"{DOC_LEAD_ROW}\n{DOC_LEAD_ROW[:-8]}11111111\n")
    assert [x.lead_id for x in two.leads] == ["98234789", "11111111"]


@pytest.mark.parametrize(("function", "body", "error"), [
    ("user_details", "ERROR: user_details USER NOT FOUND - 6666||", DoesNotExist),
    ("user_details", "ERROR: user_details USER NOT FOUND: |apiuser|1000|", DoesNotExist),
    ("user_details", "ERROR: user_details USER DOES NOT HAVE PERMISSION TO GET USER DETAILS - "
     "6666|0", DialerRefused),
    ("user_details", "ERROR: user_details INVALID SEARCH PARAMETERS - 6666||", DialerRejected),
    ("list_info", "ERROR: list_info NOT AN ALLOWED LIST ID - 98762", DialerRefused),
    ("update_list", "ERROR: update_list LIST DOES NOT EXIST - 6666|1000", DoesNotExist),
    ("update_list", "ERROR: update_list CAMPAIGN DOES NOT EXIST, THIS IS AN OPTIONAL FIELD - "
     "6666|TESTCIMP", DialerRejected),
    ("update_list", "NOTICE: update_list NO UPDATES DEFINED - 6666|", DialerRejected),
    ("lead_search", "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM - ||||", DoesNotExist),
    ("lead_all_info", "ERROR: lead_all_info LEAD NOT FOUND - 6666|||", DoesNotExist),
    ("add_lead", "ERROR: add_lead NOT A DEFINED LIST ID, LIST EXISTS CHECK ENABLED - "
     "7275551212|12344", DoesNotExist),
    ("add_lead", "ERROR: add_lead USER DOES NOT HAVE PERMISSION TO ADD LEADS TO THE SYSTEM - "
     "6666|0 ", DialerRefused),
    ("add_lead", "ERROR: auth USER DOES NOT HAVE PERMISSION TO USE THIS FUNCTION - 6666|add_lead",
     DialerRefused),
    ("add_lead", "ERROR: Too many login attempts, try again in 15 minutes: |api|LOCK|",
     DialerRefused),
    ("list_info", "ERROR: NO FUNCTION SPECIFIED", DialerRefused),
])
def test_documented_errors(function: str, body: str, error: type[DialerError]) -> None:
    assert type(outcome(function, body)) is error


@pytest.mark.parametrize(("body", "scope", "phone", "list_id", "lead_id"), [
    ("DUPLICATE PHONE NUMBER IN CAMPAIGN LISTS - 7275551111|101|8765444|102", "CAMPAIGN LISTS",
     "7275551111", "102", "8765444"),
    ("DUPLICATE PHONE NUMBER IN SYSTEM - 7275551111|101|8765444|103|PHONE", "SYSTEM",
     "7275551111", "103", "8765444"),
    ("DUPLICATE TITLE ALT_PHONE IN LIST - 1234|7275551111|101|8765444", "LIST", None, "101",
     "8765444"),
    ("DUPLICATE NAME PHONE IN SYSTEM - Bob|Smith|7275551113|101|8765444|104", "SYSTEM",
     "7275551113", "104", "8765444"),
])
def test_duplicates_name_the_lead_already_there(body: str, scope: str, phone: str | None,
                                                list_id: str, lead_id: str) -> None:
    error = outcome("add_lead", f"ERROR: add_lead {body}")
    assert isinstance(error, DuplicateLead) and isinstance(error, AlreadyExists)
    assert (error.scope, error.phone_number, error.list_id, error.lead_id) == (
        scope, phone, list_id, lead_id)


@pytest.mark.parametrize(("function", "body"), [
    ("list_info", "1001|Short|TESTCAMP|Y|\n"),
    ("list_info", "1001|A|TESTCAMP|Y|x||2099-12-31|one|\n"),
    ("list_info", "1001|A|B|Y|x||2099-12-31|1|\n1002|A|B|Y|x||2099-12-31|1|\n"),
    ("user_details", "11111|test user|ADMIN|six|Y\n"),
    ("lead_search", "9998885112|four|1\n"),
    ("lead_all_info", "TD|6666|554443\n"),
    ("add_lead", "SUCCESS: add_lead LEAD HAS BEEN ADDED - 7275551212|1001|x|-5.00|apiuser\n"),
    ("update_list", "1101|something\n"),
    ("user_details", "SUCCESS: user_details DONE - 1\n"),
    ("version", "VERSION 2.14\n"),
    ("add_list", "SUCCESS: add_user USER HAS BEEN ADDED - a|b\n"),
    ("list_info", "<html><body>Fatal error</body></html>"),
    ("list_info", "\n\n"),
])
def test_unreadable_answers_are_malformed(function: str, body: str) -> None:
    assert type(outcome(function, body)) is DialerMalformed


def test_an_elision_json_answer_is_read_by_the_elision_parser() -> None:
    body = ('{"success":true,"message":"1101 list created","data":{"list_id":"1101",'
            '"list_name":"Test API list","campaign_id":"TESTCAMP"}}')
    assert outcome("add_list", body) == ListAdded("1101", "Test API list", "TESTCAMP",
                                                  "1101 list created")


_vicidial_lines = st.tuples(
    st.sampled_from(["SUCCESS: ", "ERROR: ", "NOTICE: ", "VERSION: ", "", "<"]),
    st.sampled_from(["add_lead ", "list_info ", "user_details ", "x_y ", ""]),
    st.text(max_size=30),
    st.sampled_from([" - ", ": |", "|", "\n", ""]),
    st.text(alphabet="ab1|: -\n\r", max_size=40),
).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    function=st.sampled_from(["version", "add_user", "update_user", "add_list", "update_list",
                              "list_info", "user_details", "add_lead", "lead_search",
                              "lead_all_info", "active_lists"]),
    status=st.one_of(st.just(200), st.integers(min_value=-(2**31), max_value=2**31)),
    body=st.one_of(st.binary(max_size=160), _vicidial_lines.map(str.encode)),
)
def test_parser_raises_only_dialer_errors(function: str, status: int, body: bytes) -> None:
    try:
        parse_vicidial_response(function, status, body, {"s3cret"})
    except DialerError as error:
        assert "s3cret" not in str(error) and "s3cret" not in error.excerpt


# --- request builders: NON-AGENT_API's parameters ---------------------------------------------


def _sent(request: Any) -> dict[str, str]:
    return dict(request.params)


@pytest.mark.parametrize("number", [64, 67], ids=lambda n: f"recording-{n}")
def test_list_info_sends_what_vicidial_was_sent(number: int) -> None:
    recorded = RECORDED[number].params
    assert _sent(build.build_list_info(LOGIN, recorded["list_id"])) == recorded


def test_add_lead_sends_what_vicidial_was_sent() -> None:
    new, duplicate = RECORDED[68].params, RECORDED[69].params
    lead = {k: v for k, v in new.items() if k not in ("user", "pass", "source", "function")}
    request = build.build_add_lead(LOGIN, lead, list_exists_check=False)
    assert _sent(request) == new
    assert [name for name, _ in request.params][4:7] == ["phone_number", "phone_code", "list_id"]
    lead = {k: v for k, v in duplicate.items()
            if k not in ("user", "pass", "source", "function", "duplicate_check")}
    assert _sent(build.build_add_lead(LOGIN, lead, duplicate_check=["DUPLIST"],
                                      list_exists_check=False)) == duplicate
    with pytest.raises(FieldInvalid, match="phone_number"):   # recording 71: too short
        build.build_add_lead(LOGIN, {"phone_number": "12345", "list_id": "1001"})


def test_add_lead_defaults() -> None:
    request = build.build_add_lead(LOGIN, {"list_id": 1001, "phone_number": 7275551212,
                                           "first_name": "", "phone_code": ""})
    assert request.params[3:] == (("function", "add_lead"), ("phone_number", "7275551212"),
                                  ("list_id", "1001"), ("list_exists_check", "Y"))
    assert _sent(build.build_add_lead(LOGIN, {"phone_number": "7275551212", "list_id": "1001"},
                                      duplicate_check=["DUPLIST", "DUPSYS90DAY"]))[
        "duplicate_check"] == "DUPLIST-DUPSYS90DAY"


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: build.build_version(), {"function": "version"}),
    (lambda: build.build_user_details(LOGIN, 1234), {"agent_user": "1234"}),
    (lambda: build.build_list_info(LOGIN, "1101", leads_counts=True),
     {"list_id": "1101", "leads_counts": "Y"}),
    (lambda: build.build_update_list(LOGIN, "1101", {"list_name": "Updated test API list"}),
     {"list_id": "1101", "list_name": "Updated test API list"}),
    (lambda: build.build_update_list(LOGIN, 1102, {"active": "N", "campaign_id": "ASTRICON"}),
     {"list_id": "1102", "campaign_id": "ASTRICON", "active": "N"}),
    (lambda: build.build_lead_search(
        LOGIN, ["9998885112", 9998887112, "9998886112", "4075551212"]),
     {"phone_number": "9998885112,9998887112,9998886112,4075551212"}),
    (lambda: build.build_lead_all_info(LOGIN, lead_id=1079425), {"lead_id": "1079425"}),
    (lambda: build.build_lead_all_info(LOGIN, phone_number="3125551212"),
     {"phone_number": "3125551212"}),
])
def test_builders_match_the_documented_examples(make: Any, expected: dict[str, str]) -> None:
    request = make()
    sent = _sent(request)
    if request.function == "version":
        assert sent == expected and request.secrets == frozenset()
        return
    assert sent == {"source": "test", "user": "apiuser", "pass": "test1234",
                    "function": request.function, **expected}
    assert request.secrets == {"test1234"} and "test1234" not in repr(request)


@pytest.mark.parametrize(("make", "field"), [
    (lambda: build.build_user_details(LOGIN, "x"), "agent_user"),
    (lambda: build.build_list_info(LOGIN, "1"), "list_id"),
    (lambda: build.build_update_list(LOGIN, "1101", {}), "changes"),
    (lambda: build.build_update_list(LOGIN, "1101", {"script": "X"}), "script"),
    (lambda: build.build_update_list(LOGIN, "1101", {"list_name": "short"}), "list_name"),
    (lambda: build.build_update_list(LOGIN, "1101", {"active": "y"}), "active"),
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7275551212", "list_id": "11"}),
     "list_id"),   # VICIdial would put it in list 999
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7" * 17, "list_id": "1001"}),
     "phone_number"),
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7275551212"}), "list_id"),
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7275551212", "list_id": "1001",
                                          "nickname": "x"}), "nickname"),
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7275551212", "list_id": "1001"},
                                  duplicate_check=["DUPLISTS"]), "duplicate_check"),
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7275551212", "list_id": "1001"},
                                  duplicate_check=["DUPSYS5DAY"]), "duplicate_check"),
    (lambda: build.build_add_lead(LOGIN, {"phone_number": "7275551212", "list_id": "1001"},
                                  duplicate_check=["DUPLIST", "DUPLIST"]), "duplicate_check"),
    (lambda: build.build_lead_search(LOGIN, []), "phone_number"),
    (lambda: build.build_lead_search(LOGIN, ["12345"]), "phone_number"),
    (lambda: build.build_lead_search(LOGIN, ["7275551212"], records=0), "records"),
    (lambda: build.build_lead_all_info(LOGIN), "lead_id"),
    (lambda: build.build_lead_all_info(LOGIN, lead_id=1, phone_number="7275551212"), "lead_id"),
])
def test_builders_refuse_what_the_api_rules_refuse(make: Any, field: str) -> None:
    with pytest.raises(FieldInvalid) as caught:
        make()
    assert caught.value.field == field
