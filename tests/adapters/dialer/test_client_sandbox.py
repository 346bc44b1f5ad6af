"""The real client against the sandbox dialer, through its in-process httpx transport."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import structlog

from reconciler.adapters.dialer.client import ElisionClient, lead_batches
from reconciler.config.settings import Method
from reconciler.core.replies import ActiveList, ListAdded
from reconciler.errors import (
    AlreadyExists,
    DialerInDoubt,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    DoesNotExist,
)
from reconciler.sandbox import ApiUser
from tests.adapters.dialer.harness import (
    CANARY_API,
    FAULT_CAUSES,
    Attempt,
    SandboxHarness,
    add_agent,
)

CANARY_AGENT = "agent-canary-5531"


class Sandbox(SandboxHarness[ElisionClient]):
    pass


@pytest.fixture(params=["GET", "POST"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    method: Method = request.param
    return Sandbox(method)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[ElisionClient]:
    with sandbox.client() as dialer_client:
        yield dialer_client


_add_agent = partial(add_agent, agent_pass=CANARY_AGENT)


def test_users(client: ElisionClient, sandbox: Sandbox) -> None:
    added = _add_agent(client)
    assert added.agent_user == "1000" and CANARY_AGENT not in repr(added)
    with pytest.raises(AlreadyExists):
        _add_agent(client)
    client.update_user("1000", agent_full_name="Renamed Person", active="N")
    with pytest.raises(DoesNotExist):
        client.update_user("9999", active="N")
    with pytest.raises(DialerRejected) as caught:
        _add_agent(client, "1001", agent_user_group="NOSUCHGROUP")
    assert type(caught.value) is DialerRejected
    users = sandbox.dialer.snapshot()["users"]
    assert [(u["agent_user"], u["full_name"], u["active"]) for u in users] == [
        ("1000", "Renamed Person", "N")]


def test_lists(client: ElisionClient) -> None:
    assert client.active_lists().lists == ()
    assert client.add_list("1101", "Test API list", "TESTCAMP", "Y") == ListAdded(
        "1101", "Test API list", "TESTCAMP", "1101 list created")
    client.add_list("1102", "Inactive list", "SALES")
    with pytest.raises(AlreadyExists):
        client.add_list("1101", "Test API list", "TESTCAMP")
    with pytest.raises(DialerRejected) as caught:
        client.add_list("1103", "Test API list", "NOCAMP")
    assert type(caught.value) is DialerRejected
    lists = client.active_lists()
    assert lists.lists == (ActiveList("TESTCAMP", "1101", "Test API list"),)
    assert lists.unparsed == ()


def test_leads(client: ElisionClient, sandbox: Sandbox) -> None:
    client.add_list("1101", "Test API list", "TESTCAMP", "Y")
    outcomes = client.add_multi_lead([
        {"phone_number": 1234567893, "list_id": "1101", "first_name": "test"},
        {"phone_number": "5551234567", "list_id": "7777"},
    ])
    assert [(o.number, o.success, o.phone_number, o.list_id, o.status) for o in outcomes] == [
        (1, True, "1234567893", "1101", "NEW"), (2, False, "7777", None, None)]
    assert outcomes[0].lead_id is not None and outcomes[0].lead_id.isdigit()
    assert [lead["phone_number"] for lead in sandbox.dialer.snapshot()["leads"]] == ["1234567893"]


def test_lead_batches_fit_the_sandbox(sandbox: Sandbox) -> None:
    with sandbox.client(leads_per_batch=50, max_request_bytes=2000) as client:
        client.add_list("1101", "Test API list", "TESTCAMP", "Y")
        leads = [{"phone_number": f"{5550000000 + i}", "list_id": "1101", "comments": "x" * 40}
                 for i in range(60)]
        outcomes = [o for batch in lead_batches(client.settings, leads)
                    for o in client.add_multi_lead(batch)]
    assert len(outcomes) == 60 and all(o.success for o in outcomes)
    assert len(sandbox.dialer.snapshot()["leads"]) == 60


def test_wrong_password_is_refused_and_not_echoed(sandbox: Sandbox) -> None:
    with structlog.testing.capture_logs() as logs, \
            sandbox.client(password="wrong-" + CANARY_API) as client, \
            pytest.raises(DialerRefused) as caught:
        client.active_lists()
    texts = [str(caught.value), repr(caught.value), caught.value.excerpt, repr(logs)]
    assert not any(CANARY_API in text for text in texts)
    assert len(sandbox.calls("active_lists")) == 1


@pytest.mark.parametrize(
    ("rights", "call", "says"),
    [
        pytest.param({"can_modify_users": False}, lambda c: _add_agent(c),
                     "lacks permission to add users", id="add_user"),
        pytest.param({"can_modify_users": False}, lambda c: c.update_user("1000", active="N"),
                     "lacks permission to update users", id="update_user"),
        pytest.param({"can_modify_lists": False},
                     lambda c: c.add_list("1101", "Test API list", "TESTCAMP"),
                     "lacks permission to add list", id="add_list"),
        pytest.param({"can_add_leads": False},
                     lambda c: c.add_multi_lead([{"phone_number": "5551234567", "list_id": "11"}]),
                     "lacks permission to add leads", id="add_multi_lead"),
    ],
)
def test_missing_rights_stop_the_run(rights: dict[str, bool], call: Any, says: str) -> None:
    sandbox = Sandbox("POST", api_users=(ApiUser("api", CANARY_API, **rights),))
    with sandbox.client() as client, pytest.raises(DialerRefused, match=says) as caught:
        call(client)
    assert CANARY_API not in str(caught.value)


def test_lost_answer_leaves_the_batch_in_doubt_and_unsent_again(sandbox: Sandbox) -> None:
    sandbox.dialer.inject("drop", function="add_multi_lead")
    with sandbox.client() as client:
        client.add_list("1101", "Test API list", "TESTCAMP", "Y")
        with pytest.raises(DialerInDoubt):
            client.add_multi_lead([{"phone_number": "5551234567", "list_id": "1101"}])
    assert len(sandbox.calls("add_multi_lead")) == 1
    assert len(sandbox.dialer.snapshot()["leads"]) == 1   # it did land, once


def test_busy_dialer_is_waited_for(sandbox: Sandbox) -> None:
    sandbox.dialer.inject("status", function="add_user", status=503, retry_after=2, times=2)
    with sandbox.client() as client:
        _add_agent(client)
    assert sandbox.sleeps == [2.0, 2.0]
    assert [c["result"] for c in sandbox.calls("add_user")] == [None, None, "SUCCESS"]


def test_lost_add_user_answer_is_resent_and_found_existing(sandbox: Sandbox) -> None:
    # The first call landed; its resend meets the user: the executor converges from there.
    sandbox.dialer.inject("timeout", function="add_user")
    with sandbox.client() as client, pytest.raises(AlreadyExists):
        _add_agent(client)
    assert len(sandbox.calls("add_user")) == 2


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_unreadable_answers_are_retried(sandbox: Sandbox, kind: Any) -> None:
    sandbox.dialer.inject(kind, function="active_lists")
    with sandbox.client() as client:
        assert client.active_lists().lists == ()
    assert len(sandbox.sleeps) == 1


def test_mixed_faults_only_ever_raise_dialer_errors(sandbox: Sandbox) -> None:
    with sandbox.client() as setup:
        setup.add_list("1101", "Test API list", "TESTCAMP", "Y")
    plan = sandbox.dialer.inject("mixed", rate=0.5, seed=11, times=None)
    users: dict[str, Attempt] = {}
    batches: dict[str, Attempt] = {}          # by the phone of its one lead
    with sandbox.client(max_retries=1, backoff_base=0.0) as client:
        for number in range(30):
            user, phone = f"{2000 + number}", f"{5551230000 + number}"
            users[user] = sandbox.attempt("add_user", partial(_add_agent, client, user))
            batches[phone] = sandbox.attempt("add_multi_lead", partial(
                client.add_multi_lead, [{"phone_number": phone, "list_id": "1101"}]))

    # The faults fired: every kind of them, and each on a request the client made.
    faults = [fault for done in (*users.values(), *batches.values()) for fault in done.faults]
    assert set(faults) == {None, *FAULT_CAUSES}
    assert plan.fired == len(faults) - faults.count(None)
    for done in batches.values():
        # Never resent: any fault leaves the batch in doubt, whether it landed or not.
        assert done.names_its_fault() and len(done.calls) == 1, done
        if done.faults[0] is None:
            assert done.error is None, done
        else:
            assert isinstance(done.error, DialerInDoubt), done
    for done in users.values():
        # Resent once after a fault; a first request that landed makes the second meet it.
        assert done.names_its_fault() and len(done.calls) == (1 if done.faults[0] is None else 2)
        if done.faults[-1] is not None:
            assert isinstance(done.error, DialerUnavailable), done
            assert not isinstance(done.error, DialerInDoubt), done
        elif any(call["result"] is not None for call in done.calls[:-1]):
            assert isinstance(done.error, AlreadyExists), done
        else:
            assert done.error is None, done

    # What came of it: the dialer holds what reached it, each lead once.
    snapshot = sandbox.dialer.snapshot()
    assert {u["agent_user"] for u in snapshot["users"]} == {
        user for user, done in users.items()
        if any(call["result"] == "SUCCESS" for call in done.calls)}
    assert sorted(lead["phone_number"] for lead in snapshot["leads"]) == sorted(
        phone for phone, done in batches.items() if done.reached_dialer)
