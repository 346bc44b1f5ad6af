"""Exit codes a script can branch on, and command-line mistakes that end in one line.

0 success, 1 error, 2 `plan --detailed-exitcode` changes, 3 the dialer rejected rows, 64 a bad
command line (never 2, which would read as "there are changes").
"""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.exitcodes import EXIT_CHANGES, EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from reconciler.cli.main import main
from reconciler.sandbox import SandboxDialer
from tests.cli.test_cli import Setup, _start
from tests.helpers import agent

# (what is wrong, the command line, what the one error line names)
USAGE_ERRORS = [
    ("no command", [], "the following arguments are required: COMMAND"),
    ("unknown option", ["plan", "--changes"], "unrecognized arguments: --changes"),
    ("unknown command", ["plna"], "invalid choice: 'plna'"),
    ("bad choice", ["--log-format", "xml", "plan"], "argument --log-format: invalid choice"),
    ("nested subcommand", ["db", "downgrade"], "required: revision"),
    ("missing leads action", ["leads"], "required: ACTION"),
    ("resolve without a verdict", ["leads", "resolve", "abc"],
     "one of the arguments --sent --not-sent is required"),
    ("not a number", ["history", "--limit", "x"], "argument --limit: must be a whole number"),
    ("zero limit", ["history", "--limit", "0"], "argument --limit: must be at least 1, not 0"),
    ("negative limit", ["history", "--limit", "-3"], "argument --limit: must be at least 1"),
    ("port out of range", ["sandbox", "--port", "70000"],
     "argument --port: must be between 0 and 65535, not 70000"),
    ("exclusive widget modes", ["widget", "--serve", "--copy", "d"], "not allowed with argument"),
]


@pytest.mark.parametrize(("argv", "named"), [(a, n) for _, a, n in USAGE_ERRORS],
                         ids=[name for name, _, _ in USAGE_ERRORS])
def test_a_bad_command_line_exits_64_with_usage_and_one_error_line(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as leaving:
        main(argv)
    assert leaving.value.code == EXIT_USAGE == 64
    err = capsys.readouterr().err
    assert err.startswith("usage: reconciler")
    (error_line,) = [line for line in err.splitlines() if ": error: " in line]
    assert named in error_line
    assert "Traceback" not in err


def test_help_and_version_still_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["--version"], ["history", "--help"]):
        with pytest.raises(SystemExit) as leaving:
            main(argv)
        assert leaving.value.code == EXIT_OK
    assert "reconciler 0." in capsys.readouterr().out


@pytest.fixture
def crm_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """Agent 1001's level fails our check of the CRM data; the rest is fine."""
    yield from _start(tmp_path, monkeypatch, SandboxDialer(),
                      [agent("1000"), agent("1001", level=12)])


def test_crm_rejected_rows_alone_exit_0_and_are_still_reported(
    crm_rejects: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crm_rejects.run("plan", "--detailed-exitcode") == EXIT_CHANGES
    capsys.readouterr()
    assert crm_rejects.run("apply", "--yes") == EXIT_OK
    out = capsys.readouterr().out
    assert "! users row 2 '1001': agent_user_level must be 1 digit from 1 to 9" in out
    assert ": partial" not in out and "crm_rejected" in out
    assert crm_rejects.run("status") == EXIT_OK
    assert "1 CRM row(s) fail our checks" in capsys.readouterr().out
    # Nothing left to do but the same bad row: still 0, still named.
    assert crm_rejects.run("apply", "--yes") == EXIT_OK
    assert "agent_user_level must be 1 digit" in capsys.readouterr().out


def test_a_row_the_dialer_rejects_exits_3_even_beside_crm_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = [agent("1000"), agent("1001", level=12), agent("1002", team="NIGHTS")]
    for setup in _start(tmp_path, monkeypatch, SandboxDialer(), agents):
        assert setup.run("apply", "--yes") == EXIT_REJECTED
        assert "! add_user 1002:" in capsys.readouterr().out


def test_a_busy_sandbox_port_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--log-format", "json", "sandbox", "--port", str(port)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: sandbox: cannot listen on 127.0.0.1:{port}: " \
                           f"Address already in use\n"
    assert captured.out == ""          # nothing claims it is serving


def test_the_demo_runs_again_in_the_same_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_dir = tmp_path / "demo"
    assert main(["demo", "--dir", str(demo_dir)]) == 0
    first = capsys.readouterr().out
    assert main(["demo", "--dir", str(demo_dir)]) == 0
    second = capsys.readouterr()
    assert "Traceback" not in second.err
    assert f"Starting over in {demo_dir}" in second.out
    # The second run tells the same story as the first, from a clean CRM, state and dialer.
    assert second.out.count("No changes.") == first.count("No changes.") == 2   # two targets
    def story(out: str) -> str:
        # Without the sandbox's port, the plans' digests and the state versions (VICIdial's
        # leads are sent several at once, and recorded as they come back).
        out = re.sub(r"state version \d+", "state version -", out.split("===", 2)[2])
        return re.sub(r"plan [0-9a-f]{12}", "plan -", out)

    assert story(second.out) == story(first)


def test_the_demo_leaves_alone_a_directory_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite3.connect(tmp_path / "state.db").close()       # someone else's database
    assert main(["demo", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: demo: {tmp_path} already holds state.db, not made by the demo; "
                   f"give an empty or new --dir\n")
    assert (tmp_path / "state.db").stat().st_size == 0
