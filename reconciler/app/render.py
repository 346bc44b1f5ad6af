"""Show a plan to a person, in the spirit of `terraform plan`.

  + add    ~ update    - deactivate    = adopt (record only, no call)    ! rejected    ? note
"""

from __future__ import annotations

from reconciler.core.plan import (
    FULL,
    REJECTED_EARLIER,
    AddLeads,
    AddList,
    AddUser,
    AdoptList,
    DeactivateUser,
    FlagDnc,
    Op,
    Plan,
    SettleLeads,
    UpdateList,
    UpdateUser,
)


def render_plan(plan: Plan) -> str:
    if plan.unavailable:
        return f"No plan: {plan.unavailable}\n"
    basis = plan.basis
    mode = "resync " if basis.resync else ""
    lines = [f"Reconciler {mode}plan for target {basis.target!r} "
             f"(state version {basis.state_version}, plan {plan.digest[:12]})"]
    lines += [*_pass_lines(plan), ""]
    lists = [op for op in plan.ops if isinstance(op, (AddList, AdoptList, UpdateList))]
    users = [op for op in plan.ops if isinstance(op, (AddUser, UpdateUser, DeactivateUser))]
    for title, ops in (("Lists:", lists), ("Users:", users)):
        if not ops:
            continue
        lines.append(title)
        for op in ops:
            lines.append(f"  {_op_line(op)}")
            if isinstance(op, (UpdateUser, UpdateList)):
                lines += [f"      {c.field}: {_shown(c.old, c.secret)} → {_shown(c.new, c.secret)}"
                          if not c.secret else f"      {c.field}: {c.new}"
                          for c in op.changes]
        lines.append("")
    lines += _lead_lines(plan)
    for flag in (op for op in plan.ops if isinstance(op, FlagDnc)):
        lines += [f"  ~ list {flag.list_id}: {len(flag.leads)} lead(s) now on the do-not-call "
                  f"list: status set to DNC on the dialer", ""]
    for settle in (op for op in plan.ops if isinstance(op, SettleLeads)):
        lines += [f"  = {len(settle.found)} in-doubt lead(s) found on the dialer: recorded as "
                  f"sent; {len(settle.not_found)} not there: sent again", ""]
    if plan.rejects:
        lines.append("Rejected CRM rows (not sent; fix them in the CRM):")
        for r in plan.rejects:
            row = f" row {r.row}" if r.row else ""
            key = f" {r.key!r}" if r.key else ""
            lines.append(f"  ! {r.resource}{row}{key}: {r.field} {r.reason}")
        lines.append("")
    held = [n for n in plan.notes if n.topic == REJECTED_EARLIER]
    if held:
        lines.append("Not sent again until their CRM row changes (or `reconciler resync`):")
        lines += [f"  ! {_SINGULAR.get(n.resource, n.resource)} {n.key}: rejected by the dialer "
                  f"earlier: {n.message}" for n in held]
        lines.append("")
    notes = [n for n in plan.notes if n.topic != REJECTED_EARLIER]
    if notes:
        lines.append("Notes:")
        lines += [f"  ? {n.resource} {n.key}: {n.topic}: {n.message}".replace("  :", ":")
                  for n in notes]
        lines.append("")
    for breach in plan.breaches:
        lines.append(f"! Guard {breach.guard}: {breach.message}; apply refuses without --force")
    if plan.breaches:
        lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def summary_line(plan: Plan) -> str:
    counts = plan.count()
    extras = []
    if counts.get("reject"):
        extras.append(f"{counts['reject']} rejected")
    if counts.get(REJECTED_EARLIER):
        extras.append(f"{counts[REJECTED_EARLIER]} rejected by the dialer earlier")
    if counts.get("note"):
        extras.append(f"{counts['note']} note{'s' if counts['note'] != 1 else ''}")
    tail = f" ({', '.join(extras)})" if extras else ""
    if not plan.has_changes:
        return f"No changes.{tail}"
    parts = [
        f"{counts.get('add_user', 0) + counts.get('add_list', 0)} to add",
        f"{counts.get('update_user', 0) + counts.get('update_list', 0)} to change",
        f"{counts.get('deactivate_user', 0)} to deactivate",
    ]
    if counts.get("adopt_list"):
        parts.append(f"{counts['adopt_list']} to adopt")
    if counts.get("flag_dnc"):
        flagged = sum(len(op.leads) for op in plan.ops if isinstance(op, FlagDnc))
        parts.append(f"{flagged:,} leads to set to DNC")
    if counts.get("settle_leads"):
        parts.append("in-doubt leads to settle")
    if counts.get("leads_to_send"):
        parts.append(f"{counts['leads_to_send']:,} leads to send in {counts['add_leads']:,} "
                     f"batch{'es' if counts['add_leads'] != 1 else ''}")
    return f"Plan: {', '.join(parts)}.{tail}"


