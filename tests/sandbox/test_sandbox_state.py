"""GET/POST parity, the call log, snapshots without passwords, persistence, thread safety."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import httpx
import pytest

from reconciler.errors import ConfigError
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer, SandboxList, SandboxUser

API = "/dialer/elision_api.php"
LIST_1101 = SandboxList("1101", "Test API list", "TESTCAMP", "Y")
BASE = {"source": "test", "user": "api", "pass": "1234"}

# A session touching every function, errors included.
SESSION: list[dict[str, str]] = [
    {"function": "add_user", "agent_user": "1000", "agent_pass": "9999",
     "agent_user_level": "1", "agent_full_name": "Testing Person", "agent_user_group": "AGENTS"},
    {"function": "add_user", "agent_user": "1000", "agent_pass": "9999",
     "agent_user_level": "1", "agent_full_name": "Testing Person", "agent_user_group": "AGENTS"},
    {"function": "update_user", "agent_user": "1000", "active": "N"},
    {"function": "update_user", "agent_user": "2000", "active": "N"},
    {"function": "add_list", "list_id": "1101", "list_name": "Test API list",
     "campaign_id": "TESTCAMP", "active": "Y"},
    {"function": "add_list", "list_id": "1101", "list_name": "Test API list",
     "campaign_id": "TESTCAMP"},
    {"function": "active_lists"},
    {"function": "add_multi_lead",
     "multi_leads": '[{"phone_number":1234567893,"list_id":"1101"},{"phone_number":"1"}]'},
    {"function": "nothing"},
]


def client_for(dialer: SandboxDialer) -> httpx.Client:
    return httpx.Client(transport=dialer.transport(), base_url="http://sandbox")


def run_session(dialer: SandboxDialer, method: str) -> list[tuple[int, str, str]]:
    client = client_for(dialer)
    answers = []
    for params in SESSION:
        if method == "GET":
            response = client.get(API, params={**BASE, **params})
        else:
            response = client.post(API, data={**BASE, **params})
        answers.append((response.status_code, response.headers["content-type"], response.text))
    return answers


def test_get_and_post_give_the_same_answers_and_effects() -> None:
    by_get, by_post = SandboxDialer(), SandboxDialer()
    assert run_session(by_get, "GET") == run_session(by_post, "POST")
    got, posted = by_get.snapshot(), by_post.snapshot()
    assert {k: got[k] for k in ("users", "lists", "leads")} == {
        k: posted[k] for k in ("users", "lists", "leads")}
    assert {c["method"] for c in posted["calls"]} == {"POST"}


def test_query_string_wins_over_the_form_body() -> None:
    dialer = SandboxDialer()
    client_for(dialer).post(f"{API}?function=active_lists", data={**BASE, "function": "add_list"})
    assert dialer.snapshot()["calls"][0]["function"] == "active_lists"


def test_every_call_is_logged_without_passwords() -> None:
    dialer = SandboxDialer()
    run_session(dialer, "GET")
    calls = dialer.snapshot()["calls"]
    assert [c["seq"] for c in calls] == list(range(1, len(SESSION) + 1))
    assert [(c["function"], c["outcome"]) for c in calls] == [
        ("add_user", "SUCCESS"), ("add_user", "ERROR"), ("update_user", "SUCCESS"),
        ("update_user", "ERROR"), ("add_list", "SUCCESS"), ("add_list", "ERROR"),
        ("active_lists", "SUCCESS"), ("add_multi_lead", "PARTIAL"), ("nothing", "ERROR")]
    assert calls[0]["params"] == {
        "source": "test", "user": "api", "function": "add_user", "agent_user": "1000",
        "agent_user_level": "1", "agent_full_name": "Testing Person", "agent_user_group": "AGENTS"}
    assert calls[7]["params"]["multi_leads"] == "<2 leads>"
    assert all(c["fault"] is None and c["result"] == c["outcome"] for c in calls)


def test_no_password_anywhere_in_snapshot_or_state_route() -> None:
    canaries = ["apiCanary77", "agentCanary88", "phoneCanary99", "wrongCanary66", "newCanary55"]
    data = SandboxData(api_users=(ApiUser("api", canaries[0]),
                                  ApiUser("weak", canaries[0], level=7)),
                       users=(SandboxUser("3000", "x", "Seeded", phone_pass="seedCanary44"),))
    canaries.append("seedCanary44")
    dialer = SandboxDialer(data=data)
    client = client_for(dialer)
    base = {"source": "test", "user": "api", "pass": canaries[0]}
    client.post(API, data={**base, "function": "add_user", "agent_user": "1000",
                           "agent_pass": canaries[1], "agent_user_level": "1",
                           "agent_full_name": "Canary", "agent_user_group": "AGENTS",
                           "phone_login": "100", "phone_pass": canaries[2]})
    client.get(API, params={**base, "function": "update_user", "agent_user": "1000",
                            "agent_pass": canaries[4]})
    client.get(API, params={**base, "pass": canaries[3], "function": "active_lists"})
    # This answer itself echoes the password (as the real dialer does); the log must not.
    echoed = client.get(API, params={**base, "user": "weak", "function": "add_list",
                                     "list_id": "1101", "list_name": "Canary list",
                                     "campaign_id": "TESTCAMP"})
    assert canaries[0] in echoed.text
    dumped = [json.dumps(dialer.snapshot()), client.get("/_sandbox/state").text]
    for text in dumped:
        for canary in canaries:
            assert canary not in text
    assert dialer.store.check_password("1000", canaries[4])


def test_state_route_serves_the_snapshot() -> None:
    dialer = SandboxDialer(data=SandboxData(lists=(LIST_1101,)))
    response = client_for(dialer).get("/_sandbox/state")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == dialer.snapshot()


def test_unknown_paths_and_methods() -> None:
    client = client_for(SandboxDialer())
    assert client.get("/vicidial/non_agent_api.php").status_code == 404
    assert client.delete(API).status_code == 405
    assert client.post("/_sandbox/state").status_code == 405


def test_state_survives_a_new_sandbox_on_the_same_file(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox.json"
    first = SandboxDialer(data=SandboxData(lists=(LIST_1101,)), state_file=state_file)
    run_session(first, "POST")
    first.store.put_user("4000", agent_pass="oob", full_name="Out Of Band")
    # Initial objects of SandboxData only seed a new file; the file wins afterwards.
    second = SandboxDialer(data=SandboxData(users=(SandboxUser("9", "x"),)),
                           state_file=state_file)
    assert second.snapshot() == first.snapshot()
    assert second.store.check_password("1000", "9999")
    assert second.store.check_password("4000", "oob")
    answer = client_for(second).get(API, params={
        **BASE, "function": "add_multi_lead",
        "multi_leads": '[{"phone_number":"7275551212","list_id":"1101"}]'})
    assert answer.json()["lead 1"]["data"] == "7275551212|1101|1002||NEW|"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["sandbox.json"]


def test_a_broken_state_file_is_reported(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox.json"
    state_file.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sandbox\.json"):
        SandboxDialer(state_file=state_file)


def test_out_of_band_edits() -> None:
    dialer = SandboxDialer(data=SandboxData(users=(SandboxUser("1000", "x", "Agent"),)))
    client = client_for(dialer)
    dialer.store.delete_user("1000")
    answer = client.get(API, params={**BASE, "function": "update_user", "agent_user": "1000"})
    assert answer.text == "ERROR: update_user USER DOES NOT EXIST - api|1000\n"
    dialer.store.put_list("1101", "Test API list", active="N")
    dialer.store.set_list_active("1101", True)
    assert dialer.snapshot()["lists"][0]["active"] == "Y"
    dialer.store.delete_list("1101")
    assert dialer.snapshot()["lists"] == []


def test_concurrent_batches_get_distinct_lead_ids() -> None:
    dialer = SandboxDialer(data=SandboxData(lists=(LIST_1101,)))
    batch = json.dumps([{"phone_number": f"72755500{n:02d}", "list_id": "1101"}
                        for n in range(10)])

    def send() -> None:
        client = client_for(dialer)
        for _ in range(5):
            client.post(API, data={**BASE, "function": "add_multi_lead", "multi_leads": batch})

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [lead["lead_id"] for lead in dialer.snapshot()["leads"]]
    assert sorted(ids) == list(range(1001, 1001 + 8 * 5 * 10))
    assert len(dialer.snapshot()["calls"]) == 40
