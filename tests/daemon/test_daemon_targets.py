"""One daemon, several dialer targets: a runner, jobs and a write lease per target, one health
answer and one metrics page for all of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.adapters.state.schema import runs
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import Context
from reconciler.config.settings import DaemonSettings
from reconciler.daemon.endpoint import health
from reconciler.daemon.metrics import exposition
from reconciler.daemon.scheduler import Daemon
from reconciler.sandbox import SandboxDialer
from tests.helpers import agent, engine_context, make_crm, scraped


@pytest.fixture
def two(sqlite_state: sa.Engine, tmp_path: Path) -> Iterator[tuple[Context, Context, dict[
        str, SandboxDialer]]]:
    crm = make_crm(tmp_path, [agent("1000")], lists=[])
    dialers = {"default": SandboxDialer(), "south": SandboxDialer()}
    with engine_context(dialers["default"], sqlite_state, crm, tmp_path) as north, \
            engine_context(dialers["south"], sqlite_state, crm, tmp_path) as south:
        south = replace(south, store=StateStore(sqlite_state, "south"), settings=replace(
            south.settings, dialer=replace(south.settings.dialer, target="south")))
        yield north, south, dialers


def test_each_target_is_its_own_job_runner_and_lease(
    two: tuple[Context, Context, dict[str, SandboxDialer]]
) -> None:
    north, south, dialers = two
    daemon = Daemon(north, DaemonSettings(interval=3600), [south])
    assert {job.id for job in daemon.scheduler.get_jobs()} == {"default:all", "south:all"}
    assert sorted(daemon.runners) == ["default", "south"]
    assert daemon.runners["default"].lease.name == "apply:default"
    assert daemon.runners["south"].lease.name == "apply:south"
    assert [runner.run() for runner in daemon.runners.values()] == ["ok", "ok"]
    for dialer in dialers.values():
        assert [u["agent_user"] for u in dialer.snapshot()["users"]] == ["1000"]
    with north.store.engine.connect() as conn:
        found = conn.execute(sa.select(runs.c.target, runs.c.owner)).all()
    assert sorted(target for target, _ in found) == ["default", "south"]
    assert {owner for _, owner in found} == {r.lease.owner for r in daemon.runners.values()}


def test_health_and_metrics_cover_every_target(
    two: tuple[Context, Context, dict[str, SandboxDialer]]
) -> None:
    north, south, _ = two
    daemon = Daemon(north, DaemonSettings(interval=3600, health_max_age=60), [south])
    daemon.started_at -= timedelta(seconds=120)
    assert daemon.runners["default"].run() == "ok"
    healthy, body = health(daemon)
    assert not healthy and body["targets"]["default"]["healthy"] is True
    assert body["targets"]["south"]["reason"] == "no successful run yet"
    assert daemon.runners["south"].run() == "ok"
    assert health(daemon)[0] is True
    page = exposition(daemon.registry).decode()
    assert page.count("# HELP reconciler_runs_total ") == 1
    for target in ("default", "south"):
        assert scraped(page, "reconciler_runs_total", target=target, kind="daemon",
                       outcome="ok") == 1
        assert scraped(page, "reconciler_lease_held", target=target) == 0
        assert scraped(page, "reconciler_state_readable", target=target) == 1
    assert daemon.runners["south"].stats.runs() == {("daemon", "ok"): 1}
