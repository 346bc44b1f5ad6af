"""The README and docs/ say what the code does: the commands and options they name exist, the
settings they show load, the output and formats they quote are the ones produced, and the tests
they cite are there. Each check reads the page as a user would and asks the code."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from reconciler.cli.main import build_parser, main
from reconciler.config.load import load_settings
from reconciler.core.plan import PLAN_VERSION, Basis, Plan, to_json
from reconciler.daemon.metrics import (
    DaemonStatus,
    Stats,
    exposition,
    register_scrape_metrics,
)
from tests.helpers import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
GLOBAL_OPTIONS_WITH_VALUE = {"--config", "--log-format", "--log-level"}


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def code_blocks(page: Path, language: str | None = None) -> Iterator[str]:
    for found in re.finditer(r"^```(\w*)\n(.*?)^```", text(page), re.MULTILINE | re.DOTALL):
        if language is None or found.group(1) == language:
            yield found.group(2)


def section(page: Path, heading: str) -> str:
    """The text under a heading, up to the next heading of any level."""
    body = text(page).split(f"\n{heading}\n", 1)[1]
    return re.split(r"^#+ ", body, maxsplit=1, flags=re.MULTILINE)[0]


# --- commands and options ----------------------------------------------------------------------


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {name for action in parser._actions for name in action.option_strings}


def command_lines() -> Iterator[tuple[str, str]]:
    """Every `reconciler ...` command line the pages show: inline, or in a code block (where a
    line may start with a prompt, a path to the program, or `runuser -u USER --`)."""
    program = r"(?:\S*/)?bin/reconciler|reconciler"
    for page in PAGES:
        for inline in re.findall(r"`(reconciler [^`]+)`", text(page)):
            yield page.name, inline
        for block in code_blocks(page):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                found = re.match(rf"^(?:\$ |ExecStart=|runuser -u \S+ -- )?(?:{program}) (.*)$",
                                 line.strip())
                if found:
                    yield page.name, "reconciler " + found.group(1).split(" #")[0]


def check_command(line: str) -> None:
    """The command (and sub-command) exists; every `--option` shown is one it takes."""
    top = build_parser()
    words = line.replace("\\|", " | ").replace("[", " ").replace("]", " ").split()[1:]
    while words and words[0].startswith("-"):            # global options come first
        words = words[2:] if words[0] in GLOBAL_OPTIONS_WITH_VALUE else words[1:]
    assert words, line
    commands = subparsers(top)
    assert words[0] in commands, f"{line}: no command {words[0]!r}"
    chosen = [commands[words[0]]]
    actions = subparsers(chosen[0])
    if actions:                                           # `db upgrade | downgrade REV | current`
        assert len(words) > 1 and words[1] in actions, f"{line}: no {words[0]} {words[1:2]}"
        chosen = [actions[words[1]]]
        for before, word in itertools.pairwise(words[1:]):
            if before == "|" and not word.startswith("-"):
                assert word in actions, f"{line}: no {words[0]} {word}"
                chosen.append(actions[word])
    allowed = options(top).union(*(options(parser) for parser in chosen))
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in allowed, f"{line}: {words[0]} takes no {word}"


def test_every_command_line_in_the_docs_is_one_the_parser_takes() -> None:
    lines = list(command_lines())
    assert len(lines) > 40                                 # the scan finds them
    for page, line in lines:
        try:
            check_command(line)
        except AssertionError as exc:
            raise AssertionError(f"{page}: {exc}") from None


def test_the_readme_command_table_names_every_command() -> None:
    table = section(README, "## Commands")
    named = set(re.findall(r"^\| `reconciler ([a-z-]+)", table, re.MULTILINE))
    assert named == set(subparsers(build_parser()))


# --- settings ----------------------------------------------------------------------------------

# What a settings file needs besides what an example shows, for the examples that show a part.
REQUIRED = {"dialer": 'url = "http://127.0.0.1:1/dialer/elision_api.php"\nuser = "api"\n',
            "crm": 'url = "sqlite:///crm.db"\n'}


@pytest.mark.parametrize("page", ["README.md", "operations.md", "sandbox.md",
                                  "configuration.md"])
def test_settings_shown_in_the_docs_load(page: str, tmp_path: Path) -> None:
    path = README if page == "README.md" else REPO / "docs" / page
    shown = list(code_blocks(path, "toml"))
    assert shown, page
    for block in shown:
        tomllib.loads(block)
        missing = [f"[{name}]\n{keys}" for name, keys in REQUIRED.items()
                   if not re.search(rf"^\[{name}\]$", block, re.MULTILINE)
                   and not (name == "dialer" and "[[targets]]" in block)]
        config = tmp_path / "reconciler.toml"
        config.write_text("\n".join([block, *missing]), encoding="utf-8")
        load_settings(config, {"RECONCILER_DIALER_PASSWORD": "x"})


# --- formats and output ------------------------------------------------------------------------


def test_the_plan_json_version_in_the_docs_is_the_codes() -> None:
    page = REPO / "docs" / "plan-and-apply.md"
    row = re.search(r'^\| `format`, `version` \| `"reconciler.plan"`, `(\d+)` \|$', text(page),
                    re.MULTILINE)
    assert row and int(row.group(1)) == PLAN_VERSION
    (example,) = [json.loads(block) for block in code_blocks(page, "json")
                  if '"format": "reconciler.plan"' in block]
    assert example["version"] == PLAN_VERSION
    plan = Plan(basis=Basis(target="default", state_version=0, spec_hash="", desired_digest="",
                            observed_digest=""))
    assert set(example) == set(to_json(plan))


def test_the_demo_output_quoted_in_the_docs_is_the_demos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = text(REPO / "docs" / "plan-and-apply.md")
    quoted = page.split("The second round of `reconciler demo`:\n\n```text\n", 1)[1]
    quoted = quoted.split("```", 1)[0]
    assert main(["demo", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    second_round = printed.split("=== 2.", 1)[1].split("\n\n", 1)[1].split("\nApplied:", 1)[0]
    digest = re.compile(r"plan [0-9a-f]{12}\)")       # differs on every run (a new key)
    assert digest.sub("plan …)", quoted.strip()) == digest.sub("plan …)", second_round.strip())


def served_families(text: str) -> dict[str, tuple[str, str, frozenset[str]]]:
    """name -> (type, help, label names) of each family on a Prometheus text page."""
    families: dict[str, tuple[str, str, frozenset[str]]] = {}
    helps: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line.removeprefix("# HELP ").partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line.removeprefix("# TYPE ").split(" ")
            families[name] = (kind, helps[name], frozenset())
        else:
            last = next(reversed(families))
            kind, help_text, labels = families[last]
            shown = set(re.findall(r'(\w+)="', line.partition("{")[2].rpartition("}")[0]))
            families[last] = (kind, help_text, labels | shown - {"le"})
    return families


def test_the_metrics_in_the_docs_are_the_ones_served(sqlite_state: sa.Engine) -> None:
    table = section(REPO / "docs" / "operations.md", "### `GET /metrics`")
    rows = {name: (kind, frozenset(filter(None, labels.split(","))), meaning)
            for name, labels, kind, meaning in re.findall(
                r"^\| `(reconciler_\w+)(?:\{([^}]*)\})?` \| (\w+) \| (.*) \|$", table,
                re.MULTILINE)}
    registry = CollectorRegistry()
    stats = Stats("default", registry)
    stats.run_finished("daemon", "ok", 1.5, {("add_user", "created"): 1})
    stats.run_skipped("backoff")
    register_scrape_metrics(registry, sqlite_state, "default",
                            lambda: DaemonStatus(None, False, datetime.now(UTC)))
    served = served_families(exposition(registry).decode())
    # prometheus_client adds a `_created` gauge beside each counter and histogram.
    ours = {name: family for name, family in served.items()
            if name.startswith("reconciler_") and not name.endswith("_created")}
    assert {name: (kind, labels) for name, (kind, labels, _) in rows.items()} == {
        name: (kind, labels - {"target"}) for name, (kind, _, labels) in ours.items()}
    assert all("target" in labels for _, _, labels in ours.values())
    # Where the help text lists the label values, it lists the ones the docs do.
    skipped = "reconciler_runs_skipped_total"
    for reason in re.findall(r"`(\w+)`", rows[skipped][2]):
        assert reason in served[skipped][1], (reason, served[skipped][1])
    # The standard families the page names are served too.
    standard = set(re.findall(r"`((?:process|python)_\w+)`", table))
    assert standard and standard <= set(served), standard - set(served)


# --- operations --------------------------------------------------------------------------------


def test_the_secrets_file_example_has_no_comment_after_a_value() -> None:
    (block,) = [b for b in code_blocks(REPO / "docs" / "operations.md")
                if b.startswith("# /etc/reconciler/secrets.env")]
    for line in block.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            # systemd's EnvironmentFile keeps a trailing "# ..." as part of the value.
            assert re.fullmatch(r"[A-Z_]+=\S*", line), line


def test_the_service_user_and_its_directory_are_created_before_use() -> None:
    page = text(REPO / "docs" / "operations.md")
    unit = next(b for b in code_blocks(REPO / "docs" / "operations.md", "ini")
                if "[Service]" in b)
    user = re.search(r"^User=(\S+)$", unit, re.MULTILINE)
    workdir = re.search(r"^WorkingDirectory=(\S+)$", unit, re.MULTILINE)
    writable = re.search(r"^ReadWritePaths=(\S+)$", unit, re.MULTILINE)
    assert user and workdir and writable and workdir.group(1) == writable.group(1)
    assert re.search(rf"useradd --system .*\b{user.group(1)}$", page, re.MULTILINE)
    assert re.search(rf"install -d -o {user.group(1)} -g {user.group(1)} -m 07[0-5]0 "
                     rf"{re.escape(workdir.group(1))}$", page, re.MULTILINE)


# --- the tests the docs cite -------------------------------------------------------------------


def test_the_tests_the_docs_cite_exist() -> None:
    """`tests/x.py::test_name`, and `::test_name` going on from the last file named."""
    cited = 0
    for page in PAGES:
        current = None
        for found in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?(?:\[[^`]*\])?`", text(page)):
            current = found.group(1) or current
            if found.group(2) is None:
                continue
            assert current, f"{page.name}: ::{found.group(2)} follows no file"
            source = (REPO / current).read_text(encoding="utf-8")
            assert re.search(rf"^def {found.group(2)}\(", source, re.MULTILINE), \
                f"{page.name}: {current}::{found.group(2)}"
            cited += 1
    assert cited > 50
