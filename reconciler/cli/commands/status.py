"""`status`, `history` and `show`: what reconciler did, read from the state database.

They read only the state database (no dialer, no CRM, no password needed), so they answer
while the daemon is running, and while the dialer is down.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.state import db, marks, queries
from reconciler.cli.commands.common import EXIT_OK, count_at_least_one, load
from reconciler.cli.commands.targets import add_target_option, for_each_target
from reconciler.config.settings import RESOURCES, Settings
from reconciler.config.spec import load_spec, spec_resources
from reconciler.errors import SpecError

# Runs that cover every resource of the spec; `daemon-<resource>` covers one.
WHOLE_SPEC_KINDS = ("apply", "resync", "daemon")


def register(sub: Any) -> None:
    s = sub.add_parser("status", help="last run per resource, in-doubt lead batches, "
                                      "rejected rows, lock holder")
    s.add_argument("--json", action="store_true", help="print it as JSON")
    add_target_option(s)
    s.set_defaults(func=cmd_status)

    h = sub.add_parser("history", help="recent runs, newest first")
    h.add_argument("--limit", type=count_at_least_one, default=20, metavar="N",
                   help="how many (at least 1; default 20)")
    h.add_argument("--json", action="store_true", help="print them as JSON")
    add_target_option(h)
    h.set_defaults(func=cmd_history)

    w = sub.add_parser("show", help="one run and every step of it")
    w.add_argument("run_id", metavar="RUN_ID", help="a run id, or a unique prefix of one")
    w.add_argument("--json", action="store_true", help="print it as JSON")
    w.set_defaults(func=cmd_show)


@contextmanager
def _state(args: argparse.Namespace, settings: Settings | None = None
           ) -> Iterator[tuple[Settings, sa.Engine]]:
    settings = settings or load(args)
    engine = db.open_engine(settings.state.url)
    try:
        db.require_current(engine)
        yield settings, engine
    finally:
        engine.dispose()


# --- status -----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    return for_each_target(load(args), args, lambda one: _status(args, one))


def _status(args: argparse.Namespace, one: Settings) -> int:
    with _state(args, one) as (settings, engine):
        report = gather_status(settings, engine)
    print(_dumps(report) if args.json else render_status(report), end="")
    return EXIT_OK


def gather_status(settings: Settings, engine: sa.Engine) -> dict[str, Any]:
    target = settings.dialer.target
    by_kind = queries.latest_runs_by_kind(engine, target)
    per_resource = {
        name: _newest([by_kind.get(k) for k in (*WHOLE_SPEC_KINDS, f"daemon-{name}")])
        for name in _declared_resources(settings)
    }
    latest = queries.latest_applied_run(engine, target)
    # CRM rows rejected by our checks are counted by plans ("reject") and by applied runs
    # ("crm_rejected"): the newest run that read the CRM is used.
    counted = _newest([run for run in by_kind.values()
                       if run.get("outcome") not in (None, "unavailable")])
    crm_counts = (counted or {}).get("counts") or {}
    return {
        "target": target,
        "lock": queries.lease_holder(engine, target),
        "resources": per_resource,
        "last_runs": dict(sorted(by_kind.items())),
        "in_doubt_batches": queries.in_doubt_batches(engine, target),
        "lead_pass": _lead_pass(engine, target),
        "dnc_flags": queries.dnc_flag_counts(engine, target),
        "rejected": {
            "crm_rows": int(crm_counts.get("crm_rejected", crm_counts.get("reject", 0))),
            "crm_rows_run_id": counted["run_id"] if counted else None,
            "dialer_steps": (queries.steps_of(engine, latest["run_id"], "rejected")
                             if latest else []),
            "dialer_steps_run_id": latest["run_id"] if latest else None,
            "leads": queries.rejected_lead_count(engine, target),
            # Changes the dialer refused in some run, not sent again until their CRM row changes.
            "dialer_held": queries.dialer_rejections_held(engine, target),
        },
    }


def _lead_pass(engine: sa.Engine, target: str) -> dict[str, Any] | None:
    """Where the next incremental lead pass resumes (docs/incremental.md); None without one."""
    mark = marks.load(engine, target)
    if mark is None:
        return None
    due = mark.full_pass_due_at is not None and (
        mark.full_pass_at is None or mark.full_pass_due_at >= mark.full_pass_at)
    return {"mark": mark.mark, "mark_type": mark.mark_type,
            "last_full_pass_at": mark.full_pass_at, "full_pass_due": due}


def _declared_resources(settings: Settings) -> tuple[str, ...]:
    try:
        declared = spec_resources(load_spec(settings.spec_path))
    except SpecError:
        return RESOURCES           # status must answer even when the spec is being edited
    return tuple(name for name in RESOURCES if name in declared)


def _newest(candidates: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    found = [run for run in candidates if run is not None]
    return max(found, key=lambda run: run["started_at"]) if found else None


def render_status(report: Mapping[str, Any]) -> str:
    lines = [f"Dialer target: {report['target']}"]
    lock = report["lock"]
    lines.append(f"Lock: held by {lock['owner']} since {_when(lock['acquired_at'])}, "
                 f"expires {_when(lock['expires_at'])}" if lock else "Lock: free")
    lines += ["", "Last run per resource:"]
    for name, run in report["resources"].items():
        lines.append(f"  {name:<7} " + (_run_line(run) if run else "never"))
    lines += ["", "Last run of each kind:"]
    lines += [f"  {kind:<13} {_run_line(run, kind=False)}"
              for kind, run in report["last_runs"].items()] or ["  none yet"]
    batches = report["in_doubt_batches"]
    lines += ["", f"In-doubt lead batches: {len(batches) or 'none'}"]
    lines += [f"  batch {b['batch_id'][:8]}  list {b['list_id']}  {b['lead_count']} leads"
              f"{_doubtful(b)}  since {_when(b['created_at'])}  {b['message'] or ''}".rstrip()
              for b in batches]
    if batches:
        lines.append("  Their leads are not sent again until the batches are resolved; "
                     "`reconciler leads in-doubt BATCH` lists them.")
    lines += _lead_pass_lines(report["lead_pass"], report["dnc_flags"])
    lines += ["", *_rejected_lines(report["rejected"])]
    return "\n".join(lines) + "\n"


def _lead_pass_lines(lead_pass: Mapping[str, Any] | None, dnc_flags: Mapping[str, int]
                     ) -> list[str]:
    lines = []
    if lead_pass is not None:
        full = lead_pass["last_full_pass_at"]
        lines += ["", f"Incremental lead passes: read past {lead_pass['mark']!r} "
                      f"({lead_pass['mark_type']}); last full pass "
                      f"{_when(full) if full else 'never'}"
                      + ("; the next pass is a full one" if lead_pass["full_pass_due"] else "")]
    if dnc_flags:
        lines += ["", f"Leads set to DNC on the dialer (their phone went on the do-not-call "
                      f"list): {dnc_flags.get('flagged', 0)}; no longer on the dialer: "
                      f"{dnc_flags.get('absent', 0)}"]
    return lines


def _doubtful(batch: Mapping[str, Any]) -> str:
    """How many of a batch's leads are in doubt, when not all (leads sent one by one)."""
    doubtful = batch.get("doubtful_leads", 0)
    return f" ({doubtful} in doubt)" if 0 < doubtful < batch["lead_count"] else ""


