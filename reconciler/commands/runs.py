"""`plan`, `apply` and `resync`: the same gather and planner, different endings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler import plan as plan_data
from reconciler.commands.common import EXIT_CHANGES, EXIT_OK, EXIT_REJECTED, load
from reconciler.engine import (
    Context,
    Gathered,
    apply_plan,
    check_applicable,
    forget_settled_refusals,
    gather_and_plan,
    record_plan_run,
    stale_reasons,
)
from reconciler.errors import PlanRefused
from reconciler.executor import RunReport
from reconciler.render import render_plan
from reconciler.runtime import open_context, write_lease
from reconciler.state.leads import LeadBook
from reconciler.state.lease import Lease


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="show what a run would change (writes nothing)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", metavar="FILE", help="also save the plan, for `apply FILE`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when there are no changes, 2 when there are, 1 on error")
    p.set_defaults(func=cmd_plan)

    a = sub.add_parser("apply", help="plan and apply, or apply a saved plan")
    a.add_argument("planfile", nargs="?", help="a plan saved by `plan --out`")
    _apply_flags(a)
    a.set_defaults(func=cmd_apply)

    r = sub.add_parser("resync", help="push every managed user and list again, ignoring records")
    r.add_argument("--dry-run", action="store_true", help="show the resync plan only")
    r.add_argument("--json", action="store_true", help="print the plan as JSON")
    _apply_flags(r)
    r.set_defaults(func=cmd_resync)


def _apply_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--force", action="store_true",
                        help="apply even when the plan breaches a safety guard")
    parser.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                        help="how long to wait for another process's write lease")


def cmd_plan(args: argparse.Namespace) -> int:
    settings = load(args)
    with open_context(settings) as ctx:
        gathered = gather_and_plan(ctx)
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
    with open_context(settings) as ctx, write_lease(ctx.store, args.lock_wait) as lease:
        gathered = gather_and_plan(ctx, resync=saved.basis.resync if saved else False)
        plan = gathered.plan
        if saved is not None:
            stale = stale_reasons(saved.basis, plan.basis)
            if stale:
                raise PlanRefused("saved plan is stale: " + "; ".join(stale)
                                  + ". Make a new plan.")
            plan = saved
        return _confirm_and_apply(ctx, args, gathered, plan, lease, kind="apply")


def cmd_resync(args: argparse.Namespace) -> int:
    settings = load(args)
    with open_context(settings) as ctx:
        if args.dry_run:
            gathered = gather_and_plan(ctx, resync=True)
            record_plan_run(ctx, gathered.plan, kind="resync-plan")
            _print_plan(args, gathered.plan)
            return 1 if gathered.plan.unavailable else EXIT_OK
        with write_lease(ctx.store, args.lock_wait) as lease:
            gathered = gather_and_plan(ctx, resync=True)
            return _confirm_and_apply(ctx, args, gathered, gathered.plan, lease, kind="resync")


def _confirm_and_apply(ctx: Context, args: argparse.Namespace, gathered: Gathered,
                       plan: plan_data.Plan, lease: Lease, *, kind: str) -> int:
    _print_plan(args, plan)
    check_applicable(plan, force=args.force)
    if not plan.has_changes:
        # apply_plan is not called, but the rule holds: a batch that a dead process left at
        # `intent` is in doubt from the next apply on, so that `status` shows it.
        interrupted = LeadBook(ctx.store).settle_interrupted()
        forget_settled_refusals(ctx, plan)
        if interrupted:
            print(f"{interrupted} lead batch(es) left by an interrupted run are now in doubt: "
                  f"see `reconciler leads in-doubt`.")
        return EXIT_REJECTED if plan.rejects else EXIT_OK
    if not args.yes and sys.stdin.isatty():
        answer = input("Apply these changes? Only 'yes' will be accepted: ")
        if answer.strip() != "yes":
            print("Apply cancelled.")
            return EXIT_OK
    report = apply_plan(ctx, gathered, plan, kind=kind, force=args.force,
                        keep_going=_renewing(lease))
    print(_report_line(report))
    for op, key, message in report.failures:
        print(f"  ! {op} {key}: {message}")
    if report.outcome in ("failed", "refused", "stopped"):
        return 1
    return EXIT_REJECTED if (report.failures or plan.rejects) else EXIT_OK


def _renewing(lease: Lease) -> Callable[[], bool]:
    """Renew the lease after every step: a long apply keeps it; a broken one stops the run."""

    def keep_going() -> bool:
        if lease.renew():
            return True
        print("error: the write lease was taken away (reconciler unlock --force?); stopping",
              file=sys.stderr)
        return False

    return keep_going


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
