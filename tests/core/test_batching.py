"""Batches are sized as the dialer client will encode them, and never more than needed."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.client import lead_batches
from reconciler.adapters.dialer.transport import encoded_size, login_of
from reconciler.core.leads.batching import (
    COMMA_BYTES,
    BatchLimits,
    OpenBatch,
    lead_cost,
    lead_json,
)
from tests.helpers import dialer_settings

# Any text the field rules accept: no control characters or line separators.
words = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")))
leads = st.lists(
    st.fixed_dictionaries({
        "phone_number": st.from_regex(r"\A[0-9]{6,18}\Z"),
        "list_id": st.just("1101"),
        "first_name": words.filter(lambda w: len(w) <= 30),
        "comments": words.filter(lambda w: len(w) <= 120),
    }),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(batch=leads, method=st.sampled_from(["GET", "POST"]))
def test_predicted_size_is_the_encoded_size(batch: list[dict[str, str]], method: str) -> None:
    config = dialer_settings(method=method)
    empty = requests.api_request(login_of(config), "add_multi_lead", {"multi_leads": "[]"})
    predicted = (encoded_size(config, empty) + sum(lead_cost(x) for x in batch)
                 + COMMA_BYTES * (len(batch) - 1))
    request = requests.build_add_multi_lead(login_of(config), batch)
    assert predicted == encoded_size(config, request)


@settings(max_examples=40, deadline=None)
@given(batch=leads, max_leads=st.integers(1, 12), max_bytes=st.integers(900, 6000))
def test_open_batches_split_like_the_client(
    batch: list[dict[str, str]], max_leads: int, max_bytes: int
) -> None:
    """The planner's incremental batching gives the client's own greedy, minimal split."""
    config = dialer_settings(method="POST", leads_per_batch=max_leads,
                             max_request_bytes=max_bytes)
    empty = requests.api_request(login_of(config), "add_multi_lead", {"multi_leads": "[]"})
    limits = BatchLimits(max_leads, max_bytes, encoded_size(config, empty))
    if not all(limits.fits_alone(lead_cost(x)) for x in batch):
        return
    ours: list[list[dict[str, str]]] = []
    current = OpenBatch(limits)
    for n, lead in enumerate(batch):
        cost = lead_cost(lead)
        if not current.fits(cost):
            ours.append([x for _, x, _ in current.items])
            current = OpenBatch(limits)
        current.add(str(n), lead, "", cost)
    ours.append([x for _, x, _ in current.items])
    assert ours == list(lead_batches(config, batch))


def test_count_limit_alone_gives_the_minimum_number_of_batches() -> None:
    limits = BatchLimits(max_leads=500, max_bytes=8_000_000, empty_bytes=80)
    batches, current = 0, OpenBatch(limits)
    for n in range(1234):
        lead = {"phone_number": f"555{n:07d}", "list_id": "1101"}
        if not current.fits(lead_cost(lead)):
            batches, current = batches + 1, OpenBatch(limits)
        current.add(str(n), lead, "", lead_cost(lead))
    assert batches + 1 == math.ceil(1234 / 500)


@pytest.mark.parametrize(("lead", "cost"), [
    ({}, 6),                                        # {} -> %7B%7D
    ({"a": "b"}, 23),                               # every brace, quote and colon escaped
    ({"phone_number": "5550001"}, 40),
    ({"first_name": "José Ñ"}, 51),                 # JSON escapes it to ASCII first
    ({"comments": "a b&c"}, 36),                    # a space is one byte ('+'), '&' three
], ids=["empty", "one-field", "phone", "non-ascii", "space-and-ampersand"])
def test_a_leads_cost_is_its_encoded_json(lead: dict[str, str], cost: int) -> None:
    assert lead_cost(lead) == cost


@pytest.mark.parametrize(("limits", "costs", "cost", "fits"), [
    (BatchLimits(2, 10, 0), [], 50, True),          # an empty batch takes any lead
    (BatchLimits(2, 1000, 0), [10, 10], 10, False),  # full by count
    (BatchLimits(5, 100, 50), [20], 27, True),       # 50 + 20 + comma 3 + 27 = 100 exactly
    (BatchLimits(5, 100, 50), [20], 28, False),      # one byte over
], ids=["empty-batch", "count-limit", "bytes-exactly", "bytes-one-over"])
def test_a_lead_fits_an_open_batch(limits: BatchLimits, costs: list[int], cost: int,
                                   fits: bool) -> None:
    batch = OpenBatch(limits)
    for n, c in enumerate(costs):
        batch.add(str(n), {}, "", c)
    assert batch.fits(cost) is fits


@pytest.mark.parametrize(("limits", "cost", "alone"), [
    (BatchLimits(500, 100, 80), 20, True),
    (BatchLimits(500, 100, 80), 21, False),
], ids=["just-fits", "one-byte-over"])
def test_a_lead_fits_a_request_of_its_own(limits: BatchLimits, cost: int, alone: bool) -> None:
    assert limits.fits_alone(cost) is alone


def test_an_open_batch_counts_the_empty_request_each_lead_and_the_commas() -> None:
    batch = OpenBatch(BatchLimits(10, 1000, 80))
    for n, cost in enumerate([20, 30, 40]):
        batch.add(str(n), {}, f"d{n}", cost)
    assert batch.size == 80 + 20 + 30 + 40 + 2 * COMMA_BYTES
    assert [(key, digest) for key, _, digest in batch.items] == [("0", "d0"), ("1", "d1"),
                                                                 ("2", "d2")]


@pytest.mark.parametrize("lead", [
    {"first_name": "Lee", "phone_number": "5550000001"},
    {"first_name": "Zoë \"Z\" O'Neil", "comments": "back\\slash\ttab\nline\u2028sep"},
    {"address1": "東京都", "last_name": "\U0001F600", "city": "\x00\x1f\x7f"},
    {},
])
def test_a_leads_json_is_the_json_module_s_own(lead: dict[str, str]) -> None:
    """lead_json keeps one C encoder for every lead: the very bytes json.dumps writes."""
    assert lead_json(lead) == json.dumps(lead, separators=(",", ":"))
