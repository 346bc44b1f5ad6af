"""What a one-off `apply` or `resync` holds while it runs: the write lease, renewed by a
heartbeat from the moment it is taken and fencing the state writes; and SIGTERM/SIGINT.

A signal, by phase:

- while the lease is taken, the plan made, the confirmation asked: nothing is in progress, so
  the command stops at once (`StopRequested`; the run is recorded `stopped`, exit 4);
- while applying: the first asks the run to stop after the step in progress (recorded
  `stopped`, exit 4); a second aborts at once (`Aborted`, a KeyboardInterrupt: the run is
  recorded `aborted`, exit 130; a lead batch in flight is in doubt);
- while letting go of the lease: noted, nothing more.

The lease is released on every way out, and the signal handlers put back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Literal

import sqlalchemy as sa
import structlog

from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.store import StateStore
from reconciler.app.bootstrap import lease_name
from reconciler.daemon.heartbeat import Heartbeat

log = structlog.get_logger()

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
Mode = Literal["at_once", "after_step", "noted"]


class StopRequested(KeyboardInterrupt):
    """A stop signal that came while nothing was in progress: nothing is left half-done."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"stopped on request ({signal_name})")
        self.signal_name = signal_name


class Aborted(KeyboardInterrupt):
    """A second stop signal while applying: the step in progress is cut short."""


class OneOffRun:
    """A context manager: the write lease and its heartbeat, and the signal handlers.

    `store` is the state store fenced by the lease; `keep_going` is what the executor asks
    between steps; `applying()` marks the phase where a first signal waits for the step.
    """

    def __init__(self, store: StateStore, *, wait_seconds: float, ttl: float) -> None:
        self.lease = Lease(store.engine, lease_name(store.target), ttl_seconds=ttl)
        self.store = store.fenced(self.lease.fence, self.lease.owner)
        self.wait_seconds = wait_seconds
        self.stop_signal: str | None = None          # the first signal's name
        self._mode: Mode = "at_once"
        self._heartbeat: Heartbeat | None = None
        self._previous: dict[int, Any] = {}
        # The handler only flags a stop; this thread says so in the log (a handler must not
        # write to a stream the interrupted code may be writing to).
        self._asked = threading.Event()
        self._closing = False
        self._announcer = threading.Thread(target=self._announce, name="stop-announcer",
                                           daemon=True)

    def __enter__(self) -> OneOffRun:
        self._install()
        try:
            self.lease.acquire(self.wait_seconds)
            self._heartbeat = Heartbeat(self.lease).__enter__()
        except BaseException:
            self.__exit__()      # a stop that landed just after the lease was taken frees it
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode = "noted"
        try:
            if self._heartbeat is not None:
                self._heartbeat.__exit__()
            self.lease.release()
        except sa.exc.SQLAlchemyError as error:
            log.warning("lease_release_failed", name=self.lease.name, error=type(error).__name__,
                        note=f"it expires by itself within {self.lease.ttl.total_seconds():g}s")
        finally:
            self._restore()

    @contextmanager
    def applying(self) -> Iterator[None]:
        """The phase in which a first signal lets the step in progress finish."""
        if self._heartbeat is not None:
            self._heartbeat.check()        # lost while planning: apply nothing
        self._mode = "after_step"
        try:
            yield
        finally:
            self._mode = "noted"

    def keep_going(self) -> bool:
        """Asked between steps: False once a stop was asked for; raises LeaseLost when the
        heartbeat found the lease is not ours any more."""
        if self._heartbeat is not None:
            self._heartbeat.check()
        return self.stop_signal is None

    # --- signals ------------------------------------------------------------------------------

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return                 # signals reach the main thread only: nothing to catch here
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        self._announcer.start()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        if self._announcer.is_alive():
            self._closing = True
            self._asked.set()
            self._announcer.join()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        first = self.stop_signal is None
        self.stop_signal = self.stop_signal or name
        if self._mode == "at_once":
            self._mode = "noted"
            raise StopRequested(name)
        if self._mode == "after_step":
            if first:
                self._asked.set()
                return
            self._mode = "noted"
            raise Aborted(f"a second {name} cut the step in progress short")

    def _announce(self) -> None:
        self._asked.wait()
        if not self._closing:
            log.warning("stop_requested", signal=self.stop_signal,
                        then="the run stops after the step in progress; "
                             "signal again to abort at once")
