"""One guarded daemon run, in process: lease, guards, outages and their backoff, per-resource
specs, and the backoff arithmetic itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from structlog.testing import capture_logs

from reconciler.adapters.state import queries
from reconciler.adapters.state.lease import Lease, break_lease
from reconciler.adapters.state.schema import leases
from reconciler.adapters.state.store import now
from reconciler.app.engine import Context
from reconciler.config.settings import DaemonSettings, GuardSettings
from reconciler.config.spec import load_spec, spec_resources
from reconciler.daemon.heartbeat import Heartbeat
from reconciler.daemon.metrics import Stats
from reconciler.daemon.outage import (
    OUTAGE_KNOWN,
    Backoff,
    OutageWatch,
    hold_back_repeats,
    install_hold_back,
)
from reconciler.daemon.runner import Runner, restrict_spec, run_kind
from reconciler.errors import LeaseLost
from reconciler.sandbox import SandboxDialer
from tests.helpers import (
    EXAMPLE_SPEC,
    HookedSandbox,
    agent,
    crm_execute,
    engine_context,
    make_crm,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=5.0)
    assert [backoff.failed(0.0) for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not backoff.ready(4.9) and backoff.ready(5.0)
    assert backoff.reset() == 5
    assert backoff.ready(0.0)
    for _ in range(5000):                     # months of failing runs: no overflow
        backoff.failed(0.0)
    assert backoff.not_before == 5.0


def test_an_outage_is_logged_when_it_starts_and_when_it_ends() -> None:
    clock = Clock()
    watch = OutageWatch(Backoff(1.0, 60.0), clock)
    with capture_logs() as logs:
        for _ in range(4):
            watch.failed("dialer", "connection refused")
            clock.now += 100
        watch.failed("crm", "no such table")
        watch.succeeded()
        watch.succeeded()
    events = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert events == ["dialer_outage", "crm_outage", "outage_recovered"]
    recovered = logs[-1]
    assert recovered["failed_runs"] == 5 and recovered["down_for_s"] == 400.0
    assert watch.kind is None and watch.ready()


def test_repeated_client_warnings_are_held_back_only_during_a_known_outage() -> None:
    event = {"event": "dialer_gave_up", "function": "active_lists"}
    assert hold_back_repeats(None, "warning", dict(event)) == event
    token = OUTAGE_KNOWN.set(True)
    try:
        with pytest.raises(structlog.DropEvent):
            hold_back_repeats(None, "warning", dict(event))
        assert hold_back_repeats(None, "info", {"event": "run_started"})
    finally:
        OUTAGE_KNOWN.reset(token)


def test_a_restricted_spec_plans_one_resource() -> None:
    spec = load_spec(EXAMPLE_SPEC)
    assert spec_resources(spec) == frozenset({"users", "lists", "leads"})
    users = restrict_spec(spec, frozenset({"users"}))
    assert spec_resources(users) == frozenset({"users"})
    assert users.policy.manage_users and not users.policy.manage_lists
    lists = restrict_spec(spec, frozenset({"lists"}))
    assert lists.users is None and not lists.policy.manage_users and lists.lists is not None
    assert run_kind(None) == "daemon" and run_kind(frozenset({"leads"})) == "daemon-leads"


# --- the runner against the sandbox -----------------------------------------------------------


@pytest.fixture
def crm(tmp_path: Path) -> str:
    return make_crm(tmp_path, [agent("1000"), agent("1001")], lists=[
        {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}])


@pytest.fixture
def ctx(sandbox: SandboxDialer, sqlite_state: sa.Engine, crm: str, tmp_path: Path
        ) -> Iterator[Context]:
    with engine_context(sandbox, sqlite_state, crm, tmp_path,
                        guards=GuardSettings(max_deactivations=1)) as context:
        yield context


def make_runner(ctx: Context, clock: Clock | None = None) -> Runner:
    settings = DaemonSettings(backoff_base=10.0, backoff_max=40.0, lease_ttl=60.0)
    return Runner(ctx, settings, threading.Event(), Stats(ctx.settings.dialer.target),
                  clock or Clock())


def test_a_run_applies_records_and_releases_the_lease(ctx: Context, sandbox: SandboxDialer
                                                      ) -> None:
    runner = make_runner(ctx)
    assert runner.run() == "ok"
    assert [u["agent_user"] for u in sandbox.snapshot()["users"]] == ["1000", "1001"]
    assert queries.lease_holder(ctx.store.engine, "default") is None
    latest = queries.latest_runs_by_kind(ctx.store.engine, "default")["daemon"]
    assert latest["outcome"] == "ok" and latest["counts"] == {"created": 3}
    assert runner.stats.steps() == {("add_list", "created"): 1, ("add_user", "created"): 2}
    assert runner.run() == "ok"                 # nothing to do is still a recorded run
    assert len(queries.recent_runs(ctx.store.engine, "default", 10)) == 2


def test_a_held_lease_skips_the_run_and_says_so_once(ctx: Context, sandbox: SandboxDialer
                                                     ) -> None:
    other = Lease(ctx.store.engine, queries.lease_name("default"), owner="other-host:42:abcd")
    assert other.try_acquire()
    runner = make_runner(ctx)
    with capture_logs() as logs:
        assert runner.run() == "lock_held"
        assert runner.run() == "lock_held"
        other.release()
        assert runner.run() == "ok"
    said = [(e["event"], e["log_level"]) for e in logs if "lock" in e["event"] or
            e["event"] == "lease_taken"]
    assert said == [("run_skipped_lock_held", "info"), ("run_skipped_lock_held", "debug"),
                    ("lease_taken", "info")]
    assert logs[0]["holder"] == "other-host:42:abcd"
    assert runner.stats.skipped() == {"lock_held": 2}


def test_a_guard_breach_is_recorded_as_refused_and_never_forced(
    ctx: Context, sandbox: SandboxDialer, crm: str
) -> None:
    runner = make_runner(ctx)
    assert runner.run() == "ok"
    crm_execute(crm, "DELETE FROM agents")
    calls = len(sandbox.snapshot()["calls"])
    with capture_logs() as logs:
        assert runner.run() == "refused"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["run_refused"]
    refused = queries.latest_runs_by_kind(ctx.store.engine, "default")["daemon"]
    assert refused["outcome"] == "refused" and "--force" in refused["message"]
    functions = [c["function"] for c in sandbox.snapshot()["calls"][calls:]]
    assert "update_user" not in functions
    assert all(u["active"] == "Y" for u in sandbox.snapshot()["users"])


def test_dialer_outage_backs_off_and_recovers(ctx: Context, sandbox: SandboxDialer) -> None:
    clock = Clock()
    runner = make_runner(ctx, clock)
    sandbox.inject("status", status=503, times=None)
    with capture_logs() as logs:
        install_hold_back()                     # as `reconciler daemon` does
        assert runner.run() == "unavailable"
        assert runner.run() == "backoff"        # fires before the backoff are skipped
        clock.now += 10
        assert runner.run() == "unavailable"
        clock.now += 19
        assert runner.run() == "backoff"
        clock.now += 1
        sandbox.clear_faults()
        assert runner.run() == "ok"
    loud = [e["event"] for e in logs if e["log_level"] in ("warning", "error")]
    assert loud.count("dialer_outage") == 1
    assert [e["event"] for e in logs].count("outage_recovered") == 1
    # The client's own per-attempt warnings appear for the first failing run only.
    assert loud.count("dialer_read_failed") == 1
    outcomes = [r["outcome"] for r in queries.recent_runs(ctx.store.engine, "default", 10)]
    assert outcomes == ["ok", "unavailable", "unavailable"]
    assert runner.stats.skipped() == {"backoff": 2}


def test_crm_outage_is_its_own_event(ctx: Context, crm: str) -> None:
    runner = make_runner(ctx)
    crm_execute(crm, "ALTER TABLE agents RENAME TO agents_gone")
    with capture_logs() as logs:
        assert runner.run() == "unavailable"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["crm_outage"]
    run = queries.latest_runs_by_kind(ctx.store.engine, "default")["daemon"]
    assert run["outcome"] == "unavailable" and run["message"].startswith("CRM unavailable")


def test_a_per_resource_run_touches_only_that_resource(ctx: Context, sandbox: SandboxDialer
                                                       ) -> None:
    runner = make_runner(ctx)
    assert runner.run(frozenset({"users"})) == "ok"
    functions = {c["function"] for c in sandbox.snapshot()["calls"]}
    assert functions == {"add_user"}
    assert "daemon-users" in queries.latest_runs_by_kind(ctx.store.engine, "default")


def test_the_heartbeat_keeps_the_lease_and_notices_losing_it(ctx: Context) -> None:
    lease = Lease(ctx.store.engine, queries.lease_name("default"), ttl_seconds=0.4)
    assert lease.try_acquire()
    with Heartbeat(lease, ttl=0.4) as beat:
        first_expiry = lease.holder()["expires_at"]
        wait_until(lambda: lease.holder()["expires_at"] != first_expiry)
        assert not beat.lost.is_set()
        with capture_logs() as logs:
            break_lease(ctx.store.engine, lease.name)
            wait_until(beat.lost.is_set)
    assert logs[0]["event"] == "lease_lost" and "unlock --force" in logs[0]["reason"]


def test_a_run_whose_lease_is_taken_over_stops_before_its_next_send(
    sqlite_state: sa.Engine, crm: str, tmp_path: Path
) -> None:
    """The daemon's writes are fenced as apply's are: a lease taken over during a step (the
    daemon stalled past its TTL) ends the run `lease_lost` before anything more is sent, and
    is no outage: the next run, once the lease is free, does the rest."""
    name = queries.lease_name("default")
    rival = Lease(sqlite_state, name, owner="rival-host:7:cafe")

    def take_over() -> None:
        with sqlite_state.begin() as conn:
            conn.execute(sa.update(leases).where(leases.c.name == name)
                         .values(expires_at=now() - timedelta(seconds=1)))
        assert rival.try_acquire()

    sandbox = HookedSandbox("add_list", 1, take_over)
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as context:
        runner = make_runner(context)
        assert runner.run() == "lease_lost"
        assert sandbox.fired.is_set()
        assert sandbox.snapshot()["calls"][sandbox.calls_at_fire:] == []
        assert runner.outage.kind is None
        run = queries.latest_runs_by_kind(sqlite_state, "default")["daemon"]
        assert run["outcome"] == "lease_lost"
        assert "taken over by rival-host:7:cafe" in run["message"]
        rival.release()
        assert runner.run() == "ok"
    assert sorted(u["agent_user"] for u in sandbox.snapshot()["users"]) == ["1000", "1001"]
    assert [x["list_id"] for x in sandbox.snapshot()["lists"]] == ["1101"]


def test_a_run_stops_between_steps_on_request_or_lost_lease(ctx: Context) -> None:
    runner = make_runner(ctx)
    assert runner._keep_going()
    assert runner.lease.try_acquire()
    with Heartbeat(runner.lease, ttl=60) as beat:
        runner._heartbeat = beat
        assert runner._keep_going()
        beat.reason = "taken over"
        beat.lost.set()
        with pytest.raises(LeaseLost, match="taken over"):
            runner._keep_going()
    runner._heartbeat = None
    runner.lease.release()
    runner.stopping.set()
    assert not runner._keep_going()
    assert runner.run() == "stopping"


def wait_until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
