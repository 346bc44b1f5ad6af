"""Send lead batches exactly once: intent committed, batch sent, each lead's outcome committed.

The executor hands each of the plan's AddLeads ops here, in plan order, as one step of the run.
The batch is the one the plan's merge made, read back from where the plan kept it
(apply/leads_spill.py; or, for a plan kept without its batches, from the same merge run again);
it must carry the keys the plan promised, or sending stops. A batch so made was checked and
JSON-encoded when planned, and is sent as encoded. A batch whose answer is lost stays in doubt and
stops the run: the dialer is not answering, and nothing is ever resent blindly.

The bookkeeping is done while the dialer works on the next batch (at most one request in
flight, on a thread of its own; every write to the state database from the calling thread):
while batch N is on its way, the leads' rows and the step of N-1 are written and N+1 is read
and its intent committed, `queued`. Just before N+1 leaves, one transaction commits N's answer
(kept whole on its batch's row, one write) and marks N+1 `pending`; so a process killed at any
instant leaves one batch at most in doubt, as before, and an answer kept but not yet written
lead by lead is written by the next run before it plans. A run that stops forgets the intent
committed ahead (its leads are planned again).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.adapters.state.leads import QUEUED, LeadBook, LeadResult
from reconciler.apply.executor import RunReport
from reconciler.core.leads.merge import LeadBatch, LeadEvent
from reconciler.core.plan import AddLeads
from reconciler.core.ports import DialerPort, lacking
from reconciler.core.replies import LeadOutcome
from reconciler.errors import (
    DialerError,
    DialerInDoubt,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    FieldInvalid,
    LeaseLost,
)

log = structlog.get_logger()

Progress = Callable[[int], None]
CHANGED_SINCE_PLAN = ("the CRM's leads changed since the plan was made; nothing more sent, "
                      "plan again")


class LeadSender:
    """The executor's lead-sending collaborator (`executor.LeadSending`): add_multi_lead."""

    intent_status = "pending"          # a batch sent whole: each of its leads may be sent
    # The executor's, given with the first batch.
    report: RunReport
    keep_going: Callable[[], bool]

    def __init__(self, client: DialerPort, book: LeadBook, run_id: str,
                 merge: Callable[[], Iterable[LeadEvent]], *,
                 progress: Callable[[], AbstractContextManager[Progress]] | None = None,
                 read_ahead: bool = False) -> None:
        self.client, self.book, self.run_id = client, book, run_id
        # Read the next batch on a thread of its own while one is sent: for batches read back
        # from a file, not for a merge over database connections made on this thread.
        self.read_ahead = read_ahead
        # The planned batches (or the lead merge), started at the first batch: after the steps
        # before it are recorded (a settle_leads step changes what a merge reads from the state).
        self.merge = merge
        self.open_progress = progress or (lambda: nullcontext(lambda sent: None))
        self.blocked_lists: dict[str, str] = {}      # list_id -> why it could not be created
        self.progress: Progress = lambda sent: None
        self.seq = 0                                  # the current step's (report.next_seq())
        self._batches: Iterator[LeadBatch] | None = None
        self._failures_seen = 0
        self._resources = ExitStack()
        self._wire_pool: ThreadPoolExecutor | None = None   # sends one batch at a time
        # Read while the batch before it was on its way, and its intent committed (`queued`)
        # unless its list was blocked.
        self._ahead: LeadBatch | None = None
        self._ahead_intent: str | None = None
        # The last batch sent, answered: its outcome and step not yet recorded.
        self._answered: _Answered | None = None

    def send(self, op: AddLeads, report: RunReport, keep_going: Callable[[], bool]) -> bool:
        """Send the batch `op` promised as one step. Returns True when the run must stop (the
        report says why). Asks `keep_going` once the batch is read and checked, before sending:
        reading it (from the CRM, without a kept plan) may take a while."""
        if self._batches is None:
            self._start(report, keep_going)
        batch = self._next_batch()
        if batch is None:          # the CRM holds fewer leads to send than planned: done
            return False
        if op.key != f"{batch.list_id}/{batch.seq}" or op.keys != batch.keys:
            self._settle()
            return not self._stop("failed", CHANGED_SINCE_PLAN)
        if not report.go_on(keep_going):
            self._settle()
            return True
        self._block_lists_failed_since()
        return not self._send(batch)

    def finish(self, report: RunReport) -> None:
        """After the plan's last step: a batch the plan did not promise stops the run."""
        self._settle()
        if self._batches is not None and self._next_batch() is not None:
            self._stop("failed", CHANGED_SINCE_PLAN)

    def close(self) -> None:
        """Record what is still held back, then end what the first batch started: the CRM and
        state streams (closed now, while their databases are still open, not whenever the
        collector finds them) and the progress."""
        try:
            self._settle()
        finally:
            self._resources.close()

    def _start(self, report: RunReport, keep_going: Callable[[], bool]) -> None:
        self.report, self.keep_going = report, keep_going
        self.progress = self._resources.enter_context(self.open_progress())
        events = self.merge()
        if isinstance(events, Generator):
            self._resources.callback(events.close)
        batches = (e for e in events if isinstance(e, LeadBatch))
        if self.read_ahead:
            batches = _read_ahead(batches)
            self._resources.callback(batches.close)    # first: waits for the read under way
        self._batches = batches

    def _block_lists_failed_since(self) -> None:
        """Lists whose add_list failed in this run: their leads wait for a later run."""
        failures = self.report.failures
        self.blocked_lists.update({key: message for op, key, message
                                   in failures[self._failures_seen:] if op == "add_list"})
        self._failures_seen = len(failures)

    def _begin(self, batch: LeadBatch) -> tuple[float, str | None]:
        """Start a batch's step: skip it if its list is missing, else commit its intent.

        Returns when it started, and the batch id (None when skipped).
        """
        self.seq = self.report.next_seq()
        started = time.monotonic()
        blocked = self.blocked_lists.get(batch.list_id)
        if blocked is not None:
            self._step(batch, "skipped", f"list {batch.list_id} is not on the dialer: {blocked}",
                       started)
            return started, None
        return started, self.book.record_intent(self.run_id, batch.list_id, batch.items,
                                                self.intent_status)

    def _send(self, batch: LeadBatch) -> bool:
        """Send one batch. Returns False when the run must stop."""
        intent, self._ahead_intent = self._ahead_intent, None
        kept = False        # the answer held back, kept on its batch's row by the mark below
        if intent is None or batch.list_id in self.blocked_lists:
            self._settle()                  # the batch before it is recorded first
            if intent is not None:          # its list's add_list failed since
                self.book.forget_unsent(intent, f"list {batch.list_id} is not on the dialer")
            started, batch_id = self._begin(batch)
            if batch_id is None:
                return True
        else:
            self.seq, started, batch_id = self.report.next_seq(), time.monotonic(), intent
            kept = self._mark_sending(batch_id)
        answered, self._answered = self._answered, None
        in_flight = self._wire().submit(contextvars.copy_context().run, self._exchange, batch)
        try:
            if answered is not None:
                try:
                    if kept:     # the answer was kept on its batch's row: now its leads' rows
                        self.book.write_answer(answered.batch_id, answered.results)
                finally:         # its step, whatever comes of that (the answer is recorded)
                    self._answered_step(answered)
            self._read_ahead_intent()
        except BaseException:
            # The batch on its way is recorded all the same, its answer in hand.
            self._record(batch, batch_id, started, in_flight.result())
            raise
        answer = in_flight.result()
        if isinstance(answer, DialerError) or self._ahead is None:
            # Recorded now: a failure may stop the run, and the last batch has none to follow.
            return self._record(batch, batch_id, started, answer)
        self._answered = _Answered(batch, batch_id, self.seq, started, answer)
        return True

    def _mark_sending(self, batch_id: str) -> bool:
        """Just before a batch whose intent was committed ahead leaves: commit the answer held
        back with it (so a crash leaves that one answered), and mark it `pending`. Returns
        whether that answer was kept on its batch's row (LeadBook.record_outcome)."""
        answered = self._answered
        try:
            if answered is None:
                self.book.record_sending(batch_id)
                return False
            return self.book.record_outcome(answered.batch_id, answered.results,
                                            _state(answered.results), sending=batch_id)
        except LeaseLost:       # nothing more may go out; the answer is recorded all the same
            self._answered = None
            self.book.forget_unsent(batch_id, "the write lease was lost before it was sent")
            if answered is not None:
                self._answered_step(answered)       # and its step: LeaseLost once recorded
            raise

    def _exchange(self, batch: LeadBatch) -> list[LeadResult] | DialerError:
        """On the wire thread: the batch's request and answer, read into each lead's result."""
        try:
            sender = self.client.lead_batch_sender
            if sender is None:
                raise lacking("add_multi_lead")
            if batch.multi_leads:     # checked and encoded when planned: sent as it is
                outcomes = sender.add_multi_lead_encoded(batch.multi_leads, len(batch.items))
            else:
                outcomes = sender.add_multi_lead([fields for _, fields, _ in batch.items])
        except DialerError as exc:
            return exc
        return [_result(key, outcome)
                for (key, _, _), outcome in zip(batch.items, outcomes, strict=True)]

    def _record(self, batch: LeadBatch, batch_id: str, started: float,
                answer: list[LeadResult] | DialerError) -> bool:
        """Record a batch's answer and its step. Returns False when the run must stop (the
        intent committed ahead is then forgotten)."""
        go_on = self._record_answer(batch, batch_id, started, answer)
        if not go_on:
            self._forget_ahead()
        return go_on

    def _record_answer(self, batch: LeadBatch, batch_id: str, started: float,
                       answer: list[LeadResult] | DialerError) -> bool:
        match answer:
            case list():
                self.book.record_outcome(batch_id, answer, _state(answer))
                self._step(batch, *_summary(batch_id, answer), started)
                self.progress(len(answer))
                return True
            case DialerInDoubt():
                self.book.record_outcome(batch_id, [LeadResult(k, "in_doubt") for k in batch.keys],
                                         "in_doubt", str(answer))
                self._step(batch, "in_doubt", f"batch {batch_id}: {answer}", started)
                return self._stop("failed", f"dialer unavailable: {answer}")
            case FieldInvalid() | DialerRefused() | DialerUnavailable():
                # Nothing reached the dialer (checked before sending, refused, never connected).
                self.book.forget_unsent(batch_id, str(answer))
                rejected = isinstance(answer, FieldInvalid)
                self._step(batch, "rejected" if rejected else "failed", str(answer), started)
                if rejected:
                    return True
                if isinstance(answer, DialerRefused):
                    return self._stop("refused", f"stopped: {answer}")
                return self._stop("failed", f"dialer unavailable: {answer}")
            case DialerRejected():
                # The whole request was refused: no lead was created.
                results = [LeadResult(k, "rejected", message=str(answer)) for k in batch.keys]
                self.book.record_outcome(batch_id, results, "answered", str(answer))
                self._step(batch, "rejected", str(answer), started)
                return True
            case _:
                self.book.record_outcome(batch_id, [LeadResult(k, "in_doubt") for k in batch.keys],
                                         "in_doubt", str(answer))
                self._step(batch, "in_doubt", str(answer), started)
                return self._stop("failed", str(answer))

    def _read_ahead_intent(self) -> None:
        """While a batch is on its way: read the next, and commit its intent unless its list is
        blocked. `queued`: a process that dies before it leaves has sent none of its leads."""
        assert self._batches is not None
        self._ahead = next(self._batches, None)
        if self._ahead is not None and self._ahead.list_id not in self.blocked_lists:
            self._ahead_intent = self.book.record_intent(
                self.run_id, self._ahead.list_id, self._ahead.items, QUEUED)

    def _next_batch(self) -> LeadBatch | None:
        if self._ahead is not None:
            batch, self._ahead = self._ahead, None
            return batch
        assert self._batches is not None
        return next(self._batches, None)

    def _settle(self) -> None:
        """Before a step sent otherwise, or a stop: record the answer held back, and forget an
        intent committed ahead (its batch is not sent next)."""
        answered, self._answered = self._answered, None
        if answered is not None:
            self.book.record_outcome(answered.batch_id, answered.results,
                                     _state(answered.results))
            self._answered_step(answered)
        self._forget_ahead()

    def _answered_step(self, answered: _Answered) -> None:
        self._step(answered.batch, *_summary(answered.batch_id, answered.results),
                   answered.started, seq=answered.seq)
        self.progress(len(answered.results))

    def _forget_ahead(self) -> None:
        intent, self._ahead_intent = self._ahead_intent, None
        if intent is not None:
            self.book.forget_unsent(intent, "the run stopped before it was sent")

    def _wire(self) -> ThreadPoolExecutor:
        if self._wire_pool is None:
            self._wire_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-send")
            self._resources.callback(self._wire_pool.shutdown, wait=True)
        return self._wire_pool

    def _step(self, batch: LeadBatch, outcome: str, message: str, started: float,
              seq: int | None = None) -> None:
        """Record a batch's step: numbered `seq`, or the current step's number."""
        key = f"{batch.list_id}/{batch.seq}"
        duration_ms = int((time.monotonic() - started) * 1000)
        step = (self.run_id, self.seq if seq is None else seq, "add_leads", key, outcome, message,
                duration_ms)
        lost: LeaseLost | None = None
        try:
            self.book.store.commit_step(*step)
        except LeaseLost as exc:
            # A record of what came of the batch, and nothing is sent after it (the run stops on
            # LeaseLost): written all the same, as its leads' outcomes were, so the run shows it.
            lost = exc
            self.book.store.commit_step(*step, fenced=False)
        self.report.count(f"lead_batches_{outcome}")
        fields: dict[str, Any] = {"op": "add_leads", "key": key, "outcome": outcome,
                                  "leads": len(batch.items), "run_id": self.run_id,
                                  "duration_ms": duration_ms}
        if outcome in ("sent", "partial"):
            log.info("step_applied", **fields, message=message)
        else:
            self.report.failures.append(("add_leads", key, message))
            log.warning("step_failed", **fields, message=message)
        if lost is not None:
            raise lost

    def _stop(self, outcome: str, message: str) -> bool:
        self.report.outcome = outcome
        self.report.message = message
        return False


