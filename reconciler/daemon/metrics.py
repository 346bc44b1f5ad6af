"""What the daemon counts, served through prometheus_client from a registry of its own.

Counters and the run duration histogram (`Stats`) belong to this process, as Prometheus
expects, and start at zero when it starts. Gauges read from the state database (last success,
in-doubt batches, rejected rows) describe the dialer target, whichever daemon did the work, so
every daemon of a group sharing one state database reports the same values; a collector reads
them at scrape time, so every scrape is fresh.

Each daemon has its own CollectorRegistry, never the library's global one: two daemons in one
process (as in the tests) count apart. Every `reconciler_*` metric has a `target` label; label
values are that name, run kinds, ops, outcomes and reasons, never a URL, a user name or a secret.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from reconciler import __version__
from reconciler.adapters.state import queries
from reconciler.errors import StateError

# generate_latest writes the classic text format; CONTENT_TYPE_LATEST names a newer one.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# From a quick users-only run to a first send of millions of leads.
RUN_SECONDS_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                       float("inf"))
OUTAGE_PARTS = ("dialer", "crm", "state")


class Stats:
    """This daemon's counters and run durations: the runner writes them, a scrape reads them.

    prometheus_client's metrics are thread-safe: the scheduler's worker and the HTTP threads
    share them without a lock of ours.
    """

    _runs: Counter
    _steps: Counter
    _skipped: Counter
    _seconds: Histogram
    registry: CollectorRegistry

    def __init__(self, target: str, registry: CollectorRegistry | None = None,
                 shared: Stats | None = None) -> None:
        self.target = target
        if shared is not None:       # another target of the same daemon: the same metrics
            self.registry = shared.registry
            self._runs, self._steps = shared._runs, shared._steps
            self._skipped, self._seconds = shared._skipped, shared._seconds
            return
        self.registry = registry if registry is not None else CollectorRegistry()
        self._runs = Counter(
            "reconciler_runs_total", "Runs finished by this daemon, by kind and outcome.",
            ("target", "kind", "outcome"), registry=self.registry)
        self._steps = Counter(
            "reconciler_steps_total", "Steps applied by this daemon's runs, by op and outcome.",
            ("target", "op", "outcome"), registry=self.registry)
        self._skipped = Counter(
            "reconciler_runs_skipped_total",
            "Scheduled runs not started: lock_held, backoff, still_running or missed.",
            ("target", "reason"), registry=self.registry)
        self._seconds = Histogram(
            "reconciler_run_duration_seconds",
            "How long this daemon's finished runs took, by kind, in seconds.",
            ("target", "kind"), buckets=RUN_SECONDS_BUCKETS, registry=self.registry)

    def run_finished(self, kind: str, outcome: str, seconds: float,
                     steps: Mapping[tuple[str, str], int] | None = None) -> None:
        """A run counted in `runs_total` is always observed in the duration histogram too."""
        self._runs.labels(self.target, kind, outcome).inc()
        self._seconds.labels(self.target, kind).observe(seconds)
        for (op, step_outcome), n in (steps or {}).items():
            self._steps.labels(self.target, op, step_outcome).inc(n)

    def run_skipped(self, reason: str) -> None:
        self._skipped.labels(self.target, reason).inc()

    def runs(self) -> dict[tuple[str, str], int]:
        return {(labels["kind"], labels["outcome"]): n for labels, n in self._mine(self._runs)}

    def steps(self) -> dict[tuple[str, str], int]:
        return {(labels["op"], labels["outcome"]): n for labels, n in self._mine(self._steps)}

    def skipped(self) -> dict[str, int]:
        return {labels["reason"]: n for labels, n in self._mine(self._skipped)}

    def _mine(self, counter: Counter) -> Iterator[tuple[dict[str, str], int]]:
        return ((labels, n) for labels, n in _totals(counter) if labels["target"] == self.target)


def _totals(counter: Counter) -> Iterator[tuple[dict[str, str], int]]:
    """Each child's labels and count (not its `_created` sample)."""
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, int(sample.value)


@dataclass(frozen=True)
class DaemonStatus:
    """What the daemon itself knows at scrape time."""

    outage: str | None                 # dialer | crm | state, while an outage lasts
    holding_lease: bool
    started_at: datetime


