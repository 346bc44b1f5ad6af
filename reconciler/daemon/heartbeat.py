"""The lease heartbeat: renews the write lease from its own thread while a run holds it.

Used by the daemon's runs and by one-off `apply` and `resync`, from the moment the lease is
taken. A run can stay longer than the lease's TTL in one place: reading a large CRM table
before its first step, or one dialer call with its retries. Renewing only between steps could
then let the lease expire under a live run, and a second process apply beside it. The heartbeat
renews every quarter TTL whatever the run is doing; when the lease turns out not to be ours any
more, it raises `lost`. `check()`, asked at every step boundary, stops the run then, or when the
lease row already names another holder; the fenced writes (adapters.state.lease) stop it in
any case before its next send.
"""

from __future__ import annotations

import contextlib
import threading
import time

import structlog

from reconciler.adapters.state.lease import Lease
from reconciler.daemon.outage import one_line
from reconciler.errors import LeaseLost, StateError

log = structlog.get_logger()


class Heartbeat:
    def __init__(self, lease: Lease, ttl: float | None = None) -> None:
        self.lease = lease
        self.ttl = lease.ttl.total_seconds() if ttl is None else ttl
        self.every = self.ttl / 4
        self.lost = threading.Event()
        self.reason = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def check(self) -> None:
        """Raise LeaseLost when the lease is not ours any more: found by the heartbeat, or by
        reading the lease row now (a take-over between two beats shows there at once)."""
        if self.lost.is_set():
            raise LeaseLost(self.reason)
        # Unreadable for a moment: the heartbeat judges how long is too long.
        with contextlib.suppress(StateError):
            self.lease.verify()

    def _beat(self) -> None:
        renewed_at = time.monotonic()
        while not self._done.wait(self.every):
            try:
                if self.lease.renew():
                    renewed_at = time.monotonic()
                    continue
                self.reason = self.lease.lost_message(self.lease.holder())
            except StateError as exc:
                if time.monotonic() - renewed_at < self.ttl / 2:
                    continue          # a passing database error: the next beat tries again
                self.reason = (f"the write lease {self.lease.name!r} could not be renewed for "
                               f"{self.ttl / 2:g}s ({one_line(exc)}); stopped, as another "
                               f"process may take it over")
            # Another process may be applying now, or soon: this run must stop.
            log.error("lease_lost", name=self.lease.name, owner=self.lease.owner,
                      reason=self.reason)
            self.lost.set()
            return