def _rejected_lines(rejected: Mapping[str, Any]) -> list[str]:
    steps, held = rejected["dialer_steps"], rejected["dialer_held"]
    if not (rejected["crm_rows"] or steps or rejected["leads"] or held):
        return ["Rejected rows: none"]
    lines = ["Rejected rows:"]
    if rejected["crm_rows"]:
        lines.append(f"  {rejected['crm_rows']} CRM row(s) fail our checks (run "
                     f"{rejected['crm_rows_run_id'][:8]}); `reconciler plan` names them")
    if steps:
        lines.append(f"  {len(steps)} refused by the dialer in run "
                     f"{rejected['dialer_steps_run_id'][:8]}:")
        lines += [f"    {s['op']} {s['key']}: {s['message'] or ''}" for s in steps[:10]]
        if len(steps) > 10:
            lines.append(f"    ... and {len(steps) - 10} more: `reconciler show "
                         f"{rejected['dialer_steps_run_id'][:8]}`")
    if held:
        lines.append(f"  {len(held)} change(s) refused by the dialer, not sent again until "
                     f"their CRM row changes (or `reconciler resync`):")
        lines += [f"    {h['op']} {h['key']} (run {(h['run_id'] or '-')[:8]}, "
                  f"{_when(h['rejected_at'])}): {h['message']}" for h in held[:10]]
        if len(held) > 10:
            lines.append(f"    ... and {len(held) - 10} more: `reconciler status --json`")
    if rejected["leads"]:
        lines.append(f"  {rejected['leads']} lead(s) refused by the dialer on export")
    return lines


