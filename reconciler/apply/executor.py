"""Apply a plan: one handler per op type, the state database committed after every step.

Answers are read as DESIGN.md says: add_user "already exists" converges with update_user;
update_user "does not exist" recreates with add_user; add_list "already exist" adopts. A
rejected row is recorded and the run goes on; no permission or an unreachable dialer stops it.
Lead batches (AddLeads) are steps like the others, sent by a lead-sending collaborator the
caller gives (add_multi_lead in batches, or add_lead one by one, as the dialect can).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from reconciler.adapters.state.dnc import DncBook
from reconciler.adapters.state.leads import LeadBook
from reconciler.adapters.state.store import ShadowEffect, StateStore, StepWriter
from reconciler.apply import leads_settle
from reconciler.apply.dnc_flags import flag_dnc
from reconciler.core.model import USER_FIELDS, Desired, DesiredUser
from reconciler.core.plan import (
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
from reconciler.core.planner import backoff
from reconciler.core.ports import DialerPort, lacking
from reconciler.errors import (
    AlreadyExists,
    DialerError,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    DoesNotExist,
    LeaseLost,
)

log = structlog.get_logger()


@dataclass(frozen=True)
class StepResult:
    outcome: str                 # created | updated | converged | recreated | adopted | ...
    message: str = ""
    effect: ShadowEffect | None = None


@dataclass
class RunReport:
    run_id: str
    outcome: str = "ok"          # ok | partial | failed | refused | stopped | lease_lost
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)   # op, key, message
    # The run's one step counter, shared by the executor and the lead senders: steps are
    # numbered 1, 2, 3 ... in the order they are taken, whatever their kind.
    last_seq: int = 0

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def go_on(self, keep_going: Callable[[], bool]) -> bool:
        """Ask, between two steps, whether the run goes on; when not, the report says why."""
        try:
            if keep_going():
                return True
            self.outcome, self.message = "stopped", "stopped on request"
        except LeaseLost as lost:
            self.lease_lost(lost)
        return False

    def lease_lost(self, lost: LeaseLost) -> None:
        self.outcome, self.message = "lease_lost", str(lost)


class LeadSending(Protocol):
    """Sends the plan's lead batches, each AddLeads op as one step (leads_batches.LeadSender)."""

    def send(self, op: AddLeads, report: RunReport, keep_going: Callable[[], bool]) -> bool:
        """Send the batch `op` promised, numbered by `report.next_seq()` and recorded like any
        step; ask `keep_going` (through `report.go_on`) before sending. Returns True when the
        run must stop, with the report saying why."""
        ...

    def finish(self, report: RunReport) -> None:
        """After the plan's last step, when the run was not stopped."""
        ...

    def close(self) -> None:
        """At the end of the run, whatever its outcome."""
        ...


# Takes one op's step: (op, report, whether it is the plan's first) -> True when the run stops.
Step = Callable[[Any, RunReport, bool], bool]


