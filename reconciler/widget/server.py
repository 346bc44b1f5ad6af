"""A tiny read-only HTTP server for a fixed set of files (stdlib only).

It serves exactly the files it is given, by exact path, with GET and HEAD; anything else is
404 or 405. JavaScript is sent as ``text/javascript`` with ``Access-Control-Allow-Origin: *``
so that a page on another origin can import it as an ES module (the modules are public code
and carry no secret). Used by ``reconciler widget --serve``, the example in
``examples/widget/`` and the browser tests.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

__all__ = ["CONTENT_TYPES", "StaticFiles", "make_server"]

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".md": "text/plain; charset=utf-8",
}

#: URL path ("/crm-bridge.js") to a file on disk, read on every request, or to fixed bytes.
StaticFiles = Mapping[str, Path | bytes]


class _FilesHandler(BaseHTTPRequestHandler):
    files: ClassVar[StaticFiles] = {}
    quiet: ClassVar[bool] = False
    server_version = "reconciler-widget"
    sys_version = ""

    def do_GET(self) -> None:
        self._send(body=True)

    def do_HEAD(self) -> None:
        self._send(body=False)

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _send(self, *, body: bool) -> None:
        path = self.path.partition("?")[0]
        source = self.files.get(path)
        if source is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = source.read_bytes() if isinstance(source, Path) else source
        content_type = CONTENT_TYPES.get(Path(path).suffix, "application/octet-stream")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        if content_type.startswith("text/javascript"):
            self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def make_server(
    files: StaticFiles, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = False
) -> ThreadingHTTPServer:
    """Binds a server for `files` (keys are URL paths starting with "/"); port 0 picks a free one.

    `files` is looked up on every request, not copied: a dict may be filled in after binding
    (say, once the port of another server it must name is known).

    The caller runs ``serve_forever()`` (in a thread, if it likes) and ``shutdown()`` /
    ``server_close()`` at the end.
    """
    bad = [key for key in files if not key.startswith("/")]
    if bad:
        raise ValueError(f"URL paths must start with '/': {bad}")
    handler = type("FilesHandler", (_FilesHandler,), {"files": files, "quiet": quiet})
    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server
