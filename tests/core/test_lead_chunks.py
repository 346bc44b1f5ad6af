"""The lead merge compared a chunk at a time gives, event for event, what comparing lead by lead
gives: at chunk edges, with gone and new keys, duplicate keys, and streams out of key order."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.leads.chunks import desired_chunks, duplicate_key, recorded_chunks
from reconciler.core.leads.merge import (
    GONE,
    SENT,
    LeadDrifts,
    LeadEvent,
    LeadOrderError,
    LeadTotals,
    _Merge,
    lead_chunk_events,
)
from reconciler.core.model import DesiredLead, RecordedLead, RowRejection
from reconciler.core.plan import Reject
from tests.core.test_lead_merge import Case, context, crm, had, shown


def lead_by_lead(desired: Iterable[DesiredLead | RowRejection],
                 recorded: Iterable[RecordedLead], case: Case) -> Iterator[LeadEvent]:
    """The reference: the merge as one loop deciding every lead on its own."""
    merge = _Merge(context(case))
    records = iter(recorded)
    have = next(records, None)
    rows = iter(desired)
    upcoming = next(rows, None)
    previous = ""

    def following(current: RecordedLead) -> RecordedLead | None:
        after = next(records, None)
        if after is not None and after.key < current.key:
            raise LeadOrderError("the state database returned leads out of key order")
        return after

    while upcoming is not None:
        item, upcoming = upcoming, next(rows, None)
        if isinstance(item, RowRejection):
            yield Reject(item.resource, item.key, item.field, item.rule, item.row)
            continue
        key = item.key
        if key < previous:
            raise LeadOrderError("the CRM returned leads out of key order")
        previous = key
        group = 1
        while upcoming is not None and upcoming.key == key:
            group += 1
            upcoming = next(rows, None)
        while have is not None and have.key < key:
            merge.counts[have.list_id, GONE] += 1
            have = following(have)
        mine = None
        if have is not None and have.key == key:
            mine, have = have, following(have)
        if group > 1:
            yield from duplicate_key(key, group)
        else:
            yield from merge.decide(item, mine)
    while have is not None:
        merge.counts[have.list_id, GONE] += 1
        have = following(have)
    yield from merge.finish()


def one_by_one(events: Iterable[LeadEvent]) -> Iterator[LeadEvent]:
    """The events, a run's drift (LeadDrifts) given lead by lead as `decide` gives it."""
    for event in events:
        yield from event.items if isinstance(event, LeadDrifts) else (event,)


def outcome(events: Iterable[LeadEvent]) -> tuple[Any, ...]:
    """Every event as shown, the counts and the digest of the desired leads; or the error."""
    try:
        *decided, totals = list(one_by_one(events))
    except LeadOrderError as exc:
        return ("out of order", str(exc).split(" (")[0])
    assert isinstance(totals, LeadTotals)
    return ([shown(e) for e in decided], dict(totals.counts), totals.digest)


def chunked(case: Case, crm_chunk: int, state_chunk: int) -> tuple[Any, ...]:
    return outcome(lead_chunk_events(desired_chunks(case.desired, crm_chunk),
                                     recorded_chunks(case.recorded, state_chunk),
                                     context(case)))


def assert_same_as_lead_by_lead(case: Case, sizes: Iterable[tuple[int, int]]) -> None:
    expected = outcome(lead_by_lead(case.desired, case.recorded, case))
    for crm_chunk, state_chunk in sizes:
        assert chunked(case, crm_chunk, state_chunk) == expected, (crm_chunk, state_chunk)


SIZES = [(1, 1), (2, 3), (4, 4), (5, 2), (7, 100), (5000, 5000)]


def keys(count: int) -> list[str]:
    return [f"k{n:05d}" for n in range(count)]


def unchanged(count: int) -> tuple[list[DesiredLead | RowRejection], list[RecordedLead]]:
    return [crm(k) for k in keys(count)], [had(k) for k in keys(count)]


