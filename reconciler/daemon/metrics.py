"""What the daemon counts, and the Prometheus text format it is served in.

Counters (runs, steps, skipped fires) belong to this process, as Prometheus expects, and start
at zero when it starts. Gauges read from the state database (last success, in-doubt batches,
rejected rows) describe the dialer target, whichever daemon did the work, so every daemon of a
group sharing one state database reports the same values.

The exposition format is written by hand: a dozen samples do not justify another dependency,
and writing it ourselves keeps the label values (never a URL, never a secret) in plain sight.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from reconciler.errors import StateError
from reconciler.state import queries

Labels = Mapping[str, str]


class Stats:
    """Thread-safe counters: the runner writes them, the endpoint reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: Counter[tuple[str, str]] = Counter()
        self._steps: Counter[tuple[str, str]] = Counter()
        self._skipped: Counter[str] = Counter()

    def run_finished(self, kind: str, outcome: str,
                     steps: Mapping[tuple[str, str], int] | None = None) -> None:
        with self._lock:
            self._runs[(kind, outcome)] += 1
            self._steps.update(steps or {})

    def run_skipped(self, reason: str) -> None:
        with self._lock:
            self._skipped[reason] += 1

    def runs(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._runs)

    def steps(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._steps)

    def skipped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._skipped)


@dataclass
class Family:
    name: str
    kind: str                                   # counter | gauge
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, value))
        return self


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The Prometheus text exposition format, version 0.0.4."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{family.name}{{{shown}}} {_number(value)}" if shown
                         else f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def collect(stats: Stats, engine: sa.Engine, target: str, *, outage: str | None,
            holding_lease: bool, started_at: datetime) -> list[Family]:
    t = {"target": target}
    runs = Family("reconciler_runs_total", "counter",
                  "Runs finished by this daemon, by kind and outcome.")
    for (kind, outcome), n in sorted(stats.runs().items()):
        runs.add(n, **t, kind=kind, outcome=outcome)
    steps = Family("reconciler_steps_total", "counter",
                   "Steps applied by this daemon's runs, by op and outcome.")
    for (op, outcome), n in sorted(stats.steps().items()):
        steps.add(n, **t, op=op, outcome=outcome)
    skipped = Family("reconciler_runs_skipped_total", "counter",
                     "Scheduled runs not started: lock_held, backoff, still_running or missed.")
    for reason, n in sorted(stats.skipped().items()):
        skipped.add(n, **t, reason=reason)
    families = [
        runs, steps, skipped,
        Family("reconciler_outage", "gauge",
               "1 while runs fail because this part is unavailable.")
        .add(outage == "dialer", **t, part="dialer")
        .add(outage == "crm", **t, part="crm")
        .add(outage == "state", **t, part="state"),
        Family("reconciler_lease_held", "gauge",
               "1 while this daemon holds the write lease (it is applying).")
        .add(holding_lease, **t),
        Family("reconciler_daemon_start_time_seconds", "gauge",
               "When this daemon started, in seconds since the epoch.")
        .add(started_at.timestamp(), **t),
    ]
    return families + _from_state(engine, target)


def _from_state(engine: sa.Engine, target: str) -> list[Family]:
    t = {"target": target}
    readable = Family("reconciler_state_readable", "gauge",
                      "1 when the state database answered this scrape.")
    try:
        success = queries.last_success(engine, target)
        in_doubt = len(queries.in_doubt_batches(engine, target))
        latest = queries.latest_applied_run(engine, target)
        dialer_rejected = (len(queries.steps_of(engine, latest["run_id"], "rejected"))
                           if latest else 0)
        counts = (latest or {}).get("counts") or {}
    except StateError:
        return [readable.add(0, **t)]
    return [
        readable.add(1, **t),
        Family("reconciler_last_success_timestamp_seconds", "gauge",
               "When the newest run that did its work finished (0: never).")
        .add(success.timestamp() if success else 0, **t),
        Family("reconciler_lead_batches_in_doubt", "gauge",
               "add_multi_lead batches whose answer never came.")
        .add(in_doubt, **t),
        Family("reconciler_rejected_rows", "gauge",
               "Rows rejected in the newest applying run: by our checks of the CRM data, "
               "or by the dialer.")
        .add(int(counts.get("crm_rejected", 0)), **t, by="crm")
        .add(dialer_rejected, **t, by="dialer"),
    ]
