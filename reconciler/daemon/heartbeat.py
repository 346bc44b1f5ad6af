"""The lease heartbeat: renews the write lease from its own thread while a run holds it.

A run can stay longer than the lease's TTL in one place: reading a large CRM table before its
first step, or one dialer call with its retries. Renewing only between steps could then let
the lease expire under a live run, and a second daemon apply beside it. The heartbeat renews
every quarter TTL whatever the run is doing; when the lease turns out not to be ours any more,
it raises `lost`, and the run stops at its next step boundary.
"""

from __future__ import annotations

import threading
import time

import structlog

from reconciler.daemon.outage import one_line
from reconciler.errors import StateError
from reconciler.state.lease import Lease

log = structlog.get_logger()


class Heartbeat:
    def __init__(self, lease: Lease, ttl: float) -> None:
        self.lease, self.ttl, self.every = lease, ttl, ttl / 4
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        renewed_at = time.monotonic()
        while not self._done.wait(self.every):
            try:
                if self.lease.renew():
                    renewed_at = time.monotonic()
                    continue
                reason = "it is not ours any more (broken by `unlock --force`, or expired)"
            except StateError as exc:
                if time.monotonic() - renewed_at < self.ttl / 2:
                    continue          # a passing database error: the next beat tries again
                reason = f"not renewed for {self.ttl / 2:g}s: {one_line(exc)}"
            # Another process may be applying now, or soon: this run must stop.
            log.error("lease_lost", name=self.lease.name, owner=self.lease.owner, reason=reason)
            self.lost.set()
            return
