"""The pure parts of settling in-doubt leads (leads_settle), table by table: how long a request
may still land, the recorded stream as the look-ups will leave it, and the settle_leads op."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from reconciler.adapters.state.leads import LeadSettlement
from reconciler.apply import leads_settle
from reconciler.core.model import RecordedLead
from reconciler.core.plan import Basis, Plan, SettleLeads
from tests.helpers import dialer_settings


@pytest.mark.parametrize(("settings", "seconds"), [
    # (1 + retries) connects, retries back-offs, twice the read timeout, the clock margin
    ({"max_retries": 3, "connect_timeout": 5.0, "backoff_max": 10.0, "read_timeout": 30.0},
     4 * 5 + 3 * 10 + 2 * 30 + 5),
    ({"max_retries": 0, "connect_timeout": 5.0, "backoff_max": 10.0, "read_timeout": 30.0},
     5 + 2 * 30 + 5),
    ({"max_retries": 1, "connect_timeout": 2.0, "backoff_max": 0.0, "read_timeout": 1.0},
     2 * 2 + 2 * 1 + 5),
], ids=["defaults", "no-retries", "short"])
def test_landing_window(settings: dict[str, float], seconds: float) -> None:
    window = leads_settle.landing_window(dialer_settings(**settings))
    assert window == timedelta(seconds=seconds)


def lead(key: str, status: str) -> RecordedLead:
    return RecordedLead(key, "1101", "d", status)


@dataclass(frozen=True)
class Case:
    name: str
    recorded: list[RecordedLead]
    settled: list[LeadSettlement]
    expected: list[tuple[str, str]]          # (key, status) of the stream as planned


CASES = [
    Case("nothing looked up: the stream as recorded",
         [lead("a", "sent"), lead("b", "in_doubt")], [],
         [("a", "sent"), ("b", "in_doubt")]),
    Case("found on the dialer: sent",
         [lead("a", "in_doubt"), lead("b", "sending"), lead("c", "pending")],
         [LeadSettlement("a", "B1", "901"), LeadSettlement("b", "B1", "902"),
          LeadSettlement("c", "B2", "903")],
         [("a", "sent"), ("b", "sent"), ("c", "sent")]),
    Case("not on the dialer: as if never sent, planned again",
         [lead("a", "in_doubt"), lead("b", "sent")], [LeadSettlement("a", "B1", None)],
         [("b", "sent")]),
    Case("a lead no longer uncertain keeps its recorded status",
         [lead("a", "sent"), lead("b", "rejected")],
         [LeadSettlement("a", "B1", None), LeadSettlement("b", "B1", "905")],
         [("a", "sent"), ("b", "rejected")]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_recorded_stream_as_the_look_ups_leave_it(case: Case) -> None:
    planned = leads_settle.as_recorded(iter(case.recorded), case.settled)
    assert [(r.key, r.status) for r in planned] == case.expected


@pytest.mark.parametrize(("settled", "op"), [
    ([], SettleLeads((), ())),
    ([LeadSettlement("a", "B1", "901"), LeadSettlement("b", "B1", None),
      LeadSettlement("c", "B2", "903")],
     SettleLeads((("a", "B1", "901"), ("c", "B2", "903")), (("b", "B1"),))),
], ids=["none", "found-and-not"])
def test_look_ups_become_a_settle_leads_op_and_back(settled: list[LeadSettlement],
                                                    op: SettleLeads) -> None:
    assert leads_settle.as_op(settled) == op
    assert sorted(leads_settle.from_op(op), key=lambda s: s.key) == settled
    plan = Plan(Basis("default", 0, "", "", ""), ops=(op,))
    assert sorted(leads_settle.saved(plan), key=lambda s: s.key) == settled
