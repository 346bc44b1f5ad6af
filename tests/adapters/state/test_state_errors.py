"""A state database that cannot be used is our StateUnavailable at the state adapter's edge,
never SQLAlchemy's or a driver's exception: the CLI prints one line naming the database and
the cause, and the daemon logs a state outage (not `run_crashed`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from reconciler.adapters.state import db, queries
from reconciler.adapters.state.leads import LeadBook
from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.store import StateStore
from reconciler.cli.main import main
from reconciler.config.settings import DaemonSettings
from reconciler.daemon.metrics import Stats
from reconciler.daemon.runner import Runner
from reconciler.errors import StateUnavailable
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import start_background
from tests.adapters.crm.test_crm_errors import Hooked, leads
from tests.helpers import agent, engine_context, make_crm, write_config

LISTS = [{"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}]


def drop(engine: sa.Engine, table: str) -> None:
    cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}{cascade}")


# Every way in: the run log, the shadow tables, the lease, the lead book (read from the
# driver's own cursor) and the read-only questions of status/history.
OPERATIONS: dict[str, tuple[str, Callable[[StateStore], Any]]] = {
    "start_run": ("runs", lambda s: s.start_run("apply")),
    "load_recorded": ("shadow_users", lambda s: s.load_recorded()),
    "lease": ("leases", lambda s: Lease(s.engine, "apply:default").try_acquire()),
    "stream_recorded": ("shadow_leads", lambda s: list(LeadBook(s).stream_recorded())),
    "recent_runs": ("runs", lambda s: queries.recent_runs(s.engine, s.target, 5)),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_broken_state_database_raises_our_error_naming_it(
    state_engine: sa.Engine, operation: str
) -> None:
    table, call = OPERATIONS[operation]
    drop(state_engine, table)
    with pytest.raises(StateUnavailable) as caught:
        call(StateStore(state_engine, "default"))
    message = str(caught.value)
    shown = state_engine.url.render_as_string(hide_password=True)
    assert message.startswith(f"state database {shown}: ")
    assert table in message and "\n" not in message


def test_an_unreachable_state_database_hides_its_password() -> None:
    engine = db.open_engine("postgresql+psycopg://rec:Canary-pw-7f3e@127.0.0.1:1/state")
    with pytest.raises(StateUnavailable) as caught:
        StateStore(engine, "default").start_run("apply")
    assert str(caught.value).startswith("state database postgresql+psycopg://rec:***@"
                                        "127.0.0.1:1/state: connection failed")
    assert "Canary" not in str(caught.value)
    engine.dispose()


def test_the_lease_insert_race_still_sees_the_integrity_error(state_engine: sa.Engine) -> None:
    first, second = Lease(state_engine, "apply:x"), Lease(state_engine, "apply:x")
    assert first.try_acquire() and not second.try_acquire()


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., int]]:
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(3))
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    sandbox = Hooked("add_list", lambda: drop(db.open_engine(state_url), "run_steps"))
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with start_background(sandbox) as server:
        path = write_config(tmp_path / "reconciler.toml", dialer_url=server.url, crm_url=crm,
                            state_url=state_url)

        def run(*args: str) -> int:
            return main(["--config", str(path), "--log-format", "json", "--log-level", "ERROR",
                         *args])

        assert run("db", "upgrade") == 0
        yield run


def test_a_state_database_broken_mid_apply_is_one_line(
    config: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert config("apply", "--yes") == 1                  # run_steps vanishes after add_list
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err == (f"error: state database sqlite:///{tmp_path / 'state.db'}: no such table: "
                   f"run_steps\n")


@pytest.mark.parametrize("command", [["status"], ["history"], ["leads", "in-doubt"], ["plan"]])
def test_a_state_file_that_is_not_a_database_is_one_line(
    config: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    state = tmp_path / "state.db"
    for leftover in tmp_path.glob("state.db-*"):
        leftover.unlink()
    state.write_bytes(b"this is not a database" * 200)
    capsys.readouterr()
    assert config(*command) == 1
    assert capsys.readouterr().err == (f"error: state database sqlite:///{state}: file is not "
                                       f"a database\n")


# --- the daemon -------------------------------------------------------------------------------


def test_the_daemon_takes_a_broken_lead_book_for_a_state_outage(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(3))
    drop(sqlite_state, "shadow_leads")
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        runner = Runner(ctx, DaemonSettings(backoff_base=10.0, lease_ttl=60.0),
                        threading.Event(), Stats(ctx.settings.dialer.target), clock=lambda: 1000.0)
        with capture_logs() as logs:
            assert runner.run() == "unavailable"
    assert [(e["event"], e["reason"]) for e in logs if e["log_level"] == "warning"] == [
        ("state_outage", f"state database {sqlite_state.url}: no such table: shadow_leads")]


def test_an_unknown_revision_is_one_line(config: Callable[..., int],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert config("db", "downgrade", "nosuch") == 1
    assert capsys.readouterr().err == ("error: state database: cannot migrate to 'nosuch': "
                                       "Can't locate revision identified by 'nosuch'\n")