@pytest.mark.parametrize("where", [0, 3, 4, 5, 7, 8, 19])
def test_a_change_on_either_side_of_a_chunk_edge_is_drift(where: int) -> None:
    desired, recorded = unchanged(20)
    desired[where] = crm(keys(20)[where], digest="d2")
    case = Case("", desired, recorded)
    assert_same_as_lead_by_lead(case, SIZES)
    events, counts, _ = chunked(case, 4, 4)
    assert events == [("drift", "L1", "changed_after_export", keys(20)[where])]
    assert counts == {("L1", SENT): 20}


@pytest.mark.parametrize("where", [0, 3, 4, 9])
def test_a_gone_lead_inside_an_unchanged_run_is_counted_gone(where: int) -> None:
    desired, recorded = unchanged(10)
    del desired[where]
    case = Case("", desired, recorded)
    assert_same_as_lead_by_lead(case, SIZES)
    assert chunked(case, 4, 4)[1] == {("L1", SENT): 9, ("L1", GONE): 1}


@pytest.mark.parametrize("where", [0, 3, 4, 9])
def test_a_key_only_the_crm_has_is_sent_amid_unchanged_leads(where: int) -> None:
    desired, recorded = unchanged(10)
    del recorded[where]
    case = Case("", desired, recorded, max_leads=100)
    assert_same_as_lead_by_lead(case, SIZES)
    events, counts, _ = chunked(case, 4, 4)
    assert events == [("batch", "L1", 1, (keys(10)[where],))]
    assert counts == {("L1", SENT): 9, ("L1", "to_send"): 1}


@pytest.mark.parametrize("where", [2, 3, 4, 7])
def test_aduplicate_key_across_a_chunk_edge_sends_neither_row(where: int) -> None:
    desired, recorded = unchanged(10)
    desired.insert(where + 1, crm(keys(10)[where], digest="d1"))
    case = Case("", desired, recorded)
    assert_same_as_lead_by_lead(case, SIZES)
    events = chunked(case, 4, 4)[0]
    assert events == [("reject", keys(10)[where], "lead_key",
                       "duplicate key: 2 CRM rows share it")] * 2


@pytest.mark.parametrize("side", ["CRM", "state database", "both"])
@pytest.mark.parametrize("where", [1, 4, 6])
def test_leads_out_of_order_inside_an_unchanged_run_are_still_an_error(
        side: str, where: int) -> None:
    desired, recorded = unchanged(10)
    swapped = [*desired[:where], desired[where + 1], desired[where], *desired[where + 2:]]
    swapped_too = [*recorded[:where], recorded[where + 1], recorded[where],
                   *recorded[where + 2:]]
    case = Case("", swapped if side != "state database" else desired,
                swapped_too if side != "CRM" else recorded)
    which = "CRM" if side == "CRM" else "state database"   # both: the state's is met first
    assert outcome(lead_by_lead(case.desired, case.recorded, case))[0] == "out of order"
    assert_same_as_lead_by_lead(case, SIZES)
    assert chunked(case, 4, 4) == ("out of order", f"the {which} returned leads out of key order")


def test_rejected_rows_keep_their_place_among_unchanged_leads() -> None:
    desired, recorded = unchanged(10)
    desired.insert(4, RowRejection("leads", "", "lead_key", "is required", 0))
    assert_same_as_lead_by_lead(Case("", desired, recorded), SIZES)


statuses = st.sampled_from(["sent", "sent", "sent", "in_doubt", "rejected", "pending"])


@st.composite
def streams(draw: st.DrawFn) -> Case:
    """Two streams sharing most keys: changed, new, gone, duplicated, rejected, sometimes a
    pair out of order."""
    count = draw(st.integers(0, 30))
    names = [f"{n:02d}" for n in range(count)]
    desired: list[DesiredLead | RowRejection] = []
    recorded: list[RecordedLead] = []
    for name in names:
        list_id = draw(st.sampled_from(["L1", "L2", "L3"]))
        kind = draw(st.sampled_from(["same"] * 6 + ["changed", "new", "gone", "twice",
                                                    "rejected"]))
        if kind != "gone":
            desired.append(crm(name, list_id, digest="d2" if kind == "changed" else "d1"))
        if kind == "twice":
            desired.append(crm(name, list_id))
        if kind == "rejected":
            desired.append(RowRejection("leads", "", "lead_key", "is required", 0))
        if kind != "new":
            recorded.append(had(name, draw(statuses), list_id))
    for stream in (desired, recorded):
        if len(stream) > 2 and draw(st.integers(0, 9)) == 0:
            at = draw(st.integers(0, len(stream) - 2))
            stream[at], stream[at + 1] = stream[at + 1], stream[at]
    return Case("", desired, recorded, max_leads=3)


