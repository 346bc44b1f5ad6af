"""The `reconciler` command line. Each command module registers its own subcommands.

Exit codes (reconciler.exitcodes): 0 success (or no changes); 1 error; 2 changes present
(`plan --detailed-exitcode`); 3 `apply`/`resync` finished, but the dialer rejected some rows
(CRM rows that fail our checks are reported, and alone still exit 0); 4 `apply`/`resync`
stopped on request; 64 a bad command line (unknown option, missing or malformed argument).

A command's module is imported only when that command is chosen: `--version`, `--help` and a
bad command line answer without loading SQLAlchemy, httpx or the daemon, and each command
loads only what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

from reconciler import __version__
from reconciler.cli.exitcodes import EXIT_ERROR, EXIT_USAGE
from reconciler.errors import ReconcilerError
from reconciler.redact import redact_text

# Every command: the module that registers it (with the others of that module) and the line
# `reconciler --help` shows for it, the same as the module's own (tests/cli check they agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("reconciler.cli.commands.runs", "show what a run would change (writes nothing)"),
    "apply": ("reconciler.cli.commands.runs", "plan and apply, or apply a saved plan"),
    "resync": ("reconciler.cli.commands.runs",
               "push every managed user and list again, ignoring records"),
    "leads": ("reconciler.cli.commands.leads", "lead batches in doubt"),
    "db": ("reconciler.cli.commands.admin", "state database schema"),
    "unlock": ("reconciler.cli.commands.admin",
               "break the write lease left by a process that is gone"),
    "sandbox": ("reconciler.cli.commands.admin", "serve the built-in sandbox dialer over HTTP"),
    "demo": ("reconciler.cli.commands.demo",
             "run the whole loop against the built-in sandbox dialer"),
    "widget": ("reconciler.widget.command", "locate, copy or serve the CRM widget bridge modules"),
    "daemon": ("reconciler.cli.commands.daemon",
               "reconcile on the configured schedule until SIGTERM/SIGINT"),
    "status": ("reconciler.cli.commands.status",
               "last run per resource, in-doubt lead batches, rejected rows, lock holder"),
    "history": ("reconciler.cli.commands.status", "recent runs, newest first"),
    "show": ("reconciler.cli.commands.status", "one run and every step of it"),
}


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad command line, which `plan --detailed-exitcode` uses for
    "there are changes": ours exits 64. Subcommand parsers are made of this class too
    (add_subparsers uses the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with every command in full (`commands` None), or only the modules of
    `commands` imported and the other commands stubs that know their name and help line."""
    parser: argparse.ArgumentParser = Parser(
        prog="reconciler",
        description="Keep a call-centre dialer in step with a CRM database.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help="settings file (default: $RECONCILER_CONFIG or ./reconciler.toml)")
    parser.add_argument("--log-format", choices=("auto", "console", "json"), default="auto",
                        help="log rendering on stderr (auto: console on a TTY, else JSON)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = COMMANDS if commands is None else commands
    for module in dict.fromkeys(COMMANDS[name][0] for name in chosen if name in COMMANDS):
        importlib.import_module(module).register(sub)
    for name, (_module, help_line) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Find the command with the light parser (which answers `--version` and `--help` itself),
    then parse the whole line with that command's module loaded."""
    words = sys.argv[1:] if argv is None else list(argv)
    known, _rest = build_parser(()).parse_known_args(words)
    return build_parser((known.command,)).parse_args(words)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ReconcilerError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
