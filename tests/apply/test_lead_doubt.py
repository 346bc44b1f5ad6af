"""In-doubt leads from the operator's side: seeing them, settling them safely, and keeping them few.

`leads in-doubt BATCH` names each doubtful lead as the dialer knows it (phone, list,
vendor_lead_code, read from the CRM through the spec); `leads resolve --not-sent` waits until a
request still on its way can no longer land; `status` and `leads in-doubt` count the same
batches; and leads sent one by one are recorded one by one, so that a crash leaves only the few
in flight in doubt, each looked up once.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db, queries
from reconciler.adapters.state.leads import LeadBook
from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.schema import lead_batches, shadow_leads
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import apply_plan, gather_and_plan
from reconciler.cli.main import main
from reconciler.sandbox import SandboxDialer, SandboxTransport
from reconciler.sandbox.server import start_background
from tests.helpers import (
    backdate_lead_sends,
    crm_execute,
    engine_context,
    make_crm,
    write_config,
)

LIST = {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}
# With these settings a request may land up to 2 x 20 + (1 + 1) x 2 + 1 x 3 + 5 = 52 s after it
# was started: two read timeouts, every connection attempt and backoff, and 5 s for clocks.
TIMEOUTS = "read_timeout = 20\nconnect_timeout = 2\nmax_retries = 1\nbackoff_max = 3"
WINDOW_S = 52


def lead(n: int, **extra: Any) -> dict[str, Any]:
    row = {"id": n, "list_id": "1101", "phone": f"+1 (555) {n:03d}-0000", "first_name": "Lee",
           "last_name": f"Lead {n}", "city": "Leeds", "email": None, "postal_code": "LS1"}
    row.update(extra)
    return row


@dataclass
class Cli:
    dir: Path
    config: Path
    crm: str
    state_url: str
    sandbox: SandboxDialer
    capsys: pytest.CaptureFixture[str]

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), "--log-format", "json", "--log-level",
                     "WARNING", *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *args: str) -> Any:
        code, out, err = self.run(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    def engine(self) -> sa.Engine:
        return db.open_engine(self.state_url)

    def in_doubt_both(self) -> tuple[list[str], list[str]]:
        """The in-doubt batch ids, as `status` counts them and as `leads in-doubt` lists them."""
        status = [b["batch_id"] for b in self.json("status")["in_doubt_batches"]]
        return status, [b["batch_id"] for b in self.json("leads", "in-doubt")]

    def calls(self, function: str) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.snapshot()["calls"] if c["function"] == function]

    def backdate(self, seconds: float) -> datetime:
        engine = self.engine()
        try:
            return backdate_lead_sends(engine, seconds)
        finally:
            engine.dispose()


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          sandbox: SandboxDialer, leads: list[dict[str, Any]], extra: str = "") -> Iterator[Cli]:
    crm = make_crm(tmp_path, [], [LIST], leads)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with start_background(sandbox) as server:
        config = write_config(tmp_path / "reconciler.toml", dialer_url=server.url, crm_url=crm,
                              state_url=state_url, dialer_extra=f"backoff_base = 0\n{extra}")
        monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
        monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
        cli = Cli(tmp_path, config, crm, state_url, sandbox, capsys)
        assert cli.run("db", "upgrade")[0] == 0
        yield cli


@pytest.fixture
def doubtful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """An Elision sandbox whose one add_multi_lead answer (3 leads) was lost: a batch in doubt."""
    sandbox = SandboxDialer()
    sandbox.inject("status", function="add_multi_lead", status=503)
    for cli in start(tmp_path, monkeypatch, capsys, sandbox, [lead(n) for n in (1, 2, 3)],
                     TIMEOUTS):
        assert cli.run("apply", "--yes")[0] == 1
        yield cli


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


# --- resolve --not-sent waits for a late request ---------------------------------------------


@pytest.mark.parametrize("how", ["after-waiting", "forced"])
def test_resolve_not_sent_waits_until_a_late_request_can_no_longer_land(
    how: str, doubtful: Cli
) -> None:
    (batch,) = doubtful.json("leads", "in-doubt")
    sent_at = doubtful.backdate(10)                  # sent 10 s ago: 42 s are left to wait
    code, out, err = doubtful.run("leads", "resolve", batch["batch_id"], "--not-sent")
    assert code == 1 and out == ""
    earliest = sent_at + timedelta(seconds=WINDOW_S)
    assert f"not before {_when(earliest)}" in err, err
    assert "s from now" in err and "--force" in err
    left = int(err.split(" s from now")[0].rsplit("(", 1)[1])
    assert 30 <= left <= 42, err
    assert doubtful.json("leads", "in-doubt")[0]["batch_id"] == batch["batch_id"]

    if how == "forced":
        code, out, err = doubtful.run("leads", "resolve", batch["batch_id"], "--not-sent",
                                      "--force")
    else:
        doubtful.backdate(WINDOW_S + 1)
        code, out, err = doubtful.run("leads", "resolve", batch["batch_id"], "--not-sent")
    assert code == 0, err
    assert "3 lead(s) forgotten" in out
    assert doubtful.json("leads", "in-doubt") == []
    assert doubtful.run("apply", "--yes")[0] == 0
    assert len(doubtful.sandbox.snapshot()["leads"]) == 3


def test_resolve_sent_needs_no_wait(doubtful: Cli) -> None:
    (batch,) = doubtful.json("leads", "in-doubt")
    code, out, err = doubtful.run("leads", "resolve", batch["batch_id"], "--sent")
    assert code == 0, err
    assert "3 lead(s) recorded as sent" in out


# --- the listing: a batch's leads as the dialer knows them -----------------------------------


def test_a_batch_lists_its_leads_as_sent_and_says_which_left_the_crm(doubtful: Cli) -> None:
    (batch,) = doubtful.json("leads", "in-doubt")
    short = batch["batch_id"][:8]                    # as `status` shows it
    assert f"batch {short}" in doubtful.run("status")[1]
    crm_execute(doubtful.crm, "DELETE FROM crm_leads WHERE id = 3")

    code, out, err = doubtful.run("leads", "in-doubt", short)
    assert code == 0, err
    assert batch["batch_id"] in out
    lines = {line.split()[0]: line for line in out.splitlines()
             if line.startswith("  ") and line.split()[0] in ("1", "2", "3")}
    assert set(lines) == {"1", "2", "3"}
    for n in (1, 2):                                  # the phone as sent: digits only
        assert lines[str(n)].split()[1:4] == [f"1555{n:03d}0000", "1101", str(n)], lines
    assert "no longer in the CRM" in lines["3"]

    document = doubtful.json("leads", "in-doubt", short)
    assert document["batch"]["batch_id"] == batch["batch_id"]
    by_key = {x["key"]: x for x in document["leads"]}
    assert by_key["1"] == {**by_key["1"], "phone_number": "15550010000", "list_id": "1101",
                           "vendor_lead_code": "1", "crm": "unchanged", "status": "in_doubt"}
    assert by_key["3"]["crm"] == "gone" and by_key["3"]["phone_number"] is None

    code, out, err = doubtful.run("leads", "resolve", short, "--sent")  # the short id works
    assert code == 0, err
    assert doubtful.json("leads", "in-doubt") == []


def test_an_ambiguous_short_id_is_an_error_naming_the_candidates(doubtful: Cli) -> None:
    engine = doubtful.engine()
    try:
        with engine.begin() as conn:
            for n in (1, 2):
                conn.execute(sa.insert(lead_batches).values(
                    batch_id=f"abcd{n}000-0000-4000-8000-000000000000", target="default",
                    list_id="1101", run_id=None, state="in_doubt", lead_count=0,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC), message="by hand"))
    finally:
        engine.dispose()
    for args in (("leads", "in-doubt", "abcd"), ("leads", "resolve", "abcd", "--sent")):
        code, _, err = doubtful.run(*args)
        assert code == 1
        assert "ambiguous" in err and "abcd1000-" in err and "abcd2000-" in err, err
    code, _, err = doubtful.run("leads", "resolve", "ffff", "--sent")
    assert code == 1 and "no lead batch" in err


# --- status and leads in-doubt agree ---------------------------------------------------------


def test_status_and_in_doubt_agree_on_a_batch_cut_short_by_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for cli in start(tmp_path, monkeypatch, capsys, SandboxDialer(), [lead(1)]):
        engine = cli.engine()
        try:
            book = LeadBook(StateStore(engine, "default"))
            both = cli.in_doubt_both
            # A live apply holds the lease while it sends: its batch is not in doubt yet.
            live = Lease(engine, queries.lease_name("default"), owner="host:1:live")
            assert live.try_acquire()
            batch_id = book.record_intent("live-run", "1101", [("1", {}, "digest-1")])
            assert both() == ([], [])
            # Its process died (the lease expired, or `unlock --force`): now it is, in both.
            live.release()
            assert both() == ([batch_id], [batch_id])
            assert "In-doubt lead batches: 1" in cli.run("status")[1]
            # The next apply records it in doubt; still the same answer from both.
            assert cli.run("apply", "--yes")[0] == 0
            assert both() == ([batch_id], [batch_id])
        finally:
            engine.dispose()


# --- one by one: a crash leaves only the leads in flight in doubt ----------------------------


class Crash(BaseException):
    """The process dies here: no handler of ours catches a BaseException."""


class CrashingSandbox(SandboxDialer):
    """A VICIdial sandbox whose n-th add_lead request kills the process that sends it."""

    def __init__(self, crash_at: int) -> None:
        super().__init__(mode="vicidial")
        self.crash_at, self.adds = crash_at, 0
        self.lock = threading.Lock()

    def transport(self) -> SandboxTransport:
        return _CrashingTransport(self)


class _CrashingTransport(SandboxTransport):
    def __init__(self, dialer: CrashingSandbox) -> None:
        super().__init__(dialer)
        self.owner = dialer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if b"function=add_lead" in request.url.query + request.read():
            with self.owner.lock:
                self.owner.adds += 1
                crash = self.owner.adds == self.owner.crash_at
            if crash:
                raise Crash
        return super().handle_request(request)


def held(sandbox: SandboxDialer) -> Counter[str]:
    return Counter(x.get("vendor_lead_code", "") for x in sandbox.snapshot()["leads"])


def test_a_crash_mid_batch_leaves_only_the_leads_in_flight_in_doubt(
    state_engine: sa.Engine, tmp_path: Path
) -> None:
    sandbox = CrashingSandbox(crash_at=20)
    crm = make_crm(tmp_path, [], [LIST], [lead(n) for n in range(1, 51)])
    with engine_context(sandbox, state_engine, crm, tmp_path, dialect="vicidial",
                        lead_concurrency=4, leads_per_batch=500) as ctx:
        with pytest.raises(Crash):
            apply_plan(ctx, gather_and_plan(ctx))
        book = LeadBook(ctx.store)
        with state_engine.connect() as conn:
            statuses = Counter(conn.execute(sa.select(shadow_leads.c.status)).scalars())
        unknown = sum(statuses[s] for s in ("pending", "sending", "in_doubt"))
        assert 1 <= unknown <= 4                   # at most lead_concurrency were on their way
        assert statuses["sent"] + unknown + statuses["queued"] == 50 and statuses["queued"]
        assert statuses["sent"] + unknown >= len(held(sandbox))
        (batch,) = queries.in_doubt_batches(state_engine, "default")
        assert batch["doubtful_leads"] == unknown

        # The next apply looks each doubtful lead up once, then sends every other lead.
        backdate_lead_sends(state_engine)
        mark = len(sandbox.snapshot()["calls"])
        report = apply_plan(ctx, gather_and_plan(ctx))
        assert report.outcome == "ok", report.failures
        calls = sandbox.snapshot()["calls"][mark:]
        looked_up = [c["params"]["phone_number"] for c in calls
                     if c["function"] == "lead_all_info"]
        assert len(looked_up) == len(set(looked_up)) <= batch["doubtful_leads"]
        assert not book.in_doubt_batches()
        assert not gather_and_plan(ctx).plan.has_changes
    assert held(sandbox) == Counter({str(n): 1 for n in range(1, 51)})


def test_a_saved_plan_is_applied_without_looking_the_leads_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = SandboxDialer(mode="vicidial")
    sandbox.inject("drop", function="add_lead")       # lands; its answer is lost
    for cli in start(tmp_path, monkeypatch, capsys, sandbox, [lead(n) for n in (1, 2, 3)],
                     'dialect = "vicidial"\nlead_concurrency = 1'):
        assert cli.run("apply", "--yes")[0] == 1
        assert len(cli.json("leads", "in-doubt")) == 1
        cli.backdate(3600)
        plan_file = tmp_path / "plan.json"
        assert cli.run("plan", "--out", str(plan_file))[0] == 0
        assert len(cli.calls("lead_all_info")) == 1
        code, out, err = cli.run("apply", str(plan_file), "--yes")
        assert code == 0, out + err
        assert len(cli.calls("lead_all_info")) == 1     # the plan's look-up, not a second one
        assert cli.json("leads", "in-doubt") == []
    assert held(sandbox) == Counter({"1": 1, "2": 1, "3": 1})
