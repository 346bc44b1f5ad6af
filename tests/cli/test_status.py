"""`status`, `history` and `show`: what the state database says, at a glance and as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db, queries
from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.schema import lead_batches
from reconciler.cli.main import main
from reconciler.config.settings import DaemonSettings
from reconciler.errors import ReconcilerError
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import start_background
from tests.helpers import agent, make_crm, write_config


class Cli:
    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str], state_url: str) -> None:
        self.config, self.capsys, self.state_url = config, capsys, state_url

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), "--log-format", "json", "--log-level",
                     "WARNING", *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def engine(self) -> sa.Engine:
        return db.open_engine(self.state_url)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    agents = [agent("1000"), agent("1001", level=12), agent("1002", team="NIGHTS")]
    crm = make_crm(tmp_path, agents, lists=[
        {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}])
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with start_background(SandboxDialer()) as server:
        config = write_config(tmp_path / "reconciler.toml", dialer_url=server.url, crm_url=crm,
                              state_url=state_url)
        monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
        monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
        found = Cli(config, capsys, state_url)
        assert found.run("db", "upgrade")[0] == 0
        yield found


def test_status_before_any_run(cli: Cli) -> None:
    code, out, _ = cli.run("status")
    assert code == 0
    assert out.splitlines()[:2] == ["Dialer target: default", "Lock: free"]
    assert "  users   never" in out and "  none yet" in out
    assert "In-doubt lead batches: none" in out and "Rejected rows: none" in out
    assert cli.run("history")[1] == "No runs yet.\n"


def test_status_after_plan_and_apply(cli: Cli) -> None:
    assert cli.run("plan")[0] == 0
    assert cli.run("apply", "--yes")[0] == 3
    code, out, _ = cli.run("status")
    assert code == 0
    assert "\n  users   " in out and " apply " in out and " partial " in out
    assert "Last run of each kind:\n  apply " in out and "\n  plan " in out
    assert "1 CRM row(s) fail our checks" in out
    assert "1 refused by the dialer in run" in out
    assert "    add_user 1002:" in out and "USER GROUP DOES NOT EXIST" in out

    document = json.loads(cli.run("status", "--json")[1])
    assert document["resources"]["users"]["kind"] == "apply"
    assert document["rejected"]["crm_rows"] == 1
    assert [s["key"] for s in document["rejected"]["dialer_steps"]] == ["1002"]
    assert document["lock"] is None and document["in_doubt_batches"] == []


def test_status_lists_the_changes_the_dialer_refused_and_that_are_held_back(cli: Cli) -> None:
    assert cli.run("apply", "--yes")[0] == 3
    run_id = json.loads(cli.run("history", "--json")[1])[0]["run_id"]
    cli.run("apply", "--yes")                              # 1002 is not sent again
    out = cli.run("status")[1]
    assert ("  1 change(s) refused by the dialer, not sent again until their CRM row changes "
            "(or `reconciler resync`):\n"
            f"    add_user 1002 (run {run_id[:8]}, ") in out
    assert "USER GROUP DOES NOT EXIST" in out.split("not sent again")[1]
    (held,) = json.loads(cli.run("status", "--json")[1])["rejected"]["dialer_held"]
    assert (held["resource"], held["key"], held["op"], held["run_id"]) == (
        "users", "1002", "add_user", run_id)
    assert held["message"].startswith("add_user: dialer rejected the request: USER GROUP")


def test_status_shows_lock_holder_and_in_doubt_batches(cli: Cli) -> None:
    engine = cli.engine()
    try:
        Lease(engine, queries.lease_name("default"), owner="crm-host:4242:beef").try_acquire()
        with engine.begin() as conn:
            conn.execute(sa.insert(lead_batches).values(
                batch_id="b7e1c0de-0000-4000-8000-000000000001", target="default",
                list_id="1101", run_id=None, state="in_doubt", lead_count=500,
                created_at=datetime(2026, 5, 9, 12, 0, tzinfo=UTC),
                message="no answer to add_multi_lead"))
    finally:
        engine.dispose()
    out = cli.run("status")[1]
    assert "Lock: held by crm-host:4242:beef since " in out
    assert "In-doubt lead batches: 1\n  batch b7e1c0de  list 1101  500 leads  since " \
           "2026-05-09 12:00:00Z  no answer to add_multi_lead" in out
    document = json.loads(cli.run("status", "--json")[1])
    assert document["lock"]["owner"] == "crm-host:4242:beef"
    assert document["in_doubt_batches"][0]["lead_count"] == 500


def test_history_and_show(cli: Cli) -> None:
    cli.run("plan")
    cli.run("apply", "--yes")
    code, out, _ = cli.run("history", "--limit", "5")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("RUN       STARTED (UTC)")
    assert [line.split()[3] for line in lines[1:]] == ["apply", "plan"]
    assert "2 created, 1 crm_rejected, 1 rejected" in lines[1]
    assert len(cli.run("history", "--limit", "1")[1].splitlines()) == 2

    run_id = json.loads(cli.run("history", "--json")[1])[0]["run_id"]
    code, out, _ = cli.run("show", run_id[:8])
    assert code == 0 and out.startswith(f"Run {run_id}\n  kind      apply\n")
    assert "  outcome   partial" in out and "Steps: 3" in out
    step_lines = out.split("Steps: 3\n")[1].splitlines()
    assert step_lines[1].split()[:4] == ["1", "add_list", "1101", "created"]
    assert "USER GROUP DOES NOT EXIST" in step_lines[3]
    shown = json.loads(cli.run("show", run_id, "--json")[1])
    assert [s["seq"] for s in shown["steps"]] == [1, 2, 3]

    code, _, err = cli.run("show", "ffffffff")
    assert code == 1 and "no run 'ffffffff'" in err


def test_status_needs_no_dialer_password(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_DIALER_PASSWORD")
    assert cli.run("status")[0] == 0
    assert cli.run("history")[0] == 0


def test_daemon_settings_default_when_absent(cli: Cli) -> None:
    from reconciler.config.load import load_settings

    assert load_settings(cli.config, {}).daemon == DaemonSettings()


def test_queries_on_each_backend(state_engine: sa.Engine) -> None:
    from reconciler.adapters.state.store import StateStore

    store = StateStore(state_engine, "default")
    plan_run = store.start_run("plan", "d1")
    store.finish_run(plan_run, "planned", {"add_user": 1})
    applied = store.start_run("daemon", "d1")
    store.commit_step(applied, 1, "add_user", "1000", "created", "", 5)
    store.commit_step(applied, 2, "add_user", "1001", "rejected", "bad group", 5)
    store.finish_run(applied, "partial", {"created": 1, "rejected": 1})
    refused = store.start_run("daemon-users", "d2")
    store.finish_run(refused, "refused", {}, "guards")

    by_kind = queries.latest_runs_by_kind(state_engine, "default")
    assert {k: r["run_id"] for k, r in by_kind.items()} == {
        "plan": plan_run, "daemon": applied, "daemon-users": refused}
    success = queries.last_success(state_engine, "default")
    assert success is not None and success.tzinfo is not None
    assert success == by_kind["daemon"]["finished_at"]
    assert queries.latest_applied_run(state_engine, "default")["run_id"] == refused
    assert queries.step_counts(state_engine, applied) == {
        ("add_user", "created"): 1, ("add_user", "rejected"): 1}
    assert [s["key"] for s in queries.steps_of(state_engine, applied, "rejected")] == ["1001"]
    assert queries.find_run(state_engine, applied[:12])["run_id"] == applied
    for bad in ("%", "_", ""):
        with pytest.raises(ReconcilerError):
            queries.find_run(state_engine, bad)
    assert queries.recent_runs(state_engine, "other-target", 5) == []
    assert queries.lease_holder(state_engine, "default") is None
