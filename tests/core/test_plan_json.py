"""The plan's JSON form, and so its digest, is what `dataclasses.asdict` made of it: plans saved
before the form was built without asdict's deep copy keep their digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from reconciler.core.plan import (
    PLAN_FORMAT,
    PLAN_VERSION,
    AddLeads,
    AddList,
    AddUser,
    AdoptList,
    Basis,
    DeactivateUser,
    FieldChange,
    FlagDnc,
    GuardBreach,
    LeadPass,
    Note,
    Plan,
    Reject,
    SettleLeads,
    UpdateList,
    UpdateUser,
    compute_digest,
    content_json,
    from_json,
    to_json,
)


def every_kind_of_step(lead_pass: LeadPass | None) -> Plan:
    return Plan(
        basis=Basis("default", 7, "spec", "desired", "observed", resync=True,
                    lead_pass=lead_pass.basis if lead_pass else ""),
        ops=(
            AddUser("3001", (("full_name", "Ann Lee"), ("user_level", "1")), ("pass",)),
            UpdateUser("3002", (FieldChange("full_name", "Ann", "Anne"),
                                FieldChange.of_secret("pass"))),
            DeactivateUser("3003", "gone from the CRM"),
            AddList("1101", "Bench list 1101", "TESTCAMP", "Y"),
            AdoptList("1102", "Bench list 1102", "TESTCAMP", "N"),
            UpdateList("1103", (FieldChange("active", "N", "Y"),)),
            SettleLeads((("7", "batch-1", "901"),), (("8", "batch-1"),)),
            AddLeads("1101", 1, ("1", "10", "100", "ü")),
            FlagDnc("1101", (("5", "905", "5"),)),
        ),
        rejects=(Reject("leads", "9", "phone_number", "must hold 6-18 digits", 12),),
        notes=(Note("leads", "1101", "drift", "2 lead(s) changed in the CRM after export",
                    ("3", "4")),),
        breaches=(GuardBreach("max_deactivations", "1 > 0"),),
        lead_counts=(("1101", "sent", 3), ("1101", "new", 4)),
        lead_pass=lead_pass,
    )


def as_before(plan: Plan) -> dict[str, Any]:
    """The plan's JSON form as `dataclasses.asdict` made it."""
    basis = asdict(plan.basis)
    if not basis["lead_pass"]:
        del basis["lead_pass"]
    extra = {} if plan.lead_pass is None else {"lead_pass": asdict(plan.lead_pass)}
    return {
        **extra,
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "basis": basis,
        "unavailable": plan.unavailable,
        "ops": [{"op": op.kind, **asdict(op)} for op in plan.ops],
        "rejects": [asdict(r) for r in plan.rejects],
        "notes": [asdict(n) for n in plan.notes],
        "guard_breaches": [asdict(b) for b in plan.breaches],
        "lead_counts": [list(c) for c in plan.lead_counts],
        "summary": plan.count(),
    }


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def test_the_json_form_and_the_digest_are_what_asdict_made() -> None:
    for lead_pass in (None, LeadPass("incremental", "2026-11-30 10:00:00", "mark kept")):
        plan = every_kind_of_step(lead_pass)
        before = canonical(as_before(plan))
        assert canonical(content_json(plan)) == before
        assert compute_digest(plan) == hashlib.sha256(before.encode()).hexdigest()


def test_a_saved_plan_reads_back_the_same() -> None:
    plan = every_kind_of_step(LeadPass("full", reason="daily full pass"))
    saved = json.loads(json.dumps(to_json(plan)))
    again = from_json(saved)
    assert again == plan
    assert compute_digest(again) == compute_digest(plan)