@settings(max_examples=300, deadline=None)
@given(case=streams(), crm_chunk=st.integers(1, 8), state_chunk=st.integers(1, 8))
def test_chunked_merge_is_the_lead_by_lead_merge(case: Case, crm_chunk: int,
                                                  state_chunk: int) -> None:
    assert_same_as_lead_by_lead(case, [(crm_chunk, state_chunk), (5000, 5000)])


@pytest.mark.parametrize("leads", [0, 3, 4999, 5000, 5001, 10000])
def test_the_digest_of_the_desired_leads_does_not_depend_on_how_the_merge_walked(
        leads: int) -> None:
    """Each lead's row digest (which covers its key), followed by a separator, in key order:
    the same whether a lead was compared alone or in a run, whatever the chunks."""
    desired, recorded = unchanged(leads)
    middle = keys(leads)[leads // 2:][:1]
    desired[leads // 2:leads // 2 + 1] = [crm(key, digest="d2") for key in middle]
    folded = "".join(f"{lead.digest}\x1e" for lead in desired if isinstance(lead, DesiredLead))
    for sizes in [(5000, 5000), (7, 3), (1, 1)]:
        assert chunked(Case("", desired, recorded), *sizes)[2] \
            == hashlib.sha256(folded.encode()).hexdigest()


def test_in_a_run_a_digest_of_another_length_is_asked_of_the_earlier_format() -> None:
    """Same length, different digest: drift, counted with the run. Another length: the row is
    asked whether it is that earlier digest's row (recorded anew) or not (drift)."""
    desired, recorded = unchanged(12)
    names = keys(12)
    desired[2] = crm(names[2], digest="d2")                         # changed since export
    desired[4] = crm(names[4], list_id="L2", digest="d2")           # moved since export
    recorded[6] = had(names[6], digest=f"earlier:{names[6]}")       # unchanged, older format
    recorded[8] = had(names[8], digest="earlier:changed")           # changed, older format
    ctx = replace(context(Case("", desired, recorded)),
                  matches_earlier_digest=lambda digest, row: digest == f"earlier:{row[0]}")
    for sizes in [(5000, 5000), (3, 5), (1, 1)]:
        events = list(one_by_one(lead_chunk_events(desired_chunks(desired, sizes[0]),
                                                   recorded_chunks(recorded, sizes[1]), ctx)))
        *decided, totals = events
        assert [(type(e).__name__, getattr(e, "topic", ""), e.key) for e in decided] == [
            ("LeadDrift", "changed_after_export", names[2]),
            ("LeadDrift", "moved_to_other_list", names[4]),
            ("LeadRedigest", "", names[6]),
            ("LeadDrift", "changed_after_export", names[8])], sizes
        assert isinstance(totals, LeadTotals)
        assert totals.counts == {("L1", "sent"): 11, ("L2", "sent"): 1}


def test_a_lead_the_dialer_rejected_recorded_with_an_earlier_digest_is_not_sent_again() -> None:
    """Unchanged since its rejection: still rejected before, recorded anew; changed: sent."""
    names = keys(2)
    desired = [crm(names[0]), crm(names[1])]
    recorded = [had(names[0], "rejected", digest=f"earlier:{names[0]}"),
                had(names[1], "rejected", digest="earlier:changed")]
    ctx = replace(context(Case("", desired, recorded)),
                  matches_earlier_digest=lambda digest, row: digest == f"earlier:{row[0]}")
    *decided, totals = one_by_one(lead_chunk_events(desired_chunks(desired),
                                                    recorded_chunks(recorded), ctx))
    assert [(type(e).__name__, getattr(e, "key", getattr(e, "keys", ()))) for e in decided] \
        == [("LeadRedigest", names[0]), ("LeadBatch", (names[1],))]
    assert isinstance(totals, LeadTotals)
    assert totals.counts == {("L1", "rejected_before"): 1, ("L1", "to_send"): 1}
