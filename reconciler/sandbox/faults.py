"""Fault injection: the ways a real dialer, or what stands in front of it, lets a client down.

Kinds (`latency` seconds of sleep come first, whatever the kind):

- `latency`    answer normally, late.
- `status`     an HTTP error (`status`: 500, 502, 503, 429...) with a web server's HTML page and
               an optional Retry-After header; the call never reaches the dialer.
- `garbage`    200 with a PHP error page instead of an answer (or `body`); nothing committed.
- `truncated`  200 with JSON cut short; nothing committed.
- `drop`       the call is committed, then the connection is closed without any answer.
- `timeout`    the call is committed, then no answer comes: in-process the transport raises
               httpx.ReadTimeout at once; over HTTP the connection is held `hang` seconds (or
               until the server stops) and then closed.
- `mixed`      each firing picks one of status, garbage, truncated, drop, timeout at random.

A plan fires for calls of `function` (None: any API call), at most `times` times (None: no limit),
and when `rate` is set only for that share of the calls, drawn from a generator seeded by `seed`
so that a failing run can be replayed. Plans are tried in the order they were injected.

    dialer.inject("drop", function="add_multi_lead")               # next batch lands, answer lost
    dialer.inject("status", status=429, retry_after=2, times=3)     # three throttled calls
    dialer.inject("mixed", rate=0.2, seed=7, times=None)            # 20% of all calls, for ever
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from reconciler.sandbox.wire import TEXT_TYPE, Answer, error_page, json_answer

FaultKind = Literal["latency", "status", "garbage", "truncated", "drop", "timeout", "mixed"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_MIXED = ("status", "garbage", "truncated", "drop", "timeout")
BEFORE_COMMIT = frozenset({"status", "garbage", "truncated"})
AFTER_COMMIT = frozenset({"drop", "timeout"})

PHP_ERROR_PAGE = (
    "<br />\n<b>Fatal error</b>:  Uncaught mysqli_sql_exception: Too many connections in "
    "/var/www/html/dialer/dbconnect_mysqli.php:28\nStack trace:\n#0 {main}\n  thrown in "
    "<b>/var/www/html/dialer/dbconnect_mysqli.php</b> on line <b>28</b><br />\n"
)
TRUNCATED_JSON = '{"success":true,"message":"Record(s) Cre'


class ConnectionDrop(Exception):
    """Raised by the app after committing: close the connection without answering."""


class ConnectionHang(ConnectionDrop):
    """Raised by the app after committing: keep the connection silent, then close it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer for {seconds}s")
        self.seconds = seconds


@dataclass
class FaultPlan:
    kind: FaultKind
    function: str | None = None
    times: int | None = 1
    rate: float | None = None
    seed: int | None = None
    status: int = 503
    latency: float = 0.0
    retry_after: int | str | None = None
    hang: float = 30.0
    body: str | None = None
    fired: int = field(default=0, init=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for no limit")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.latency < 0 or self.hang < 0:
            raise ValueError("latency and hang must not be negative")
        self._rng = random.Random(self.seed)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def draw(self, function: str) -> str | None:
        """Whether this plan fires for one call of `function`; the kind that fires, if so."""
        if self.exhausted or (self.function is not None and self.function != function):
            return None
        if self.rate is not None and self._rng.random() >= self.rate:
            return None
        self.fired += 1
        return self._rng.choice(_MIXED) if self.kind == "mixed" else self.kind

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultPlan:
        """A plan from the JSON body of `POST /_sandbox/faults`."""
        allowed = {"kind", "function", "times", "rate", "seed", "status", "latency",
                   "retry_after", "hang", "body"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class Fault:
    """A plan that fired, with its kind resolved (never `mixed`)."""

    kind: str
    plan: FaultPlan

    @property
    def commits(self) -> bool:
        """Whether the call still reaches the dialer."""
        return self.kind not in BEFORE_COMMIT

    def answer(self) -> Answer:
        """The answer the client gets for a fault that stops the call before the dialer."""
        if self.kind == "status":
            extra = () if self.plan.retry_after is None else (
                ("Retry-After", str(self.plan.retry_after)),)
            return error_page(self.plan.status, extra)
        if self.kind == "garbage":
            body = PHP_ERROR_PAGE if self.plan.body is None else self.plan.body
            return Answer(200, (("Content-Type", TEXT_TYPE),), body.encode("utf-8"))
        if self.kind == "truncated":
            return json_answer(TRUNCATED_JSON if self.plan.body is None else self.plan.body)
        raise ValueError(f"fault {self.kind!r} does not replace the answer")

    def after_commit(self) -> None:
        """For drop and timeout: signal the server to lose the answer."""
        if self.kind == "drop":
            raise ConnectionDrop("dropped by fault injection")
        if self.kind == "timeout":
            raise ConnectionHang(self.plan.hang)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: list[FaultPlan] = []

    def add(self, plan: FaultPlan) -> FaultPlan:
        with self._lock:
            self._plans.append(plan)
        return plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def plans(self) -> list[FaultPlan]:
        with self._lock:
            return list(self._plans)

    def pick(self, function: str) -> Fault | None:
        """The fault for one API call, if any plan fires; spent plans are dropped."""
        with self._lock:
            fault = None
            for plan in self._plans:
                kind = plan.draw(function)
                if kind is not None:
                    fault = Fault(kind, plan)
                    break
            self._plans = [plan for plan in self._plans if not plan.exhausted]
            return fault
