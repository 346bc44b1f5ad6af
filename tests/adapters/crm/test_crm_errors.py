"""A CRM that cannot be read ends in one line naming the resource and the cause, never a
driver's traceback; the daemon counts it as a CRM outage. Leads are read from the driver's
own cursor (adapters.keyorder), so they are proved here separately from users and lists."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from reconciler.adapters.crm.leads import stream_leads
from reconciler.adapters.crm.source import CrmUnavailable, open_crm
from reconciler.adapters.keyorder import CHUNK
from reconciler.adapters.state import queries
from reconciler.app.engine import Context, apply_plan, gather_and_plan
from reconciler.cli.main import main
from reconciler.config.settings import DaemonSettings
from reconciler.config.spec import load_spec
from reconciler.daemon.metrics import Stats
from reconciler.daemon.runner import Runner
from reconciler.demo import crm as democrm
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import start_background
from reconciler.sandbox.wire import Answer, Incoming, parse_params
from tests.conftest import PostgresServer
from tests.helpers import (
    EXAMPLE_SPEC,
    agent,
    crm_execute,
    engine_context,
    make_crm,
    write_config,
)

LISTS = [{"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}]
QUERY = ("SELECT id, list_id, phone, first_name, last_name, city, email, postal_code "
         "FROM crm_leads")


def leads(count: int) -> list[dict[str, Any]]:
    return [{"id": n, "list_id": "1101", "phone": f"555{n:07d}", "first_name": "Lee",
             "last_name": None, "city": None, "email": None, "postal_code": None}
            for n in range(1, count + 1)]


def spec_with(tmp_path: Path, source: str, *, city: str = "city",
              leads_only: bool = False) -> Path:
    """The example spec with another [leads] source and `city` column; or its leads alone."""
    head, _, tail = EXAMPLE_SPEC.read_text().partition("[leads]\n")
    rest = tail.split("\nkey = ", 1)[1].replace('city = "city"', f'city = "{city}"')
    path = tmp_path / "spec.toml"
    path.write_text(f"{'version = 1' if leads_only else head}\n[leads]\n{source}\nkey = {rest}")
    return path


class Cli:
    def __init__(self, tmp_path: Path, crm: str, server_url: str) -> None:
        self.tmp_path, self.crm, self.server_url = tmp_path, crm, server_url

    def run(self, spec: Path, *args: str, crm: str | None = None) -> int:
        config = write_config(self.tmp_path / "reconciler.toml", dialer_url=self.server_url,
                              crm_url=crm or self.crm, spec=spec,
                              state_url=f"sqlite:///{self.tmp_path / 'state.db'}")
        return main(["--config", str(config), "--log-format", "json", "--log-level", "ERROR",
                     *args])


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(20))
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    with start_background(SandboxDialer()) as server:
        found = Cli(tmp_path, crm, server.url)
        assert found.run(EXAMPLE_SPEC, "db", "upgrade") == 0
        yield found


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# (what is wrong, the [leads] source, the column `city` comes from, the cause named)
BAD_LEAD_SOURCES = [
    ("wrong column in the query", f'query = "{QUERY.replace("city,", "town AS city,")}"',
     "city", "no such column: town"),
    ("wrong table in the query", f'query = "{QUERY.replace("crm_leads", "crm_leadz")}"',
     "city", "no such table: crm_leadz"),
    ("wrong table", 'table = "crm_leadz"', "city", "no such table: crm_leadz"),
    ("wrong column of the table", 'table = "crm_leads"', "town",
     "no such column: crm_leads.town"),
]


@pytest.mark.parametrize(("source", "city", "cause"), [b[1:] for b in BAD_LEAD_SOURCES],
                         ids=[b[0] for b in BAD_LEAD_SOURCES])
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_wrong_leads_column_or_table_is_one_line_naming_leads_and_the_cause(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, source: str,
    city: str, cause: str,
) -> None:
    spec = spec_with(tmp_path, source, city=city)
    capsys.readouterr()
    assert cli.run(spec, command, *(["--yes"] if command == "apply" else [])) == 1
    assert one_error_line(capsys) == f"error: leads: CRM query failed: {cause}\n"


def test_a_locked_crm_is_one_line(cli: Cli, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_with(tmp_path, f'query = "{QUERY}"', leads_only=True)
    holder = sqlite3.connect(tmp_path / "crm.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")          # a long write on the CRM side
    try:
        assert cli.run(spec, "plan", crm=f"{cli.crm}?timeout=0.1") == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert one_error_line(capsys) == "error: leads: CRM query failed: database is locked\n"


def test_a_crm_lost_after_the_plan_is_met_in_one_line_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apply sends the leads its plan read (kept with the plan, docs/leads.md): the CRM lost
    once the run began stops nothing; the next run that reads it fails in one line."""
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(20))
    monkeypatch.setenv("RECONCILER_DIALER_PASSWORD", "1234")
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    sandbox = Hooked("add_user", lambda: crm_execute(crm, "DROP TABLE crm_leads"))
    with start_background(sandbox) as server:
        cli = Cli(tmp_path, crm, server.url)
        assert cli.run(EXAMPLE_SPEC, "db", "upgrade") == 0
        assert cli.run(EXAMPLE_SPEC, "apply", "--yes") == 0
        assert len(sandbox.snapshot()["leads"]) == 20
        capsys.readouterr()
        assert cli.run(EXAMPLE_SPEC, "apply", "--yes") == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert err.splitlines()[-1] == "error: leads: CRM query failed: no such table: crm_leads"
        assert cli.run(EXAMPLE_SPEC, "history", "--json") == 0
    (run, *_) = json.loads(capsys.readouterr().out)
    assert (run["kind"], run["outcome"]) == ("apply", "ok")


