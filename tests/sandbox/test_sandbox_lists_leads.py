"""add_list / active_lists / add_multi_lead: documented answers exactly, and the rules we chose."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer, SandboxList

API = "/dialer/elision_api.php"
DOC_ADD_LIST = ("source=test&user=api&pass=1234&function=add_list&list_id=1101"
                "&list_name=Test+API+list&campaign_id=TESTCAMP")
DOC_ACTIVE_LISTS = "source=test&user=api&pass=1234&function=active_lists"
DOC_ADD_MULTI_LEAD = (
    'source=test&user=api&pass=1234&function=add_multi_lead&multi_leads=[{"city":"Ahmedabad",'
    '"email":"","phone_number":1234567893,"first_name":"test","last_name":"test",'
    '"vendor_lead_code":1236,"list_id":"1101","postal_code":91}]'
)
LIST_1101 = SandboxList("1101", "Test API list", "TESTCAMP", "Y")


def client_for(dialer: SandboxDialer) -> httpx.Client:
    return httpx.Client(transport=dialer.transport(), base_url="http://sandbox")


def call(dialer: SandboxDialer, **params: str) -> httpx.Response:
    base = {"source": "test", "user": "api", "pass": "1234"}
    return client_for(dialer).get(API, params={**base, **params})


def add_list(dialer: SandboxDialer, **params: str) -> str:
    return call(dialer, function="add_list", **params).text


def leads(dialer: SandboxDialer, batch: list[dict[str, Any]]) -> Any:
    return call(dialer, function="add_multi_lead", multi_leads=json.dumps(batch)).json()


# --- add_list -----------------------------------------------------------------------------


def test_doc_add_list_example() -> None:
    dialer = SandboxDialer()
    response = client_for(dialer).get(f"{API}?{DOC_ADD_LIST}")
    assert response.headers["content-type"] == "application/json"
    assert response.text == (
        '{"success":true,"message":"1101 list created","data":'
        '{"list_id":"1101","list_name":"Test API list","campaign_id":"TESTCAMP"}}')
    assert dialer.snapshot()["lists"] == [
        {"list_id": "1101", "list_name": "Test API list", "campaign_id": "TESTCAMP",
         "active": "N"}]


DOC_LIST = {"list_id": "1101", "list_name": "Test API list", "campaign_id": "TESTCAMP"}
DOC_DATA = '{"list_id":"1101","list_name":"Test API list","campaign_id":"TESTCAMP"}'


@pytest.mark.parametrize(("data", "params", "expected"), [
    pytest.param(SandboxData(api_users=(ApiUser("api", "1234", level=7),)), DOC_LIST,
                 '{"success":false,"message":"api User does not have permission to add list in'
                 ' the system","data":{"user":"api","password":"1234"}}', id="level 7"),
    pytest.param(SandboxData(api_users=(ApiUser("api", "1234", can_modify_lists=False),)),
                 DOC_LIST, '{"success":false,"message":"api User does not have permission to'
                 ' add list in the system","data":{"user":"api","password":"1234"}}',
                 id="no modify-lists right"),
    pytest.param(SandboxData(), {**DOC_LIST, "list_id": ""},
                 '{"success":false,"message":"Please send list id , campaign id and list name",'
                 '"data":{"list_id":"","list_name":"Test API list","campaign_id":"TESTCAMP"}}',
                 id="missing list id"),
    pytest.param(SandboxData(campaigns=("OTHER",)), DOC_LIST,
                 '{"success":false,"message":"TESTCAMP campaign does not exist","data":'
                 + DOC_DATA + "}", id="unknown campaign"),
    pytest.param(SandboxData(lists=(LIST_1101,)), DOC_LIST,
                 '{"success":false,"message":"1101 list already exist","data":' + DOC_DATA + "}",
                 id="existing list"),
])
def test_doc_add_list_errors(data: SandboxData, params: dict[str, str], expected: str) -> None:
    dialer = SandboxDialer(data=data)
    before = dialer.snapshot()["lists"]
    assert add_list(dialer, **params) == expected
    assert dialer.snapshot()["lists"] == before


@pytest.mark.parametrize(("field", "value", "message"), [
    ("list_id", "1", "list id must be 2-14 digits"),
    ("list_id", "11a1", "list id must be 2-14 digits"),
    ("list_id", "1" * 15, "list id must be 2-14 digits"),
    ("list_name", "short", "list name must be 6-30 characters"),
    ("list_name", "n" * 31, "list name must be 6-30 characters"),
    ("campaign_id", "T", "T campaign does not exist"),
    ("active", "y", "active must be Y or N"),
])
def test_add_list_invalid_values(field: str, value: str, message: str) -> None:
    dialer = SandboxDialer()
    answer = json.loads(add_list(dialer, **{**DOC_LIST, field: value}))
    assert answer == {"success": False, "message": message,
                      "data": {k: v for k, v in {**DOC_LIST, field: value}.items()
                               if k != "active"}}
    assert dialer.snapshot()["lists"] == []


def test_add_list_escapes_like_php_json_encode() -> None:
    dialer = SandboxDialer()
    answer = add_list(dialer, list_id="1102", list_name="Leads A/B – été", campaign_id="SALES")
    assert '"list_name":"Leads A\\/B \\u2013 \\u00e9t\\u00e9"' in answer
    assert json.loads(answer)["data"]["list_name"] == "Leads A/B – été"


# --- active_lists -------------------------------------------------------------------------


def test_active_lists_shows_only_active_lists_in_list_id_order() -> None:
    dialer = SandboxDialer()
    add_list(dialer, **DOC_LIST, active="Y")
    add_list(dialer, list_id="990", list_name="Inactive list", campaign_id="SALES")
    dialer.store.put_list("55", "Made by hand", "SUPPORT")
    response = client_for(dialer).get(f"{API}?{DOC_ACTIVE_LISTS}")
    assert response.headers["content-type"] == "application/json"
    assert response.text == ('{"success":true,"message":"lists are listed successfully",'
                             '"data":["SUPPORT-55-Made by hand","TESTCAMP-1101-Test API list"]}')
    dialer.store.deactivate_list("1101")
    assert call(dialer, function="active_lists").json()["data"] == ["SUPPORT-55-Made by hand"]


def test_active_lists_when_there_are_none() -> None:
    assert call(SandboxDialer(), function="active_lists").json() == {
        "success": True, "message": "lists are listed successfully", "data": []}


# --- add_multi_lead -----------------------------------------------------------------------


def test_doc_add_multi_lead_example() -> None:
    # first_lead_id=1036 makes the document's own example answer come back verbatim.
    dialer = SandboxDialer(data=SandboxData(lists=(LIST_1101,), first_lead_id=1036))
    response = client_for(dialer).get(f"{API}?{DOC_ADD_MULTI_LEAD}")
    assert response.headers["content-type"] == "application/json"
    assert response.text == ('{"lead 1":{"success":true,"message":"Record(s) Created",'
                             '"data":"1234567893|1101|1036||NEW|"}}')
    assert dialer.snapshot()["leads"] == [{
        "lead_id": 1036, "list_id": "1101", "phone_number": "1234567893", "status": "NEW",
        "city": "Ahmedabad", "email": "", "first_name": "test", "last_name": "test",
        "vendor_lead_code": "1236", "postal_code": "91"}]


def test_doc_invalid_phone_example() -> None:
    dialer = SandboxDialer(data=SandboxData(lists=(LIST_1101,)))
    answer = call(dialer, function="add_multi_lead",
                  multi_leads='[{"phone_number":1293,"list_id":"1101"}]')
    assert answer.text == (
        '{"lead 1":{"success":false,"message":"Invalid phone number","data":"1293"}}')
    assert dialer.snapshot()["leads"] == []


@pytest.mark.parametrize("multi_leads", [None, "", "not json", "[]", "{}", '["x"]', '[{}, 3]'])
def test_add_multi_lead_without_a_usable_batch(multi_leads: str | None) -> None:
    params = {"function": "add_multi_lead"}
    if multi_leads is not None:
        params["multi_leads"] = multi_leads
    answer = call(SandboxDialer(), **params)
    assert answer.text == '["ERROR","add_multi_lead YOU MUST USE ALL REQUIRED FIELDS","api",""]'


def test_add_multi_lead_needs_the_right() -> None:
    data = SandboxData(api_users=(ApiUser("api", "1234", can_add_leads=False),),
                       lists=(LIST_1101,))
    answer = leads(SandboxDialer(data=data), [{"phone_number": "1234567890", "list_id": "1101"}])
    assert answer == ["ERROR", "add_multi_lead USER DOES NOT HAVE PERMISSION TO ADD LEADS",
                      "api", "0"]


def test_one_bad_lead_never_fails_the_others() -> None:
    inactive = SandboxList("2002", "Paused list", "SALES", "N")
    dialer = SandboxDialer(data=SandboxData(lists=(LIST_1101, inactive)))
    answer = leads(dialer, [
        {"phone_number": "+1 (727) 555-1212", "list_id": "1101", "first_name": "Ann"},
        {"phone_number": "12345", "list_id": "1101"},
        {"list_id": "1101"},
        {"phone_number": "7275551213", "list_id": "9999"},
        {"phone_number": "7275551214", "list_id": "x"},
        {"phone_number": "7275551215", "list_id": 2002, "password": "never stored"},
    ])
    assert list(answer) == [f"lead {n}" for n in range(1, 7)]
    assert answer["lead 1"] == {"success": True, "message": "Record(s) Created",
                                "data": "17275551212|1101|1001||NEW|"}
    assert answer["lead 2"] == {"success": False, "message": "Invalid phone number",
                                "data": "12345"}
    assert answer["lead 3"] == {"success": False, "message": "Invalid phone number", "data": ""}
    assert answer["lead 4"] == {"success": False, "message": "9999 list does not exist",
                                "data": "9999"}
    assert answer["lead 5"] == {"success": False, "message": "Invalid list id", "data": "x"}
    assert answer["lead 6"]["data"] == "7275551215|2002|1002||NEW|"
    stored = dialer.snapshot()["leads"]
    assert [(x["lead_id"], x["list_id"]) for x in stored] == [(1001, "1101"), (1002, "2002")]
    assert "password" not in stored[1]
    assert dialer.snapshot()["calls"][-1]["outcome"] == "PARTIAL"


def test_a_resent_batch_adds_its_leads_again() -> None:
    # No duplicate check: this is why a client must never resend a batch silently.
    dialer = SandboxDialer(data=SandboxData(lists=(LIST_1101,)))
    batch = [{"phone_number": "7275551212", "list_id": "1101"}]
    leads(dialer, batch)
    leads(dialer, batch)
    assert [x["lead_id"] for x in dialer.snapshot()["leads"]] == [1001, 1002]
