"""Shared fixtures: the sandbox dialer, state databases on SQLite and PostgreSQL, a demo CRM.

PostgreSQL: the session starts a throwaway server (initdb + pg_ctl on a free loopback port) when
the binaries are on the machine, and skips the PostgreSQL cases when they are not — unless
RECONCILER_REQUIRE_POSTGRES=1 (CI), where a missing server fails the run instead.

Hypothesis: with CI=true (`.ci/run` sets it) the "ci" profile draws the same examples on every
run and sets no deadline, so a CI failure is reproducible and never a slow machine's timing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from hypothesis import settings

from reconciler.adapters.state import db
from reconciler.sandbox import SandboxDialer

settings.register_profile("ci", derandomize=True, deadline=None, database=None,
                          print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster in a temp dir; run as `postgres` when we are root."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres")
            self.root.chmod(0o700)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        assert self.initdb and self.pg_ctl
        self._run([self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-instructions"])
        self._run([self.pg_ctl, "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                   "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1 -F", "start"])

    def stop(self) -> None:
        if self.pg_ctl and self.data.exists():
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                      check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return self.url(name)

    def _run(self, cmd: list[str], check: bool = True) -> None:
        subprocess.run([*self.as_user, *cmd], check=check, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    if not (server.initdb and server.pg_ctl):
        shutil.rmtree(server.root, ignore_errors=True)
        if os.environ.get("RECONCILER_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are required here but missing")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: PostgreSQL cases skipped")
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')[-500:]}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def state_engine(database_url: str) -> Iterator[sa.Engine]:
    """A state database at the current schema, on SQLite and PostgreSQL."""
    engine = db.open_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_state(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'state.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sandbox() -> SandboxDialer:
    return SandboxDialer()


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Commands configure structlog globally; give every test the defaults back."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
