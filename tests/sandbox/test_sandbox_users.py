"""add_user / update_user / login / dispatch: every documented answer, exactly."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest

from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer, SandboxUser

API = "/dialer/elision_api.php"

# The document's example URLs, query part verbatim.
DOC_ADD_USER = (
    "source=test&user=api&pass=1234&function=add_user&agent_user=1000&agent_pass=9999"
    "&agent_user_level=1&agent_full_name=Testing+Person&agent_user_group=AGENTS"
)
DOC_UPDATE_USER = (
    "source=test&user=api&pass=1234&function=update_user&agent_user=1000&agent_pass=9876"
    "&agent_user_level=5&agent_full_name=Testing+Person&agent_user_group=AGENTS"
)


def client_for(dialer: SandboxDialer) -> httpx.Client:
    return httpx.Client(transport=dialer.transport(), base_url="http://sandbox")


def call(dialer: SandboxDialer, **params: str) -> str:
    base = {"source": "test", "user": "api", "pass": "1234"}
    return client_for(dialer).get(API, params={**base, **params}).text


NEW_USER = {"function": "add_user", "agent_user": "1000", "agent_pass": "9999",
            "agent_user_level": "1", "agent_full_name": "Testing Person",
            "agent_user_group": "AGENTS"}


def test_doc_add_user_example_answers_the_documented_success() -> None:
    dialer = SandboxDialer()
    response = client_for(dialer).get(f"{API}?{DOC_ADD_USER}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (
        "SUCCESS: add_user USER HAS BEEN ADDED - api|1000|9999|1|Testing Person|AGENTS\n")
    [user] = dialer.snapshot()["users"]
    assert user == {"agent_user": "1000", "full_name": "Testing Person", "user_level": 1,
                    "user_group": "AGENTS", "phone_login": "", "voicemail_id": "",
                    "email": "", "active": "Y"}
    assert dialer.store.check_password("1000", "9999")


def test_doc_update_user_example_answers_the_documented_success() -> None:
    dialer = SandboxDialer()
    client = client_for(dialer)
    client.get(f"{API}?{DOC_ADD_USER}")
    response = client.get(f"{API}?{DOC_UPDATE_USER}")
    assert response.text == "SUCCESS: update_user USER HAS BEEN UPDATED - api|1000\n"
    assert dialer.snapshot()["users"][0]["user_level"] == 5
    assert dialer.store.check_password("1000", "9876")
    assert not dialer.store.check_password("1000", "9999")


DEFAULT_API = ApiUser("api", "1234")


@dataclass(frozen=True)
class Case:
    name: str
    params: dict[str, str]
    expected: str
    api: ApiUser = DEFAULT_API
    users: tuple[SandboxUser, ...] = ()
    phones: tuple[str, ...] | None = None
    extra: dict[str, str] = field(default_factory=dict)


EXISTING = (SandboxUser("1000", "9999", "Testing Person", 1), SandboxUser("7878", "x", "Boss", 9))

ADD_USER_ERRORS = [
    Case("level 7 api user", NEW_USER,
         "ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS - api|0",
         api=ApiUser("api", "1234", level=7)),
    Case("no modify-users right", NEW_USER,
         "ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS - api|0",
         api=ApiUser("api", "1234", can_modify_users=False)),
    Case("missing full name", {**NEW_USER, "agent_full_name": ""},
         "ERROR: add_user YOU MUST USE ALL REQUIRED FIELDS - api|1000|"),
    Case("level of two digits", {**NEW_USER, "agent_user_level": "10"},
         "ERROR: add_user YOU MUST USE ALL REQUIRED FIELDS - api|1000|"),
    Case("agent_user too long", {**NEW_USER, "agent_user": "u" * 21},
         f"ERROR: add_user YOU MUST USE ALL REQUIRED FIELDS - api|{'u' * 21}|"),
    Case("level above the api user's", {**NEW_USER, "agent_user_level": "9"},
         "ERROR: add_user USER DOES NOT HAVE PERMISSION TO ADD USERS IN THIS USER LEVEL - api|8",
         api=ApiUser("api", "1234", level=8)),
    Case("unknown group", {**NEW_USER, "agent_user_group": "ADFHR"},
         "ERROR: add_user USER GROUP DOES NOT EXIST - api|ADFHR"),
    Case("the api account itself", {**NEW_USER, "agent_user": "api"},
         "ERROR: add_user USER ALREADY EXISTS - api|api"),
    Case("an existing user", NEW_USER,
         "ERROR: add_user USER ALREADY EXISTS - api|1000", users=EXISTING),
    Case("voicemail not digits", {**NEW_USER, "voicemail_id": "12a"},
         "ERROR: add_user YOU MUST USE A VALID VOICEMAIL ID, THIS IS AN OPTIONAL FIELD - api"),
]

UPDATE = {"function": "update_user", "agent_user": "1000"}

UPDATE_USER_ERRORS = [
    Case("level 7 api user", UPDATE,
         "ERROR: update_user USER DOES NOT HAVE PERMISSION TO UPDATE USERS - api|0",
         api=ApiUser("api", "1234", level=7), users=EXISTING),
    Case("no agent_user", {"function": "update_user"},
         "ERROR: update_user YOU MUST USE ALL REQUIRED FIELDS - api||", users=EXISTING),
    Case("unknown user", {**UPDATE, "agent_user": "78789", "agent_full_name": "Nobody"},
         "ERROR: update_user USER DOES NOT EXIST - api|78789", users=EXISTING),
    Case("user above the api user", {**UPDATE, "agent_user": "7878", "agent_full_name": "X"},
         "ERROR: update_user USER DOES NOT HAVE PERMISSION TO UPDATE THIS USER - api|7878",
         api=ApiUser("api", "1234", level=8), users=EXISTING),
    Case("empty full name", {**UPDATE, "agent_full_name": ""},
         "ERROR: update_user YOU MUST USE A VALID FULL NAME, THIS IS AN OPTIONAL FIELD - api|",
         users=EXISTING),
    Case("level 0", {**UPDATE, "agent_user_level": "0"},
         "ERROR: update_user YOU MUST USE A VALID USER LEVEL, THIS IS AN OPTIONAL FIELD"
         " - api|0|9|1", users=EXISTING),
    Case("unknown group", {**UPDATE, "agent_user_group": "FAKEGROUP"},
         "ERROR: update_user YOU MUST USE A VALID USER GROUP, THIS IS AN OPTIONAL FIELD"
         " - api|FAKEGROUP|0", users=EXISTING),
    Case("unknown phone", {**UPDATE, "phone_login": "fakephone"},
         "ERROR: update_user YOU MUST USE A VALID PHONE LOGIN, THIS IS AN OPTIONAL FIELD"
         " - api|fakephone|0|0", users=EXISTING, phones=("cc100",)),
    Case("empty phone password", {**UPDATE, "phone_pass": ""},
         "ERROR: update_user YOU MUST USE A VALID PHONE PASSWORD, THIS IS AN OPTIONAL FIELD"
         " - api|0", users=EXISTING),
    Case("voicemail not digits", {**UPDATE, "voicemail_id": "vm-1"},
         "ERROR: update_user YOU MUST USE A VALID VOICEMAIL ID, THIS IS AN OPTIONAL FIELD - api",
         users=EXISTING),
    Case("empty email", {**UPDATE, "email": ""},
         "ERROR: update_user YOU MUST USE A VALID EMAIL, THIS IS AN OPTIONAL FIELD - api",
         users=EXISTING),
    Case("active not Y/N", {**UPDATE, "active": "yes"},
         "ERROR: update_user ACTIVE MUST BE Y OR N, THIS IS AN OPTIONAL FIELD - api",
         users=EXISTING),
    Case("password too long", {**UPDATE, "agent_pass": "p" * 21},
         "ERROR: update_user YOU MUST USE A VALID PASSWORD, THIS IS AN OPTIONAL FIELD - api",
         users=EXISTING),
    Case("an api account", {**UPDATE, "agent_user": "api", "agent_full_name": "Me"},
         "ERROR: update_user USER DOES NOT HAVE PERMISSION TO UPDATE THIS USER - api|api"),
]


@pytest.mark.parametrize("case", ADD_USER_ERRORS + UPDATE_USER_ERRORS, ids=lambda c: c.name)
def test_documented_errors_are_exact_and_change_nothing(case: Case) -> None:
    data = SandboxData(api_users=(case.api,), users=case.users, phones=case.phones)
    dialer = SandboxDialer(data=data)
    before = dialer.snapshot()["users"]
    assert call(dialer, **case.params) == case.expected + "\n"
    assert dialer.snapshot()["users"] == before


def test_update_user_changes_only_the_fields_sent() -> None:
    dialer = SandboxDialer(data=SandboxData(users=EXISTING, phones=("cc100",)))
    answer = call(dialer, **UPDATE, active="N", email="a@b.example", phone_login="cc100",
                  phone_pass="ph0ne", voicemail_id="1000")
    assert answer == "SUCCESS: update_user USER HAS BEEN UPDATED - api|1000\n"
    user = next(u for u in dialer.snapshot()["users"] if u["agent_user"] == "1000")
    assert user == {"agent_user": "1000", "full_name": "Testing Person", "user_level": 1,
                    "user_group": "AGENTS", "phone_login": "cc100", "voicemail_id": "1000",
                    "email": "a@b.example", "active": "N"}
    assert dialer.store.check_phone_password("1000", "ph0ne")
    assert dialer.store.check_password("1000", "9999")


def test_update_user_with_nothing_to_change_succeeds() -> None:
    dialer = SandboxDialer(data=SandboxData(users=EXISTING))
    assert call(dialer, **UPDATE) == "SUCCESS: update_user USER HAS BEEN UPDATED - api|1000\n"


def test_passwords_arrive_byte_for_byte() -> None:
    secret = "p&ss w=rd+ü%"
    dialer = SandboxDialer()
    body = {"source": "test", "user": "api", "pass": "1234", **NEW_USER, "agent_pass": secret}
    client_for(dialer).post(API, data=body)
    assert dialer.store.check_password("1000", secret)
    assert not dialer.store.check_password("1000", secret[:-1])


@pytest.mark.parametrize(("user", "password"), [("api", "wrong"), ("nobody", "1234"), ("", "")])
def test_bad_login_answers_like_vicidial_echoing_the_password(user: str, password: str) -> None:
    dialer = SandboxDialer()
    answer = client_for(dialer).get(API, params={**NEW_USER, "user": user, "pass": password})
    assert answer.text == f"ERROR: Login incorrect, please try again: |{user}|{password}|BAD|\n"
    assert dialer.snapshot()["users"] == []


@pytest.mark.parametrize("function", ["", "version", "add_lead", "ADD_USER"])
def test_missing_or_unknown_function(function: str) -> None:
    assert call(SandboxDialer(), function=function) == "ERROR: NO FUNCTION SPECIFIED\n"


def test_bad_login_comes_before_the_function_check() -> None:
    answer = call(SandboxDialer(), **{"pass": "nope", "function": "nothing"})
    assert answer.startswith("ERROR: Login incorrect")
