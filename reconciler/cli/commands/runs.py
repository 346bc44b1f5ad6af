"""`plan`, `apply` and `resync`: the same gather and planner, different endings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.adapters.state.leads import LeadBook
from reconciler.app import incremental
from reconciler.app.bootstrap import open_context
from reconciler.app.engine import (
    Context,
    Gathered,
    apply_plan,
    check_applicable,
    forget_settled_refusals,
    gather_and_plan,
    record_plan_run,
    stale_reasons,
)
from reconciler.app.lead_plan import prepare_lead_state
from reconciler.app.render import render_plan
from reconciler.apply import leads_settle
from reconciler.apply.executor import RunReport
from reconciler.cli.commands.common import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_STOPPED,
    load,
)
from reconciler.cli.commands.oneoff import OneOffRun, StopRequested
from reconciler.cli.commands.targets import add_target_option, chosen, for_each_target
from reconciler.config.settings import Settings
from reconciler.core import plan as plan_data
from reconciler.core.plan import FULL
from reconciler.errors import ConfigError, PlanRefused

# What a leased command does once it holds the lease: plan, then the plan to apply.
Planner = Callable[[], tuple[Gathered, plan_data.Plan]]


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="show what a run would change (writes nothing)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", metavar="FILE", help="also save the plan, for `apply FILE`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when there are no changes, 2 when there are, 1 on error")
    _full_flag(p)
    add_target_option(p)
    p.set_defaults(func=cmd_plan)

    a = sub.add_parser("apply", help="plan and apply, or apply a saved plan")
    a.add_argument("planfile", nargs="?", help="a plan saved by `plan --out`")
    _full_flag(a)
    _apply_flags(a)
    a.set_defaults(func=cmd_apply)

    r = sub.add_parser("resync", help="push every managed user and list again, ignoring records")
    r.add_argument("--dry-run", action="store_true", help="show the resync plan only")
    r.add_argument("--json", action="store_true", help="print the plan as JSON")
    _apply_flags(r)
    r.set_defaults(func=cmd_resync)


def _full_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true",
                        help="read every lead row, even when an incremental pass is due "
                             "(docs/incremental.md)")


def _apply_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--force", action="store_true",
                        help="apply even when the plan breaches a safety guard")
    parser.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                        help="how long to wait for another process's write lease")
    add_target_option(parser)


def cmd_plan(args: argparse.Namespace) -> int:
    settings = load(args)
    if args.out and len(chosen(settings, args.targets)) > 1:
        raise ConfigError("plan --out saves the plan of one target: add --target NAME")
    return for_each_target(settings, args, lambda one: _plan(args, one))


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    with open_context(settings) as ctx:
        gathered = gather_and_plan(ctx, keep_batches=False, full=args.full)    # shown, not sent
        record_plan_run(ctx, gathered.plan)
    plan = gathered.plan
    document = plan_data.to_json(plan)
    if args.out:
        Path(args.out).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n",
                                  encoding="utf-8")
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_plan(plan))
        if args.out:
            print(f"Saved to {args.out}; apply it with `reconciler apply {args.out}`.")
    if plan.unavailable:
        return 1
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    settings = load(args)
    saved = _read_plan_file(Path(args.planfile)) if args.planfile else None
    if saved is not None and settings.several_targets and not args.targets:
        args.targets = [saved.basis.target]      # a saved plan is applied to its own target
    return for_each_target(settings, args, lambda one: _apply(args, one, saved))


def _apply(args: argparse.Namespace, settings: Settings, saved: plan_data.Plan | None) -> int:

    def planned(ctx: Context) -> tuple[Gathered, plan_data.Plan]:
        prepare_lead_state(ctx)
        # A saved full pass is gathered as one again; a saved incremental one as the rule says
        # now, and refused when that is another kind (or another mark).
        full = args.full or (saved is not None and saved.basis.lead_pass == FULL)
        gathered = gather_and_plan(ctx, resync=saved.basis.resync if saved else False,
                                   settled=leads_settle.saved(saved) if saved else None,
                                   full=full)
        if saved is None:
            return gathered, gathered.plan
        stale = stale_reasons(saved.basis, gathered.plan.basis)
        if stale:
            raise PlanRefused("saved plan is stale: " + "; ".join(stale) + ". Make a new plan.")
        return gathered, saved

    with open_context(settings) as ctx:
        return _leased(ctx, args, "apply", lambda: planned(ctx))


def cmd_resync(args: argparse.Namespace) -> int:
    settings = load(args)
    return for_each_target(settings, args, lambda one: _resync(args, one))


def _resync(args: argparse.Namespace, settings: Settings) -> int:
    with open_context(settings) as ctx:
        if args.dry_run:
            gathered = gather_and_plan(ctx, resync=True, keep_batches=False)
            record_plan_run(ctx, gathered.plan, kind="resync-plan")
            _print_plan(args, gathered.plan)
            return 1 if gathered.plan.unavailable else EXIT_OK

        def planned() -> tuple[Gathered, plan_data.Plan]:
            prepare_lead_state(ctx)
            gathered = gather_and_plan(ctx, resync=True)
            return gathered, gathered.plan

        return _leased(ctx, args, "resync", planned)


def _leased(ctx: Context, args: argparse.Namespace, kind: str, planned: Planner) -> int:
    """Plan and apply under the write lease, its heartbeat running from the moment it is taken,
    and stop cleanly on SIGTERM/SIGINT (see reconciler.commands.oneoff)."""
    try:
        with OneOffRun(ctx.store, wait_seconds=args.lock_wait,
                       ttl=ctx.settings.state.lease_ttl) as run:
            try:
                gathered, plan = planned()
                return _confirm_and_apply(replace(ctx, store=run.store), args, gathered, plan,
                                          run, kind=kind)
            except StopRequested as stop:
                # Nothing was in progress: the run is recorded as stopped before it began.
                run_id = ctx.store.start_run(kind)
                ctx.store.finish_run(run_id, "stopped", {},
                                     f"{stop} before applying anything")
                print(f"Run {run_id}: stopped ({stop.signal_name}) before applying anything.")
                return EXIT_STOPPED
    except StopRequested as stop:           # while waiting for the lease: nothing to record
        print(f"Stopped ({stop.signal_name}) before the write lease was taken.")
        return EXIT_STOPPED


def _confirm_and_apply(ctx: Context, args: argparse.Namespace, gathered: Gathered,
                       plan: plan_data.Plan, run: OneOffRun, *, kind: str) -> int:
    _print_plan(args, plan)
    check_applicable(plan, force=args.force)
    if not plan.has_changes:
        # apply_plan is not called, but the rule holds: a batch that a dead process left at
        # `intent` is in doubt from the next apply on, so that `status` shows it.
        interrupted = LeadBook(ctx.store).settle_interrupted()
        forget_settled_refusals(ctx, plan)
        incremental.advance(ctx.store, gathered.lead_read)    # nothing to apply: finished ok
        if interrupted:
            print(f"{interrupted} lead batch(es) left by an interrupted run are now in doubt: "
                  f"see `reconciler leads in-doubt`.")
        return EXIT_OK
    if not args.yes and sys.stdin.isatty():
        answer = input("Apply these changes? Only 'yes' will be accepted: ")
        if answer.strip() != "yes":
            print("Apply cancelled.")
            return EXIT_OK
    with run.applying():
        report = apply_plan(ctx, gathered, plan, kind=kind, force=args.force,
                            keep_going=run.keep_going)
    print(_report_line(report))
    for op, key, message in report.failures:
        print(f"  ! {op} {key}: {message}")
    if report.outcome == "stopped":
        return EXIT_STOPPED
    if report.outcome == "lease_lost":
        print(f"error: {report.message}", file=sys.stderr)
        return EXIT_ERROR
    if report.outcome in ("failed", "refused"):
        return EXIT_ERROR
    # CRM rows that fail our checks were shown in the plan and are counted in the run (and
    # `status`); re-running cannot fix them, so only what the dialer refused asks for a look.
    return EXIT_REJECTED if dialer_rejected(report) else EXIT_OK


def dialer_rejected(report: RunReport) -> bool:
    """Whether the dialer refused something in this run: a user or list step, or leads."""
    return any(report.counts.get(outcome) for outcome in (
        "rejected", "lead_batches_rejected", "lead_batches_partial"))


def _print_plan(args: argparse.Namespace, plan: plan_data.Plan) -> None:
    if getattr(args, "json", False):
        print(json.dumps(plan_data.to_json(plan), indent=2, sort_keys=True))
    else:
        sys.stdout.write(render_plan(plan))


def _report_line(report: RunReport) -> str:
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.counts.items()))
    text = f"Run {report.run_id}: {report.outcome}" + (f" ({counts})" if counts else "")
    return text + (f". {report.message}" if report.message else ".")


def _read_plan_file(path: Path) -> plan_data.Plan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanRefused(f"plan file {path}: {exc.strerror}") from None
    except json.JSONDecodeError:
        raise PlanRefused(f"plan file {path} is not JSON") from None
    try:
        return plan_data.from_json(document)
    except ValueError as exc:
        raise PlanRefused(f"plan file {path}: {exc}") from None
