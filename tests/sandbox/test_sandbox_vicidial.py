"""The sandbox in vicidial mode answers as the recorded VICIdial 2.14 server did, byte for byte."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer, SandboxUser
from reconciler.sandbox.app import API_PATH, VICIDIAL_API_PATH
from tests.adapters.dialer.test_vicidial_protocol import RECORDED, Recording

API_USER = ApiUser("apiuser", "test1234")
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def vicidial(**data: Any) -> SandboxDialer:
    data.setdefault("api_users", (API_USER,))
    data.setdefault("first_lead_id", 8)   # the recorded server's next lead id
    return SandboxDialer(SandboxData(**data), mode="vicidial")


def client_for(dialer: SandboxDialer) -> httpx.Client:
    return httpx.Client(transport=dialer.transport(), base_url="http://sandbox")


def replay(dialer: SandboxDialer, recording: Recording) -> httpx.Response:
    client = client_for(dialer)
    if recording.method == "POST":
        return client.post(recording.path, content=recording.raw_query.encode(), headers={
            "content-type": "application/x-www-form-urlencoded"})
    return client.get(f"{recording.path}?{recording.raw_query}")


def call(dialer: SandboxDialer, **params: str) -> str:
    base = {"user": "apiuser", "pass": "test1234", "source": "test"}
    return client_for(dialer).get(VICIDIAL_API_PATH, params={**base, **params}).text


# What happened on the recorded server between the recorded requests (not recorded itself).
def _before_list_info(dialer: SandboxDialer) -> None:
    call(dialer, function="update_list", list_id="1001", list_name="Renamed List", active="Y")
    listing = dialer.store.get_list("1001")
    assert listing is not None
    listing.resets_today = 1


BETWEEN = {64: _before_list_info}
# Recorded answers that hold the clock: compared with the clock's digits masked.
CLOCKED = {
    1: rf"VERSION: 2\.14-202\|BUILD: 250720-1841\|DATE: {DATE}\|EPOCH: \d+\|DST: 0\|"
       r"TZ: -5\.00\|TZNOW: -5\.00\|\n",
    64: rf"1001\|Renamed List\|TESTCAMP\|Y\|{DATE}\|\|2099-12-31\|1\|\n",
}


def test_every_recorded_request_is_answered_as_recorded() -> None:
    dialer = vicidial()
    for number, recording in sorted(RECORDED.items()):
        BETWEEN.get(number, lambda _: None)(dialer)
        response = replay(dialer, recording)
        assert response.status_code == 200, number
        assert response.headers["content-type"] == recording.content_type, number
        if number in CLOCKED:
            assert re.fullmatch(CLOCKED[number], response.text), (number, response.text)
            assert re.fullmatch(CLOCKED[number], recording.body.decode()), number
        else:
            assert response.content == recording.body, (number, response.content)


def test_recorded_effects_are_in_the_store() -> None:
    dialer = vicidial()
    for number, recording in sorted(RECORDED.items()):
        BETWEEN.get(number, lambda _: None)(dialer)
        replay(dialer, recording)
    users = {u["agent_user"]: u for u in dialer.snapshot()["users"]}
    # The recording's `SELECT user,full_name,active FROM vicidial_users WHERE user='10000'`.
    assert (users["10000"]["full_name"], users["10000"]["active"]) == ("Renamed Person", "N")
    assert users["10004"]["user_level"] == 10 and set(users) == {"10000", "10001", "10004"}
    assert [(x["lead_id"], x["phone_number"], x["list_id"]) for x in
            dialer.snapshot()["leads"]] == [(8, "7275551212", "1001")]
    assert dialer.store.check_password("10000", "9999")


def test_version_needs_no_login_and_the_paths_belong_to_their_mode() -> None:
    dialer = vicidial()
    assert client_for(dialer).get(f"{VICIDIAL_API_PATH}?function=version").text.startswith(
        "VERSION: 2.14-202|")
    assert client_for(dialer).get(f"{API_PATH}?function=version").status_code == 404
    assert client_for(SandboxDialer()).get(VICIDIAL_API_PATH).status_code == 404
    assert SandboxDialer().api_path == API_PATH and dialer.api_path == VICIDIAL_API_PATH
    with pytest.raises(ValueError, match="mode"):
        SandboxDialer(mode="asterisk")  # type: ignore[arg-type]


@pytest.mark.parametrize("function", ["active_lists", "add_multi_lead", "", "copy_user"])
def test_elision_only_functions_are_unknown(function: str) -> None:
    assert call(vicidial(), function=function) == "ERROR: NO FUNCTION SPECIFIED\n"


# --- functions the recording does not cover: NON-AGENT_API's forms, `: |` error data ------


def test_user_details() -> None:
    dialer = vicidial(users=(SandboxUser("1000", "9999", "Test Agent", 3, "AGENTS"),))
    assert call(dialer, function="user_details", agent_user="1000") == (
        "1000|Test Agent|AGENTS|3|Y\n")
    assert call(dialer, function="user_details", agent_user="1000", header="YES") == (
        "user|full_name|user_group|user_level|active\n1000|Test Agent|AGENTS|3|Y\n")
    assert call(dialer, function="user_details", agent_user="2000") == (
        "ERROR: user_details USER NOT FOUND: |apiuser|2000|\n")
    assert call(dialer, function="user_details", agent_user="x") == (
        "ERROR: user_details INVALID SEARCH PARAMETERS: |apiuser|x|\n")
    assert call(dialer, function="user_details", agent_user="apiuser") == (
        "apiuser|apiuser|ADMIN|9|Y\n")
    dialer.store.put_user("1000", full_name="Edited By Hand", user_group="ADMIN", active="N")
    assert call(dialer, function="user_details", agent_user="1000") == (
        "1000|Edited By Hand|ADMIN|1|N\n")


def test_update_list_and_list_info() -> None:
    dialer = vicidial()
    call(dialer, function="add_list", list_id="1101", list_name="Test API list",
         campaign_id="TESTCAMP")
    assert call(dialer, function="update_list", list_id="1101", list_name="Updated list",
                campaign_id="SALES", active="Y") == (
        "SUCCESS: update_list LIST HAS BEEN UPDATED - apiuser|1101\n")
    assert re.fullmatch(rf"1101\|Updated list\|SALES\|Y\|{DATE}\|\|2099-12-31\|0\|\n",
                        call(dialer, function="list_info", list_id="1101"))
    call(dialer, function="add_lead", phone_number="7275551212", list_id="1101")
    assert call(dialer, function="list_info", list_id="1101", leads_counts="Y",
                header="YES").splitlines()[0].endswith("resets_today|all_leads_count|"
                                                      "new_leads_count|")
    assert call(dialer, function="list_info", list_id="1101",
                leads_counts="Y").endswith("|0|1|1|\n")
    expected = {
        (("list_id", "5555"), ("active", "N")): "ERROR: update_list LIST DOES NOT EXIST: "
                                                "|apiuser|5555\n",
        (("list_id", "1101"), ("campaign_id", "NOCAMP")):
            "ERROR: update_list CAMPAIGN DOES NOT EXIST, THIS IS AN OPTIONAL FIELD: "
            "|apiuser|NOCAMP\n",
        (("list_id", "1101"), ("list_name", "short")):
            "ERROR: update_list LIST NAME MUST BE FROM 6 TO 30 CHARACTERS, THIS IS AN OPTIONAL "
            "FIELD: |apiuser|short\n",
        (("list_id", "1101"), ("active", "X")):
            "ERROR: update_list ACTIVE MUST BE Y OR N, THIS IS AN OPTIONAL FIELD: |apiuser|X\n",
        (("list_id", "1101"),): "NOTICE: update_list NO UPDATES DEFINED - apiuser|\n",
        (("list_id", "1"),): "ERROR: update_list YOU MUST USE ALL REQUIRED FIELDS: |apiuser|1\n",
    }
    for params, answer in expected.items():
        assert call(dialer, function="update_list", **dict(params)) == answer


def test_add_lead_checks_and_lead_reads() -> None:
    dialer = vicidial(first_lead_id=100)
    call(dialer, function="add_list", list_id="1001", list_name="Test List",
         campaign_id="TESTCAMP")
    call(dialer, function="add_list", list_id="1002", list_name="Other List",
         campaign_id="TESTCAMP")
    new = {"function": "add_lead", "phone_number": "7275551212", "vendor_lead_code": "CRM-1"}
    assert call(dialer, **new, list_id="1001", list_exists_check="Y") == (
        "SUCCESS: add_lead LEAD HAS BEEN ADDED - 7275551212|1001|100|-5.00|apiuser\n")
    assert call(dialer, **new, list_id="4444", list_exists_check="Y") == (
        "ERROR: add_lead NOT A DEFINED LIST ID, LIST EXISTS CHECK ENABLED - 7275551212|4444\n")
    assert call(dialer, **new, list_id="1002", duplicate_check="DUPCAMP") == (
        "ERROR: add_lead DUPLICATE PHONE NUMBER IN CAMPAIGN LISTS - 7275551212|1002|100|1001\n")
    assert call(dialer, **new, list_id="1002", duplicate_check="DUPLIST-DUPSYS90DAY") == (
        "ERROR: add_lead DUPLICATE PHONE NUMBER IN SYSTEM - 7275551212|1002|100|1001\n")
    assert call(dialer, **new, list_id="1002", duplicate_check="DUPLIST").startswith("SUCCESS")
    assert call(dialer, function="lead_search", phone_number="7275551212,3125551212") == (
        "7275551212|2|101-100\n3125551212|0|\n")
    assert call(dialer, function="lead_search", phone_number="3125551212") == (
        "ERROR: lead_search NO MATCHES FOUND IN THE SYSTEM: |apiuser|3125551212|\n")
    rows = call(dialer, function="lead_all_info", phone_number="7275551212").splitlines()
    assert [row.split("|")[-1] for row in rows] == ["101", "100"]
    assert rows[1].split("|")[:8] == ["NEW", "", "CRM-1", "", "1001", "-5.00", "1", "7275551212"]
    assert len(rows[0].split("|")) == 32
    assert call(dialer, function="lead_all_info", lead_id="999") == (
        "ERROR: lead_all_info LEAD NOT FOUND: |apiuser|999||\n")
    # Without list_exists_check VICIdial files a lead under a list nobody made, or 999.
    assert call(dialer, function="add_lead", phone_number="7275551213").startswith(
        "SUCCESS: add_lead LEAD HAS BEEN ADDED - 7275551213|999|")


def test_input_is_filtered_silently_as_vicidial_does() -> None:
    dialer = vicidial()
    call(dialer, function="add_user", agent_user="1000", agent_pass="pa$$-wörd_1",
         agent_user_level="1", agent_full_name="José O'Brien", agent_user_group="AGENTS")
    assert dialer.store.check_password("1000", "pa-wrd_1")
    assert call(dialer, function="user_details", agent_user="1000") == (
        "1000|Jos OBrien|AGENTS|1|Y\n")
    call(dialer, function="add_user", agent_user="u" * 25, agent_pass="x", agent_user_level="1",
         agent_full_name="Long", agent_user_group="AGENTS")
    assert call(dialer, function="user_details", agent_user="u" * 20).startswith("u" * 20 + "|")
    call(dialer, function="add_lead", phone_number="7275551212", list_id="1001",
         first_name="Ann+Marie", comments="#1; call")
    lead = dialer.snapshot()["leads"][0]
    assert (lead["first_name"], lead["comments"]) == ("Ann Marie", "1 call")


@pytest.mark.parametrize(("rights", "function", "answer"), [
    ({"can_view_reports": False}, "user_details",
     "ERROR: user_details USER DOES NOT HAVE PERMISSION TO GET USER DETAILS: |apiuser|0\n"),
    ({"can_add_leads": False}, "add_lead",
     "ERROR: add_lead USER DOES NOT HAVE PERMISSION TO ADD LEADS TO THE SYSTEM - apiuser|0\n"),
    ({"can_modify_lists": False}, "list_info",
     "ERROR: list_info USER DOES NOT HAVE PERMISSION TO MODIFY LISTS: |apiuser\n"),
    ({"level": 7}, "add_user",
     "ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS: |apiuser|0\n"),
    ({"can_view_reports": False}, "lead_all_info",
     "ERROR: lead_all_info USER DOES NOT HAVE PERMISSION TO GET LEAD INFO: |apiuser|0\n"),
])
def test_missing_rights(rights: dict[str, Any], function: str, answer: str) -> None:
    dialer = vicidial(api_users=(ApiUser("apiuser", "test1234", **rights),))
    assert call(dialer, function=function, agent_user="1000", list_id="1001",
                phone_number="7275551212", lead_id="1") == answer


def test_faults_apply_in_vicidial_mode() -> None:
    dialer = vicidial()
    dialer.inject("drop", function="add_lead")
    with pytest.raises(httpx.RemoteProtocolError):
        call(dialer, function="add_lead", phone_number="7275551212", list_id="1001")
    assert len(dialer.snapshot()["leads"]) == 1   # committed, answer lost
    assert dialer.snapshot()["calls"][-1]["outcome"] == "fault:drop"
    assert "pass" not in dialer.snapshot()["calls"][-1]["params"]


def _answer(dialer: SandboxDialer, **params: str) -> httpx.Response:
    base = {"user": "apiuser", "pass": "test1234", "source": "test"}
    return client_for(dialer).get(VICIDIAL_API_PATH, params={**base, **params})


_NEW_USER = {"function": "add_user", "agent_user": "10005", "agent_pass": "9999",
             "agent_user_level": "1", "agent_full_name": "Pat OBrien",
             "agent_user_group": "AGENTS"}


@pytest.mark.parametrize("params", [
    pytest.param({**_NEW_USER, "email": "pat.o'brien@example.com"}, id="add_user-email"),
    pytest.param({**_NEW_USER, "agent_user": "o'brien"}, id="add_user-agent_user"),
    pytest.param({"function": "update_user", "agent_user": "10000",
                  "email": "o'brien@example.com"}, id="update_user-email"),
    pytest.param({"function": "add_lead", "phone_number": "7275551213", "list_id": "1001",
                  "comments": 'said "later"'}, id="add_lead-comments"),
    pytest.param({"function": "add_lead", "phone_number": "7275551213", "list_id": "1001",
                  "first_name": "Pat", "last_name": "O'Brien",
                  "duplicate_check": "DUPNAMEPHONELIST"}, id="add_lead-dupnamephone"),
])
def test_a_quote_its_sql_breaks_on_answers_an_empty_500(params: dict[str, str]) -> None:
    dialer = vicidial(users=(SandboxUser("10000", agent_pass="9999", full_name="Kept"),))
    before = dialer.snapshot()
    answer = _answer(dialer, **params)
    assert (answer.status_code, answer.content) == (500, b"")
    after = dialer.snapshot()
    assert {k: after[k] for k in ("users", "lists", "leads")} == {
        k: before[k] for k in ("users", "lists", "leads")}
    assert after["calls"][-1]["outcome"] == "SQL_ERROR"


def test_quotes_that_reach_no_sql_unescaped_are_stored() -> None:
    dialer = vicidial(users=(SandboxUser("10000", agent_pass="9999", full_name="Kept"),))
    answer = _answer(dialer, function="add_lead", phone_number="7275551213", list_id="1001",
                     first_name="Pat", last_name="O'Brien", comments="it's late",
                     duplicate_check="DUPLIST")
    assert answer.text.startswith("SUCCESS: add_lead LEAD HAS BEEN ADDED")
    (lead,) = dialer.snapshot()["leads"]
    assert (lead["last_name"], lead["comments"]) == ("O'Brien", "it's late")
    assert _answer(dialer, function="update_user", agent_user="10000",
                   agent_full_name="Pat O'Brien").text.startswith("SUCCESS")   # ' filtered out
    assert dialer.snapshot()["users"][0]["full_name"] == "Pat OBrien"
