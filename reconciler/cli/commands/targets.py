"""`--target NAME` and the per-target loop of `plan`, `apply`, `resync`, `status`, `history` and
`leads …`: each chosen target in turn, with its own settings, context and lease.

A `[dialer]` config has one target and the commands answer as they always have. A
`[[targets]]` config answers with one section per target: a heading, then what the command
says for that target; with `--json`, one document `{"targets": [...]}` with one entry each. A
target that fails (its dialer down, its lease held by another process, its password unset)
gets a section saying why, and the next target still runs; the exit code is then 1
(README "Exit codes").
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.cli.exitcodes import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_STOPPED,
)
from reconciler.config.settings import Settings
from reconciler.errors import ReconcilerError
from reconciler.redact import redact_text

log = structlog.get_logger()

# Worst first: any failed target makes the whole command fail, after the others ran.
_PRECEDENCE = (EXIT_ERROR, EXIT_STOPPED, EXIT_REJECTED, EXIT_CHANGES, EXIT_OK)


def add_target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", action="append", dest="targets", metavar="NAME",
                        help="only this dialer target (repeat for several; default: every "
                             "target of the config)")


def chosen(settings: Settings, names: Iterable[str] | None) -> list[Settings]:
    """The settings of each chosen target, in the config's order (all when none is named);
    an unknown name is a ConfigError naming the targets there are."""
    wanted = list(dict.fromkeys(names or ()))
    for name in wanted:
        settings.for_target(name)
    return [settings.for_target(name) for name in settings.target_names
            if not wanted or name in wanted]


def combined(codes: Iterable[int]) -> int:
    """The exit code of a command over several targets: the worst of theirs."""
    found = set(codes)
    for code in _PRECEDENCE:
        if code in found:
            return code
    return max(found, default=EXIT_OK)


@dataclass(frozen=True)
class Section:
    target: str
    code: int
    error: str | None = None          # why the target failed, when it did
    output: str = ""                  # what the command printed for it (JSON mode)


def for_each_target(settings: Settings, args: argparse.Namespace,
                    work: Callable[[Settings], int]) -> int:
    """Run `work` once per chosen target and return the combined exit code.

    With a `[dialer]` config (and no `--target` naming another), `work` runs as it always did:
    an error propagates to the caller, which prints it and exits 1.
    """
    targets = chosen(settings, getattr(args, "targets", None))
    if not settings.several_targets:
        return work(targets[0])
    as_json = bool(getattr(args, "json", False))
    sections: list[Section] = []
    for one in targets:
        name = one.dialer.target
        if sections and sections[-1].code in (EXIT_STOPPED, 130):
            sections.append(Section(name, EXIT_STOPPED, "not started: stopped on request"))
            continue
        if not as_json:
            print(f"=== target {name} ===", flush=True)
        sections.append(_run_one(name, one, work, as_json))
        if not as_json:
            if sections[-1].error is not None:
                print(f"Target {name} unavailable: {sections[-1].error}")
            print(flush=True)
    if as_json:
        print(json.dumps({"targets": [_entry(s) for s in sections]}, indent=2, sort_keys=True,
                         default=str))
    return combined(s.code for s in sections)


def _run_one(name: str, one: Settings, work: Callable[[Settings], int],
             as_json: bool) -> Section:
    captured = io.StringIO()
    with structlog.contextvars.bound_contextvars(target=name):
        try:
            with contextlib.redirect_stdout(captured) if as_json else contextlib.nullcontext():
                code = work(one)
        except ReconcilerError as exc:
            why = redact_text(str(exc))
            print(f"error: target {name}: {why}", file=sys.stderr)
            log.warning("target_failed", target=name, error=type(exc).__name__)
            return Section(name, EXIT_ERROR, why, captured.getvalue())
    return Section(name, code, None, captured.getvalue())


def _entry(section: Section) -> dict[str, Any]:
    entry: dict[str, Any] = {"target": section.target, "exit_code": section.code}
    if section.error is not None:
        entry["unavailable"] = section.error
    text = section.output.strip()
    if text:
        try:
            entry["result"] = json.loads(text)
        except json.JSONDecodeError:
            # Output that is not one JSON document (a plan, then a report line) stays text.
            entry["output"] = text
    return entry
