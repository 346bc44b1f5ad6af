"""The thin shell around the pure planner: gather -> plan -> render | apply.

`plan`, `apply` and `resync` all go through here; they differ in what is gathered and whether
the executor runs, never in how the plan is made. Leads are planned by the lead merge
(core/leads/merge.py) over the CRM's and the state's streams; the batches it makes are kept in a
temporary file (apply/leads_spill.py) and the executor sends them from there, as planned.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from functools import partial

import sqlalchemy as sa
import structlog

from reconciler.adapters.crm.leads import lead_list_ids
from reconciler.adapters.crm.routing import route_rejections
from reconciler.adapters.crm.source import CrmUnavailable, read_desired
from reconciler.adapters.dialer.observe import observe
from reconciler.adapters.state.leads import LeadBook, LeadSettlement
from reconciler.adapters.state.store import StateStore
from reconciler.app import incremental
from reconciler.app.context import Context as Context
from reconciler.app.context import Gathered as Gathered
from reconciler.app.lead_plan import merged_leads, plan_lead_part
from reconciler.app.progress import progress_bar
from reconciler.apply.executor import Executor, RunReport
from reconciler.apply.leads_batches import LeadSender, Progress
from reconciler.apply.leads_one_by_one import OneByOneSender
from reconciler.core import planner
from reconciler.core.digests import keyed_digest
from reconciler.core.leads.merge import LeadEvent
from reconciler.core.model import Desired, Observed, Recorded
from reconciler.core.plan import AddLeads, Basis, Plan
from reconciler.core.planner import backoff
from reconciler.errors import PlanRefused, ReconcilerError, StateError

log = structlog.get_logger()


def gather_and_plan(ctx: Context, *, resync: bool = False,
                    settled: tuple[LeadSettlement, ...] | None = None,
                    keep_batches: bool = True, full: bool = False) -> Gathered:
    """Read the three views and plan. Writes nothing anywhere but a temporary file.

    `settled`: in-doubt leads already looked up (by the saved plan being applied); None looks
    them up now. Each lead is looked up once per run, never again to check a saved plan.
    `keep_batches`: keep the planned lead batches in a temporary file for `apply_plan` to send
    (`Gathered.spill`, removed when the run ends); False for a plan that is only shown.
    `full`: read every lead row even when the spec allows an incremental pass."""
    key, caps = ctx.digest_key, ctx.dialect.capabilities
    desired = read_desired(ctx.crm, ctx.spec, lambda f, v: keyed_digest(key, f, v), ctx.dialect)
    unrouted = route_rejections(ctx.crm, ctx.spec, ctx.settings.target_names)
    if unrouted:   # users and lists so rejected are never deactivated; leads join the plan's
        desired = replace(desired, rejections=(*desired.rejections, *(
            r for r in unrouted if r.resource != "leads")))
    recorded = ctx.store.load_recorded()
    observed = _observe(ctx, desired, recorded)
    basis = Basis(
        target=ctx.settings.dialer.target,
        state_version=recorded.version,
        spec_hash=ctx.spec.hash,
        desired_digest=planner.desired_digest(desired),
        observed_digest=planner.observed_digest(observed),
        resync=resync,
    )
    plan = planner.make_plan(desired, recorded, observed, basis, ctx.spec.policy,
                             ctx.settings.guards, caps)
    if ctx.spec.leads is None or plan.unavailable:
        return Gathered(desired, plan)
    return plan_lead_part(ctx, plan, desired, recorded, observed, unrouted, resync=resync,
                          full=full, settled=settled, keep_batches=keep_batches)


def _observe(ctx: Context, desired: Desired, recorded: Recorded) -> Observed:
    """Read what the plan needs from the dialer, as far as its dialect can read."""
    caps, spec = ctx.dialect.capabilities, ctx.spec
    list_ids: set[str] | None = None
    if spec.policy.manage_lists or spec.leads is not None:
        list_ids = set(desired.lists) | set(recorded.lists)
        if spec.leads is not None and caps.reads_lists_individually:
            list_ids |= lead_list_ids(ctx.crm, spec.leads)   # the lists leads go to
    users = set(desired.users) | set(recorded.users) if spec.policy.manage_users else None
    if list_ids is None and not (users is not None and caps.reads_users):
        return Observed({})
    return observe(ctx.dialer, caps, list_ids=list_ids, agent_users=users)


def stale_reasons(saved: Basis, current: Basis) -> list[str]:
    """What moved between a saved plan's basis and now; empty when it still holds."""
    labels = {
        "target": "it was made for another dialer target",
        "state_version": "the state database changed since (another apply ran)",
        "spec_hash": "the spec file changed",
        "desired_digest": "the CRM data changed",
        "observed_digest": "the lists on the dialer changed",
        "resync": "it was made in another mode (plan vs resync)",
        "lead_pass": "it read other lead rows (a full pass vs an incremental one, or since "
                     "another mark; `--full` makes a full pass)",
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
    """Apply `plan` (default: the gathered one).

    Call with the write lease held and `ctx.store` fenced by it: when the lease is already
    lost, starting the run raises LeaseLost; lost later, the run ends `lease_lost`. `keep_going`
    is asked between steps (False: stop on request; it may raise LeaseLost too). A run cut short
    by an exception (a second interrupt, a state database gone) is recorded before it goes on.
    """
    plan = plan or gathered.plan
    try:
        check_applicable(plan, force=force)
        run_id = ctx.store.start_run(kind, plan.digest)          # the run's first, fenced, write
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            try:
                report = _run(ctx, gathered, plan, run_id, kind, keep_going or (lambda: True))
            except BaseException as exc:
                _record_cut_short(ctx.store, run_id, kind, exc)
                raise
            ctx.store.finish_run(run_id, report.outcome, report.counts, report.message)
            log.info("run_finished", kind=kind, outcome=report.outcome, **report.counts)
            incremental.advance(ctx.store, gathered.lead_read, report.outcome)
    finally:
        if gathered.spill is not None:      # sent or not, the planned batches are done with
            gathered.spill.close()
    return report


def _run(ctx: Context, gathered: Gathered, plan: Plan, run_id: str, kind: str,
         keep_going: Callable[[], bool]) -> RunReport:
    forget_settled_refusals(ctx, plan)
    book = LeadBook(ctx.store)
    interrupted = book.settle_interrupted()
    if interrupted:
        log.warning("lead_batches_in_doubt", batches=interrupted,
                    reason="a previous run stopped between sending and recording")
    if gathered.spill is not None and gathered.spill.redigest_count:
        log.info("lead_digests_recorded_anew",
                 leads=book.record_digests(gathered.spill.redigests()),
                 reason="recorded by an earlier version, in another format")
    log.info("run_started", kind=kind, ops=len(plan.ops), plan_digest=plan.digest)
    report = Executor(ctx.dialer, ctx.store, gathered.desired, run_id, keep_going,
                      ctx.spec.policy.user_fields,
                      leads=_lead_sender(ctx, gathered, plan, book, run_id)).apply(plan)
    if plan.rejects:
        # CRM rows our checks rejected never reach the executor: count them in the run too.
        report.counts["crm_rejected"] = len(plan.rejects)
    return report


def _lead_sender(ctx: Context, gathered: Gathered, plan: Plan, book: LeadBook,
                 run_id: str) -> LeadSender | None:
    """The executor's collaborator for the plan's lead batches, as the dialect takes leads."""
    resource, lead_ctx = ctx.spec.leads, gathered.leads
    planned = [op for op in plan.ops if isinstance(op, AddLeads)]
    if resource is None or lead_ctx is None or not planned:
        return None
    total = sum(len(op.keys) for op in planned)
    def progress() -> AbstractContextManager[Progress]:
        return progress_bar(total, enabled=sys.stderr.isatty())

    spill = gathered.spill
    merge: Callable[[], Iterable[LeadEvent]]
    if spill is not None and not spill.closed:     # the plan's own batches: planned once
        merge, kept = spill.batches, True
    else:
        merge, kept = partial(merged_leads, ctx.crm, resource, book, lead_ctx,
                              read=gathered.lead_read), False
    if ctx.dialect.capabilities.sends_leads_one_by_one:
        return OneByOneSender(ctx.dialer, book, run_id, merge, progress=progress,
                              concurrency=ctx.settings.dialer.lead_concurrency,
                              duplicate_check=ctx.spec.lead_duplicate_check, read_ahead=kept)
    return LeadSender(ctx.dialer, book, run_id, merge, progress=progress, read_ahead=kept)


def _record_cut_short(store: StateStore, run_id: str, kind: str, exc: BaseException) -> None:
    """Finish the run of an exception, so that it does not stay `running` for ever: `aborted`
    when interrupted at once, `failed` otherwise; the counts are those of its recorded steps."""
    if isinstance(exc, Exception):
        outcome = "failed"
        why = str(exc) if isinstance(exc, ReconcilerError) else f"{type(exc).__name__} (a bug)"
    else:
        outcome, why = "aborted", str(exc) or "interrupted"
    try:
        counts = Counter(step["outcome"] for step in store.steps(run_id))
        cause = "CRM unavailable" if isinstance(exc, CrmUnavailable) else outcome
        store.finish_run(run_id, outcome, dict(counts), f"{cause}: {why}")
    except (sa.exc.SQLAlchemyError, StateError) as error:
        log.warning("run_not_recorded", error=type(error).__name__,
                    note="the run stays unfinished in the run log")
        return
    # A CRM outage is the caller's to report (the daemon logs it once, not every run).
    emit = log.info if isinstance(exc, CrmUnavailable) else log.error
    emit("run_finished", kind=kind, outcome=outcome, message=why, **counts)


def forget_settled_refusals(ctx: Context, plan: Plan) -> None:
    """Before applying: forget the dialer's refusals this plan neither holds back nor sends."""
    recorded = ctx.store.load_recorded().rejections
    ctx.store.forget_rejections(backoff.settled(recorded, plan, ctx.spec.policy))


def record_plan_run(ctx: Context, plan: Plan, kind: str = "plan") -> str:
    """A plan is a run too (no steps), so history shows every preview."""
    run_id = ctx.store.start_run(kind, plan.digest)
    outcome = "unavailable" if plan.unavailable else "planned"
    ctx.store.finish_run(run_id, outcome, plan.count(), plan.unavailable)
    log.info("run_finished", run_id=run_id, kind=kind, outcome=outcome, **plan.count())
    return run_id

