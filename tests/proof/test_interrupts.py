"""SIGTERM and Ctrl-C of a one-off `apply`: it finishes the step in progress, records the run
`stopped`, releases the write lease and exits 4; the next apply goes ahead at once and sends
nothing twice. A second signal aborts at once, and still records the run and frees the lease.

`reconciler apply` runs in a subprocess against a sandbox dialer served on loopback from this
process (slowed down by latency faults, so that the signal lands mid-run); every wait polls
the sandbox or the process with a deadline.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db, queries
from reconciler.adapters.state.schema import lead_batches, run_steps, runs, shadow_leads
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer, start_background
from reconciler.sandbox.server import BackgroundServer
from reconciler.sandbox.wire import Answer, Incoming, parse_params
from tests.helpers import EXAMPLE_SPEC, agent
from tests.proof.support import REPO, cli_command, cli_env, wait_for

AGENTS = [agent(str(3000 + n)) for n in range(30)]
LEADS_PER_BATCH = 20
LEADS = democrm.sample_leads(10 * LEADS_PER_BATCH, ("1101",))
WAIT = 60.0                   # for anything a loaded machine may be slow to do


class GatedSandbox(SandboxDialer):
    """The sandbox; while `gate` is closed, an `active_lists` call (planning) waits for it, and
    while `lead_gate` is closed, the `held_batch`-th add_multi_lead call waits before it is
    handled: a batch on its way, its answer not yet come."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.lead_gate = threading.Event(), threading.Event()
        self.gate.set()
        self.lead_gate.set()
        self.waiting, self.lead_waiting = threading.Event(), threading.Event()
        self.held_batch, self._batches = 0, 0
        self._count = threading.Lock()

    def handle(self, incoming: Incoming) -> Answer:
        function = parse_params(incoming).get("function")
        if function == "active_lists" and not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(WAIT)
        if function == "add_multi_lead":
            with self._count:
                self._batches += 1
                held = self._batches == self.held_batch
            if held:
                self.lead_waiting.set()
                self.lead_gate.wait(WAIT)
        return super().handle(incoming)


@dataclass
class Setup:
    dir: Path
    sandbox: GatedSandbox
    server: BackgroundServer
    config: Path
    state_url: str

    def apply(self, name: str) -> subprocess.Popen[bytes]:
        with (self.dir / f"{name}.out").open("wb") as out, \
                (self.dir / f"{name}.err").open("wb") as err:
            return subprocess.Popen(
                cli_command("--config", str(self.config), "--log-format", "json", "apply",
                            "--yes"),
                cwd=REPO, env=cli_env("1234"), stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def output(self, name: str) -> str:
        return ((self.dir / f"{name}.out").read_text(errors="replace")
                + (self.dir / f"{name}.err").read_text(errors="replace"))

    def calls(self, function: str) -> int:
        return sum(c["function"] == function for c in self.sandbox.snapshot()["calls"])

    def query(self, statement: Any) -> list[dict[str, Any]]:
        engine = db.open_engine(self.state_url)
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(statement).mappings()]
        finally:
            engine.dispose()

    def lease_holder(self) -> dict[str, Any] | None:
        engine = db.open_engine(self.state_url)
        try:
            return queries.lease_holder(engine, "default")
        finally:
            engine.dispose()

    def apply_runs(self) -> list[dict[str, Any]]:
        return self.query(sa.select(runs).where(runs.c.kind == "apply")
                          .order_by(runs.c.started_at))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    crm = democrm.sqlite_url(tmp_path / "crm.db")
    democrm.create_crm(crm, AGENTS, democrm.LISTS[:1], LEADS).dispose()
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = db.open_engine(state_url)
    db.upgrade(engine)
    engine.dispose()
    sandbox = GatedSandbox()
    with start_background(sandbox) as server:
        config = tmp_path / "reconciler.toml"
        config.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{server.url}"