class Executor:
    def __init__(self, api: DialerPort, store: StateStore, desired: Desired,
                 run_id: str, keep_going: Callable[[], bool] | None = None,
                 owned_fields: tuple[str, ...] = USER_FIELDS,
                 leads: LeadSending | None = None) -> None:
        self.api, self.store, self.desired, self.run_id = api, store, desired, run_id
        self.owned_fields = owned_fields
        # Asked before every step but the first: False on a stop request; raises LeaseLost when
        # the lease is not ours any more.
        self.keep_going = keep_going or (lambda: True)
        self.leads = leads
        self._steps: dict[type[Any], Step] = {
            AddList: self._recorded(self._add_list),
            AdoptList: self._recorded(self._adopt_list),
            UpdateList: self._recorded(self._update_list),
            SettleLeads: self._recorded(self._settle_leads),
            AddLeads: self._add_leads,
            FlagDnc: self._recorded(self._flag_dnc),
            AddUser: self._recorded(self._add_user),
            UpdateUser: self._recorded(self._update_user),
            DeactivateUser: self._recorded(self._deactivate_user),
        }

    def apply(self, plan: Plan) -> RunReport:
        report = RunReport(self.run_id)
        try:
            self._take_steps(plan.ops, report)
        finally:
            if self.leads is not None:
                self.leads.close()
        if report.outcome == "ok" and report.failures:
            report.outcome = "partial"
        return report

    def _take_steps(self, ops: tuple[Op, ...], report: RunReport) -> None:
        for index, op in enumerate(ops):
            try:
                stop = self._steps[type(op)](op, report, index == 0)
            except LeaseLost as lost:        # the step's own record was refused
                report.lease_lost(lost)
                stop = True
            if stop:
                left = len(ops) - report.last_seq     # every step begun took one number
                report.message += f"; {left} later step(s) not attempted" if left else ""
                return
        if self.leads is not None:
            self.leads.finish(report)

    def _recorded(self, handler: Callable[[Any], StepResult]) -> Step:
        """The step of an op whose handler gives a StepResult, recorded by `_run_step`."""
        def step(op: Op, report: RunReport, first: bool) -> bool:
            # The run's start has just checked the lease: the first step goes without asking.
            if not first and not report.go_on(self.keep_going):
                return True
            return self._run_step(report.next_seq(), handler, op, report)
        return step

    def _run_step(self, seq: int, handler: Callable[[Any], StepResult], op: Op,
                  report: RunReport) -> bool:
        """Run one op and record it. Returns True when the run must stop."""
        started = time.monotonic()
        stop = False
        try:
            result = handler(op)
        except DialerRejected as exc:
            result = StepResult("rejected", str(exc))
        except DialerRefused as exc:
            result, stop = StepResult("refused", str(exc)), True
            report.outcome, report.message = "refused", f"stopped: {exc}"
        except DialerUnavailable as exc:
            result, stop = StepResult("failed", str(exc)), True
            report.outcome, report.message = "failed", f"dialer unavailable: {exc}"
        except DialerError as exc:
            result, stop = StepResult("failed", str(exc)), True
            report.outcome, report.message = "failed", str(exc)
        except MissingDesired as exc:
            result = StepResult("skipped", str(exc))
        result = self._remember_refusal(op, result)
        duration_ms = int((time.monotonic() - started) * 1000)
        self.store.commit_step(self.run_id, seq, op.kind, op.key, result.outcome,
                               result.message, duration_ms, result.effect)
        report.count(result.outcome)
        fields = {"op": op.kind, "key": op.key, "outcome": result.outcome,
                  "run_id": self.run_id, "duration_ms": duration_ms}
        if result.outcome in ("rejected", "refused", "failed", "skipped"):
            report.failures.append((op.kind, op.key, result.message))
            log.warning("step_failed", **fields, message=result.message)
        else:
            log.info("step_applied", **fields)
        return stop

    def _remember_refusal(self, op: Op, result: StepResult) -> StepResult:
        """A change the dialer refused is recorded with its CRM row's digest, so that plans hold
        it back until the row changes; a change that succeeds clears that record."""
        resource = backoff.RESOURCE_OF_OP.get(op.kind)
        if resource is None or result.outcome in ("refused", "failed", "skipped"):
            return result
        key, effect = op.key, result.effect
        digest = backoff.row_digest(self.desired, resource, key)

        def remember(w: StepWriter) -> None:
            if effect is not None:
                effect(w)
            if result.outcome == "rejected":
                w.record_rejection(resource, key, op.kind, digest, result.message)
            else:
                w.clear_rejection(resource, key)

        return replace(result, effect=remember)

    # --- lists --------------------------------------------------------------------------------

    def _add_list(self, op: AddList) -> StepResult:
        fields = {"list_name": op.list_name, "campaign_id": op.campaign_id, "active": op.active}
        try:
            self.api.add_list(op.list_id, op.list_name, op.campaign_id, op.active)
        except AlreadyExists:
            return StepResult("adopted", "already on the dialer",
                              lambda w: w.save_list(op.list_id, fields, "adopted"))
        return StepResult("created", "", lambda w: w.save_list(op.list_id, fields, "created"))

    def _adopt_list(self, op: AdoptList) -> StepResult:
        fields = {"list_name": op.list_name, "campaign_id": op.campaign_id, "active": op.active}
        return StepResult("adopted", op.reason,
                          lambda w: w.save_list(op.list_id, fields, "adopted"))

    def _update_list(self, op: UpdateList) -> StepResult:
        changes = {c.field: str(c.new) for c in op.changes}
        updater = self.api.list_updater     # planned only for a dialect that has update_list
        if updater is None:
            raise lacking("update_list")
        try:
            updater.update_list(op.list_id, **changes)
        except DoesNotExist:
            # Gone from the dialer since the plan (deleted by hand): create it again.
            want = self.desired.lists.get(op.list_id)
            if want is None:
                raise MissingDesired(f"list {op.list_id} is no longer in the CRM") from None
            f = want.fields
            self.api.add_list(op.list_id, f["list_name"], f["campaign_id"], f.get("active", "N"))
            return StepResult("recreated", "was missing on the dialer",
                              lambda w: w.save_list(op.list_id, dict(f), "created"))
        return StepResult("updated", op.reason,
                          lambda w: w.update_list_fields(op.list_id, changes, "adopted"))

    # --- leads --------------------------------------------------------------------------------

    def _add_leads(self, op: AddLeads, report: RunReport, first: bool) -> bool:
        """Delegated: the sender reads the batch the plan kept, checks it is the one the plan
        promised, then asks whether the run goes on, even as the run's first step (without a
        kept plan, that read is a merge over the CRM, and may take a while)."""
        if self.leads is None:     # no merge to read the batch from: none is sent
            log.warning("lead_batch_not_sent", key=op.key, run_id=self.run_id,
                        reason="no lead sender for this run")
            return False
        return self.leads.send(op, report, self.keep_going)

    def _settle_leads(self, op: SettleLeads) -> StepResult:
        changed = leads_settle.record(LeadBook(self.store), leads_settle.from_op(op))
        return StepResult("settled", f"{len(op.found)} found on the dialer, "
                                     f"{len(op.not_found)} not there ({changed} recorded)")

    def _flag_dnc(self, op: FlagDnc) -> StepResult:
        return StepResult(*flag_dnc(self.api, DncBook(self.store), self.run_id, op))

    # --- users --------------------------------------------------------------------------------

    def _add_user(self, op: AddUser) -> StepResult:
        want = self._desired_user(op.agent_user)
        try:
            self.api.add_user(agent_user=want.agent_user, **_creatable(want))
            outcome = "created"
        except AlreadyExists:
            # Already there (created by hand, or our earlier answer was lost): make what we own
            # match. Fields the spec does not own stay as the dialer has them.
            owned = {k: v for k, v in _creatable(want).items() if k in self.owned_fields}
            self.api.update_user(want.agent_user, **owned, active="Y")
            outcome = "converged"
        return StepResult(outcome, "", _save_whole(want, active="Y"))

    def _update_user(self, op: UpdateUser) -> StepResult:
        want = self._desired_user(op.agent_user)
        changes = {c.field: (want.secrets[c.field] if c.secret else str(c.new))
                   for c in op.changes}
        try:
            self.api.update_user(want.agent_user, **changes)
        except DoesNotExist:
            return self._recreate(want)
        plain = {k: v for k, v in changes.items() if k not in want.secrets}
        digests = {k: want.digests[k] for k in changes if k in want.secrets}
        return StepResult("updated", "",
                          lambda w: w.update_user_fields(want.agent_user, plain, digests))

    def _recreate(self, want: DesiredUser) -> StepResult:
        """The user vanished from the dialer (deleted by hand): create it again."""
        self.api.add_user(agent_user=want.agent_user, **_creatable(want))
        active = want.fields.get("active", "Y")
        if active == "N":
            self.api.update_user(want.agent_user, active="N")
        return StepResult("recreated", "was missing on the dialer",
                          _save_whole(want, active=active))

    def _deactivate_user(self, op: DeactivateUser) -> StepResult:
        try:
            self.api.update_user(op.agent_user, active="N")
        except DoesNotExist:
            # Recorded as inactive, so it is not asked again; reactivating it recreates it.
            return StepResult("absent", "not on the dialer",
                              lambda w: w.update_user_fields(op.agent_user, {"active": "N"}, {}))
        return StepResult(
            "deactivated", op.reason,
            lambda w: w.update_user_fields(op.agent_user, {"active": "N"}, {}),
        )

    def _desired_user(self, key: str) -> DesiredUser:
        try:
            return self.desired.users[key]
        except KeyError:
            raise MissingDesired(f"user {key} is no longer in the CRM") from None


class MissingDesired(Exception):
    """An op whose CRM row disappeared between plan and apply: skipped, planned again next run."""


def _creatable(want: DesiredUser) -> dict[str, str]:
    """Every field add_user takes: the plain fields but `active`, and the secrets."""
    plain = {k: v for k, v in want.fields.items() if k != "active"}
    return {**plain, **want.secrets}


def _save_whole(want: DesiredUser, active: str) -> Callable[[StepWriter], None]:
    fields: Mapping[str, str] = {**want.fields, "active": active}
    return lambda w: w.save_user(want.agent_user, fields, want.digests)
