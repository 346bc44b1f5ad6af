"""A batch planned by the lead merge goes out as it was encoded then: the same form body, byte
for byte, as a batch built lead by lead, and the same limits."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.transport import encoded_size, login_of
from reconciler.core.leads.batching import lead_json
from reconciler.errors import FieldInvalid
from tests.adapters.dialer.test_client import LEAD, LEADS_CREATED, Dialer, make_settings

TWO_CREATED = (b'{"lead 1":{"success":true,"message":"Record(s) Created",'
               b'"data":"1234567893|1101|1036||NEW|"},"lead 2":{"success":true,'
               b'"message":"Record(s) Created","data":"1234567894|1101|1037||NEW|"}}')


@settings(max_examples=300)
@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=600)), max_size=4))
def test_form_body_is_what_urlencode_gives(params: list[tuple[str, str]]) -> None:
    assert requests.form_encode(params) == urlencode(params).encode()


def test_form_body_of_a_long_json_value_is_what_urlencode_gives() -> None:
    every_ascii = "".join(map(chr, range(128))) * 5
    leads = [{**LEAD, "comments": every_ascii, "city": "Ütrecht 😀"}, LEAD] * 40
    value = requests.encode_leads(leads)
    pairs = [("function", "add_multi_lead"), ("multi_leads", value)]
    assert requests.form_encode(pairs) == urlencode(pairs).encode()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_an_encoded_batch_goes_out_as_the_same_request(method: str) -> None:
    leads = [LEAD, {**LEAD, "phone_number": "1234567894"}]
    multi_leads = "[" + ",".join(lead_json(lead) for lead in leads) + "]"
    assert multi_leads == requests.encode_leads(leads)
    built, encoded = Dialer(TWO_CREATED), Dialer(TWO_CREATED)
    with built.client(method=method) as a, encoded.client(method=method) as b:
        assert a.add_multi_lead(leads) == b.add_multi_lead_encoded(multi_leads, 2)
    assert built.seen[0].url == encoded.seen[0].url
    assert built.seen[0].content == encoded.seen[0].content
    assert built.seen[0].headers.get("content-type") == encoded.seen[0].headers.get(
        "content-type")


def test_an_encoded_batch_keeps_the_size_limits() -> None:
    one = lead_json(LEAD)
    dialer = Dialer(LEADS_CREATED)
    with dialer.client(leads_per_batch=2) as client:
        with pytest.raises(FieldInvalid, match="at most 2 leads"):
            client.add_multi_lead_encoded(f"[{one},{one},{one}]", 3)
        with pytest.raises(FieldInvalid, match="at least 1 lead"):
            client.add_multi_lead_encoded("[]", 0)
    with dialer.client(max_request_bytes=200) as client, \
            pytest.raises(FieldInvalid, match="at most 200 bytes"):
        client.add_multi_lead_encoded(f"[{one},{one}]", 2)
    assert dialer.seen == []              # nothing left for the dialer


def test_the_form_body_is_encoded_once_and_sent_as_measured() -> None:
    settings_: Any = make_settings()
    request = requests.build_add_multi_lead(login_of(settings_), [LEAD] * 3)
    assert encoded_size(settings_, request) == len(request.form_body)
    assert request.form_body is request.form_body
    assert httpx.Request("POST", settings_.url, data=dict(request.params)).content \
        == request.form_body
