"""Replicas: three `reconciler daemon` processes on one PostgreSQL state database share four
dialer targets (four `reconciler sandbox` processes), each target under its own write lease.

One replica is killed (SIGKILL) while it applies. The proof: every target converges (the other
replicas take its targets over once its leases expire), every lead reaches its dialer exactly
once (the sandbox's call log), and no two replicas ever applied one target at the same time
(the runs table: each run names the replica that ran it; a killed run ends when it was killed).

The sandboxes answer as stock VICIdial, which can look leads up: a lead the killed replica
sent without recording the answer is found on the dialer by the replica that takes over, not
sent again (on Elision's dialer it would wait, in doubt, for an operator: docs/leads.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.schema import leases, runs
from reconciler.cli.main import main
from reconciler.demo import crm as democrm
from reconciler.sandbox import VICIDIAL_API_PATH
from tests.helpers import EXAMPLE_SPEC

TARGETS = ("t1", "t2", "t3", "t4")
LEADS = 40
DEADLINE = 90.0                     # seconds; the whole story takes far less


def _start_sandbox(tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "sandbox", "--port", "0", "--mode",
         "vicidial"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=tmp_path)
    assert process.stdout is not None
    line = process.stdout.readline()            # "sandbox dialer on URL (...)"
    url = line.split(" on ", 1)[1].split()[0]
    base = url.removesuffix(VICIDIAL_API_PATH).removesuffix("/")
    assert base.startswith("http://127.0.0.1"), line
    # Each lead takes a while, so that a run is long enough to be killed in the middle.
    answer = httpx.post(f"{base}/_sandbox/faults", timeout=10, json={
        "kind": "latency", "latency": 0.05, "times": None, "function": "add_lead"})
    assert answer.status_code == 201
    return process, base


def _state_of(base: str) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{base}/_sandbox/state", timeout=10).json()
    return state


def _config(tmp_path: Path, state_url: str, crm_url: str, sandboxes: dict[str, str]) -> Path:
    # Short timeouts: a lead the victim marked `sending` but never sent is settled as not sent
    # once its request can no longer land (leads_settle.landing_window: 13.5 s here, 115 s with
    # the defaults, longer than DEADLINE).
    targets = "".join(f"""
[[targets]]
name = "{name}"
url = "{base}{VICIDIAL_API_PATH}"
user = "api"
dialect = "vicidial"
password_env = "RECONCILER_{name.upper()}_PASSWORD"
lead_concurrency = 2
backoff_base = 0
backoff_max = 0.5
connect_timeout = 1
read_timeout = 3
max_retries = 1
""" for name, base in sandboxes.items())
    config = tmp_path / "reconciler.toml"
    config.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
{targets}
[crm]
url = "{crm_url}"
[state]
url = "{state_url}"
digest_key_file = "{tmp_path / 'digest.key'}"
[daemon]
interval = 1.0
lease_ttl = 3.0
backoff_base = 0.5
backoff_max = 1.0
""")
    return config


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name in TARGETS:
        monkeypatch.setenv(f"RECONCILER_{name.upper()}_PASSWORD", "1234")
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    yield {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}


def test_three_replicas_share_four_targets_and_survive_a_sigkill(
    tmp_path: Path, postgres: Any, environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_url = postgres.new_database()
    crm_url = democrm.sqlite_url(tmp_path / "crm.db")
    democrm.create_crm(crm_url, democrm.sample_agents(4), democrm.LISTS[:2],
                       democrm.sample_leads(LEADS, lists=("1101", "1102"))).dispose()
    processes: list[subprocess.Popen[str]] = []
    try:
        sandboxes = {}
        for name in TARGETS:
            process, base = _start_sandbox(tmp_path, name)
            processes.append(process)
            sandboxes[name] = base
        config = _config(tmp_path, state_url, crm_url, sandboxes)
        assert main(["--config", str(config), "db", "upgrade"]) == 0

        replicas = [subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "--config", str(config),
             "--log-format", "json", "daemon"], env=environment, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"replica{n}.log", "w"))  # noqa: SIM115
            for n in range(3)]
        processes += replicas
        engine = db.open_engine(state_url)
        victim, killed_at, victim_targets = _kill_one_mid_run(engine, replicas, sandboxes)

        deadline = time.monotonic() + DEADLINE
        while not all(len(_state_of(base)["leads"]) == LEADS for base in sandboxes.values()):
            assert time.monotonic() < deadline, "the targets did not converge"
            time.sleep(0.2)
        for replica in replicas:
            if replica is not victim:
                replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            assert replica.wait(timeout=30) in (0, -signal.SIGKILL)

        # Every lead reached its dialer exactly once: one add_lead call each.
        for name, base in sandboxes.items():
            state = _state_of(base)
            sent = Counter(str(c["params"]["vendor_lead_code"]) for c in state["calls"]
                           if c["function"] == "add_lead")
            assert sorted(sent) == sorted(str(n) for n in range(1, LEADS + 1)), name
            assert set(sent.values()) == {1}, f"{name}: a lead was sent twice"
            assert sorted(str(x["vendor_lead_code"]) for x in state["leads"]) == sorted(sent)

        # Converged: a plan of every target has nothing left to do.
        capsys.readouterr()
        assert main(["--config", str(config), "plan", "--detailed-exitcode"]) == 0
        assert capsys.readouterr().out.count("No changes.") == len(TARGETS)

        # No two replicas applied one target at once; the victim's targets were taken over.
        with engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.kind.like("daemon%"))).mappings()
            found = [dict(r) for r in rows]
        engine.dispose()
        assert {r["owner"] for r in found} >= {victim_targets[0][1]}
        for name in TARGETS:
            spans = sorted((r["started_at"], r["finished_at"] or killed_at, r["owner"])
                           for r in found if r["target"] == name)
            assert spans and all(owner for _, _, owner in spans), name
            for n, (start, end, owner) in enumerate(spans):
                for other_start, other_end, other in spans[n + 1:]:
                    overlap = other_start < end and start < other_end
                    assert owner == other or not overlap, f"{name}: two replicas at once"
        for name, owner in victim_targets:
            later = [r for r in found if r["target"] == name and r["owner"] != owner
                     and r["started_at"] > killed_at and r["outcome"] is not None]
            assert later, f"{name} was not taken over after the kill"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def _kill_one_mid_run(engine: sa.Engine, replicas: list[subprocess.Popen[str]],
                      sandboxes: dict[str, str]
                      ) -> tuple[subprocess.Popen[str], datetime, list[tuple[str, str]]]:
    """SIGKILL the first replica seen holding a target's lease while that target's leads are
    being sent; returns it, when, and the (target, lease owner) it held."""
    by_pid = {replica.pid: replica for replica in replicas}
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            held = [(r.name.removeprefix("apply:"), r.owner)
                    for r in conn.execute(sa.select(leases))]
        for target, owner in held:
            pid = int(owner.split(":")[1])
            sent = len(_state_of(sandboxes[target])["leads"])
            if pid in by_pid and 0 < sent < LEADS:
                victim = by_pid[pid]
                victim.send_signal(signal.SIGKILL)
                killed_at = datetime.now(UTC)
                victim.wait(timeout=30)
                return victim, killed_at, [(t, o) for t, o in held
                                           if int(o.split(":")[1]) == pid]
        time.sleep(0.02)
    raise AssertionError("no replica was seen applying")
