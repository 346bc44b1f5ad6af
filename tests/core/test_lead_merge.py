"""The lead merge (core.leads.merge.lead_events), table by table: CRM leads and recorded leads in,
the events the plan and the lead sender act on out. No database, no dialer."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from reconciler.core.leads.batching import BatchLimits
from reconciler.core.leads.merge import (
    LeadBatch,
    LeadContext,
    LeadDrift,
    LeadDrifts,
    LeadEvent,
    LeadOrderError,
    LeadTotals,
    lead_events,
)
from reconciler.core.model import DesiredLead, RecordedLead, RowRejection
from reconciler.core.plan import Reject

Row = tuple[str, str, str]        # (key, list_id, phone): all a test lead is made of


def fields_of(row: tuple[Any, ...]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    key, list_id, phone = row
    if not phone:
        return {}, [("phone_number", "is required")]
    return {"phone_number": phone, "list_id": list_id, "vendor_lead_code": key}, []


def digits_only(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    return [] if fields["phone_number"].isdigit() else [("phone_number", "must be digits")]


def crm(key: str, list_id: str = "L1", phone: str = "", digest: str = "d1") -> DesiredLead:
    return DesiredLead(key, list_id, digest, (key, list_id, phone or f"555{ord(key[0]):04d}"))


def had(key: str, status: str = "sent", list_id: str = "L1", digest: str = "d1"
        ) -> RecordedLead:
    return RecordedLead(key, list_id, digest, status)


@dataclass(frozen=True)
class Case:
    name: str
    desired: list[DesiredLead | RowRejection]
    recorded: list[RecordedLead] = field(default_factory=list)
    expected: list[tuple[Any, ...]] = field(default_factory=list)   # see `shown`
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    usable: frozenset[str] = frozenset({"L1", "L2"})
    blockers: Mapping[str, str] = field(default_factory=dict)
    max_leads: int = 2
    max_bytes: int = 10_000
    shared: Mapping[tuple[str, str], str] | None = None      # keep_first, from the CRM
    holders: Mapping[tuple[str, str], tuple[str, ...]] | None = None   # ... from the state


def shown(event: LeadEvent) -> tuple[Any, ...]:
    if isinstance(event, LeadBatch):
        return ("batch", event.list_id, event.seq, event.keys)
    if isinstance(event, Reject):
        return ("reject", event.key, event.field, event.reason)
    if isinstance(event, LeadDrift):
        return ("drift", event.list_id, event.topic, event.key)
    return ("totals",)


CASES = [
    Case("new leads go in batches of max_leads, per list, closed as they fill",
         [crm("a"), crm("b"), crm("c"), crm("d", "L2")],
         expected=[("batch", "L1", 1, ("a", "b")), ("batch", "L1", 2, ("c",)),
                   ("batch", "L2", 1, ("d",))],
         counts={("L1", "to_send"): 3, ("L2", "to_send"): 1}),
    Case("a lead sent and unchanged since is nothing to do",
         [crm("a")], [had("a")], counts={("L1", "sent"): 1}),
    Case("a lead changed in the CRM after export is drift, never resent",
         [crm("a", digest="d2")], [had("a")],
         expected=[("drift", "L1", "changed_after_export", "a")], counts={("L1", "sent"): 1}),
    Case("a lead moved to another list after export is drift on its new list",
         [crm("a", "L2", digest="d2")], [had("a")],
         expected=[("drift", "L2", "moved_to_other_list", "a")], counts={("L2", "sent"): 1}),
    Case("a lead in doubt (pending, sending, in_doubt) is never resent silently",
         [crm("a"), crm("b"), crm("c")],
         [had("a", "pending"), had("b", "sending"), had("c", "in_doubt")],
         counts={("L1", "in_doubt"): 3}),
    Case("a lead the dialer rejected waits for its CRM row to change",
         [crm("a"), crm("b", digest="d2")], [had("a", "rejected"), had("b", "rejected")],
         expected=[("batch", "L1", 1, ("b",))],
         counts={("L1", "rejected_before"): 1, ("L1", "to_send"): 1}),
    Case("a recorded lead gone from the CRM is counted, nothing else",
         [crm("b")], [had("a"), had("b"), had("c", list_id="L2")],
         counts={("L1", "gone"): 1, ("L1", "sent"): 1, ("L2", "gone"): 1}),
    Case("a lead for a list neither on the dialer nor in the CRM is rejected",
         [crm("a", "L9")],
         expected=[("reject", "a", "list_id", "list L9 is neither on the dialer nor in the CRM")],
         counts={("L9", "rejected"): 1}),
    Case("a lead for a blocked list is rejected with the blocker's reason",
         [crm("a")], blockers={"L1": "list L1 is rejected in the CRM (list_name too long)"},
         expected=[("reject", "a", "list_id",
                    "list L1 is rejected in the CRM (list_name too long)")],
         counts={("L1", "rejected"): 1}),
    Case("a field that cannot be read is rejected by field and rule; the rest go on",
         [DesiredLead("a", "L1", "d1", ("a", "L1", "")), crm("b")],
         expected=[("reject", "a", "phone_number", "is required"), ("batch", "L1", 1, ("b",))],
         counts={("L1", "rejected"): 1, ("L1", "to_send"): 1}),
    Case("the dialer's field rules are checked before sending",
         [crm("a", phone="55x")],
         expected=[("reject", "a", "phone_number", "must be digits")],
         counts={("L1", "rejected"): 1}),
    Case("one key on several CRM rows: none of them is sent",
         [crm("a"), crm("a", phone="5551"), crm("b")],
         expected=[("reject", "a", "lead_key", "duplicate key: 2 CRM rows share it"),
                   ("reject", "a", "lead_key", "duplicate key: 2 CRM rows share it"),
                   ("batch", "L1", 1, ("b",))],
         counts={("L1", "to_send"): 1}),
    Case("a row the CRM reader rejected passes through as a reject",
         [RowRejection("leads", "", "lead_key", "is empty", 0), crm("a")],
         expected=[("reject", "", "lead_key", "is empty"), ("batch", "L1", 1, ("a",))],
         counts={("L1", "to_send"): 1}),
    Case("keep_first: a phone shared in the CRM stays with the lead that keeps it",
         [crm("a", phone="5550001"), crm("b", phone="5550001")],
         shared={("L1", "5550001"): "a"},
         expected=[("reject", "b", "phone_number",
                    "duplicate phone in list L1: lead a has it and comes first"),
                   ("batch", "L1", 1, ("a",))],
         counts={("L1", "rejected"): 1, ("L1", "to_send"): 1}),
    Case("keep_first: a phone a sent lead holds on the dialer is not sent again",
         [crm("a", phone="5550001"), crm("b", phone="5550002")],
         holders={("L1", "5550001"): ("z",)},
         expected=[("reject", "a", "phone_number",
                    "duplicate phone in list L1: lead z has it on the dialer already"),
                   ("batch", "L1", 1, ("b",))],
         counts={("L1", "rejected"): 1, ("L1", "to_send"): 1}),
    Case("a lead too large for a request of its own is rejected",
         [crm("a")], max_bytes=20,
         expected=[("reject", "a", "multi_leads", "is too large to send in one request")],
         counts={("L1", "rejected"): 1}),
]


def merge(case: Case) -> list[LeadEvent]:
    """The merge's events, a run's drift (LeadDrifts) given lead by lead."""
    return [one for event in lead_events(case.desired, case.recorded, context(case))
            for one in (event.items if isinstance(event, LeadDrifts) else (event,))]


def context(case: Case) -> LeadContext:
    holders = case.holders
    return LeadContext(
        case.usable, case.blockers, BatchLimits(case.max_leads, case.max_bytes, 0),
        fields_of, lambda row: str(row[2]), digits_only,
        keep_first_phone=case.shared is not None or holders is not None,
        shared_phones=(lambda: case.shared or {}) if case.shared is not None else None,
        phone_holders=(lambda pairs: {p: holders[p] for p in pairs if p in holders})
        if holders is not None else None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_merge_gives_the_expected_events(case: Case) -> None:
    events = merge(case)
    *decided, totals = events
    assert [shown(e) for e in decided] == case.expected
    assert isinstance(totals, LeadTotals)
    assert dict(totals.counts) == case.counts


def test_the_digest_is_of_the_desired_leads_only() -> None:
    """The plan's basis moves when a CRM lead does, never with what was recorded of it."""
    def digest(desired: list[DesiredLead | RowRejection], recorded: list[RecordedLead]) -> str:
        last = merge(Case("", desired, recorded))[-1]
        assert isinstance(last, LeadTotals)
        return last.digest

    same = digest([crm("a"), crm("b")], [])
    assert digest([crm("a"), crm("b")], [had("a"), had("b", "in_doubt")]) == same
    assert digest([crm("a"), crm("b", digest="d2")], []) != same
    assert digest([crm("a")], []) != same


