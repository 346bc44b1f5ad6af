"""The command line starts light: `--version`, `--help` and a bad command line load none of the
libraries the commands use, and each command loads only what it needs (`status` no dialer
client and no daemon, `plan` no scheduler, metrics, sandbox or migrations).

Each command runs in a fresh interpreter, which then lists the modules it loaded: this test
session has long loaded everything. No timing: what is not imported costs nothing."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.adapters.state import db
from reconciler.cli.main import COMMANDS, build_parser
from reconciler.sandbox import SandboxDialer
from reconciler.sandbox.server import start_background
from tests.helpers import REPO, agent, make_crm, write_config

# What a command that does not use them must not load.
LIBRARIES = ("sqlalchemy", "httpx", "apscheduler", "prometheus_client", "rich", "alembic",
             "structlog")
OURS_BESIDE = ("reconciler.daemon", "reconciler.sandbox", "reconciler.widget",
               "reconciler.demo", "reconciler.app", "reconciler.adapters")
MARK = "--- modules ---"
RUN_AND_LIST = f"""
import sys
from reconciler.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print({MARK!r}, code)
print("\\n".join(sorted(sys.modules)))
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """Run `reconciler ARGS` in a fresh interpreter: its exit code, output and modules."""
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST, *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})
    output, _, listed = done.stdout.partition(MARK)
    assert listed, done.stderr
    code, *modules = listed.split()
    return int(code), output, set(modules)


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The modules of `modules` that are one of `names` or inside one."""
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


@pytest.mark.parametrize("args", [["--version"], ["--help"], [], ["no-such-command"]])
def test_version_help_and_a_bad_command_line_load_nothing_heavy(args: list[str]) -> None:
    code, output, modules = run_cli(*args)
    assert code == {"--version": 0, "--help": 0}.get(args[0] if args else "", 64)
    if args == ["--version"]:
        assert output.strip().startswith("reconciler ")
    if args == ["--help"]:
        assert all(name in output for name in COMMANDS)     # every command is listed
    assert loaded(modules, LIBRARIES + OURS_BESIDE) == []


def test_a_command_help_loads_its_own_module_only() -> None:
    code, output, modules = run_cli("status", "--help")
    assert code == 0 and "--json" in output
    assert "reconciler.cli.commands.status" in modules
    assert loaded(modules, ("reconciler.cli.commands.runs", "reconciler.cli.commands.daemon",
                            "reconciler.cli.commands.demo", "reconciler.widget")) == []


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Settings for a CRM with one agent and a state database at the head revision."""
    crm = make_crm(tmp_path, [agent("1000")])
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = db.open_engine(state_url)
    db.upgrade(engine)
    engine.dispose()
    return write_config(tmp_path / "reconciler.toml", dialer_url="http://127.0.0.1:1/x",
                        crm_url=crm, state_url=state_url)


def test_status_loads_no_dialer_client_daemon_metrics_or_migrations(config: Path) -> None:
    code, output, modules = run_cli("--config", str(config), "status",
                                    env={"RECONCILER_DIALER_PASSWORD": "1234"})
    assert code == 0 and "Lock: free" in output
    assert "sqlalchemy" in modules                        # it did read the state database
    assert loaded(modules, ("httpx", "apscheduler", "prometheus_client", "alembic",
                            "reconciler.daemon", "reconciler.sandbox", "reconciler.widget",
                            "reconciler.demo")) == []


def test_plan_loads_no_scheduler_metrics_sandbox_or_migrations(config: Path) -> None:
    with start_background(SandboxDialer()) as server:     # in this process, not the child's
        config.write_text(config.read_text().replace("http://127.0.0.1:1/x", server.url))
        code, output, modules = run_cli("--config", str(config), "--log-level", "WARNING",
                                        "plan", env={"RECONCILER_DIALER_PASSWORD": "1234"})
    assert code == 0 and "+ user 1000 'Agent 1000'" in output
    assert "httpx" in modules                             # it did ask the dialer
    assert loaded(modules, ("apscheduler", "prometheus_client", "alembic", "reconciler.sandbox",
                            "reconciler.widget", "reconciler.demo",
                            "reconciler.daemon.scheduler", "reconciler.daemon.metrics")) == []


def test_the_stubs_name_every_command_with_its_module_help_line() -> None:
    """`reconciler --help` shows the help lines of COMMANDS: the ones the modules register."""
    def help_lines(parser: argparse.ArgumentParser) -> dict[str, str | None]:
        (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {action.dest: action.help for action in sub._choices_actions}

    full = help_lines(build_parser())
    assert full == help_lines(build_parser(()))
    assert full == {name: help_line for name, (_module, help_line) in COMMANDS.items()}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_is_registered_in_full_by_its_module(name: str) -> None:
    """Given the command, the parser holds its module's own sub-parser, not the stub."""
    (sub,) = (a for a in build_parser([name])._actions
              if isinstance(a, argparse._SubParsersAction))
    assert sub.choices[name].add_help                     # the stubs take no -h of their own
