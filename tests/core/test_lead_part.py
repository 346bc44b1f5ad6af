"""The plan's lead part (leadpart), table by table: which lists leads may go to, and the
merge's events folded into ops, rejects, notes and counts. Pure: no database, no dialer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.core.leads.merge import LeadBatch, LeadDrift, LeadEvent, LeadTotals
from reconciler.core.leads.part import (
    NOTE_KEYS_SHOWN,
    LeadPart,
    plan_leads,
    usable_lists,
    with_leads,
)
from reconciler.core.model import (
    Desired,
    Observed,
    ObservedList,
    Recorded,
    RecordedList,
    RowRejection,
)
from reconciler.core.plan import (
    REJECTED_EARLIER,
    AddLeads,
    AddList,
    AdoptList,
    Basis,
    Note,
    Plan,
    Reject,
)

BASIS = Basis("default", 3, "spec", "crm", "dialer")


@dataclass(frozen=True)
class Lists:
    name: str
    recorded: tuple[str, ...] = ()
    observed: tuple[str, ...] | None = ()           # None: the dialer could not be read
    planned: tuple[AddList | AdoptList, ...] = ()
    rejected_in_crm: tuple[str, ...] = ()
    held_back: tuple[str, ...] = ()                 # the dialer refused their add_list before
    usable: frozenset[str] = frozenset()
    blockers: dict[str, str] = field(default_factory=dict)


LISTS = [
    Lists("recorded, on the dialer, or created or adopted by the plan",
          recorded=("L1",), observed=("L2",),
          planned=(AddList("L3", "n", "c", "Y"), AdoptList("L4", "n", "c", "Y")),
          usable=frozenset({"L1", "L2", "L3", "L4"})),
    Lists("the dialer unread: only what is recorded or planned", recorded=("L1",),
          observed=None, usable=frozenset({"L1"})),
    Lists("a list rejected in the CRM blocks its leads, unless it is usable anyway",
          recorded=("L1",), rejected_in_crm=("L1", "L5"), usable=frozenset({"L1"}),
          blockers={"L5": "list L5 is rejected in the CRM (list_name is too long)"}),
    Lists("a list whose add_list the dialer refused before blocks its leads",
          held_back=("L6",), blockers={"L6": "list L6 was rejected by the dialer earlier"}),
]


@pytest.mark.parametrize("case", LISTS, ids=[c.name for c in LISTS])
def test_usable_lists(case: Lists) -> None:
    plan = Plan(BASIS, ops=case.planned, notes=tuple(
        Note("lists", key, REJECTED_EARLIER, "no such campaign") for key in case.held_back))
    desired = Desired({}, {}, rejections=tuple(
        RowRejection("lists", key, "list_name", "is too long", 1)
        for key in case.rejected_in_crm))
    recorded = Recorded({}, {key: RecordedList(key, {}, "created") for key in case.recorded})
    observed = Observed(None if case.observed is None else
                        {key: ObservedList(key, "n", "c") for key in case.observed})
    assert usable_lists(plan, desired, recorded, observed) == (case.usable, case.blockers)


@dataclass(frozen=True)
class Fold:
    name: str
    events: list[LeadEvent]
    part: LeadPart


FOLDS = [
    Fold("nothing to send", [LeadTotals({("L1", "sent"): 4}, "abc")],
         LeadPart((), (), (), (("L1", "sent", 4),), "abc")),
    Fold("batches become AddLeads ops, rejects stay rejects, counts sorted",
         [LeadBatch("L2", 1, (("c", {}, "d"),)),
          Reject("leads", "x", "phone_number", "is required"),
          LeadBatch("L1", 1, (("a", {}, "d"), ("b", {}, "d"))),
          LeadTotals({("L2", "to_send"): 1, ("L1", "to_send"): 2, ("L1", "rejected"): 1}, "f")],
         LeadPart((AddLeads("L2", 1, ("c",)), AddLeads("L1", 1, ("a", "b"))),
                  (Reject("leads", "x", "phone_number", "is required"),), (),
                  (("L1", "rejected", 1), ("L1", "to_send", 2), ("L2", "to_send", 1)), "f")),
    Fold("drift becomes one note per list and kind",
         [LeadDrift("L1", "changed_after_export", "a"), LeadDrift("L1", "moved_to_other_list", "b"),
          LeadDrift("L1", "changed_after_export", "c"), LeadTotals({}, "")],
         LeadPart((), (), (
             Note("leads", "L1", "drift", "2 lead(s) changed in the CRM after export; exported "
                  "leads are never changed by reconciler: change them on the dialer", ("a", "c")),
             Note("leads", "L1", "drift", "1 lead(s) moved to another list in the CRM after "
                  "export; exported leads are never changed by reconciler: change them on the "
                  "dialer", ("b",))),
             (), "")),
]


@pytest.mark.parametrize("case", FOLDS, ids=[c.name for c in FOLDS])
def test_plan_leads(case: Fold) -> None:
    assert plan_leads(case.events) == case.part


def test_a_drift_note_names_at_most_so_many_keys_and_counts_them_all() -> None:
    many = [LeadDrift("L1", "changed_after_export", f"k{n:05d}")
            for n in range(NOTE_KEYS_SHOWN + 5)]
    (note,) = plan_leads([*many, LeadTotals({}, "")]).notes
    assert note.message.startswith(f"{NOTE_KEYS_SHOWN + 5} lead(s) changed")
    assert note.keys == tuple(e.key for e in many[:NOTE_KEYS_SHOWN])


def test_with_leads_appends_the_part_and_folds_its_digest_into_the_basis() -> None:
    plan = Plan(BASIS, ops=(AddList("L1", "n", "c", "Y"),),
                rejects=(Reject("users", "u", "email", "bad"),))
    part = LeadPart((AddLeads("L1", 1, ("a",)),), (Reject("leads", "x", "f", "r"),),
                    (Note("leads", "L1", "drift", "m"),), (("L1", "to_send", 1),), "leads")
    one, other = with_leads(plan, part), with_leads(plan, LeadPart((), (), (), (), "other"))
    assert one.ops == (*plan.ops, *part.ops)
    assert one.rejects == (*plan.rejects, *part.rejects)
    assert one.notes == part.notes and one.lead_counts == part.counts
    assert one.basis.desired_digest not in (BASIS.desired_digest, other.basis.desired_digest)
    assert one.basis.state_version == BASIS.state_version
