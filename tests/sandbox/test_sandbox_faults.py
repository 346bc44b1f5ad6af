"""Fault injection, in process and over loopback HTTP; the background server."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from structlog.testing import capture_logs

from reconciler.sandbox import (
    BackgroundServer,
    FaultPlan,
    SandboxData,
    SandboxDialer,
    SandboxList,
    start_background,
)

API = "/dialer/elision_api.php"
BASE = {"source": "test", "user": "api", "pass": "1234"}
ADD_USER = {**BASE, "function": "add_user", "agent_user": "1000", "agent_pass": "9999",
            "agent_user_level": "1", "agent_full_name": "Testing Person",
            "agent_user_group": "AGENTS"}
ADD_LEADS = {**BASE, "function": "add_multi_lead",
             "multi_leads": '[{"phone_number":"7275551212","list_id":"1101"}]'}


@pytest.fixture
def dialer() -> SandboxDialer:
    return SandboxDialer(data=SandboxData(lists=(SandboxList("1101", "Test API list",
                                                             "TESTCAMP", "Y"),)))


@pytest.fixture
def client(dialer: SandboxDialer) -> httpx.Client:
    return httpx.Client(transport=dialer.transport(), base_url="http://sandbox")


@pytest.fixture
def server(dialer: SandboxDialer) -> Iterator[BackgroundServer]:
    with start_background(dialer) as background:
        yield background


def users(dialer: SandboxDialer) -> list[str]:
    return [u["agent_user"] for u in dialer.snapshot()["users"]]


def last_call(dialer: SandboxDialer) -> dict[str, object]:
    return dialer.snapshot()["calls"][-1]


# --- in process ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_error_status_before_commit(dialer: SandboxDialer, client: httpx.Client,
                                    status: int) -> None:
    dialer.inject("status", status=status, retry_after=2)
    response = client.post(API, data=ADD_USER)
    assert response.status_code == status
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"].startswith("text/html")
    assert users(dialer) == []
    assert last_call(dialer) | {"params": None} == {
        "seq": 1, "function": "add_user", "method": "POST", "params": None,
        "outcome": "fault:status", "result": None, "fault": "status"}
    # times=1: the next call goes through.
    assert client.post(API, data=ADD_USER).text.startswith("SUCCESS: add_user")


def test_garbage_and_truncated_bodies_before_commit(dialer: SandboxDialer,
                                                    client: httpx.Client) -> None:
    dialer.inject("garbage")
    garbage = client.post(API, data=ADD_USER)
    assert garbage.status_code == 200
    assert "<b>Fatal error</b>" in garbage.text
    dialer.inject("truncated", function="add_multi_lead")
    truncated = client.post(API, data=ADD_LEADS)
    assert truncated.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        truncated.json()
    assert users(dialer) == []
    assert dialer.snapshot()["leads"] == []


def test_drop_after_commit(dialer: SandboxDialer, client: httpx.Client) -> None:
    dialer.inject("drop", function="add_multi_lead")
    with pytest.raises(httpx.RemoteProtocolError,
                       match=r"Server disconnected without sending a response\."):
        client.post(API, data=ADD_LEADS)
    assert len(dialer.snapshot()["leads"]) == 1
    assert last_call(dialer)["outcome"] == "fault:drop"
    assert last_call(dialer)["result"] == "SUCCESS"


def test_timeout_after_commit(dialer: SandboxDialer, client: httpx.Client) -> None:
    dialer.inject("timeout")
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(API, data=ADD_USER)
    assert time.monotonic() - started < 1
    assert users(dialer) == ["1000"]
    assert last_call(dialer)["outcome"] == "fault:timeout"


def test_latency_delays_a_normal_answer(dialer: SandboxDialer, client: httpx.Client) -> None:
    dialer.inject("latency", latency=0.1)
    started = time.monotonic()
    assert client.post(API, data=ADD_USER).text.startswith("SUCCESS")
    assert time.monotonic() - started >= 0.1
    assert last_call(dialer)["fault"] == "latency"
    assert last_call(dialer)["outcome"] == "SUCCESS"


def test_faults_target_a_function_and_count_their_firings(dialer: SandboxDialer,
                                                          client: httpx.Client) -> None:
    plan = dialer.inject("status", function="add_multi_lead", times=2)
    assert client.post(API, data=ADD_USER).status_code == 200
    assert [client.post(API, data=ADD_LEADS).status_code for _ in range(3)] == [503, 503, 200]
    assert plan.fired == 2
    assert dialer.faults.plans() == []
    forever = dialer.inject("status", times=None)
    assert {client.post(API, data=ADD_USER).status_code for _ in range(5)} == {503}
    assert forever.fired == 5
    dialer.clear_faults()
    assert client.post(API, data=ADD_USER).status_code == 200


def outcomes(seed: int) -> list[str]:
    dialer = SandboxDialer()
    dialer.inject("mixed", rate=0.3, seed=seed, times=None)
    client = httpx.Client(transport=dialer.transport(), base_url="http://sandbox")
    for _ in range(200):
        with contextlib.suppress(httpx.TransportError):
            client.get(API, params={**BASE, "function": "active_lists"})
    return [str(c["outcome"]) for c in dialer.snapshot()["calls"]]


def test_random_rate_is_seeded_and_mixes_kinds() -> None:
    first = outcomes(seed=7)
    assert first == outcomes(seed=7)
    assert first != outcomes(seed=8)
    counts = Counter(first)
    assert 35 <= 200 - counts["SUCCESS"] <= 85
    assert {k for k in counts if k.startswith("fault:")} == {
        "fault:status", "fault:garbage", "fault:truncated", "fault:drop", "fault:timeout"}


@pytest.mark.parametrize("bad", [
    {"kind": "explode"}, {"kind": "drop", "rate": 1.5}, {"kind": "drop", "times": 0},
    {"kind": "status", "status": 200}, {"kind": "latency", "latency": -1},
])
def test_invalid_fault_plans_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultPlan.from_json(bad)


# --- over loopback HTTP -------------------------------------------------------------------


def test_background_server_answers_the_api_and_the_state(server: BackgroundServer) -> None:
    assert server.url == f"{server.base_url}{API}"
    assert server.base_url.startswith("http://127.0.0.1:") and server.port > 0
    with httpx.Client(timeout=5) as http:
        added = http.post(server.url, data=ADD_USER)
        assert added.text == (
            "SUCCESS: add_user USER HAS BEEN ADDED - api|1000|9999|1|Testing Person|AGENTS\n")
        assert added.headers["content-type"].startswith("text/html")
        lists = http.get(server.url, params={**BASE, "function": "active_lists"})
        assert lists.json()["data"] == ["TESTCAMP-1101-Test API list"]
        state = http.get(f"{server.base_url}/_sandbox/state").json()
    assert [u["agent_user"] for u in state["users"]] == ["1000"]
    assert [c["method"] for c in state["calls"]] == ["POST", "GET"]


def test_drop_over_http(dialer: SandboxDialer, server: BackgroundServer) -> None:
    dialer.inject("drop")
    with httpx.Client(timeout=5) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post(server.url, data=ADD_LEADS)
    assert len(dialer.snapshot()["leads"]) == 1


def test_timeout_over_http(dialer: SandboxDialer) -> None:
    dialer.inject("timeout", hang=5)
    background = start_background(dialer)
    with httpx.Client(timeout=0.2) as http, pytest.raises(httpx.ReadTimeout):
        http.post(background.url, data=ADD_USER)
    assert users(dialer) == ["1000"]
    started = time.monotonic()
    background.stop()  # wakes the hanging request instead of waiting for it
    assert time.monotonic() - started < 2


def test_status_over_http(dialer: SandboxDialer, server: BackgroundServer) -> None:
    dialer.inject("status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    response = httpx.post(server.url, data=ADD_USER, timeout=5)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert users(dialer) == []


def test_faults_can_be_injected_over_http(dialer: SandboxDialer,
                                          server: BackgroundServer) -> None:
    faults = f"{server.base_url}/_sandbox/faults"
    with httpx.Client(timeout=5) as http:
        injected = http.post(faults, json={"kind": "garbage", "function": "add_user"})
        assert injected.status_code == 201
        assert http.get(faults).json()["faults"][0]["kind"] == "garbage"
        assert "Fatal error" in http.post(server.url, data=ADD_USER).text
        http.post(faults, json={"kind": "status", "times": None})
        assert http.delete(faults).json() == {"ok": True}
        assert http.post(server.url, data=ADD_USER).status_code == 200
        refused = http.post(faults, json={"kind": "drop", "colour": "red"})
        assert refused.status_code == 400
        assert "colour" in refused.json()["error"]


def test_request_log_lines_are_redacted(server: BackgroundServer) -> None:
    with capture_logs() as events:
        httpx.get(server.url, params={**BASE, "pass": "LogCanary42", "function": "x"}, timeout=5)
        # The server thread logs the request after it has answered: wait for the line.
        deadline = time.monotonic() + 5
        while not any(e.get("event") == "sandbox_request" for e in events) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [e["line"] for e in events if e.get("event") == "sandbox_request"]
    assert lines
    assert not any("LogCanary42" in line for line in lines)
