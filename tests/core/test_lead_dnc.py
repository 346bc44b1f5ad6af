"""Do-not-call in the pure core: scoping of entries, the merge's chunked check, drift's part."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from reconciler.core.leads.batching import BatchLimits
from reconciler.core.leads.dnc import DncDrift, DncEntry, dnc_reason, drift_part
from reconciler.core.leads.merge import (
    HELD_CHUNK,
    LeadBatch,
    LeadContext,
    LeadSkipped,
    LeadTotals,
    Pair,
    lead_events,
)
from reconciler.core.leads.part import plan_leads
from reconciler.core.model import DesiredLead, RecordedLead
from reconciler.core.plan import FlagDnc, Reject
from tests.core.test_lead_merge import digits_only, fields_of


@pytest.mark.parametrize(("entries", "list_id", "campaign", "reason"), [
    ([DncEntry("555")], "L1", "C1", "on the do-not-call list"),
    ([DncEntry("555", list_id="L1")], "L1", "C1", "on the do-not-call list of list L1"),
    ([DncEntry("555", list_id="L2")], "L1", "C1", None),
    ([DncEntry("555", campaign_id="C1")], "L1", "C1", "on the do-not-call list of campaign C1"),
    ([DncEntry("555", campaign_id="C1")], "L1", None, None),       # a list of no known campaign
    ([DncEntry("555", campaign_id="C2")], "L1", "C1", None),
    ([DncEntry("555", list_id="L1"), DncEntry("555")], "L1", "C1", "on the do-not-call list"),
], ids=["global", "its list", "another list", "its campaign", "no campaign", "another campaign",
        "the widest wins"])
def test_an_entry_applies_everywhere_to_its_list_or_to_its_campaign(
    entries: list[DncEntry], list_id: str, campaign: str | None, reason: str | None
) -> None:
    assert dnc_reason(entries, list_id, campaign) == reason


class CountingDnc:
    """The DNC as the merge sees it: (list, phone) pairs in, reasons out; counts the questions."""

    def __init__(self, phones: set[str]) -> None:
        self.phones, self.questions, self.asked = phones, 0, 0

    def __call__(self, pairs: Collection[Pair]) -> Mapping[Pair, str]:
        self.questions += 1
        self.asked += len(pairs)
        return {pair: "on the do-not-call list" for pair in pairs if pair[1] in self.phones}


def merge(desired: list[DesiredLead], recorded: list[RecordedLead], dnc: CountingDnc,
          keep_first: bool = False) -> list[object]:
    ctx = LeadContext(frozenset({"L1"}), {}, BatchLimits(500, 10**9, 0), fields_of,
                      lambda row: str(row[2]), digits_only, keep_first_phone=keep_first,
                      phone_holders=(lambda pairs: {}) if keep_first else None, dnc=dnc)
    return list(lead_events(desired, recorded, ctx))


def lead(n: int) -> DesiredLead:
    return DesiredLead(f"{n:06d}", "L1", "d", (f"{n:06d}", "L1", f"555{n:07d}"))


@pytest.mark.parametrize("keep_first", [False, True])
def test_leads_about_to_be_sent_are_checked_a_chunk_at_a_time(keep_first: bool) -> None:
    leads = [lead(n) for n in range(1, 1201)]
    dnc = CountingDnc({f"555{n:07d}" for n in (7, 700, 1200)})
    events = merge(leads, [], dnc, keep_first)
    skipped = [e for e in events if isinstance(e, LeadSkipped)]
    assert [e.key for e in skipped] == ["000007", "000700", "001200"]
    assert not [e for e in events if isinstance(e, Reject)]
    sent = [k for e in events if isinstance(e, LeadBatch) for k in e.keys]
    assert len(sent) == 1197 and "000007" not in sent
    assert dnc.questions == -(-1200 // HELD_CHUNK) and dnc.asked == 1200
    totals = events[-1]
    assert isinstance(totals, LeadTotals) and totals.counts["L1", "dnc"] == 3


def test_a_plan_with_nothing_to_send_asks_the_dnc_nothing() -> None:
    leads = [lead(n) for n in range(1, 1201)]
    recorded = [RecordedLead(x.key, "L1", "d", "sent") for x in leads]
    dnc = CountingDnc({f"555{n:07d}" for n in range(1, 1201)})
    events = merge(leads, recorded, dnc)
    assert dnc.questions == 0 and len(events) == 1        # only the totals


def test_skipped_leads_are_notes_not_rejections() -> None:
    dnc = CountingDnc({"5550000001", "5550000002"})
    part = plan_leads(iter(merge([lead(1), lead(2), lead(3)], [], dnc)))  # type: ignore[arg-type]
    assert not part.rejects and [len(op.keys) for op in part.ops] == [1]
    (note,) = part.notes
    assert (note.topic, note.key, note.keys) == ("dnc_skipped", "L1", ("000001", "000002"))
    assert ("L1", "dnc", 2) in part.counts


def test_drift_is_a_flag_op_where_the_dialer_can_set_a_status_and_a_note_elsewhere() -> None:
    drift = DncDrift({"L2": (("9", "", "9"),), "L1": (("3", "101", ""),)},
                     ("row 4: a blank phone",))
    ops, notes = drift_part(drift, can_flag=True)
    assert ops == (FlagDnc("L1", (("3", "101", ""),)), FlagDnc("L2", (("9", "", "9"),)))
    assert [(n.topic, n.key, n.keys) for n in notes] == [
        ("dnc_drift", "L1", ("3",)), ("dnc_drift", "L2", ("9",)),
        ("dnc_unreadable", "source", ("row 4: a blank phone",))]
    ops, notes = drift_part(drift, can_flag=False)
    assert ops == () and "set them to DNC on the dialer" in notes[0].message
