"""The daemon's HTTP endpoint (standard library), on loopback unless configured otherwise.

- `GET /healthz`: 200 while the newest successful run of the target is younger than
  `daemon.health_max_age` (or the daemon started less than that long ago), else 503.
- `GET /metrics`: Prometheus text format from the daemon's own registry (see `metrics`);
  no secret, no URL.
- `POST /trigger?resource=users`: queue an immediate run of one resource (`all`, or no
  parameter, for the whole spec). Needs `Authorization: Bearer <token>`; without a configured
  token the trigger is off (403).

Nothing here logs a header: the token would be in one.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from reconciler.adapters.state import queries
from reconciler.daemon import metrics
from reconciler.daemon.runner import Runner
from reconciler.daemon.scheduler import Daemon
from reconciler.errors import StateError

log = structlog.get_logger()

MAX_BODY = 4096


def health(daemon: Daemon) -> tuple[bool, dict[str, Any]]:
    """Healthy while every target of the daemon is (with one target, that target's answer)."""
    if len(daemon.runners) == 1:
        return _target_health(daemon, daemon.target, daemon.runner)
    found = {name: _target_health(daemon, name, runner)
             for name, runner in daemon.runners.items()}
    healthy = all(ok for ok, _ in found.values())
    return healthy, {"healthy": healthy, "targets": {name: body
                                                    for name, (_, body) in found.items()}}


def _target_health(daemon: Daemon, target: str, runner: Runner) -> tuple[bool, dict[str, Any]]:
    max_age = daemon.settings.health_max_age
    now = datetime.now(UTC)
    uptime = (now - daemon.started_at).total_seconds()
    try:
        success = queries.last_success(daemon.ctx.store.engine, target)
    except StateError:
        return False, {"healthy": False, "reason": "the state database cannot be read"}
    age = (now - success).total_seconds() if success else None
    body: dict[str, Any] = {
        "last_success": success.isoformat() if success else None,
        "last_success_age_s": round(age, 1) if age is not None else None,
        "max_age_s": max_age,
        "outage": runner.outage.kind,
    }
    if age is not None and age <= max_age:
        return True, {"healthy": True, **body}
    if uptime <= max_age:
        # Give a (re)started daemon the same time to succeed once as a running one gets.
        return True, {"healthy": True, "starting": True, **body}
    reason = (f"no successful run in the last {max_age:g}s" if success
              else "no successful run yet")
    return False, {"healthy": False, "reason": reason, **body}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            healthy, body = health(self.server.daemon)
            self._send(200 if healthy else 503, json.dumps(body), "application/json")
        elif path == "/metrics":
            self._send(200, metrics.exposition(self.server.daemon.registry),
                       metrics.CONTENT_TYPE)
        else:
            self._json(404, {"error": "not found: /healthz, /metrics, POST /trigger"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._json(413 if length > MAX_BODY else 400,
                       {"error": "Content-Length must be a size up to 4096 bytes"})
            return
        self.rfile.read(length)          # the body is not used; read it to keep the connection
        if url.path != "/trigger":
            self._json(404, {"error": "not found: POST /trigger"})
            return
        token = self.server.token
        if token is None:
            self._json(403, {"error": "the trigger is off: no token is configured "
                                      "(daemon.trigger_token_env or trigger_token_file)"})
            return
        if not _bearer_matches(self.headers.get("Authorization", ""), token):
            log.warning("trigger_unauthorized", client=self.client_address[0])
            self._json(401, {"error": "a valid bearer token is required"},
                       {"WWW-Authenticate": 'Bearer realm="reconciler"'})
            return
        if self.server.daemon.stopping.is_set():
            self._json(503, {"error": "the daemon is shutting down"})
            return
        resource = parse_qs(url.query).get("resource", [None])[0]
        try:
            kind = self.server.daemon.trigger(resource)
        except ValueError as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(202, {"accepted": True, "run_kind": kind})

    def _json(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body), "application/json", headers)

    def _send(self, status: int, body: str | bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only (method, path with query, status): never a header.
        log.debug("http_request", client=self.client_address[0], line=format % args)


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    # compare_digest takes as long whatever the first differing byte: no timing oracle.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], daemon: Daemon, token: str | None) -> None:
        self.daemon, self.token = daemon, token
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print the traceback on stderr, outside the structured log.
        log.exception("http_error", client=client_address[0] if client_address else None)


class Endpoint:
    """Serves from a thread; `stop()` closes the socket."""

    def __init__(self, daemon: Daemon, token: str | None) -> None:
        settings = daemon.settings
        self._server = _Server((settings.http_host, settings.http_port), daemon, token)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="daemon-http",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        shown = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def start(self) -> Endpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
