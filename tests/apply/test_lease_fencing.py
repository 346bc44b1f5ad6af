"""The write lease of `apply`: a heartbeat renews it from the moment it is taken, and a process
whose lease expired and was taken over sends nothing more.

`apply` runs in this process (`main`), against a sandbox dialer served on loopback whose
`HookedSandbox` acts at the exact instant a test names: while the n-th call of one function is
being answered. State databases: SQLite and PostgreSQL (`database_url`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db, queries
from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.schema import leases, run_steps, runs, shadow_leads
from reconciler.adapters.state.store import now
from reconciler.cli.main import main
from reconciler.demo import crm as democrm
from reconciler.sandbox import start_background
from tests.helpers import EXAMPLE_SPEC, HookedSandbox, agent

LEADS_PER_BATCH = 20
AGENTS = [agent(str(3000 + n)) for n in range(4)]
LEADS = democrm.sample_leads(3 * LEADS_PER_BATCH, ("1101",))
LEASE = queries.lease_name("default")
USURPER = "usurper-host:999:feed"
WRITES = {"add_user", "update_user", "add_list", "add_multi_lead", "add_lead"}


class Takeover:
    """What another process does when our lease has expired: it takes the lease over."""

    def __init__(self, state_url: str) -> None:
        self.engine = db.open_engine(state_url)
        self.usurper = Lease(self.engine, LEASE, owner=USURPER)
        self.taken = False

    def __call__(self) -> None:
        for _ in range(5):      # expire it as a stalled heartbeat would, then take it
            with self.engine.begin() as conn:
                conn.execute(sa.update(leases).where(leases.c.name == LEASE)
                             .values(expires_at=now() - timedelta(seconds=1)))
            if self.usurper.try_acquire():
                self.taken = True
                return

    def close(self) -> None:
        self.usurper.release()
        self.engine.dispose()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)

    def run(config: Path, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(config), "--log-format", "json", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def crm(tmp_path: Path) -> str:
    url = democrm.sqlite_url(tmp_path / "crm.db")
    democrm.create_crm(url, AGENTS, democrm.LISTS[:1], LEADS).dispose()
    return url


@pytest.fixture
def state_url(database_url: str) -> Iterator[str]:
    engine = db.open_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    yield database_url


def write_config(tmp_path: Path, url: str, crm: str, state_url: str, *, state: str = "",
                 dialer: str = "") -> Path:
    path = tmp_path / "reconciler.toml"
    path.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{url}"
user = "api"
max_retries = 0
leads_per_batch = {LEADS_PER_BATCH}
{dialer}
[crm]
url = "{crm}"
[state]
url = "{state_url}"
digest_key_file = "{tmp_path / 'digest.key'}"
{state}
""", encoding="utf-8")
    return path


def apply_runs(state_url: str) -> list[dict[str, Any]]:
    engine = db.open_engine(state_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(runs).where(runs.c.kind == "apply").order_by(runs.c.started_at))
                .mappings()]
    finally:
        engine.dispose()


def batch_keys(state_url: str, key: str) -> set[str]:
    """The keys of the lead batch that carried `key`, as its intent recorded them."""
    engine = db.open_engine(state_url)
    try:
        with engine.connect() as conn:
            batch = sa.select(shadow_leads.c.batch_id).where(shadow_leads.c.lead_key == key)
            return set(conn.execute(sa.select(shadow_leads.c.lead_key).where(
                shadow_leads.c.batch_id == batch.scalar_subquery())).scalars())
    finally:
        engine.dispose()


def lead_steps(state_url: str, run_id: str) -> list[dict[str, Any]]:
    """The run's add_leads steps that sent leads."""
    engine = db.open_engine(state_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(run_steps).where(
                run_steps.c.run_id == run_id, run_steps.c.op == "add_leads",
                run_steps.c.outcome.in_(("sent", "partial")))).mappings()]
    finally:
        engine.dispose()


