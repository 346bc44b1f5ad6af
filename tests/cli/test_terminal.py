"""What a person at a terminal sees during a lead apply: one progress bar that log lines pass
above (not stale copies of it in the scrollback), and no colours or animation where NO_COLOR
or TERM=dumb ask for none."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxDialer
from tests.cli.test_cli import Setup, _start
from tests.helpers import agent

BAR_TEXT = "sending leads"
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
COLOURS = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|9[0-7]|38|4[0-9]|10[0-7])(?:;[0-9;]*)?m")


class Terminal(io.StringIO):
    """Stands in for stderr on a terminal: rich and our logging see a TTY."""

    def isatty(self) -> bool:
        return True


def screen(raw: str) -> list[str]:
    """The lines a terminal (with unlimited scrollback) shows after `raw`: text, CR, LF,
    cursor up (CSI A), erase line (CSI K); colours and cursor visibility change nothing."""
    lines, row, col = [""], 0, 0
    position = 0
    for match in [*CSI.finditer(raw), None]:
        text = raw[position:match.start() if match else len(raw)]
        for char in text:
            if char == "\n":
                row, col = row + 1, 0
                if row == len(lines):
                    lines.append("")
            elif char == "\r":
                col = 0
            else:
                line = lines[row].ljust(col)
                lines[row] = line[:col] + char + line[col + 1:]
                col += 1
        if match is None:
            break
        position = match.end()
        params, command = match.groups()
        if command == "A":
            row = max(0, row - int(params or 1))
        elif command == "K":
            assert params in ("", "0", "2"), match.group()
            lines[row] = "" if params == "2" else lines[row][:col]
        else:
            assert command in "mhl", f"unexpected control sequence {match.group()!r}"
    return lines


def leads(count: int) -> list[dict[str, object]]:
    return [{"id": n, "list_id": "1101", "phone": f"555{n:07d}", "first_name": None,
             "last_name": None, "city": None, "email": None, "postal_code": None}
            for n in range(1, count + 1)]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("RECONCILER_DIALER_LEADS_PER_BATCH", "25")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    yield from _start(tmp_path, monkeypatch, SandboxDialer(), [agent("1000")], leads=leads(300))


def apply_on_a_terminal(setup: Setup) -> str:
    """`reconciler apply` with stderr on a terminal and console logs; what it wrote there."""
    terminal, stderr = Terminal(), sys.stderr
    sys.stderr = terminal
    try:
        assert setup.run("--log-format", "console", "apply", "--yes") == 0
    finally:
        sys.stderr = stderr
    return terminal.getvalue()


def test_log_lines_pass_above_the_progress_bar_leaving_no_stale_copies(setup: Setup) -> None:
    raw = apply_on_a_terminal(setup)
    shown = screen(raw)
    assert [line for line in shown if BAR_TEXT in line] == []    # gone when done (transient)
    assert raw.count(BAR_TEXT) > 12                  # drawn again below each log line
    steps = [line for line in shown if "step_applied" in line and "add_leads" in line]
    assert len(steps) == 12                          # 300 leads in batches of 25
    assert all(line.index("step_applied") < 60 and BAR_TEXT not in line for line in steps)
    assert COLOURS.search(raw)                       # a colour terminal gets colours


def test_no_color_keeps_logs_and_bar_free_of_colour(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    raw = apply_on_a_terminal(setup)
    assert BAR_TEXT in raw and "step_applied" in raw
    assert not COLOURS.search(raw), COLOURS.search(raw)


def test_a_dumb_terminal_gets_plain_lines_and_progress_events_instead_of_a_bar(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "dumb")
    raw = apply_on_a_terminal(setup)
    assert "\x1b" not in raw                         # no colour, no cursor movement
    assert BAR_TEXT not in raw
    progress = [line for line in raw.splitlines() if "leads_progress" in line]
    assert progress and "done=300" in progress[-1] and "total=300" in progress[-1]
