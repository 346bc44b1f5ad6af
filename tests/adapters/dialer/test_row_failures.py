"""HTTP 500 on a write of one object: that object's failure, or the dialer's outage?

The client retries as ever; when every attempt at one user or list ends in HTTP 500 it probes the
dialer (`version`, no login). An answer means the object breaks the dialer: DialerRowFailed, a
rejection of that row. No answer, a connection that fails, a timeout, any other 5xx: the dialer
is unavailable and the run stops, as before.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from reconciler.adapters.dialer.client import ElisionClient
from reconciler.config.settings import DialerSettings, Method
from reconciler.errors import (
    DialerInDoubt,
    DialerRejected,
    DialerRowFailed,
    DialerUnavailable,
)
from tests.adapters.dialer.harness import CANARY_API, SandboxHarness, add_agent

CANARY_AGENT = "agent-canary-5531"


class Elision(SandboxHarness[ElisionClient]):
    pass


class BreaksLikeVicidial(SandboxHarness[ElisionClient]):
    """A dialer whose SQL dies on a quote, talked to by a client that does not predict it (the
    VICIdial sandbox, before any client-side check: what a VICIdial fork may do)."""

    mode = "vicidial"


@pytest.fixture(params=["GET", "POST"])
def method(request: pytest.FixtureRequest) -> Method:
    chosen: Method = request.param
    return chosen


def functions(sandbox: SandboxHarness[ElisionClient]) -> list[str]:
    return [c["function"] for c in sandbox.dialer.snapshot()["calls"]]


def test_an_apostrophe_the_dialer_dies_on_fails_that_row_only(method: Method) -> None:
    sandbox = BreaksLikeVicidial(method)
    with sandbox.client() as client, capture_logs() as logs:
        with pytest.raises(DialerRowFailed) as caught:
            add_agent(client, agent_pass="9999", email="pat.o'brien@example.com")
        add_agent(client, "1001", agent_pass="9999", email="pat@example.com")   # goes on
    assert isinstance(caught.value, DialerRejected)
    assert str(caught.value) == ("add_user: the dialer fails on this row (HTTP 500 on all 4 "
                                 "attempts, while it answers other calls)")
    assert functions(sandbox) == ["add_user"] * 4 + ["version", "add_user"]
    assert [u["agent_user"] for u in sandbox.dialer.snapshot()["users"]] == ["1001"]
    assert "dialer_row_failed" in [e["event"] for e in logs]
    assert CANARY_API not in repr(logs) and CANARY_API not in str(caught.value)


@pytest.mark.parametrize(("function", "call"), [
    ("add_user", lambda c: add_agent(c, agent_pass="9999")),
    ("update_user", lambda c: c.update_user("1000", agent_full_name="Renamed")),
    ("add_list", lambda c: c.add_list("1101", "Spring Renewals", "TESTCAMP")),
])
def test_a_write_answered_500_every_time_fails_its_row_when_the_dialer_answers(
    method: Method, function: str, call: Any
) -> None:
    sandbox = Elision(method)
    with sandbox.client() as client:
        add_agent(client, agent_pass="9999")
        fault = sandbox.dialer.inject("status", function=function, status=500, times=4)
        with pytest.raises(DialerRowFailed):
            call(client)
    assert fault.fired == 4 and functions(sandbox)[-1] == "version"


def test_a_500_that_passes_is_retried_as_before(method: Method) -> None:
    sandbox = Elision(method)
    with sandbox.client() as client:
        sandbox.dialer.inject("status", function="add_user", status=500, times=3)
        add_agent(client, agent_pass="9999")
    assert functions(sandbox) == ["add_user"] * 4 and sandbox.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(("fault", "probed"), [
    pytest.param({"kind": "status", "status": 500}, True, id="every-call-500"),
    pytest.param({"kind": "status", "status": 503, "function": "add_user"}, False,
                 id="503-is-busy"),
    pytest.param({"kind": "status", "status": 502, "function": "add_user"}, False,
                 id="502-is-a-gateway"),
    pytest.param({"kind": "garbage", "function": "add_user"}, False, id="unreadable"),
    pytest.param({"kind": "timeout", "function": "add_user"}, False, id="timeout"),
])
def test_an_outage_stays_an_outage(method: Method, fault: dict[str, Any], probed: bool) -> None:
    sandbox = Elision(method)
    sandbox.dialer.inject(times=None, **fault)
    with sandbox.client() as client, pytest.raises(DialerUnavailable) as caught:
        add_agent(client, agent_pass="9999")
    assert not isinstance(caught.value, DialerRejected)
    assert functions(sandbox) == ["add_user"] * 4 + (["version"] if probed else [])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_refused_connection_is_an_outage_without_a_probe(closed_port: int) -> None:
    settings = DialerSettings(url=f"http://127.0.0.1:{closed_port}/dialer/elision_api.php",
                              user="api", password=CANARY_API, source="test", max_retries=1,
                              backoff_base=0.0, connect_timeout=5.0)
    with capture_logs() as logs, ElisionClient(settings, sleep=lambda _: None) as client, \
            pytest.raises(DialerUnavailable, match="cannot talk to the dialer"):
        add_agent(client, agent_pass="9999")
    assert "dialer_probe" not in [e["event"] for e in logs]


def test_a_lead_batch_answered_500_stays_in_doubt(method: Method) -> None:
    sandbox = Elision(method)
    sandbox.dialer.inject("status", function="add_multi_lead", status=500, times=None)
    with sandbox.client() as client, pytest.raises(DialerInDoubt):
        client.add_multi_lead([{"phone_number": "7275551212", "list_id": "1101"}])
    assert functions(sandbox) == ["add_multi_lead"]
