"""``reconciler widget``: where the widget bridge modules are, a copy of them, or a server.

- ``reconciler widget`` prints the path of ``crm-bridge.js`` then of ``widget-receiver.js``.
- ``reconciler widget --copy DIR`` copies both into DIR (made if missing).
- ``reconciler widget --serve [--host 127.0.0.1] [--port 8765]`` serves both, read-only.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
from pathlib import Path

from reconciler.widget import asset_paths
from reconciler.widget.server import make_server

__all__ = ["handle", "register"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the ``widget`` subcommand."""
    parser = subparsers.add_parser(
        "widget",
        help="locate, copy or serve the CRM widget bridge modules",
        description=(
            "The CRM widget bridge: crm-bridge.js for the CRM page, widget-receiver.js for the "
            "dialer widget page. With no option, print where both modules are."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--serve", action="store_true", help="serve both modules over HTTP (read-only)"
    )
    mode.add_argument(
        "--copy", metavar="DIR", type=Path, help="copy both modules into DIR (made if missing)"
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to serve on with --serve (default {DEFAULT_HOST}: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to serve on with --serve (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    """Runs ``reconciler widget``; returns the exit code."""
    if args.copy is not None:
        return _copy(args.copy)
    if args.serve:
        return _serve(args.host, args.port)
    for path in asset_paths().values():
        print(path)
    return 0


def _copy(directory: Path) -> int:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, source in asset_paths().items():
            target = directory / name
            shutil.copyfile(source, target)
            print(target)
    except OSError as exc:
        print(
            f"reconciler widget: cannot copy into {directory}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(host: str, port: int) -> int:
    files = {f"/{name}": path for name, path in asset_paths().items()}
    try:
        server = make_server(files, host=host, port=port)
    except OSError as exc:
        print(
            f"reconciler widget: cannot serve on {host}:{port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    if not _is_loopback(host):
        print(
            f"reconciler widget: note: serving on {host}, reachable from other machines",
            file=sys.stderr,
        )
    for name in files:
        print(f"http://{shown}:{bound_port}{name}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
