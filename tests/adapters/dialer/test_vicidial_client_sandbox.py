"""VicidialClient against the sandbox in vicidial mode, through its in-process transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer.vicidial_client import VicidialClient
from reconciler.adapters.dialer.vicidial_fields import vicidial_rewrite, vicidial_stored
from reconciler.config.settings import Method
from reconciler.core.replies import ListAdded
from reconciler.core.vicidial_replies import DuplicateLead, ListInfo, PhoneMatches
from reconciler.errors import (
    AlreadyExists,
    ConfigError,
    DialerInDoubt,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    DoesNotExist,
    FieldInvalid,
)
from reconciler.sandbox import ApiUser
from tests.adapters.dialer.harness import (
    CANARY_API,
    FAULT_CAUSES,
    Attempt,
    SandboxHarness,
    add_agent,
)

CANARY_AGENT = "agent-canary_5531"


class Sandbox(SandboxHarness[VicidialClient]):
    mode = "vicidial"
    client_class = VicidialClient


@pytest.fixture(params=["GET", "POST"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    method: Method = request.param
    return Sandbox(method)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[VicidialClient]:
    with sandbox.client() as dialer_client:
        yield dialer_client


_add_agent = partial(add_agent, agent_pass=CANARY_AGENT)


def _lead(phone: str = "7275551212", list_id: str = "1101", code: str = "CRM-1") -> Any:
    return {"phone_number": phone, "list_id": list_id, "vendor_lead_code": code,
            "first_name": "Bob"}


def test_users_and_drift(client: VicidialClient, sandbox: Sandbox) -> None:
    added = _add_agent(client)
    assert added.agent_user == "1000" and CANARY_AGENT not in repr(added)
    with pytest.raises(AlreadyExists):
        _add_agent(client)
    client.update_user("1000", agent_full_name="Renamed Person", active="N")
    with pytest.raises(DoesNotExist):
        client.update_user("9999", active="N")
    seen = client.user_details("1000")
    assert (seen.full_name, seen.user_group, seen.user_level, seen.active) == (
        "Renamed Person", "AGENTS", 1, "N")
    assert sandbox.dialer.store.check_password("1000", CANARY_AGENT)
    sandbox.dialer.store.put_user("1000", full_name="Edited On The Dialer", user_level=2)
    assert client.user_details("1000").full_name == "Edited On The Dialer"   # drift shows
    with pytest.raises(DoesNotExist):
        client.user_details("2000")


def test_lists(client: VicidialClient, sandbox: Sandbox) -> None:
    assert client.add_list("1101", "Test API list", "TESTCAMP", "Y") == ListAdded(
        "1101", "Test API list", "TESTCAMP", "LIST HAS BEEN ADDED")
    with pytest.raises(AlreadyExists):
        client.add_list("1101", "Test API list", "TESTCAMP")
    listed = client.list_info("1101")
    assert (listed.list_name, listed.campaign_id, listed.active) == (
        "Test API list", "TESTCAMP", "Y")
    updated = client.update_list("1101", list_name="Renamed list", campaign_id="SALES",
                                 active="N")
    assert updated.list_id == "1101"
    after = client.list_info("1101", leads_counts=True)
    assert isinstance(after, ListInfo)
    assert (after.list_name, after.campaign_id, after.active, after.all_leads) == (
        "Renamed list", "SALES", "N", 0)
    with pytest.raises(DoesNotExist):
        client.list_info("5555")
    with pytest.raises(DoesNotExist):
        client.update_list("5555", active="Y")
    with pytest.raises(DialerRejected):
        client.update_list("1101", campaign_id="NOCAMP")


def test_leads_one_by_one(client: VicidialClient, sandbox: Sandbox) -> None:
    client.add_list("1101", "Test API list", "TESTCAMP", "Y")
    added = client.add_lead(_lead(), duplicate_check=["DUPLIST"])
    assert (added.phone_number, added.list_id, added.lead_id) == ("7275551212", "1101", "1001")
    with pytest.raises(DuplicateLead) as caught:
        client.add_lead(_lead(code="CRM-2"), duplicate_check=["DUPLIST"])
    assert (caught.value.lead_id, caught.value.list_id) == ("1001", "1101")
    with pytest.raises(DoesNotExist):   # list_exists_check: never a lead in a missing list
        client.add_lead(_lead(list_id="4444"))
    client.add_lead(_lead(code="CRM-2"))
    assert client.lead_search(["7275551212", "3125551212"]).matches == (
        PhoneMatches("7275551212", ("1002", "1001")), PhoneMatches("3125551212", ()))
    assert client.lead_search(["3125551212"]).lead_ids("3125551212") == ()
    found = client.lead_all_info(phone_number="7275551212")
    assert [(x.lead_id, x.vendor_lead_code, x.get("first_name")) for x in found] == [
        ("1002", "CRM-2", "Bob"), ("1001", "CRM-1", "Bob")]
    assert client.lead_all_info(lead_id="1001")[0].vendor_lead_code == "CRM-1"
    assert client.lead_all_info(lead_id="7") == ()
    assert [x.lead_id for x in client.find_lead("7275551212", list_id="1101",
                                                vendor_lead_code="CRM-2")] == ["1002"]
    assert len(sandbox.dialer.snapshot()["leads"]) == 2


@pytest.mark.parametrize("fault", ["drop", "timeout"])
def test_lost_add_lead_is_in_doubt_sent_once_and_found_afterwards(sandbox: Sandbox,
                                                                  fault: Any) -> None:
    sandbox.dialer.inject(fault, function="add_lead")
    with sandbox.client() as client:
        client.add_list("1101", "Test API list", "TESTCAMP", "Y")
        with structlog.testing.capture_logs() as logs, pytest.raises(DialerInDoubt):
            client.add_lead(_lead())
        assert len(sandbox.calls("add_lead")) == 1          # exactly one request sent
        assert len(sandbox.dialer.snapshot()["leads"]) == 1  # and it landed, once
        assert any(log["event"] == "dialer_in_doubt" and log["lead_count"] == 1 for log in logs)
        settled = client.find_lead("7275551212", list_id="1101", vendor_lead_code="CRM-1")
        assert [x.lead_id for x in settled] == ["1001"]
        assert client.find_lead("7275551212", list_id="1101", vendor_lead_code="CRM-9") == ()
    assert sandbox.sleeps == []


def test_unreadable_add_lead_answer_is_in_doubt_too(sandbox: Sandbox) -> None:
    sandbox.dialer.inject("status", function="add_lead", status=502)
    sandbox.dialer.inject("garbage", function="add_lead")
    with sandbox.client() as client:
        with pytest.raises(DialerInDoubt):   # a 502 may come after the dialer acted
            client.add_lead(_lead())
        with pytest.raises(DialerInDoubt):
            client.add_lead(_lead())
    assert len(sandbox.calls("add_lead")) == 2


def test_reads_and_update_list_are_resent(sandbox: Sandbox) -> None:
    sandbox.dialer.inject("drop", function="list_info")
    sandbox.dialer.inject("timeout", function="update_list")
    with sandbox.client() as client:
        client.add_list("1101", "Test API list", "TESTCAMP", "Y")
        assert client.list_info("1101").list_id == "1101"
        client.update_list("1101", active="N")
    assert len(sandbox.calls("list_info")) == 2 and len(sandbox.calls("update_list")) == 2
    assert len(sandbox.sleeps) == 2


def test_functions_vicidial_lacks_are_not_offered(client: VicidialClient,
                                                  sandbox: Sandbox) -> None:
    assert client.active_list_reader is None and client.lead_batch_sender is None
    assert not hasattr(client, "active_lists") and not hasattr(client, "add_multi_lead")
    assert sandbox.dialer.snapshot()["calls"] == []


def test_rewritten_input_is_refused_before_sending(client: VicidialClient,
                                                   sandbox: Sandbox) -> None:
    with pytest.raises(FieldInvalid) as caught:
        _add_agent(client, agent_pass="pa$$word")
    assert caught.value.field == "agent_pass" and "pa$$word" not in str(caught.value)
    with pytest.raises(FieldInvalid, match="vendor_lead_code"):
        client.add_lead(_lead(code="CRM;1"))
    with pytest.raises(FieldInvalid, match="agent_user"):
        client.user_details("u" * 21)
    assert sandbox.dialer.snapshot()["calls"] == []


def test_what_we_record_is_what_the_dialer_stored(client: VicidialClient) -> None:
    name = "José O'Brien"
    with structlog.testing.capture_logs() as logs:
        _add_agent(client, agent_full_name=name)
    assert client.user_details("1000").full_name == vicidial_stored(
        "add_user", "agent_full_name", name) == "Jos OBrien"
    assert {"event": "dialer_input_rewritten", "function": "add_user",
            "fields": ["agent_full_name"], "log_level": "info"} in logs
    client.add_list("1101", "Test API list", "TESTCAMP", "Y")
    client.add_lead({**_lead(), "first_name": "Ann+Marie", "comments": "#1; call"})
    lead = client.lead_all_info(phone_number="7275551212")[0]
    assert lead.get("first_name") == vicidial_stored("add_lead", "first_name", "Ann+Marie")
    assert lead.get("comments") == vicidial_stored("add_lead", "comments", "#1; call")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs",
                                                                                "Zl", "Zp")),
                    min_size=1, max_size=40))
def test_stored_names_match_the_rewrite_rules(name: str) -> None:
    sandbox = Sandbox("POST")
    with sandbox.client() as client:
        rewrite = vicidial_rewrite("add_user", "agent_full_name", name)
        if rewrite is not None and rewrite.action == "reject":
            with pytest.raises(FieldInvalid):
                _add_agent(client, agent_full_name=name)
            return
        _add_agent(client, agent_full_name=name)
        assert client.user_details("1000").full_name == vicidial_stored(
            "add_user", "agent_full_name", name)


def test_version_and_login(sandbox: Sandbox) -> None:
    with sandbox.client() as client:
        assert client.version().version == "2.14-202"
    with sandbox.client(password="wrong-" + CANARY_API) as client, \
            pytest.raises(DialerRefused) as refused:
        client.list_info("1101")
    assert CANARY_API not in str(refused.value) + refused.value.excerpt
    with pytest.raises(ConfigError, match=r"dialer\.password") as bad:
        sandbox.client(password="canary!Pw")
    assert "canary!Pw" not in str(bad.value)


def test_missing_rights_stop_the_run() -> None:
    sandbox = Sandbox("POST", api_users=(ApiUser("api", CANARY_API, can_view_reports=False),))
    with sandbox.client() as client, pytest.raises(DialerRefused, match="permission"):
        client.user_details("1000")


def test_mixed_faults_only_ever_raise_dialer_errors(sandbox: Sandbox) -> None:
    with sandbox.client() as setup:
        setup.add_list("1101", "Test API list", "TESTCAMP", "Y")
    plan = sandbox.dialer.inject("mixed", rate=0.5, seed=5, times=None)
    done: list[tuple[str, Attempt]] = []          # the user or phone each attempt was about
    with sandbox.client(max_retries=1, backoff_base=0.0) as client:
        for number in range(25):
            user, phone = f"{2000 + number}", f"{7275550000 + number}"
            steps: list[tuple[str, str, Callable[[], object]]] = [
                ("add_user", user, partial(_add_agent, client, user)),
                ("user_details", user, partial(client.user_details, user)),
                ("add_lead", phone, partial(client.add_lead, _lead(phone))),
                ("lead_search", phone, partial(client.lead_search, [phone]))]
            done += [(about, sandbox.attempt(function, step))
                     for function, about, step in steps]

    # The faults fired: every kind of them, and each on a request the client made.
    faults = [fault for _, attempt in done for fault in attempt.faults]
    assert set(faults) == {None, *FAULT_CAUSES}
    assert plan.fired == len(faults) - faults.count(None)
    created = {user for user, attempt in done if attempt.function == "add_user"
               and any(call["result"] == "SUCCESS" for call in attempt.calls)}
    landed = {phone for phone, attempt in done
              if attempt.function == "add_lead" and attempt.reached_dialer}
    for about, attempt in done:
        assert attempt.names_its_fault(), attempt
        if attempt.function == "add_lead":
            # Never resent: any fault leaves the lead in doubt, whether it landed or not.
            assert len(attempt.calls) == 1, attempt
            assert (attempt.error is None) if attempt.faults[0] is None else \
                isinstance(attempt.error, DialerInDoubt), attempt
            continue
        # The others are resent once after a fault.
        assert len(attempt.calls) == (1 if attempt.faults[0] is None else 2), attempt
        if attempt.faults[-1] is not None:
            assert isinstance(attempt.error, DialerUnavailable), attempt
            assert not isinstance(attempt.error, DialerInDoubt), attempt
        elif attempt.function == "add_user":
            landed_before = any(call["result"] is not None for call in attempt.calls[:-1])
            assert isinstance(attempt.error, AlreadyExists) if landed_before else \
                attempt.error is None, attempt
        elif attempt.function == "user_details":        # the reads tell what came of it
            assert isinstance(attempt.error, DoesNotExist) if about not in created else \
                attempt.result.agent_user == about, attempt
        else:
            assert attempt.error is None, attempt
            assert bool(attempt.result.lead_ids(about)) is (about in landed), attempt

    # And the dialer holds what reached it, each lead once.
    snapshot = sandbox.dialer.snapshot()
    assert {user["agent_user"] for user in snapshot["users"]} == created
    assert sorted(lead["phone_number"] for lead in snapshot["leads"]) == sorted(landed)