@pytest.mark.parametrize(("desired", "recorded", "which"), [
    ([crm("b"), crm("a")], [], "CRM"),
    ([crm("a")], [had("b"), had("a")], "state database"),
], ids=["crm-out-of-order", "state-out-of-order"])
def test_a_stream_out_of_key_order_is_an_error_not_a_wrong_plan(
    desired: list[DesiredLead | RowRejection], recorded: list[RecordedLead], which: str
) -> None:
    with pytest.raises(LeadOrderError, match=f"the {which} returned leads out of key order"):
        merge(Case("", desired, recorded))


def test_shared_phones_are_told_at_the_first_lead_to_send_and_asked_when_the_leads_are_decided(
) -> None:
    """keep_first with the dialer's phones checked (leads wait, HELD_CHUNK at a time): the CRM
    is told at the first lead about to be sent, so it can find the shared phones while the
    merge reads on, and asked only when the waiting leads are decided, here at the end."""
    keys = [f"k{n:05d}" for n in range(12_000)]     # read 5,000 at a time
    new = {"k00001", "k00002", "k11999"}            # all three share one phone
    seen: list[str] = []

    def desired() -> Any:
        for key in keys:
            seen.append(key)
            yield crm(key, phone="5550001" if key in new else f"6{key[1:]}")

    def shared() -> Mapping[tuple[str, str], str]:
        seen.append("asked")
        return {("L1", "5550001"): "k00001"}

    ctx = LeadContext(
        frozenset({"L1"}), {}, BatchLimits(10, 10_000, 0), fields_of, lambda row: str(row[2]),
        digits_only, keep_first_phone=True, shared_phones=shared,
        phone_holders=lambda pairs: {}, shared_phones_soon=lambda: seen.append("told"))
    events = list(lead_events(desired(), [had(key) for key in keys if key not in new], ctx))

    assert seen.count("told") == seen.count("asked") == 1
    assert seen.index("told") < seen.index("k10000") < seen.index("k11999") \
        < seen.index("asked")
    reason = "duplicate phone in list L1: lead k00001 has it and comes first"
    assert [shown(e) for e in events[:-1]] == [
        ("reject", "k00002", "phone_number", reason), ("reject", "k11999", "phone_number", reason),
        ("batch", "L1", 1, ("k00001",))]


