"""The daemon's clock: APScheduler 3's BlockingScheduler, one job per schedule.

Jobs:

- `all`: the whole spec, on `[daemon]`'s interval or cron line; an interval job also runs as
  soon as the daemon starts;
- `<resource>`: that resource alone, for each `[daemon.schedules.<resource>]`;
- `trigger-<kind>`: a one-off run asked for through POST /trigger.

Every job runs on one worker thread, so the runs of one process never overlap: a fire that
comes while another job's run is busy waits for it, and a fire of a job that is still running
is dropped (max_instances=1, coalesce), so a slow run never piles up behind itself. The
misfire grace time drops fires that could not start in time at all (a suspended machine).

SIGTERM and SIGINT set the stop flag (the executor stops after the step it is in, which is
recorded), then shut the scheduler down from a helper thread, waiting for the run to end: a
signal handler must not block, nor take locks the interrupted main thread may hold.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from types import FrameType
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from reconciler.app.engine import Context
from reconciler.config.settings import DaemonSettings, Schedule
from reconciler.config.spec import spec_resources
from reconciler.daemon.metrics import DaemonStatus, Stats, register_scrape_metrics
from reconciler.daemon.runner import Runner, run_kind

log = structlog.get_logger()

WHOLE_SPEC = "all"


def make_trigger(schedule: Schedule) -> BaseTrigger:
    jitter = schedule.jitter or None
    if schedule.cron:
        trigger: BaseTrigger = CronTrigger.from_crontab(schedule.cron)
        trigger.jitter = jitter          # from_crontab takes no jitter argument
        return trigger
    return IntervalTrigger(seconds=schedule.interval, jitter=jitter)


class _ToStructlog(logging.Handler):
    """APScheduler logs through the standard library; its errors join our structured log."""

    def emit(self, record: logging.LogRecord) -> None:
        log.error("scheduler_error", message=record.getMessage(), logger=record.name)


def _quiet_apscheduler() -> None:
    # Its INFO/WARNING lines ("Running job", "was missed by") would bypass our log format;
    # the events below say the same as structured events.
    aps = logging.getLogger("apscheduler")
    aps.setLevel(logging.ERROR)
    aps.propagate = False
    if not any(isinstance(h, _ToStructlog) for h in aps.handlers):
        aps.addHandler(_ToStructlog())


class Daemon:
    """`ctx` and each of `more`: one dialer target, with a runner (and write lease) of its own.

    With several targets every job runs once per target, named `<target>:<job>`; the targets'
    runs may overlap (one worker thread each), the runs of one target never do.
    """

    def __init__(self, ctx: Context, settings: DaemonSettings,
                 more: Sequence[Context] = ()) -> None:
        self.ctx, self.settings = ctx, settings
        self.target = ctx.settings.dialer.target
        self.stopping = threading.Event()
        # A registry of its own: nothing of the library's global one is served or shared.
        self.registry = CollectorRegistry()
        self.stats = Stats(self.target, self.registry)
        self.runner = Runner(ctx, settings, self.stopping, self.stats)
        self.runners = {self.target: self.runner}
        for other in more:
            name = other.settings.dialer.target
            self.runners[name] = Runner(other, settings, self.stopping,
                                        Stats(name, shared=self.stats))
        self.resources = spec_resources(ctx.spec)
        self.started_at = datetime.now(UTC)
        register_scrape_metrics(self.registry, ctx.store.engine, self.target, self.status,
                                {name: partial(self._status_of, runner)
                                 for name, runner in self.runners.items()
                                 if runner is not self.runner})
        self._stop_reason: str | None = None
        self._shutdown_thread: threading.Thread | None = None
        _quiet_apscheduler()
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(self.runners))},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, round(settings.misfire_grace_time)),
            },
        )
        self.scheduler.add_listener(
            self._on_event, EVENT_SCHEDULER_STARTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._add_jobs()

    def status(self) -> DaemonStatus:
        return self._status_of(self.runner)

    def _status_of(self, runner: Runner) -> DaemonStatus:
        return DaemonStatus(outage=runner.outage.kind, holding_lease=runner.holding,
                            started_at=self.started_at)

    def _job_id(self, target: str, job: str) -> str:
        return job if len(self.runners) == 1 else f"{target}:{job}"

    def schedules(self) -> dict[str, str]:
        """Job -> its schedule in words, for the start-up log line."""
        shown = {WHOLE_SPEC: self.settings.schedule.describe()}
        shown.update({s.resource: s.schedule.describe() for s in self.settings.schedules})
        return shown

    def _add_jobs(self) -> None:
        whole = self.settings.schedule
        # An interval job also runs at once, so a (re)started daemon catches up immediately;
        # a cron line is kept to the letter (it may mean "only at night").
        first: dict[str, Any] = {} if whole.cron else {"next_run_time": datetime.now(UTC)}
        for target, runner in self.runners.items():
            self.scheduler.add_job(runner.run, make_trigger(whole), args=[None],
                                   id=self._job_id(target, WHOLE_SPEC), name="daemon", **first)
            for entry in self.settings.schedules:
                only = frozenset({entry.resource})
                self.scheduler.add_job(runner.run, make_trigger(entry.schedule), args=[only],
                                       id=self._job_id(target, entry.resource),
                                       name=run_kind(only))

    def trigger(self, resource: str | None) -> str:
        """Queue an immediate run of one resource (None or "all": the whole spec).

        Returns the run's kind; ValueError when the spec declares no such resource. A trigger
        that comes while the same triggered run is still waiting or running is dropped: that
        run, or the next scheduled one, picks the change up.
        """
        if resource in (None, "", WHOLE_SPEC):
            only = None
        elif resource in self.resources:
            only = frozenset({resource})
        else:
            known = ", ".join(sorted({WHOLE_SPEC, *self.resources}))
            raise ValueError(f"unknown resource {resource!r}: one of {known}")
        kind = run_kind(only)
        for target, runner in self.runners.items():
            self.scheduler.add_job(runner.run, args=[only],
                                   id=self._job_id(target, f"trigger-{kind}"),
                                   name=f"triggered {kind}", replace_existing=True)
        log.info("run_triggered", kind=kind)
        return kind

    # --- running and stopping -----------------------------------------------------------------

    def run_until_stopped(self) -> None:
        """Block, running jobs, until SIGTERM or SIGINT (or `request_stop`)."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if not self.stopping.is_set():
                self.scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._shutdown_thread is not None:
                self._shutdown_thread.join()

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)

    def request_stop(self, reason: str) -> None:
        self.stopping.set()
        if self._stop_reason is None:
            self._stop_reason = reason
        if self.scheduler.running and self._shutdown_thread is None:
            self._shutdown_thread = threading.Thread(target=self._shutdown,
                                                     name="daemon-shutdown")
            self._shutdown_thread.start()

    def _shutdown(self) -> None:
        log.info("daemon_stopping", reason=self._stop_reason,
                 run_in_progress=any(r.holding for r in self.runners.values()))
        with contextlib.suppress(SchedulerNotRunningError):
            self.scheduler.shutdown(wait=True)

    def _on_event(self, event: SchedulerEvent) -> None:
        if event.code == EVENT_SCHEDULER_STARTED:
            if self.stopping.is_set():      # a signal came before the scheduler was running
                self.request_stop(self._stop_reason or "stop requested")
        elif isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_MAX_INSTANCES:
            log.debug("run_skipped_still_running", job=event.job_id)
            self.stats.run_skipped("still_running")
        elif event.code == EVENT_JOB_MISSED:
            log.info("run_missed", job=getattr(event, "job_id", None),
                     scheduled=str(getattr(event, "scheduled_run_time", "")))
            self.stats.run_skipped("missed")