user = "api"
max_retries = 0
leads_per_batch = {LEADS_PER_BATCH}
[crm]
url = "{crm}"
[state]
url = "{state_url}"
digest_key_file = "{tmp_path / 'digest.key'}"
""", encoding="utf-8")
        yield Setup(tmp_path, sandbox, server, config, state_url)


def assert_everything_once(setup: Setup, in_doubt_allowed: bool = False) -> None:
    """Every agent added once; every lead on the dialer once, or in doubt and not resent."""
    added = Counter(c["params"]["agent_user"] for c in setup.sandbox.snapshot()["calls"]
                    if c["function"] == "add_user")
    assert added == Counter({a["username"]: 1 for a in AGENTS})
    held = Counter(x["vendor_lead_code"] for x in setup.sandbox.snapshot()["leads"])
    assert max(held.values()) == 1
    recorded = {r["lead_key"]: r["status"] for r in setup.query(sa.select(shadow_leads))}
    missing = {str(x["id"]) for x in LEADS} - set(held)
    if in_doubt_allowed:
        assert all(recorded.get(key) == "in_doubt" for key in missing), missing
    else:
        assert missing == set()


@pytest.mark.parametrize(("signame", "phase"), [
    ("SIGTERM", "users"), ("SIGINT", "users"), ("SIGTERM", "leads")])
def test_a_stop_signal_mid_apply_finishes_the_step_and_exits_4(
    setup: Setup, signame: str, phase: str
) -> None:
    setup.sandbox.inject("latency", function="add_user", latency=0.05, times=None)
    setup.sandbox.inject("latency", function="add_multi_lead", latency=0.2, times=None)
    process = setup.apply("stopped")
    try:
        if phase == "users":
            wait_for("a few user steps", lambda: setup.calls("add_user") >= 3, WAIT)
        else:
            wait_for("a lead batch", lambda: setup.calls("add_multi_lead") >= 1, WAIT)
        process.send_signal(signal.Signals[signame])
        code = process.wait(WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 4, setup.output("stopped")
    (run,) = setup.apply_runs()
    assert run["outcome"] == "stopped" and run["message"].startswith("stopped on request")
    assert setup.lease_holder() is None
    # The step in flight finished and was recorded: every call that reached the dialer is a
    # recorded step, and no batch was left between intent and answer.
    steps = Counter(s["op"] for s in setup.query(sa.select(run_steps)))
    assert setup.calls("add_user") == steps["add_user"]
    assert setup.calls("add_multi_lead") == steps["add_leads"]
    if phase == "users":
        assert steps["add_user"] < len(AGENTS) and steps["add_leads"] == 0
    assert setup.calls("add_multi_lead") < len(LEADS) // LEADS_PER_BATCH
    assert [b for b in setup.query(sa.select(lead_batches)) if b["state"] == "intent"] == []

    setup.sandbox.clear_faults()
    following = setup.apply("following")
    assert following.wait(WAIT) == 0, setup.output("following")   # no lease to wait for
    assert_everything_once(setup)


def test_a_stop_signal_while_planning_stops_at_once_and_exits_4(setup: Setup) -> None:
    setup.sandbox.gate.clear()
    process = setup.apply("stopped")
    try:
        wait_for("planning to ask the dialer", setup.sandbox.waiting.is_set, WAIT)
        process.send_signal(signal.SIGTERM)
        code = process.wait(WAIT)
    finally:
        setup.sandbox.gate.set()
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 4, setup.output("stopped")
    (run,) = setup.apply_runs()
    assert run["outcome"] == "stopped" and "before applying" in run["message"]
    assert setup.lease_holder() is None
    assert setup.calls("add_user") == 0

    following = setup.apply("following")
    assert following.wait(WAIT) == 0, setup.output("following")
    assert_everything_once(setup)


def test_a_second_interrupt_aborts_at_once_and_still_frees_the_lease(setup: Setup) -> None:
    # The second lead batch is held on its way: the first Ctrl-C waits for it, the second not.
    setup.sandbox.held_batch = 2
    setup.sandbox.lead_gate.clear()
    process = setup.apply("aborted")
    try:
        wait_for("the second lead batch to be on its way", setup.sandbox.lead_waiting.is_set,
                 WAIT)
        process.send_signal(signal.SIGINT)
        wait_for("the first Ctrl-C to be heard",
                 lambda: '"stop_requested"' in setup.output("aborted"), WAIT)
        process.send_signal(signal.SIGINT)
        code = process.wait(WAIT)
    finally:
        setup.sandbox.lead_gate.set()         # the held batch lands late, as a real one may
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 130, setup.output("aborted")
    (run,) = setup.apply_runs()
    assert run["outcome"] == "aborted" and run["finished_at"] is not None
    assert setup.lease_holder() is None

    following = setup.apply("following")
    assert following.wait(WAIT) == 0, setup.output("following")
    assert_everything_once(setup, in_doubt_allowed=True)
