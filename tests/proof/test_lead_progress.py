"""A SIGKILL in the middle of a batch sent lead by lead (stock VICIdial's add_lead) leaves in
doubt only the leads that were on their way, never the whole batch.

`reconciler apply` runs in a subprocess against a VICIdial sandbox served from this process
(so the dialer outlives the kill), sending 50 leads in one batch, 4 at a time, each answer
slowed down so that the kill lands part-way. Afterwards at most 4 leads may be in doubt; the
next apply looks each of them up once, sends every other lead, and the dialer holds every lead
exactly once.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.schema import shadow_leads
from reconciler.cli.main import main
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import start_background
from reconciler.sandbox.wire import Answer, Incoming
from tests.helpers import backdate_lead_sends, make_crm, write_config
from tests.proof.support import REPO, cli_command, cli_env, wait_for

LEADS = 50
CONCURRENCY = 4
LIST = {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}


def lead(n: int) -> dict[str, Any]:
    return {"id": n, "list_id": "1101", "phone": f"555{n:07d}", "first_name": "Lee",
            "last_name": f"Lead {n}", "city": "Leeds", "email": None, "postal_code": "LS1"}


class WatchedSandbox(SandboxDialer):
    """A VICIdial sandbox that knows whether it is still working on a request, and since when
    it has been idle: a request sent by a process just before it was killed still lands."""

    def __init__(self) -> None:
        super().__init__(mode="vicidial")
        self.lock = threading.Lock()
        self.busy, self.idle_since = 0, time.monotonic()

    def handle(self, incoming: Incoming) -> Answer:
        with self.lock:
            self.busy += 1
        try:
            return super().handle(incoming)
        finally:
            with self.lock:
                self.busy -= 1
                self.idle_since = time.monotonic()

    def idle_for(self, seconds: float) -> bool:
        with self.lock:
            return not self.busy and time.monotonic() - self.idle_since > seconds


def test_a_kill_mid_batch_leaves_only_the_leads_in_flight_in_doubt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = make_crm(tmp_path, [], [LIST], [lead(n) for n in range(1, LEADS + 1)])
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    sandbox = WatchedSandbox()
    # 0.2 s per answer, 4 at a time: the batch takes about 2.5 s, the kill comes after 12 leads.
    sandbox.inject("latency", function="add_lead", latency=0.2, times=None)
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)

    def cli(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--config", str(config), "--log-format", "json", *args])
        return code, capsys.readouterr().out

    def adds() -> list[dict[str, Any]]:
        return [c for c in sandbox.snapshot()["calls"] if c["function"] == "add_lead"]

    with start_background(sandbox) as server:
        config = write_config(
            tmp_path / "reconciler.toml", dialer_url=server.url, crm_url=crm, state_url=state_url,
            dialer_extra=f'dialect = "vicidial"\nlead_concurrency = {CONCURRENCY}')
        assert cli("db", "upgrade")[0] == 0
        with (tmp_path / "killed.err").open("wb") as err:
            process = subprocess.Popen(
                cli_command("--config", str(config), "--log-format", "json", "apply", "--yes"),
                cwd=REPO, env=cli_env("1234"), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for("12 leads sent", lambda: len(adds()) >= 12, timeout=120, every=0.01)
        finally:
            process.kill()                               # SIGKILL: no handler, no cleanup
            process.wait(30)
        assert process.returncode == -9
        sent_before_the_kill = len(adds())
        assert sent_before_the_kill < LEADS, "the kill came too late to prove anything"
        sandbox.clear_faults()
        assert cli("unlock", "--force")[0] == 0           # the dead process's lease

        engine = db.open_engine(state_url)
        try:
            with engine.connect() as conn:
                unknown = conn.execute(sa.select(sa.func.count()).where(
                    shadow_leads.c.status.in_(("pending", "sending", "in_doubt")))).scalar_one()
        finally:
            engine.dispose()
        assert 1 <= unknown <= CONCURRENCY        # the rest: sent (recorded) or never sent

        code, out = cli("leads", "in-doubt", "--json")
        (batch,) = json.loads(out)
        assert batch["state"] == "intent" and batch["lead_count"] == LEADS
        assert batch["doubtful_leads"] == unknown
        code, out = cli("status", "--json")
        assert [b["batch_id"] for b in json.loads(out)["in_doubt_batches"]] == [
            batch["batch_id"]]

        # What the wait before a look-up is for: the requests the killed process had on their
        # way land first (accepting a connection takes the server 0.05 s at most). Then the
        # recorded times are moved back, rather than waiting the settings' two minutes.
        wait_for("the dialer to finish the killed process's requests",
                 lambda: sandbox.idle_for(1.0), timeout=60)
        engine = db.open_engine(state_url)
        try:
            backdate_lead_sends(engine)
        finally:
            engine.dispose()
        mark = len(sandbox.snapshot()["calls"])
        code, out = cli("apply", "--yes")
        assert code == 0, out
        calls = sandbox.snapshot()["calls"][mark:]
        looked_up = [c["params"]["phone_number"] for c in calls
                     if c["function"] == "lead_all_info"]
        assert len(looked_up) == len(set(looked_up)) <= batch["doubtful_leads"]
        assert cli("leads", "in-doubt", "--json")[1].strip() == "[]"
        assert cli("plan", "--detailed-exitcode")[0] == 0
    held = Counter(x.get("vendor_lead_code") for x in sandbox.snapshot()["leads"])
    assert held == Counter({str(n): 1 for n in range(1, LEADS + 1)})
