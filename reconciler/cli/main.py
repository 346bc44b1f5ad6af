"""The `reconciler` command line. Each command module registers its own subcommands.

Exit codes (reconciler.exitcodes): 0 success (or no changes); 1 error; 2 changes present
(`plan --detailed-exitcode`); 3 `apply`/`resync` finished, but the dialer rejected some rows
(CRM rows that fail our checks are reported, and alone still exit 0); 4 `apply`/`resync`
stopped on request; 64 a bad command line (unknown option, missing or malformed argument).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from reconciler import __version__
from reconciler.cli.commands import admin, daemon, demo, leads, runs, status
from reconciler.cli.exitcodes import EXIT_ERROR, EXIT_USAGE
from reconciler.errors import ReconcilerError
from reconciler.redact import redact_text
from reconciler.widget import command as widget


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad command line, which `plan --detailed-exitcode` uses for
    "there are changes": ours exits 64. Subcommand parsers are made of this class too
    (add_subparsers uses the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
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
    runs.register(sub)
    leads.register(sub)
    admin.register(sub)
    demo.register(sub)
    widget.register(sub)
    daemon.register(sub)
    status.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
