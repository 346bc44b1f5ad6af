"""The thin shell around the pure planner: gather -> plan -> render | apply.

`plan`, `apply` and `resync` all go through here; they differ in what is gathered and whether
the executor runs, never in how the plan is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import sqlalchemy as sa
import structlog

from reconciler import planner
from reconciler.crm import read_desired
from reconciler.dialer.client import DialerClient
from reconciler.digests import keyed_digest
from reconciler.errors import DialerError, PlanRefused
from reconciler.executor import Executor, RunReport
from reconciler.model import Desired, Observed, ObservedList
from reconciler.plan import Basis, Plan
from reconciler.settings import Settings
from reconciler.spec import Spec
from reconciler.state.store import StateStore

log = structlog.get_logger()


@dataclass(frozen=True)
class Context:
    """Everything a run needs, opened once by the CLI (or a test) and passed in."""

    settings: Settings
    spec: Spec
    store: StateStore
    crm: sa.Engine
    dialer: DialerClient
    digest_key: bytes


@dataclass(frozen=True)
class Gathered:
    desired: Desired
    plan: Plan


def gather_and_plan(ctx: Context, *, resync: bool = False) -> Gathered:
    """Read the three views and plan. Writes nothing anywhere."""
    key = ctx.digest_key
    desired = read_desired(ctx.crm, ctx.spec, lambda f, v: keyed_digest(key, f, v))
    recorded = ctx.store.load_recorded()
    observed = observe(ctx.dialer) if ctx.spec.policy.manage_lists else Observed({})
    basis = Basis(
        target=ctx.settings.dialer.target,
        state_version=recorded.version,
        spec_hash=ctx.spec.hash,
        desired_digest=planner.desired_digest(desired),
        observed_digest=planner.observed_digest(observed),
        resync=resync,
    )
    plan = planner.make_plan(desired, recorded, observed, basis, ctx.spec.policy,
                             ctx.settings.guards)
    return Gathered(desired, plan)


def observe(dialer: DialerClient) -> Observed:
    try:
        answer = dialer.active_lists()
    except DialerError as exc:
        log.warning("dialer_read_failed", function="active_lists", error=str(exc))
        return Observed(None, str(exc))
    lists = {a.list_id: ObservedList(a.list_id, a.list_name, a.campaign_id)
             for a in answer.lists}
    return Observed(lists, unparsed=tuple(answer.unparsed))


def stale_reasons(saved: Basis, current: Basis) -> list[str]:
    """What moved between a saved plan's basis and now; empty when it still holds."""
    labels = {
        "target": "it was made for another dialer target",
        "state_version": "the state database changed since (another apply ran)",
        "spec_hash": "the spec file changed",
        "desired_digest": "the CRM data changed",
        "observed_digest": "the lists on the dialer changed",
        "resync": "it was made in another mode (plan vs resync)",
    }
    saved_fields, current_fields = asdict(saved), asdict(current)
    return [labels[name] for name in labels if saved_fields[name] != current_fields[name]]


def check_applicable(plan: Plan, *, force: bool) -> None:
    if plan.unavailable:
        raise PlanRefused(f"nothing applied: {plan.unavailable}")
    if plan.breaches and not force:
        reasons = "; ".join(b.message for b in plan.breaches)
        raise PlanRefused(f"refused by safety guards: {reasons}. Re-run with --force if this "
                          f"is intended")


def apply_plan(
    ctx: Context, plan: Plan, desired: Desired, *, kind: str = "apply", force: bool = False,
    keep_going: Callable[[], bool] | None = None,
) -> RunReport:
    check_applicable(plan, force=force)
    run_id = ctx.store.start_run(kind, plan.digest)
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        log.info("run_started", kind=kind, ops=len(plan.ops), plan_digest=plan.digest)
        report = Executor(ctx.dialer, ctx.store, desired, run_id, keep_going).apply(plan)
        ctx.store.finish_run(run_id, report.outcome, report.counts, report.message)
        log.info("run_finished", kind=kind, outcome=report.outcome, **report.counts)
    return report


def record_plan_run(ctx: Context, plan: Plan, kind: str = "plan") -> str:
    """A plan is a run too (no steps), so history shows every preview."""
    run_id = ctx.store.start_run(kind, plan.digest)
    outcome = "unavailable" if plan.unavailable else "planned"
    ctx.store.finish_run(run_id, outcome, plan.count(), plan.unavailable)
    log.info("run_finished", run_id=run_id, kind=kind, outcome=outcome, **plan.count())
    return run_id

