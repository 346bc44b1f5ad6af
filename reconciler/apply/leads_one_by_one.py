"""Send leads one by one (add_lead), exactly once per lead, a few calls in flight at once.

The merge still groups leads in batches, for the plan, progress and bookkeeping; a batch here is
sent lead by lead. Its intent (every lead `queued`) is committed before the first call. At most
`concurrency` leads are on their way at once, and each is marked `sending` before its request
leaves: one transaction records the answers just read and marks the leads that replace them.
So a process that dies leaves at most `concurrency` leads in doubt; the rest of its batch is
sent (recorded) or queued (never sent, planned again). Workers only call the dialer: every
write to the state database is made from the calling thread, one at a time.

A lead whose answer is lost is in doubt (never resent blindly) and stops the run after the calls
already in flight; leads not yet attempted are forgotten, so the next run plans them again. A
lead the dialer calls a duplicate is rejected with the dialer's message naming the lead already
there, unless a look-up shows that lead is this one (same list and vendor_lead_code): then it
was sent before, and is recorded as sent with that lead id.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from itertools import islice

from reconciler.adapters.state.leads import LeadBook, LeadResult
from reconciler.apply.executor import RunReport
from reconciler.apply.leads_batches import LeadSender, Progress
from reconciler.core.leads.merge import LeadBatch, LeadEvent
from reconciler.core.ports import DialerPort, lacking
from reconciler.core.vicidial_replies import DuplicateLead
from reconciler.errors import (
    DialerError,
    DialerInDoubt,
    DialerMalformed,
    DialerRefused,
    DialerRejected,
    DialerUnavailable,
    LeaseLost,
)

# A worker's answer: the lead's result (None: nothing reached the dialer) and, when the run
# must stop, (outcome, message).
Answer = tuple[LeadResult | None, tuple[str, str] | None]


class OneByOneSender(LeadSender):
    pool: ThreadPoolExecutor
    intent_status = "queued"           # not sent until marked `sending`, one by one

    def __init__(self, client: DialerPort, book: LeadBook, run_id: str,
                 merge: Callable[[], Iterable[LeadEvent]], *,
                 progress: Callable[[], AbstractContextManager[Progress]] | None = None,
                 concurrency: int = 4, duplicate_check: Sequence[str] = (),
                 read_ahead: bool = False) -> None:
        super().__init__(client, book, run_id, merge, progress=progress, read_ahead=read_ahead)
        sender = client.lead_sender
        if sender is None:
            raise lacking("add_lead")
        self.sender = sender
        self.finder = client.lead_finder        # settles a duplicate that is ours, when it can
        self.concurrency = concurrency
        self.duplicate_check = tuple(duplicate_check)

    def _start(self, report: RunReport, keep_going: Callable[[], bool]) -> None:
        super()._start(report, keep_going)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                       thread_name_prefix="add-lead")
        # Closed before the progress display: the calls in flight finish first.
        self._resources.callback(self.pool.shutdown, wait=True, cancel_futures=True)

    def _send(self, batch: LeadBatch) -> bool:
        started, batch_id = self._begin(batch)
        if batch_id is None:
            return True
        waiting = iter(batch.items)
        in_flight: dict[Future[Answer], str] = {}
        answered: list[LeadResult] = []
        counts: Counter[str] = Counter()
        unsent: list[str] = []
        halt: tuple[str, str] | None = None
        while True:
            starting = [] if halt else list(islice(waiting, self.concurrency - len(in_flight)))
            if answered or starting:
                try:
                    self.book.record_progress(batch_id, answered, [key for key, _, _ in starting])
                except LeaseLost as lost:           # nothing more may go out; keep the answers
                    self.book.record_progress(batch_id, answered, ())
                    halt, unsent = ("lease_lost", str(lost)), unsent + [k for k, _, _ in starting]
                    starting = []
                if answered:
                    self.progress(len(answered))
                answered = []
            for key, fields, _ in starting:
                in_flight[self.pool.submit(contextvars.copy_context().run, self._call, key,
                                           fields)] = key
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                key = in_flight.pop(future)
                result, problem = future.result()
                if result is None:
                    unsent.append(key)
                else:
                    answered.append(result)
                    counts[result.status] += 1
                if problem is not None and halt is None:
                    halt = problem
                if halt is None:
                    halt = self._ask_keep_going()
        unsent += [key for key, _, _ in waiting]       # never attempted: the run stopped
        message = self._summary(counts, len(unsent), batch_id)
        self.book.finish_batch(batch_id, unsent, "in_doubt" if counts["in_doubt"] else "answered",
                               halt[1] if halt else "")
        self._step(batch, self._outcome(counts, halt), message, started)
        if halt is not None:
            return self._stop(*halt)
        return True

    def _call(self, key: str, fields: Mapping[str, str]) -> Answer:
        try:
            reply = self.sender.add_lead(fields, duplicate_check=self.duplicate_check)
        except DuplicateLead as exc:
            return self._duplicate(key, fields, exc), None
        except (DialerInDoubt, DialerMalformed) as exc:
            # It may have landed: never resent blindly; a look-up settles it next run.
            return LeadResult(key, "in_doubt", message=str(exc)), ("failed",
                                                                 f"dialer unavailable: {exc}")
        except DialerRejected as exc:            # our checks, or the dialer's: this lead only
            return LeadResult(key, "rejected", message=str(exc)), None
        except DialerRefused as exc:
            return None, ("refused", f"stopped: {exc}")
        except DialerUnavailable as exc:         # never reached the dialer
            return None, ("failed", f"dialer unavailable: {exc}")
        except DialerError as exc:
            return LeadResult(key, "in_doubt", message=str(exc)), ("failed", str(exc))
        return LeadResult(key, "sent", reply.lead_id), None

    def _duplicate(self, key: str, fields: Mapping[str, str], exc: DuplicateLead) -> LeadResult:
        """Ours (sent before, same list and vendor_lead_code) is sent; anyone else's rejects."""
        code = fields.get("vendor_lead_code", "")
        if self.finder is not None and exc.lead_id and code:
            try:
                there = self.finder.lead_all_info(lead_id=exc.lead_id)
            except DialerError:
                there = ()
            if any(lead.vendor_lead_code == code and lead.list_id == fields.get("list_id")
                   for lead in there):
                return LeadResult(key, "sent", exc.lead_id,
                                  message="already on the dialer with this vendor_lead_code")
        return LeadResult(key, "rejected", message=str(exc))

    def _ask_keep_going(self) -> tuple[str, str] | None:
        """After each lead: why the batch must stop here (None: it goes on). Never raises: the
        leads already answered must still be recorded. With the lease lost, only leads of this
        batch, covered by its intent, can still be in flight; no later batch starts."""
        try:
            return None if self.keep_going() else ("stopped", "stopped on request")
        except LeaseLost as lost:
            return "lease_lost", str(lost)

    @staticmethod
    def _summary(counts: Counter[str], unsent: int, batch_id: str) -> str:
        parts = [f"{counts['sent']} sent", f"{counts['rejected']} rejected by the dialer"]
        if counts["in_doubt"]:
            parts.append(f"{counts['in_doubt']} in doubt (batch {batch_id})")
        if unsent:
            parts.append(f"{unsent} not attempted (sent next run)")
        return ", ".join(parts)

    @staticmethod
    def _outcome(counts: Counter[str], halt: tuple[str, str] | None) -> str:
        if counts["in_doubt"]:
            return "in_doubt"
        total = sum(counts.values())
        if counts["sent"] and counts["sent"] == total and halt is None:
            return "sent"
        if counts["sent"]:
            return "partial"
        return "failed" if halt is not None and halt[0] != "stopped" else "rejected"
