"""Shared pieces of the proof tests: canaries, a dump of the state database, a sandbox dialer
in another process, and bounded waits.

A canary is a secret made to be searched for: it is long and odd enough that finding it in a
log line, a plan, a table or an exception text can only mean it leaked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
CANARY_API = "Canary-API-7781"
T = TypeVar("T")


def agent_canary(n: int) -> str:
    """The agent password of the n-th test agent: 1-20 characters, as the dialer wants."""
    return f"Canary-Agent-{n:04d}"


def leaked(text: str, canaries: Iterable[str]) -> list[str]:
    return sorted({c for c in canaries if c and c in text})


def assert_no_canary(where: str, text: str, canaries: Iterable[str]) -> None:
    found = leaked(text, canaries)
    if found:
        at = min(text.find(c) for c in found)
        raise AssertionError(f"{where} holds {found}: ...{text[max(0, at - 120):at + 60]!r}...")


def dump_database(engine: sa.Engine) -> str:
    """Every row of every table (reflected, so a table the code does not know is seen too),
    one line per row, every value through str()."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    lines = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                lines.append(f"{table.name}: " + " | ".join(str(value) for value in row))
    return "\n".join(lines)


def sqlite_files(url: str) -> bytes:
    """The raw bytes of a SQLite database and its journals: what a backup would hold."""
    path = Path(sa.make_url(url).database or "")
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
                    if p.exists())


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20.0,
             every: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def cli_env(password: str) -> dict[str, str]:
    env = {**os.environ, "RECONCILER_DIALER_PASSWORD": password, "PYTHONUNBUFFERED": "1"}
    env.pop("RECONCILER_CONFIG", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler.cli", *args]


@dataclass
class SandboxProcess:
    """`reconciler sandbox --port 0 --state-file F` in its own process: it outlives any crash of
    the processes that call it. Stop it with stop(), always (it is killed if it will not go)."""

    proc: subprocess.Popen[bytes]
    log: Path
    state_file: Path | None
    base_url: str = ""

    @classmethod
    def start(cls, directory: Path, *, keep_state: bool = True) -> SandboxProcess:
        """keep_state: with `--state-file` (it holds the agents' passwords, for checking them;
        the sandbox rewrites it after every call, which makes every call slower)."""
        log = directory / "sandbox.log"
        state_file = directory / "sandbox.json" if keep_state else None
        extra = ["--state-file", str(state_file)] if state_file else []
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                cli_command("--log-format", "json", "sandbox", "--port", "0", *extra),
                cwd=REPO, env=cli_env(""), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr)
        return cls(proc, log, state_file)

    def wait_ready(self, timeout: float = 20.0) -> str:
        """The API URL, once the sandbox listens (it logs the port it was given)."""

        def listening() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"sandbox exited ({self.proc.returncode}):\n"
                                     + self.log.read_text(errors="replace")[-2000:])
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "sandbox_listening":
                    return str(event["url"])
            return None

        url = wait_for("the sandbox to listen", listening, timeout)
        self.base_url = url.split("/dialer/")[0]
        return url

    def state(self) -> dict[str, list[dict[str, Any]]]:
        answer = httpx.get(f"{self.base_url}/_sandbox/state", timeout=30)
        answer.raise_for_status()
        found: dict[str, list[dict[str, Any]]] = answer.json()
        return found

    def passwords(self) -> dict[str, str]:
        """Agent passwords as the dialer stored them (the sandbox's own file holds them)."""
        assert self.state_file is not None, "started without --state-file"
        stored = json.loads(self.state_file.read_text(encoding="utf-8"))
        return {u["agent_user"]: u["agent_pass"] for u in stored["users"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
