"""The plan's JSON form, and so its digest, is what `dataclasses.asdict` made of it: plans saved
before the form was built without asdict's deep copy keep their digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from reconciler.core.plan import (
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


# The digests of `every_kind_of_step` as the JSON form made with `dataclasses.asdict` gave them.
DIGESTS_BEFORE = {
    None: "7a00eeabf236aad663c38e492967969bc2fda59fc5000a059605b6ee3b53b934",
    "incremental": "38c0fb20962f837cbb16e39256c03850be46ee3e0b8e3b33de2d190fcf031e86",
    "full": "f04ff2f35e827702cf1186b01682c905fc5b02b881edc7482bc1ec402490a18c",
}
PASSES = {None: None, "incremental": LeadPass("incremental", "2026-11-30 10:00:00", "mark kept"),
          "full": LeadPass("full", reason="daily full pass")}


def test_the_digest_is_what_it_was_when_asdict_made_the_json_form() -> None:
    for name, lead_pass in PASSES.items():
        plan = every_kind_of_step(lead_pass)
        assert compute_digest(plan) == DIGESTS_BEFORE[name]
        canonical = json.dumps(content_json(plan), sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(canonical.encode()).hexdigest() == DIGESTS_BEFORE[name]


def test_each_step_reads_as_asdict_reads_it() -> None:
    plan = every_kind_of_step(PASSES["incremental"])
    document = content_json(plan)
    assert document["ops"] == [{"op": op.kind, **asdict(op)} for op in plan.ops]
    assert document["rejects"] == [asdict(r) for r in plan.rejects]
    assert document["notes"] == [asdict(n) for n in plan.notes]
    assert document["guard_breaches"] == [asdict(b) for b in plan.breaches]
    assert plan.lead_pass is not None
    assert document["lead_pass"] == asdict(plan.lead_pass)


def test_a_saved_plan_reads_back_the_same() -> None:
    plan = every_kind_of_step(PASSES["full"])
    saved = json.loads(json.dumps(to_json(plan)))
    again = from_json(saved)
    assert again == plan
    assert compute_digest(again) == compute_digest(plan)
