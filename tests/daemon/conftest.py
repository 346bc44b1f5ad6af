"""Run `reconciler daemon` in subprocesses against a sandbox dialer served from this process.

Every wait polls the sandbox, the state database or the daemon's log with a deadline; nothing
sleeps blindly. Every daemon started here is killed when its test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db, queries
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import BackgroundServer, start_background
from tests.helpers import EXAMPLE_SPEC, agent, make_crm

REPO = Path(__file__).resolve().parents[2]
TOKEN = "daemon-test-token-" + "5" * 24
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue          # a traceback or a line from the interpreter: not an event
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def wait_event(self, name: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]]:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before {name}:\n"
                                     + self.log.read_text()[-3000:])
            found = self.events(name)
            return found if len(found) >= count else []
        return wait_for(f"{count} x {name}", enough, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@dataclass
class Harness:
    dir: Path
    crm: str
    sandbox: SandboxDialer
    server: BackgroundServer
    state_url: str
    processes: list[DaemonProcess] = field(default_factory=list)

    def config(self, daemon: str, dialer: str = "", name: str = "reconciler.toml") -> Path:
        path = self.dir / name
        path.write_text(f"""
[reconciler]
spec = "{EXAMPLE_SPEC}"
[dialer]
url = "{self.server.url}"
user = "api"
source = "daemontest"
max_retries = 0
connect_timeout = 2
read_timeout = 10
{dialer}
[crm]
url = "{self.crm}"
[state]
url = "{self.state_url}"
digest_key_file = "{self.dir / 'digest.key'}"
[daemon]
{daemon}
""", encoding="utf-8")
        return path

    def start(self, config: Path, name: str = "daemon", level: str = "INFO") -> DaemonProcess:
        log = self.dir / f"{name}.log"
        env = {**os.environ, "RECONCILER_DIALER_PASSWORD": "1234",
               "RECONCILER_DAEMON_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        env.pop("RECONCILER_CONFIG", None)
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler.cli", "--config", str(config),
                 "--log-format", "json", "--log-level", level, "daemon"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr)
        process = DaemonProcess(proc, log)
        self.processes.append(process)
        return process

    def stop_sandbox(self) -> int:
        port = self.server.port
        self.server.stop()
        return port

    def restart_sandbox(self, port: int) -> None:
        # The same SandboxDialer object keeps its data across the outage.
        self.server = start_background(self.sandbox, port=port)

    def users(self) -> dict[str, dict[str, Any]]:
        return {u["agent_user"]: u for u in self.sandbox.snapshot()["users"]}

    def functions(self) -> list[str]:
        return [c["function"] for c in self.sandbox.snapshot()["calls"]]

    def query(self, read: Callable[[sa.Engine], T]) -> T:
        engine = db.open_engine(self.state_url)
        try:
            return read(engine)
        finally:
            engine.dispose()

    def runs(self) -> list[dict[str, Any]]:
        return self.query(lambda e: queries.recent_runs(e, "default", 10_000))[::-1]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    crm = make_crm(tmp_path, [agent("1000"), agent("1001")], lists=[
        {"id": "1101", "name": "Spring Renewals", "campaign": "TESTCAMP", "is_active": 1}])
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = db.open_engine(state_url)
    db.upgrade(engine)
    engine.dispose()
    sandbox = SandboxDialer()
    found = Harness(tmp_path, crm, sandbox, start_background(sandbox), state_url)
    try:
        yield found
    finally:
        for process in found.processes:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(10)
        found.server.stop()