MOMENTS = {
    # while it plans: reading the dialer's lists, before anything is sent
    "planning": ("active_lists", 1, "elision"),
    # between two user steps: the second add_user is on its way back
    "between-steps": ("add_user", 2, "elision"),
    # between two lead batches: the second batch landed, its answer is on its way back
    "between-batches": ("add_multi_lead", 2, "elision"),
    # one lead at a time: the first lead of the second batch
    "one-by-one": ("add_lead", LEADS_PER_BATCH + 1, "vicidial"),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_process_whose_lease_was_taken_over_sends_nothing_more(
    moment: str, tmp_path: Path, crm: str, state_url: str, cli: Any
) -> None:
    function, nth, mode = MOMENTS[moment]
    takeover = Takeover(state_url)
    sandbox = HookedSandbox(function, nth, takeover, mode=mode)
    dialect = 'dialect = "vicidial"\nlead_concurrency = 1' if mode == "vicidial" else ""
    try:
        with start_background(sandbox) as server:
            config = write_config(tmp_path, server.url, crm, state_url, dialer=dialect)
            code, out, err = cli(config, "apply", "--yes")
            assert sandbox.fired.is_set() and takeover.taken
            after = sandbox.snapshot()["calls"][sandbox.calls_at_fire:]

            assert code == 1, out + err
            assert f"taken over by {USURPER}" in err
            assert "unlock --force" not in err
            writes = [c for c in after if c["function"] in WRITES]
            if mode == "vicidial":
                # One lead at a time: a lead already on its way when the main thread heard of
                # the take-over may still go, but only one of the batch in flight, whose intent
                # was committed before (the new holder never sends those); no later batch.
                trigger = sandbox.snapshot()["calls"][sandbox.calls_at_fire - 1]
                in_flight = batch_keys(state_url, trigger["params"]["vendor_lead_code"])
                assert {c["params"]["vendor_lead_code"] for c in writes} <= in_flight
                # ...and of those only leads already marked `sending`, never a queued one:
                # with one lead in flight at a time (the one answering now), none at all.
                assert writes == []
            else:
                # Nothing reached the dialer once the lease was another's.
                assert writes == []
            recorded = apply_runs(state_url)
            if moment == "planning":
                assert recorded == []          # no run began: it was refused its first write
            else:
                (run,) = recorded
                assert run["outcome"] == "lease_lost" and USURPER in run["message"]
                # Every batch that reached the dialer before is a step of the run: the one
                # whose answer was held back to be recorded with the next batch's mark too.
                before = Counter(c["function"] for c in
                                 sandbox.snapshot()["calls"][:sandbox.calls_at_fire])
                assert len(lead_steps(state_url, run["run_id"])) == before["add_multi_lead"] \
                    + math.ceil(before["add_lead"] / LEADS_PER_BATCH)

            # The usurper is done; the next apply finishes the work.
            takeover.close()
            code, out, err = cli(config, "apply", "--yes")
            assert code == 0, out + err
            code, out, err = cli(config, "plan", "--detailed-exitcode")
            assert code == 0, out + err
    finally:
        takeover.close()
    dialer = sandbox.snapshot()
    assert {u["agent_user"] for u in dialer["users"]} == {a["username"] for a in AGENTS}
    held = Counter(x["vendor_lead_code"] for x in dialer["leads"])
    assert held == Counter({str(x["id"]): 1 for x in LEADS})


def test_the_heartbeat_keeps_the_lease_through_a_long_planning_phase(
    tmp_path: Path, crm: str, sqlite_state: sa.Engine, cli: Any
) -> None:
    """Planning lasts three TTLs (the dialer is slow to answer): the lease stays ours all
    along, renewed every quarter TTL, and no other process can take it meanwhile."""
    ttl = 2.0
    state_url = str(sqlite_state.url)
    stolen: list[str] = []
    expiries: set[datetime] = set()

    def slow_planning() -> None:
        rival = Lease(sqlite_state, LEASE, owner="rival:1:beef")
        deadline = time.monotonic() + 3 * ttl
        while time.monotonic() < deadline:
            if rival.try_acquire():
                stolen.append(time.strftime("%X"))
                rival.release()
            held = rival.holder()
            if held is not None:
                expiries.add(held["expires_at"])
            time.sleep(ttl / 10)

    sandbox = HookedSandbox("active_lists", 1, slow_planning)
    with start_background(sandbox) as server:
        config = write_config(tmp_path, server.url, crm, state_url, state=f"lease_ttl = {ttl}")
        code, out, err = cli(config, "apply", "--yes")
    assert sandbox.fired.is_set()
    assert code == 0, out + err
    assert stolen == []
    assert len(expiries) >= 3           # renewed again and again while it planned
    held = Counter(x["vendor_lead_code"] for x in sandbox.snapshot()["leads"])
    assert held == Counter({str(x["id"]): 1 for x in LEADS})
    assert queries.lease_holder(sqlite_state, "default") is None
