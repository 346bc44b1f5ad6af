"""Each dialect's client offers exactly what its capability flags claim, and every verb it offers
works against the sandbox in that dialect's mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.adapters.dialer.dialects import DIALECTS, Dialect
from reconciler.config.settings import DialerSettings
from reconciler.core.ports import DialerPort, offered
from reconciler.core.replies import ActiveLists, ListAdded, UserAdded, UserUpdated
from reconciler.core.vicidial_replies import (
    LeadAdded,
    LeadUpdated,
    ListInfo,
    ListUpdated,
    UserDetails,
)
from reconciler.errors import DoesNotExist
from reconciler.sandbox import ApiUser, SandboxData, SandboxDialer
from tests.adapters.dialer.harness import CANARY_API

LEAD = {"phone_number": "7275551212", "list_id": "1101", "vendor_lead_code": "CRM-1",
        "first_name": "Bob"}


@pytest.fixture(params=sorted(DIALECTS))
def dialect(request: pytest.FixtureRequest) -> Dialect:
    return DIALECTS[request.param]


@pytest.fixture
def client(dialect: Dialect) -> Iterator[DialerPort]:
    sandbox = SandboxDialer(SandboxData(api_users=(ApiUser("api", CANARY_API),)),
                            mode="vicidial" if dialect.name == "vicidial" else "elision")
    settings = DialerSettings(url=f"http://sandbox{sandbox.api_path}", user="api",
                              password=CANARY_API, source="test", dialect=dialect.name)
    with dialect.client(settings, sandbox.transport()) as port:
        yield port


def test_the_client_offers_exactly_the_claimed_capabilities(dialect: Dialect,
                                                            client: DialerPort) -> None:
    caps = dialect.capabilities
    assert offered(client) == caps
    # Where a dialect has no verb for one by one, it has the all-at-once one, and not both.
    assert (client.active_list_reader is None) == caps.reads_lists_individually
    assert (client.lead_batch_sender is None) == caps.sends_leads_one_by_one


def test_every_offered_verb_works(dialect: Dialect, client: DialerPort) -> None:
    assert isinstance(client.add_list("1101", "Test API list", "TESTCAMP", "Y"), ListAdded)
    assert isinstance(client.add_user("1000", "Secret-9x", 1, "Testing Person", "AGENTS"),
                      UserAdded)
    assert isinstance(client.update_user("1000", agent_full_name="Tested Person"), UserUpdated)
    if client.active_list_reader is not None:
        answer = client.active_list_reader.active_lists()
        assert isinstance(answer, ActiveLists)
        assert [a.list_id for a in answer.lists] == ["1101"]
    if client.list_reader is not None:
        assert isinstance(client.list_reader.list_info("1101"), ListInfo)
    if client.list_updater is not None:
        assert isinstance(client.list_updater.update_list("1101", active="N"), ListUpdated)
    if client.user_reader is not None:
        details = client.user_reader.user_details("1000")
        assert isinstance(details, UserDetails) and details.full_name == "Tested Person"
    if client.lead_batch_sender is not None:
        outcomes = client.lead_batch_sender.add_multi_lead([LEAD])
        assert [o.success for o in outcomes] == [True]
    lead_id = None
    if client.lead_sender is not None:
        added = client.lead_sender.add_lead(LEAD)
        assert isinstance(added, LeadAdded)
        lead_id = added.lead_id
    if client.lead_finder is not None:
        found = client.lead_finder.find_lead("7275551212", list_id="1101",
                                             vendor_lead_code="CRM-1")
        assert [lead.lead_id for lead in found] == [lead_id]
        assert client.lead_finder.lead_all_info(lead_id=lead_id) == found
    if client.lead_updater is not None:
        assert lead_id is not None
        updated = client.lead_updater.update_lead(status="DNC", lead_id=lead_id)
        assert isinstance(updated, LeadUpdated) and updated.lead_id == lead_id
        by_code = client.lead_updater.update_lead(status="DNC", vendor_lead_code="CRM-1")
        assert by_code.lead_id == lead_id
        with pytest.raises(DoesNotExist):
            client.lead_updater.update_lead(status="DNC", lead_id="999999")


def test_every_capability_flag_is_read_from_a_facet() -> None:
    """A new capability flag needs its facet in the port (and in `offered`), or this fails."""
    class Everything:
        user_reader = list_reader = list_updater = lead_sender = lead_finder = object()
        lead_updater = object()

    assert all(vars(offered(Everything())).values())  # type: ignore[arg-type]
