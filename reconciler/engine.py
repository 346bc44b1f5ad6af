"""The thin shell around the pure planner: gather -> plan -> render | apply.

`plan`, `apply` and `resync` all go through here; they differ in what is gathered and whether
the executor runs, never in how the plan is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import sqlalchemy as sa
import structlog

from reconciler import leadflow, planner
from reconciler.crm import read_desired
from reconciler.dialer.client import DialerClient
from reconciler.digests import keyed_digest
from reconciler.errors import DialerError, PlanRefused
from reconciler.executor import Executor, RunReport
from reconciler.leadplan import LeadContext
from reconciler.model import Desired, Observed, ObservedList
from reconciler.plan import AddLeads, Basis, Plan, sealed
from reconciler.settings import Settings
from reconciler.spec import Spec
from reconciler.state.leads import LeadBook
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
    leads: LeadContext | None = None     # how leads were planned; apply merges them again alike


def gather_and_plan(ctx: Context, *, resync: bool = False) -> Gathered:
    """Read the three views and plan. Writes nothing anywhere."""
    key = ctx.digest_key
    desired = read_desired(ctx.crm, ctx.spec, lambda f, v: keyed_digest(key, f, v))
    recorded = ctx.store.load_recorded()
    needs_lists = ctx.spec.policy.manage_lists or ctx.spec.leads is not None
    observed = observe(ctx.dialer) if needs_lists else Observed({})
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
    if ctx.spec.leads is None or plan.unavailable:
        return Gathered(desired, plan)
    lead_ctx = leadflow.lead_context(ctx.settings.dialer, plan, desired, recorded, observed,
                                     ctx.spec.policy.lead_duplicates == "keep_first")
    part = leadflow.plan_leads(leadflow.events(ctx.crm, ctx.spec.leads, LeadBook(ctx.store),
                                               lead_ctx))
    return Gathered(desired, sealed(leadflow.with_leads(plan, part)), lead_ctx)


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
    ctx: Context, gathered: Gathered, plan: Plan | None = None, *, kind: str = "apply",
    force: bool = False, keep_going: Callable[[], bool] | None = None,
) -> RunReport:
    """Apply `plan` (default: the gathered one). Call with the write lease held."""
    plan = plan or gathered.plan
    check_applicable(plan, force=force)
    book = LeadBook(ctx.store)
    interrupted = book.settle_interrupted()
    if interrupted:
        log.warning("lead_batches_in_doubt", batches=interrupted,
                    reason="a previous run stopped between sending and recording")
    keep_going = keep_going or (lambda: True)
    run_id = ctx.store.start_run(kind, plan.digest)
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        log.info("run_started", kind=kind, ops=len(plan.ops), plan_digest=plan.digest)
        report = Executor(ctx.dialer, ctx.store, gathered.desired, run_id, keep_going,
                          ctx.spec.policy.user_fields).apply(
            replace(plan, ops=tuple(op for op in plan.ops if not isinstance(op, AddLeads))))
        if gathered.leads is not None and ctx.spec.leads is not None \
                and report.outcome in ("ok", "partial"):
            stream = leadflow.events(ctx.crm, ctx.spec.leads, book, gathered.leads)
            leadflow.send_leads(ctx.dialer, book, stream, plan, report, keep_going)
            if report.outcome == "ok" and report.failures:
                report.outcome = "partial"
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

