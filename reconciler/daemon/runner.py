"""One guarded daemon run: lease, gather, plan, guards, apply, and what an outage means.

The scheduler calls `Runner.run` for the whole spec (`resources=None`) or for one resource.
A run never raises: whatever happens is recorded in the state database when it can be, logged,
and turned into a backoff when something is down, so the daemon itself never stops on it.

Between runs the daemon holds no lease. Each run tries to take it once, without waiting; when
another process holds it the run is skipped. That is how several daemons on one state database
stay available while exactly one of them applies at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import structlog

from reconciler.adapters.crm.source import CrmUnavailable
from reconciler.adapters.state import queries
from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.app.lead_plan import prepare_lead_state
from reconciler.config.settings import RESOURCES, DaemonSettings
from reconciler.config.spec import Spec
from reconciler.core.plan import GuardBreach
from reconciler.daemon.heartbeat import Heartbeat
from reconciler.daemon.metrics import Stats
from reconciler.daemon.outage import OUTAGE_KNOWN, Backoff, OutageWatch, one_line
from reconciler.errors import DialerUnavailable, LeaseLost, StateError

log = structlog.get_logger()


def restrict_spec(spec: Spec, only: frozenset[str]) -> Spec:
    """The spec with every resource but `only` removed, so the engine plans just those.

    The engine plans every resource of its spec in one go; a per-resource schedule is the same
    engine on a narrower spec. Written against the dataclass fields, so a resource the spec
    gains later (and its `manage_<name>` policy flag, where there is one) is covered too.
    """
    spec_fields = {f.name for f in fields(spec)}
    policy_fields = {f.name for f in fields(spec.policy)}
    dropped = [name for name in RESOURCES if name not in only]
    flags: dict[str, Any] = {f"manage_{name}": False for name in dropped
                             if f"manage_{name}" in policy_fields}
    removed: dict[str, Any] = {name: None for name in dropped if name in spec_fields}
    return replace(spec, policy=replace(spec.policy, **flags), **removed)


def run_kind(resources: frozenset[str] | None) -> str:
    """How the run is named in the run log: `daemon`, or `daemon-<resource>`."""
    return "daemon" if resources is None else "daemon-" + "-".join(sorted(resources))


class Runner:
    def __init__(self, ctx: Context, settings: DaemonSettings, stopping: threading.Event,
                 stats: Stats, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx, self.stopping, self.stats, self._clock = ctx, stopping, stats, clock
        self.target = ctx.settings.dialer.target
        self.lease = Lease(ctx.store.engine, queries.lease_name(self.target),
                           ttl_seconds=settings.lease_ttl)
        self.outage = OutageWatch(Backoff(settings.backoff_base, settings.backoff_max), clock)
        self._ttl = settings.lease_ttl
        self._heartbeat: Heartbeat | None = None
        self._one_at_a_time = threading.Lock()
        self._waiting_on: str | None = None   # the other holder we last said we wait for
        self.holding = False
        self._started = 0.0                   # when the current run started, on `clock`

    def run(self, resources: frozenset[str] | None = None) -> str:
        """One scheduled or triggered run; returns a word for what happened (for tests)."""
        kind = run_kind(resources)
        if self.stopping.is_set():
            return "stopping"
        if not self.outage.ready():
            log.debug("run_skipped_backoff", kind=kind,
                      retry_in_s=round(self.outage.retry_in(), 3))
            self.stats.run_skipped("backoff")
            return "backoff"
        # The scheduler's single worker thread already runs one job at a time; the lock keeps
        # that true for any other caller, whose runs would otherwise share one lease owner.
        with self._one_at_a_time:
            self._started = self._clock()
            known = OUTAGE_KNOWN.set(self.outage.kind is not None)
            try:
                return self._run_leased(kind, resources)
            except LeaseLost as lost:
                # Another process applies now: not an outage, nothing to back off from.
                log.error("lease_lost", kind=kind, reason=str(lost))
                self._finished(kind, "lease_lost")
                return "lease_lost"
            except StateError as exc:
                self.outage.failed("state", one_line(exc))
                self._finished(kind, "unavailable")
                return "unavailable"
            except CrmUnavailable as exc:
                # The CRM failed while leads were read for sending (the engine recorded the
                # run as failed); a failure while planning is recorded by `_run`.
                self.outage.failed("crm", f"CRM unavailable: {exc}")
                self._finished(kind, "unavailable")
                return "unavailable"
            except DialerUnavailable as exc:
                # Raised past the engine (a read outside `observe`): the dialer is away all
                # the same, and the run could not be recorded as one.
                self.outage.failed("dialer", str(exc))
                self._finished(kind, "unavailable")
                return "unavailable"
            except Exception:
                # A bug, not an outage: loud every time, yet never a busy loop.
                log.exception("run_crashed", kind=kind,
                              retry_in_s=round(self.outage.backoff_only(), 3))
                self._finished(kind, "crashed")
                return "crashed"
            finally:
                OUTAGE_KNOWN.reset(known)

    def _run_leased(self, kind: str, resources: frozenset[str] | None) -> str:
        if not self.lease.try_acquire():
            self._skip_lock_held(kind)
            return "lock_held"
        if self._waiting_on is not None:
            log.info("lease_taken", kind=kind, after=self._waiting_on)
            self._waiting_on = None
        self.holding = True
        try:
            with Heartbeat(self.lease, self._ttl) as self._heartbeat:
                return self._run(kind, resources)
        finally:
            self.holding, self._heartbeat = False, None
            try:
                self.lease.release()
            except StateError as exc:
                log.warning("lease_release_failed", error=one_line(exc),
                            note="it expires by itself")

    def _skip_lock_held(self, kind: str) -> None:
        held = self.lease.holder()
        owner = str(held["owner"]) if held else "(released meanwhile)"
        if owner != self._waiting_on:
            log.info("run_skipped_lock_held", kind=kind, holder=owner,
                     until=str(held["expires_at"]) if held else None)
            self._waiting_on = owner
        else:
            log.debug("run_skipped_lock_held", kind=kind, holder=owner)
        self.stats.run_skipped("lock_held")

    def _run(self, kind: str, resources: frozenset[str] | None) -> str:
        # The writes that come before a send are fenced by this run's lease.
        ctx = replace(self.ctx, store=self.ctx.store.fenced(self.lease.fence, self.lease.owner))
        if resources is not None:
            ctx = replace(ctx, spec=restrict_spec(ctx.spec, resources))
        try:
            prepare_lead_state(ctx)
            gathered = gather_and_plan(ctx)
        except CrmUnavailable as exc:
            return self._unavailable(kind, "crm", f"CRM unavailable: {exc}")
        plan = gathered.plan
        if plan.unavailable:
            return self._unavailable(kind, "dialer", plan.unavailable, plan.digest)
        if not self._keep_going():
            return "stopping"             # planned, nothing applied: nothing to record
        if plan.breaches:
            return self._refused(kind, plan.breaches, plan.count(), plan.digest)
        report = apply_plan(ctx, gathered, kind=kind, keep_going=self._keep_going)
        self._finished(kind, report.outcome, queries.step_counts(ctx.store.engine, report.run_id))
        if report.outcome == "failed":
            # The executor stops a run as "failed" only when the dialer could not be used.
            self.outage.failed("dialer", report.message)
        elif report.outcome != "lease_lost":
            self.outage.succeeded()
        return report.outcome

    def _unavailable(self, kind: str, part: str, reason: str, digest: str | None = None) -> str:
        self._record(kind, "unavailable", {}, reason, digest)
        self.outage.failed(part, reason)
        return "unavailable"

    def _refused(self, kind: str, breaches: tuple[GuardBreach, ...], counts: dict[str, int],
                 digest: str) -> str:
        reasons = "; ".join(b.message for b in breaches)
        message = (f"refused by safety guards: {reasons}. The daemon never forces: review "
                   f"`reconciler plan`, then `reconciler apply --force` if it is intended")
        run_id = self._record(kind, "refused", counts, message, digest)
        log.warning("run_refused", kind=kind, run_id=run_id, reasons=reasons)
        # Both the CRM and the dialer answered: whatever outage there was is over.
        self.outage.succeeded()
        return "refused"

    def _record(self, kind: str, outcome: str, counts: dict[str, int], message: str,
                digest: str | None) -> str:
        """A run that applied nothing is still a run: `status` and `history` show it."""
        owned = StateStore(self.ctx.store.engine, self.target, owner=self.lease.owner)
        run_id = owned.start_run(kind, digest)
        owned.finish_run(run_id, outcome, counts, message)
        self._finished(kind, outcome)
        return run_id

    def _finished(self, kind: str, outcome: str,
                  steps: dict[tuple[str, str], int] | None = None) -> None:
        self.stats.run_finished(kind, outcome, self._clock() - self._started, steps)

    def _keep_going(self) -> bool:
        """Asked by the executor after every recorded step: False on a stop request; raises
        LeaseLost when the heartbeat found the lease is not ours any more."""
        if self._heartbeat is not None:
            self._heartbeat.check()
        return not self.stopping.is_set()