def test_a_crm_lost_during_an_apply_that_reads_it_again_fails_the_run_in_one_line(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    """A plan kept without its batches is applied by reading the CRM again."""
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(5))
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        gathered = gather_and_plan(ctx, keep_batches=False)
        crm_execute(crm, "DROP TABLE crm_leads")
        with pytest.raises(CrmUnavailable):
            apply_plan(ctx, gathered)
        (run,) = queries.recent_runs(sqlite_state, "default", 5)
    assert run["outcome"] == "failed"
    assert run["message"] == "CRM unavailable: leads: CRM query failed: no such table: crm_leads"
    assert run["counts"] == {"created": 2}            # the list and the user were applied


def test_a_missing_sqlite_crm_is_named_and_never_created(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such" / ".." / "crm-typo.db"
    capsys.readouterr()
    assert cli.run(EXAMPLE_SPEC, "plan", crm=f"sqlite:///{missing}") == 1
    assert one_error_line(capsys) == (
        f"error: crm.url: the SQLite database {tmp_path / 'crm-typo.db'} does not exist (the "
        f"CRM is only read, never created)\n")
    assert not (tmp_path / "crm-typo.db").exists()


def test_a_sqlite_crm_is_opened_read_only(cli: Cli, tmp_path: Path) -> None:
    crm = open_crm(f"{cli.crm}?timeout=0.1")
    with crm.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM crm_leads").scalar() == 20
        conn.exec_driver_sql("PRAGMA query_only = OFF")    # even past our own guard
        with pytest.raises(sa.exc.OperationalError, match="readonly database"):
            conn.exec_driver_sql("DELETE FROM crm_leads")
    crm.dispose()


class Hooked(SandboxDialer):
    """The sandbox, running `then` once, right after it answered a call of `function`."""

    def __init__(self, function: str, then: Callable[[], None]) -> None:
        super().__init__()
        self._function, self._then = function, then
        self._fired = threading.Event()

    def handle(self, incoming: Incoming) -> Answer:
        answer = super().handle(incoming)
        if parse_params(incoming).get("function") == self._function \
                and not self._fired.is_set():
            self._fired.set()
            self._then()
        return answer


def test_a_postgresql_crm_lost_mid_stream_is_crm_unavailable(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    democrm.create_crm(url, [], LISTS, leads(2 * CHUNK + 10)).dispose()
    spec = load_spec(spec_with(tmp_path, f'query = "{QUERY}"', leads_only=True))
    assert spec.leads is not None
    crm = open_crm(url)
    rows = stream_leads(crm, spec.leads)
    read = [next(rows)]                               # the first chunk is fetched
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :name"), {"name": url.rsplit("/", 1)[1]})
    admin.dispose()
    with pytest.raises(CrmUnavailable) as caught:
        read.extend(rows)
    assert len(read) >= CHUNK                         # it failed mid-stream, not at the start
    # The cause itself, not what closing the dead connection said afterwards.
    assert str(caught.value) == ("leads: CRM query failed: terminating connection due to "
                                 "administrator command")
    crm.dispose()


# --- the daemon -------------------------------------------------------------------------------


def daemon_run(ctx: Context) -> tuple[str, list[dict[str, Any]]]:
    runner = Runner(ctx, DaemonSettings(backoff_base=10.0, backoff_max=40.0, lease_ttl=60.0),
                    threading.Event(), Stats(ctx.settings.dialer.target), clock=lambda: 1000.0)
    with capture_logs() as logs:
        outcome = runner.run()
    return outcome, logs


def test_the_daemon_takes_a_wrong_leads_column_for_a_crm_outage(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(5))
    spec = spec_with(tmp_path, 'table = "crm_leads"', city="town")
    with engine_context(sandbox, sqlite_state, crm, tmp_path, spec_path=spec) as ctx:
        outcome, logs = daemon_run(ctx)
    assert outcome == "unavailable"
    loud = [(e["event"], e.get("reason")) for e in logs if e["log_level"] in ("warning", "error")]
    assert loud == [("crm_outage",
                     "CRM unavailable: leads: CRM query failed: no such column: crm_leads.town")]
    run = queries.latest_runs_by_kind(sqlite_state, "default")["daemon"]
    assert run["outcome"] == "unavailable"


def test_the_daemon_takes_a_crm_lost_after_its_plan_for_a_crm_outage_next_run(
    sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm = make_crm(tmp_path, [agent("1000")], LISTS, leads(5))
    sandbox = Hooked("add_user", lambda: crm_execute(
        crm, "ALTER TABLE crm_leads RENAME TO crm_leads_away"))
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as ctx:
        outcome, _ = daemon_run(ctx)             # sends what its plan read
        assert len(sandbox.snapshot()["leads"]) == 5
        outcome, logs = daemon_run(ctx)
        assert outcome == "unavailable"
        assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] \
            == ["crm_outage"]
        crm_execute(crm, "ALTER TABLE crm_leads_away RENAME TO crm_leads")
        assert not gather_and_plan(ctx, keep_batches=False).plan.has_changes
    assert len(sandbox.snapshot()["leads"]) == 5


def test_the_daemon_takes_a_deleted_crm_file_for_a_crm_outage(
    sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path
) -> None:
    crm_url = make_crm(tmp_path, [agent("1000")], LISTS, leads(5))
    crm_file = tmp_path / "crm.db"
    with engine_context(sandbox, sqlite_state, crm_url, tmp_path) as test_ctx:
        ctx = replace(test_ctx, crm=open_crm(crm_url))       # as `reconciler daemon` opens it
        kept = crm_file.read_bytes()
        crm_file.unlink()                                 # deleted under a running daemon
        outcome, logs = daemon_run(ctx)
        assert outcome == "unavailable" and not crm_file.exists()
        assert [(e["event"], e["reason"]) for e in logs if e["log_level"] == "warning"] == [
            ("crm_outage", "CRM unavailable: users: CRM query failed: unable to open database "
                           "file")]
        crm_file.write_bytes(kept)
        assert gather_and_plan(ctx).plan.has_changes      # readable again, as it was
        ctx.crm.dispose()