# --- history and show -------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    return for_each_target(load(args), args, lambda one: _history(args, one))


def _history(args: argparse.Namespace, one: Settings) -> int:
    with _state(args, one) as (settings, engine):
        found = queries.recent_runs(engine, settings.dialer.target, args.limit)
    if args.json:
        print(_dumps(found), end="")
        return EXIT_OK
    if not found:
        print("No runs yet.")
        return EXIT_OK
    print(f"{'RUN':<9} {'STARTED (UTC)':<21} {'KIND':<13} {'OUTCOME':<11} {'TOOK':>7}  COUNTS")
    for run in found:
        detail = "  ".join(x for x in (_counts(run), _short(run["message"] or "")) if x)
        print(f"{run['run_id'][:8]:<9} {_when(run['started_at']):<21} {run['kind']:<13} "
              f"{run['outcome'] or 'running':<11} {_took(run):>7}  {detail}".rstrip())
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with _state(args) as (_settings, engine):
        run = queries.find_run(engine, args.run_id)
        steps = queries.steps_of(engine, run["run_id"])
    if args.json:
        print(_dumps({**run, "steps": steps}), end="")
        return EXIT_OK
    print(f"Run {run['run_id']}")
    for label, value in (
        ("kind", run["kind"]), ("target", run["target"]),
        ("started", _when(run["started_at"])),
        ("finished", f"{_when(run['finished_at'])} ({_took(run)})" if run["finished_at"]
         else "not finished (running, or the process died)"),
        ("outcome", run["outcome"] or "-"), ("counts", _counts(run) or "-"),
        ("message", run["message"] or "-"), ("plan", run["plan_digest"] or "-"),
    ):
        print(f"  {label:<9} {value}")
    print(f"\nSteps: {len(steps) or 'none'}")
    if steps:
        print(f"  {'SEQ':>4}  {'OP':<16} {'KEY':<20} {'OUTCOME':<11} {'MS':>6}  MESSAGE")
    for s in steps:
        print(f"  {s['seq']:>4}  {s['op']:<16} {s['key']:<20} {s['outcome']:<11} "
              f"{s['duration_ms']:>6}  {s['message'] or ''}".rstrip())
    return EXIT_OK


# --- formatting -------------------------------------------------------------------------------


def _run_line(run: Mapping[str, Any], *, kind: bool = True) -> str:
    parts = [_when(run["started_at"]), f"{run['outcome'] or 'running':<11}"]
    if kind:
        parts.insert(1, f"{run['kind']:<13}")
    counts = _counts(run)
    return "  ".join([*parts, f"run {run['run_id'][:8]}"] + ([counts] if counts else []))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _took(run: Mapping[str, Any]) -> str:
    if not run["finished_at"]:
        return "-"
    return f"{(run['finished_at'] - run['started_at']).total_seconds():.1f}s"


def _counts(run: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted((run["counts"] or {}).items()))


def _short(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True,
                      default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)) + "\n"
