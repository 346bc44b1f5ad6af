"""Housekeeping commands: the state database, the write lease and the sandbox dialer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.lease import break_lease
from reconciler.app.bootstrap import lease_name
from reconciler.cli.commands.common import EXIT_OK, load, port_number, setup_logging
from reconciler.cli.commands.targets import add_target_option, for_each_target
from reconciler.config.settings import Settings


def register(sub: Any) -> None:
    d = sub.add_parser("db", help="state database schema")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dsub.add_parser("upgrade", help="create or upgrade the state schema")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    down = dsub.add_parser("downgrade", help="downgrade the state schema to REVISION")
    down.add_argument("revision")
    down.set_defaults(func=cmd_db_downgrade)
    cur = dsub.add_parser("current", help="show the schema revision")
    cur.set_defaults(func=cmd_db_current)

    u = sub.add_parser("unlock", help="break the write lease left by a process that is gone")
    u.add_argument("--force", action="store_true", required=True,
                   help="required: breaking a live holder's lease lets two processes write")
    add_target_option(u)
    u.set_defaults(func=cmd_unlock)

    s = sub.add_parser("sandbox", help="serve the built-in sandbox dialer over HTTP")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    s.add_argument("--port", type=port_number, default=8080,
                   help="port to listen on (default 8080; 0 picks a free one)")
    s.add_argument("--state-file", metavar="PATH",
                   help="keep the sandbox's data in this file across restarts")
    s.add_argument("--mode", choices=("elision", "vicidial"), default="elision",
                   help="answer as Elision's dialer (default) or as stock VICIdial 2.14")
    s.set_defaults(func=cmd_sandbox)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    return _migrate(args, db.upgrade)


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    return _migrate(args, db.downgrade)


def _migrate(args: argparse.Namespace, action: Callable[[sa.Engine, str], None]) -> int:
    engine = db.open_engine(load(args).state.url)
    try:
        action(engine, args.revision)
        print(f"state database at {db.current_revision(engine) or 'base (empty)'}")
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_db_current(args: argparse.Namespace) -> int:
    engine = db.open_engine(load(args).state.url)
    try:
        current, head = db.current_revision(engine), db.head_revision()
    finally:
        engine.dispose()
    state = "current" if current == head else f"behind {head}: run `reconciler db upgrade`"
    print(f"{current or 'empty'} ({state})")
    return EXIT_OK


def cmd_unlock(args: argparse.Namespace) -> int:
    return for_each_target(load(args), args, _unlock)


def _unlock(settings: Settings) -> int:
    engine = db.open_engine(settings.state.url)
    try:
        db.require_current(engine)
        held = break_lease(engine, lease_name(settings.dialer.target))
    finally:
        engine.dispose()
    print(f"lease broken (was held by {held['owner']})" if held else "no lease was held")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    from reconciler.sandbox import SandboxDialer, serve

    setup_logging(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        # It accepts the document's example password and keeps no secrets: not for a network.
        print(f"warning: the sandbox is listening on {args.host}, not loopback",
              file=sys.stderr)
    dialer = SandboxDialer(state_file=Path(args.state_file) if args.state_file else None,
                           mode=args.mode)

    def ready(url: str) -> None:
        print(f"sandbox dialer on {url} (API user api / 1234); state at /_sandbox/state; "
              f"Ctrl-C stops it", flush=True)

    serve(dialer, host=args.host, port=args.port, ready=ready)
    return EXIT_OK
