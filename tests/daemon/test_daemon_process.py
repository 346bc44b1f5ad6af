"""`reconciler daemon` as operators run it: a subprocess, a fast schedule, the sandbox dialer.

Shown here: a CRM change reaches the dialer with no manual step; an outage of the dialer is
survived with one outage event and one recovery event; SIGTERM in the middle of a run exits 0
with the step in progress recorded; two daemons on one state database never apply at once,
and the second takes over when the first dies; a trigger causes a run.
"""

from __future__ import annotations

import itertools
import signal
from datetime import UTC, datetime

import httpx

from reconciler.adapters.state import queries
from tests.daemon.conftest import TOKEN, Harness, free_port, wait_for
from tests.helpers import agent, crm_execute, scraped


def test_a_crm_change_reaches_the_dialer_on_schedule(harness: Harness) -> None:
    daemon = harness.start(harness.config("interval = 0.5"))
    wait_for("the first run", lambda: set(harness.users()) == {"1000", "1001"})
    crm_execute(harness.crm, "UPDATE agents SET full_name = 'Asha Renamed' "
                             "WHERE username = '1000'")
    crm_execute(harness.crm, "INSERT INTO agents (username, password, full_name, level, team, "
                             "is_active) VALUES ('1002', 'pw-1002', 'New Hire', 1, 'AGENTS', 1)")
    wait_for("the rename", lambda: harness.users()["1000"]["full_name"] == "Asha Renamed")
    wait_for("the new agent", lambda: "1002" in harness.users())
    assert daemon.stop() == 0
    started = daemon.events("daemon_started")[0]
    assert started["schedules"] == {"all": "every 0.5s"} and started["http"] is None
    assert daemon.events("daemon_stopped")
    assert all(r["kind"] == "daemon" and r["outcome"] == "ok" for r in harness.runs())


def test_an_outage_is_survived_with_one_outage_and_one_recovery(harness: Harness) -> None:
    config = harness.config("interval = 0.2\nbackoff_base = 0.2\nbackoff_max = 0.4")
    daemon = harness.start(config, level="DEBUG")
    wait_for("the first run", lambda: set(harness.users()) == {"1000", "1001"})

    port = harness.stop_sandbox()
    crm_execute(harness.crm, "UPDATE agents SET full_name = 'Changed In Outage' "
                             "WHERE username = '1001'")
    daemon.wait_event("dialer_outage")
    daemon.wait_event("outage_continues", count=3)          # several failing runs, quietly
    harness.restart_sandbox(port)

    daemon.wait_event("outage_recovered")
    wait_for("the change made during the outage",
             lambda: harness.users()["1001"]["full_name"] == "Changed In Outage")
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    assert len(daemon.events("dialer_outage")) == 1
    assert len(daemon.events("outage_recovered")) == 1
    # The client's per-attempt warnings come with the first failing run only.
    assert len(daemon.events("dialer_read_failed")) == 1
    outcomes = [r["outcome"] for r in harness.runs()]
    assert "unavailable" in outcomes and outcomes[-1] == "ok"


def test_sigterm_mid_run_records_the_step_and_exits_0(harness: Harness) -> None:
    crm_execute(harness.crm, "DELETE FROM agents")
    for n in range(40):
        row = agent(str(3000 + n))
        crm_execute(harness.crm, "INSERT INTO agents VALUES (:username, :password, :full_name, "
                                 ":level, :team, :extension, :email, :is_active)", **row)
    harness.sandbox.inject("latency", function="add_user", latency=0.1, times=None)
    daemon = harness.start(harness.config("interval = 3600"))

    def steps() -> int:
        return sum(1 for s in harness.query(lambda e: queries.steps_of(
            e, harness.runs()[-1]["run_id"])) if s["op"] == "add_user") if harness.runs() else 0

    wait_for("a few applied steps", lambda: steps() >= 3)
    assert daemon.stop(signal.SIGTERM) == 0

    run = harness.runs()[-1]
    assert run["outcome"] == "stopped" and run["message"].startswith("stopped on request")
    recorded = steps()
    assert 3 <= recorded < 40
    # Every call that reached the dialer is a recorded step: the one in flight finished first.
    assert harness.functions().count("add_user") == recorded
    assert harness.query(lambda e: queries.lease_holder(e, "default")) is None
    assert daemon.events("daemon_stopping")[0]["reason"] == "SIGTERM"


def test_two_daemons_never_apply_at_once_and_one_takes_over(harness: Harness) -> None:
    # Slow reads keep each run inside its lease long enough for the two to collide; jitter
    # keeps the two schedules from locking into one phase where one daemon always wins.
    harness.sandbox.inject("latency", function="active_lists", latency=0.15, times=None)
    config = harness.config("interval = 0.2\njitter = 0.2\nlease_ttl = 2")
    first = harness.start(config, name="first")
    second = harness.start(config, name="second")
    first.wait_event("run_started")
    second.wait_event("run_started")
    wait_for("a refused lease", lambda: first.events("run_skipped_lock_held")
             or second.events("run_skipped_lock_held"))

    first.proc.kill()                    # a crash: its lease is left behind, then expires
    first.proc.wait(10)
    killed_at = datetime.now(UTC)
    before = len(second.events("run_started"))
    second.wait_event("run_started", count=before + 2, timeout=20)
    assert second.stop() == 0

    runs = harness.runs()
    for previous, following in itertools.pairwise(runs):
        ended = previous["finished_at"] or killed_at       # the killed one never finished
        assert following["started_at"] >= ended, (previous, following)
    ids = {e["run_id"] for e in first.events("run_started")}
    assert ids.isdisjoint(e["run_id"] for e in second.events("run_started"))


def test_a_trigger_causes_a_run(harness: Harness) -> None:
    port = free_port()
    daemon = harness.start(harness.config(f"interval = 3600\nhttp_port = {port}"))
    wait_for("the first run", lambda: set(harness.users()) == {"1000", "1001"})
    url = f"http://127.0.0.1:{port}"
    daemon.wait_event("daemon_started")
    assert httpx.get(f"{url}/healthz").json()["healthy"] is True

    crm_execute(harness.crm, "UPDATE agents SET full_name = 'Saved In CRM' "
                             "WHERE username = '1000'")
    assert httpx.post(f"{url}/trigger?resource=users").status_code == 401
    answer = httpx.post(f"{url}/trigger?resource=users",
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202
    wait_for("the triggered run", lambda: harness.users()["1000"]["full_name"] == "Saved In CRM")
    kinds = [r["kind"] for r in harness.runs()]
    assert kinds == ["daemon", "daemon-users"]
    metrics = httpx.get(f"{url}/metrics").text
    assert scraped(metrics, "reconciler_runs_total", target="default", kind="daemon-users",
                   outcome="ok") == 1
    assert TOKEN not in metrics
    assert daemon.stop() == 0
    assert TOKEN not in daemon.log.read_text()
