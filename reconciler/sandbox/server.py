"""Serve a SandboxDialer over loopback HTTP with the standard library's WSGI server.

One thread per request (the sandbox's store has its own lock). The request handler knows the
two ways a fault loses an answer: on ConnectionDrop it closes the socket without writing a
byte; on ConnectionHang it first keeps the connection silent for the fault's `hang` seconds, or
until the server stops.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import structlog

from reconciler.errors import ReconcilerError
from reconciler.redact import redact_text
from reconciler.sandbox.app import SandboxDialer
from reconciler.sandbox.faults import ConnectionDrop, ConnectionHang

log = structlog.get_logger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False          # a hanging request must not hold up stop()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler]) -> None:
        self.stopping = threading.Event()
        super().__init__(address, handler)


class _FaultAwareHandler(ServerHandler):
    def __init__(self, *args: Any, stopping: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = stopping

    def handle_error(self) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionHang):
            self._stopping.wait(error.seconds)
        if isinstance(error, ConnectionDrop):
            return  # write nothing: the socket is closed when the request ends
        super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    def handle(self) -> None:
        # wsgiref's handle(), with our ServerHandler so that faults can lose the answer.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        assert isinstance(self.server, _Server)
        handler = _FaultAwareHandler(self.rfile, self.wfile, self.get_stderr(),
                                     self.get_environ(), multithread=True,
                                     stopping=self.server.stopping)
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer
        handler.run(self.server.get_app())  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries `pass=` in GET queries.
        log.debug("sandbox_request", line=redact_text(format % args))


def _make(dialer: SandboxDialer, host: str, port: int) -> _Server:
    try:
        server = make_server(host, port, dialer, server_class=_Server,
                             handler_class=_RequestHandler)
    except OSError as exc:          # the port is taken, or the host is not ours
        raise ReconcilerError(f"sandbox: cannot listen on {host}:{port}: "
                              f"{exc.strerror or exc}") from None
    assert isinstance(server, _Server)
    return server


def _base_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    shown = f"[{host!s}]" if ":" in str(host) else str(host)
    return f"http://{shown}:{port}"


def serve(dialer: SandboxDialer, host: str = "127.0.0.1", port: int = 8080,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C returns normally). `ready` is given the API URL once
    the port is bound."""
    server = _make(dialer, host, port)
    url = _base_url(server) + dialer.api_path
    log.info("sandbox_listening", url=url)
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()


@dataclass
class BackgroundServer:
    """A sandbox served from a daemon thread; `url` is the full API URL."""

    base_url: str
    url: str
    _server: _Server
    _thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_background(dialer: SandboxDialer, host: str = "127.0.0.1",
                     port: int = 0) -> BackgroundServer:
    """Bind now (port 0: a free one), serve from a daemon thread, return at once."""
    server = _make(dialer, host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox-dialer-{server.server_address[1]}", daemon=True)
    thread.start()
    base_url = _base_url(server)
    return BackgroundServer(base_url=base_url, url=base_url + dialer.api_path, _server=server,
                            _thread=thread)