def _read_ahead(batches: Iterator[LeadBatch]) -> Generator[LeadBatch, None, None]:
    """`batches`, each read while the one before it is being sent: one read in progress, at
    most one batch waiting, so memory holds two batches at most."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-read-ahead") as pool:
        ahead = pool.submit(next, batches, None)
        while (batch := ahead.result()) is not None:
            ahead = pool.submit(next, batches, None)
            yield batch


def _result(key: str, outcome: LeadOutcome) -> LeadResult:
    if outcome.success:
        return LeadResult(key, "sent", outcome.lead_id)
    return LeadResult(key, "rejected" if outcome.success is False else "in_doubt", None,
                      outcome.message)


@dataclass(frozen=True)
class _Answered:
    batch: LeadBatch
    batch_id: str
    seq: int
    started: float
    results: list[LeadResult]


def _state(results: list[LeadResult]) -> str:
    return "in_doubt" if any(r.status == "in_doubt" for r in results) else "answered"


def _summary(batch_id: str, results: list[LeadResult]) -> tuple[str, str]:
    """A batch's step outcome and message, from its leads' results."""
    sent = sum(r.status == "sent" for r in results)
    doubtful = sum(r.status == "in_doubt" for r in results)
    rejected = len(results) - sent - doubtful
    outcome = "sent" if sent == len(results) else ("partial" if sent else "rejected")
    return outcome, f"{sent} sent, {rejected} rejected by the dialer" + (
        f", {doubtful} in doubt (batch {batch_id})" if doubtful else "")