def test_without_new_leads_the_crm_is_neither_told_nor_asked() -> None:
    calls: list[str] = []
    ctx = LeadContext(
        frozenset({"L1"}), {}, BatchLimits(10, 10_000, 0), fields_of, lambda row: str(row[2]),
        digits_only, keep_first_phone=True, shared_phones=lambda: calls.append("asked") or {},
        phone_holders=lambda pairs: {}, shared_phones_soon=lambda: calls.append("told"))
    list(lead_events([crm("a"), crm("b")], [had("a"), had("b")], ctx))
    assert calls == []


@pytest.mark.parametrize("answer_ready", [True, False], ids=["answer-early", "answer-late"])
def test_the_events_do_not_depend_on_when_the_shared_phones_answer_comes(
    answer_ready: bool,
) -> None:
    """The answer is waited for at fixed points (HELD_CHUNK waiting leads, the end), so a CRM
    that answers before the merge needs it and one that answers only once asked give the same
    events: the same batches, rejects and order."""
    keys = [f"k{n:05d}" for n in range(1_500)]
    phones = {key: "5550001" if n % 7 == 0 else f"6{key[1:]}" for n, key in enumerate(keys)}
    shared = {("L1", "5550001"): keys[0]}

    def events(ready_early: bool) -> list[tuple[Any, ...]]:
        asked = threading.Event()
        answer: list[Mapping[tuple[str, str], str]] = []

        def answer_later() -> None:
            if not ready_early:
                asked.wait(5)
            answer.append(shared)

        worker = threading.Thread(target=answer_later)

        def wait_for_answer() -> Mapping[tuple[str, str], str]:
            asked.set()
            worker.join()
            return answer[0]

        ctx = LeadContext(
            frozenset({"L1"}), {}, BatchLimits(100, 100_000, 0), fields_of,
            lambda row: str(row[2]), digits_only, keep_first_phone=True,
            shared_phones=wait_for_answer, phone_holders=lambda pairs: {},
            shared_phones_soon=worker.start)
        desired = [crm(key, phone=phones[key]) for key in keys]
        recorded = [had(key) for key in keys[1::3]]
        return [shown(e) for e in lead_events(desired, recorded, ctx)]

    assert events(answer_ready) == events(not answer_ready)
    rejected = [e for e in events(answer_ready) if e[0] == "reject"]
    assert len(rejected) == len([k for k in keys[1:] if phones[k] == "5550001"
                                 and k not in keys[1::3]])