# name -> (help, labels besides target); the gauges that collectors compute at scrape time.
STATUS_GAUGES = {
    "reconciler_outage": ("1 while runs fail because this part is unavailable.", ("part",)),
    "reconciler_lease_held": ("1 while this daemon holds the write lease (it is applying).", ()),
    "reconciler_daemon_start_time_seconds": (
        "When this daemon started, in seconds since the epoch.", ()),
}
STATE_GAUGES = {
    "reconciler_state_readable": ("1 when the state database answered this scrape.", ()),
    "reconciler_last_success_timestamp_seconds": (
        "When the newest run that did its work finished (0: never).", ()),
    "reconciler_lead_batches_in_doubt": ("add_multi_lead batches whose answer never came.", ()),
    "reconciler_rejected_rows": (
        "Rows rejected in the newest applying run: by our checks of the CRM data, "
        "or by the dialer.", ("by",)),
}


def _gauges(table: Mapping[str, tuple[str, tuple[str, ...]]]) -> dict[str, GaugeMetricFamily]:
    return {name: GaugeMetricFamily(name, help_text, labels=("target", *labels))
            for name, (help_text, labels) in table.items()}


class StatusCollector:
    """The outage, the lease and the start time, read from the daemon at each scrape: one
    sample per target (`statuses`: target -> its status)."""

    def __init__(self, statuses: Mapping[str, Callable[[], DaemonStatus]]) -> None:
        self._statuses = dict(statuses)

    def describe(self) -> Iterator[Metric]:
        yield from _gauges(STATUS_GAUGES).values()

    def collect(self) -> Iterator[Metric]:
        gauges = _gauges(STATUS_GAUGES)
        for t, read in self._statuses.items():
            status = read()
            for part in OUTAGE_PARTS:
                gauges["reconciler_outage"].add_metric([t, part], float(status.outage == part))
            gauges["reconciler_lease_held"].add_metric([t], float(status.holding_lease))
            gauges["reconciler_daemon_start_time_seconds"].add_metric(
                [t], status.started_at.timestamp())
        yield from gauges.values()


class StateCollector:
    """The target's gauges, queried from the state database at each scrape.

    When the database does not answer, only `reconciler_state_readable 0` is served: a stale
    or made-up value would look like a fact.
    """

    def __init__(self, engine: sa.Engine, targets: tuple[str, ...]) -> None:
        self._engine, self._targets = engine, targets

    def describe(self) -> Iterator[Metric]:
        yield from _gauges(STATE_GAUGES).values()

    def collect(self) -> Iterator[Metric]:
        gauges = _gauges(STATE_GAUGES)
        readable = gauges["reconciler_state_readable"]
        try:
            found = {t: self._read(t) for t in self._targets}
        except StateError:
            for t in self._targets:
                readable.add_metric([t], 0)
            yield readable
            return
        for t, (success, in_doubt, counts, dialer_rejected) in found.items():
            readable.add_metric([t], 1)
            gauges["reconciler_last_success_timestamp_seconds"].add_metric(
                [t], success.timestamp() if success else 0)
            gauges["reconciler_lead_batches_in_doubt"].add_metric([t], in_doubt)
            rejected = gauges["reconciler_rejected_rows"]
            rejected.add_metric([t, "crm"], int(counts.get("crm_rejected", 0)))
            rejected.add_metric([t, "dialer"], dialer_rejected)
        yield from gauges.values()

    def _read(self, t: str) -> tuple[datetime | None, int, Mapping[str, int], int]:
        engine = self._engine
        success = queries.last_success(engine, t)
        in_doubt = len(queries.in_doubt_batches(engine, t))
        latest = queries.latest_applied_run(engine, t)
        dialer_rejected = (len(queries.steps_of(engine, latest["run_id"], "rejected"))
                           if latest else 0)
        return success, in_doubt, (latest or {}).get("counts") or {}, dialer_rejected


def register_scrape_metrics(registry: CollectorRegistry, engine: sa.Engine, target: str,
                            status: Callable[[], DaemonStatus],
                            others: Mapping[str, Callable[[], DaemonStatus]] | None = None
                            ) -> None:
    """Everything a scrape shows besides `Stats`: the daemon's and the state database's
    gauges, the build, and the standard process, platform and garbage collector metrics.
    `others`: the daemon's further targets, each with its status."""
    statuses = {target: status, **(others or {})}
    build = Info("reconciler_build", "The reconciler version and the Python that runs it.",
                 ("target",), registry=registry)
    for name in statuses:
        build.labels(name).info({"version": __version__, "python": platform.python_version()})
    registry.register(StatusCollector(statuses))
    registry.register(StateCollector(engine, tuple(statuses)))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in `registry`, served as `CONTENT_TYPE`."""
    return generate_latest(registry)
