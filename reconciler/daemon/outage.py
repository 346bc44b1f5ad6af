"""Outages of the dialer, the CRM or the state database: back off, and say so once.

The scheduler fires at its fixed times whatever happened before; backing off between failing
runs is ours. After each failing run the next run is allowed only after a capped, doubling
delay, and fires before then are skipped. The outage is logged when it starts
(`dialer_outage`, `crm_outage`, `state_outage`) and when a run succeeds again
(`outage_recovered`): two lines per outage, however long it lasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

from reconciler.redact import redact_text

log = structlog.get_logger()

# Set by the runner, in the thread of a run, while an outage is already known.
OUTAGE_KNOWN: ContextVar[bool] = ContextVar("outage_known", default=False)
# What the dialer client and the engine say on every failing attempt; during a known outage
# each would repeat `dialer_outage` once per run, with retries several times per run.
_REPEATS = frozenset({"dialer_retry", "dialer_gave_up", "dialer_read_failed"})


def hold_back_repeats(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drops the per-attempt warnings of an outage already logged."""
    if OUTAGE_KNOWN.get() and event_dict.get("event") in _REPEATS:
        raise structlog.DropEvent
    return event_dict


def one_line(exc: BaseException) -> str:
    """An exception as one redacted line: a database driver's own message when there is one."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact_text(lines[0] if lines else type(exc).__name__)


def install_hold_back() -> None:
    """Put `hold_back_repeats` in front of the configured processors (once)."""
    processors = list(structlog.get_config()["processors"])
    if hold_back_repeats not in processors:
        structlog.configure(processors=[hold_back_repeats, *processors])


class Backoff:
    """Capped exponential delay between failing runs: base, 2*base, 4*base ... up to `cap`."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap = base, cap
        self.failures = 0
        self.not_before = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float) -> float:
        """Count one more failing run; returns the delay before the next one is allowed."""
        self.failures += 1
        # min() first keeps 2**n from overflowing a float after months of outage.
        delay = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 60))
        self.not_before = now + delay
        return delay

    def reset(self) -> int:
        """A run succeeded; returns how many had failed before it."""
        failed, self.failures, self.not_before = self.failures, 0, 0.0
        return failed


class OutageWatch:
    """Remembers whether something is down, so that each outage is logged only at its edges."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff, self._clock = backoff, clock
        self.kind: str | None = None          # dialer | crm | state, while an outage lasts
        self._since = 0.0
        self._lock = threading.Lock()         # the endpoint reads `kind` from its own thread

    def ready(self) -> bool:
        return self.backoff.ready(self._clock())

    def retry_in(self) -> float:
        return max(0.0, self.backoff.not_before - self._clock())

    def failed(self, kind: str, reason: str) -> None:
        now = self._clock()
        with self._lock:
            delay = self.backoff.failed(now)
            if kind != self.kind:
                if self.kind is None:
                    self._since = now
                self.kind = kind
                log.warning(f"{kind}_outage", reason=reason, retry_in_s=round(delay, 3))
            else:
                log.debug("outage_continues", kind=kind, failed_runs=self.backoff.failures,
                          retry_in_s=round(delay, 3), reason=reason)

    def backoff_only(self) -> float:
        """A run failed for no outage (a bug, logged by the caller): wait before the next one."""
        with self._lock:
            return self.backoff.failed(self._clock())

    def succeeded(self) -> None:
        with self._lock:
            failed = self.backoff.reset()
            if self.kind is not None:
                log.info("outage_recovered", kind=self.kind, failed_runs=failed,
                         down_for_s=round(self._clock() - self._since, 1))
                self.kind = None