_SINGULAR = {"users": "user", "lists": "list"}
_LEAD_STATES = (("sent", "already sent"), ("in_doubt", "in doubt"),
                ("rejected_before", "rejected by the dialer before"), ("rejected", "rejected now"),
                ("gone", "no longer in the CRM"), ("dnc", "on the do-not-call list"))


def _pass_lines(plan: Plan) -> list[str]:
    """Which lead rows the plan read (docs/incremental.md)."""
    read = plan.lead_pass
    if read is None:
        return []
    if read.kind == FULL:
        return [f"Leads: full pass, every CRM row read ({read.reason})."]
    return [f"Leads: incremental pass, the CRM rows changed since {read.since} only "
            f"({read.reason}); lead counts cover those rows, and leads gone from the CRM are "
            f"seen by full passes only."]


def _lead_lines(plan: Plan) -> list[str]:
    """Counts per list: a plan over a million leads stays a screenful."""
    if not plan.lead_counts:
        return []
    counts: dict[str, dict[str, int]] = {}
    for list_id, state, n in plan.lead_counts:
        counts.setdefault(list_id, {})[state] = n
    batches: dict[str, int] = {}
    for op in plan.ops:
        if isinstance(op, AddLeads):
            batches[op.list_id] = batches.get(op.list_id, 0) + 1
    lines = ["Leads:"]
    for list_id in sorted(counts):
        found = counts[list_id]
        others = ", ".join(f"{found[state]:,} {label}" for state, label in _LEAD_STATES
                           if found.get(state))
        to_send = found.get("to_send", 0)
        if to_send:
            n = batches.get(list_id, 0)
            head = f"+ list {list_id}: {to_send:,} to send in {n} batch{'es' if n != 1 else ''}"
        else:
            head = f"  list {list_id}: nothing to send"
        lines.append(f"  {head}" + (f" ({others})" if others else ""))
    return [*lines, ""]


def _op_line(op: Op) -> str:
    if isinstance(op, AddList):
        return (f"+ list {op.list_id} {op.list_name!r} "
                f"(campaign {op.campaign_id}, active {op.active})")
    if isinstance(op, AdoptList):
        return f"= list {op.list_id} {op.list_name!r} (campaign {op.campaign_id}): {op.reason}"
    if isinstance(op, AddUser):
        fields = dict(op.fields)
        detail = ", ".join(f"{k} {fields[k]}" for k in ("agent_user_level", "agent_user_group")
                           if k in fields)
        name = fields.get("agent_full_name", "")
        why = f" [{op.reason}]" if op.reason != "new in CRM" else ""
        return f"+ user {op.agent_user} {name!r} ({detail}){why}"
    if isinstance(op, UpdateUser):
        why = f" [{op.reason}]" if op.reason != "changed in CRM" else ""
        return f"~ user {op.agent_user}{why}"
    if isinstance(op, UpdateList):
        why = f" [{op.reason}]" if op.reason != "changed in CRM" else ""
        return f"~ list {op.list_id}{why}"
    if isinstance(op, DeactivateUser):
        return f"- user {op.agent_user} ({op.reason})"
    raise TypeError(type(op).__name__)  # lead batches are shown as counts, by _lead_lines


def _shown(value: str | None, secret: bool) -> str:
    if secret:
        return "(changed)"
    return "(unset)" if value is None else repr(value)
