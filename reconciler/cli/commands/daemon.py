"""`reconciler daemon`: reconcile on a schedule until SIGTERM or SIGINT, then exit 0.

Start-up problems (settings, spec, state schema, a port in use) stop it at once with exit 1,
as any command; once it runs, outages of the dialer, the CRM or the state database are waited
out with backoff (see reconciler.daemon).
"""

from __future__ import annotations

import argparse
import os
from contextlib import ExitStack
from typing import Any

import structlog

from reconciler.app.bootstrap import open_context
from reconciler.cli.commands.common import EXIT_OK, load, setup_logging
from reconciler.config.load import check_schedules, read_trigger_token
from reconciler.config.spec import spec_resources
from reconciler.daemon.endpoint import Endpoint
from reconciler.daemon.outage import install_hold_back
from reconciler.daemon.scheduler import Daemon
from reconciler.errors import ConfigError

log = structlog.get_logger()


def register(sub: Any) -> None:
    p = sub.add_parser(
        "daemon", help="reconcile on the configured schedule until SIGTERM/SIGINT",
        description="Run reconciliation on the schedules of the [daemon] settings; serve "
                    "/healthz, /metrics and POST /trigger when daemon.http_port is set. "
                    "See docs/operations.md.")
    p.set_defaults(func=cmd_daemon)


def cmd_daemon(args: argparse.Namespace) -> int:
    settings = load(args)
    token = read_trigger_token(settings.daemon, os.environ) if settings.daemon.http_port else None
    # The token joins the password among the values no log line may show.
    setup_logging(args, secrets=(*settings.passwords, token or ""))
    install_hold_back()
    with ExitStack() as stack:
        # Every target: its own context, runner and write lease (docs/operations.md).
        ctx, *more = [stack.enter_context(open_context(settings.for_target(name)))
                      for name in settings.target_names]
        check_schedules(settings.daemon, spec_resources(ctx.spec))
        daemon = Daemon(ctx, settings.daemon, more)
        http = None
        if settings.daemon.http_port:
            http = _listen(daemon, token)
            stack.callback(http.stop)
        log.info("daemon_started", target=daemon.target, targets=sorted(daemon.runners),
                 pid=os.getpid(),
                 resources=sorted(daemon.resources), schedules=daemon.schedules(),
                 http=http.url if http else None,
                 trigger="on" if http and token else "off")
        daemon.run_until_stopped()
    log.info("daemon_stopped", reason=daemon.stop_reason)
    return EXIT_OK


def _listen(daemon: Daemon, token: str | None) -> Endpoint:
    host, port = daemon.settings.http_host, daemon.settings.http_port
    try:
        return Endpoint(daemon, token).start()
    except OSError as exc:
        raise ConfigError(f"daemon.http_port: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
