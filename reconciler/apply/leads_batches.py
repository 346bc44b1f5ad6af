"""Send lead batches exactly once: intent committed, batch sent, each lead's outcome committed.

The executor hands each of the plan's AddLeads ops here, in plan order, as one step of the run.
The batch is the one the plan's merge made, read back from where the plan kept it
(apply/leads_spill.py; or, for a plan kept without its batches, from the same merge run again);
it must carry the keys the plan promised, or sending stops. A batch so made was checked and
JSON-encoded when planned, and is sent as encoded. A batch whose answer is lost stays in doubt and
stops the run: the dialer is not answering, and nothing is ever resent blindly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import structlog

from reconciler.adapters.state.leads import LeadBook, LeadResult
from reconciler.apply.executor import RunReport
from reconciler.core.leads.merge import LeadBatch, LeadEvent
from reconciler.core.plan import AddLeads
from reconciler.core.ports import DialerPort, lacking
from reconciler.errors import (
    DialerError,
    DialerInDoubt,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    FieldInvalid,
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

    def send(self, op: AddLeads, report: RunReport, keep_going: Callable[[], bool]) -> bool:
        """Send the batch `op` promised as one step. Returns True when the run must stop (the
        report says why). Asks `keep_going` once the batch is read and checked, before sending:
        reading it (from the CRM, without a kept plan) may take a while."""
        if self._batches is None:
            self._start(report, keep_going)
        assert self._batches is not None
        batch = next(self._batches, None)
        if batch is None:          # the CRM holds fewer leads to send than planned: done
            return False
        if op.key != f"{batch.list_id}/{batch.seq}" or op.keys != batch.keys:
            return not self._stop("failed", CHANGED_SINCE_PLAN)
        if not report.go_on(keep_going):
            return True
        self._block_lists_failed_since()
        return not self._send(batch)

    def finish(self, report: RunReport) -> None:
        """After the plan's last step: a batch the plan did not promise stops the run."""
        if self._batches is not None and next(self._batches, None) is not None:
            self._stop("failed", CHANGED_SINCE_PLAN)

    def close(self) -> None:
        """End what the first batch started: the CRM and state streams (closed now, while their
        databases are still open, not whenever the collector finds them) and the progress."""
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
        started, batch_id = self._begin(batch)
        if batch_id is None:
            return True
        try:
            sender = self.client.lead_batch_sender
            if sender is None:
                raise lacking("add_multi_lead")
            if batch.multi_leads:     # checked and encoded when planned: sent as it is
                outcomes = sender.add_multi_lead_encoded(batch.multi_leads, len(batch.items))
            else:
                outcomes = sender.add_multi_lead([fields for _, fields, _ in batch.items])
        except DialerInDoubt as exc:
            self.book.record_outcome(batch_id, [LeadResult(k, "in_doubt") for k in batch.keys],
                                     "in_doubt", str(exc))
            self._step(batch, "in_doubt", f"batch {batch_id}: {exc}", started)
            return self._stop("failed", f"dialer unavailable: {exc}")
        except (FieldInvalid, DialerRefused, DialerUnavailable) as exc:
            # Nothing reached the dialer (checked before sending, refused, or never connected).
            self.book.forget_unsent(batch_id, str(exc))
            outcome = "rejected" if isinstance(exc, FieldInvalid) else "failed"
            self._step(batch, outcome, str(exc), started)
            if isinstance(exc, FieldInvalid):
                return True
            kind = "refused" if isinstance(exc, DialerRefused) else "failed"
            return self._stop(kind, f"{'stopped' if kind == 'refused' else 'dialer unavailable'}"
                                    f": {exc}")
        except DialerRejected as exc:
            # The whole request was refused: no lead was created.
            results = [LeadResult(k, "rejected", message=str(exc)) for k in batch.keys]
            self.book.record_outcome(batch_id, results, "answered", str(exc))
            self._step(batch, "rejected", str(exc), started)
            return True
        except DialerError as exc:
            self.book.record_outcome(batch_id, [LeadResult(k, "in_doubt") for k in batch.keys],
                                     "in_doubt", str(exc))
            self._step(batch, "in_doubt", str(exc), started)
            return self._stop("failed", str(exc))
        results = [_result(key, outcome) for (key, _, _), outcome in zip(batch.items, outcomes,
                                                                         strict=True)]
        doubtful = sum(r.status == "in_doubt" for r in results)
        self.book.record_outcome(batch_id, results, "in_doubt" if doubtful else "answered")
        sent = sum(r.status == "sent" for r in results)
        rejected = len(results) - sent - doubtful
        outcome = "sent" if sent == len(results) else ("partial" if sent else "rejected")
        message = f"{sent} sent, {rejected} rejected by the dialer" + (
            f", {doubtful} in doubt (batch {batch_id})" if doubtful else "")
        self._step(batch, outcome, message, started)
        self.progress(len(results))
        return True

    def _step(self, batch: LeadBatch, outcome: str, message: str, started: float) -> None:
        key = f"{batch.list_id}/{batch.seq}"
        duration_ms = int((time.monotonic() - started) * 1000)
        self.book.store.commit_step(self.run_id, self.seq, "add_leads", key, outcome, message,
                                    duration_ms)
        self.report.count(f"lead_batches_{outcome}")
        fields: dict[str, Any] = {"op": "add_leads", "key": key, "outcome": outcome,
                                  "leads": len(batch.items), "run_id": self.run_id,
                                  "duration_ms": duration_ms}
        if outcome in ("sent", "partial"):
            log.info("step_applied", **fields, message=message)
        else:
            self.report.failures.append(("add_leads", key, message))
            log.warning("step_failed", **fields, message=message)

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


def _result(key: str, outcome: Any) -> LeadResult:
    if outcome.success is None:
        return LeadResult(key, "in_doubt", message=outcome.message)
    if outcome.success:
        return LeadResult(key, "sent", outcome.lead_id)
    return LeadResult(key, "rejected", message=outcome.message)
