"""`reconciler widget`: print the module paths, copy them, serve them read-only."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.cli.main import Parser
from reconciler.widget import asset_paths, module_path, receiver_path
from reconciler.widget.command import _is_loopback, register
from reconciler.widget.server import make_server

PROJECT = Path(__file__).resolve().parents[2]


def run(argv: list[str]) -> int:
    parser = Parser(prog="reconciler")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_the_modules_ship_inside_the_package() -> None:
    assert module_path().name == "crm-bridge.js"
    assert receiver_path().name == "widget-receiver.js"
    assert list(asset_paths()) == ["crm-bridge.js", "widget-receiver.js"]
    for path in asset_paths().values():
        assert path.is_file()
        assert path.parent == PROJECT / "reconciler" / "widget"
    assert "export function createDialerBridge(" in module_path().read_text()
    assert "export function listenToCrm(" in receiver_path().read_text()


def test_widget_prints_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["widget"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [str(module_path()), str(receiver_path())]


def test_copy_makes_the_folder_and_copies_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "static" / "dialer"
    assert run(["widget", "--copy", str(target)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        str(target / "crm-bridge.js"),
        str(target / "widget-receiver.js"),
    ]
    for name, source in asset_paths().items():
        assert (target / name).read_bytes() == source.read_bytes()


def test_copy_onto_a_file_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    assert run(["widget", "--copy", str(blocker)]) == 1
    assert capsys.readouterr().err.startswith(f"reconciler widget: cannot copy into {blocker}: ")


def test_serve_and_copy_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["widget", "--serve", "--copy", str(tmp_path)])
    assert exit_info.value.code == 64          # a usage error, never "changes" (2)


def test_a_busy_port_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run(["widget", "--serve", "--port", str(port)]) == 1
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


LOOPBACK = ["127.0.0.1", "127.0.0.2", "::1", "localhost"]
NOT_LOOPBACK = ["0.0.0.0", "::", "192.0.2.7", "dialer.example.com"]  # noqa: S104


@pytest.mark.parametrize("host", LOOPBACK + NOT_LOOPBACK)
def test_loopback_hosts(host: str) -> None:
    assert _is_loopback(host) is (host in LOOPBACK)


# --- the server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    files = {f"/{name}": path for name, path in asset_paths().items()}
    server = make_server(files, quiet=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def request(
    server: ThreadingHTTPServer, method: str, path: str
) -> tuple[int, dict[str, str], bytes]:
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("name", ["crm-bridge.js", "widget-receiver.js"])
def test_serves_each_module_as_javascript(server: ThreadingHTTPServer, name: str) -> None:
    status, headers, body = request(server, "GET", f"/{name}")
    assert status == 200
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Public code, imported as an ES module from the CRM's or the widget's own origin.
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert body == asset_paths()[name].read_bytes()
    assert int(headers["Content-Length"]) == len(body)

    assert request(server, "GET", f"/{name}?v=2")[0] == 200
    status, headers, body = request(server, "HEAD", f"/{name}")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize(
    "path",
    ["/", "/__init__.py", "/command.py", "/../__init__.py", "/widget/crm-bridge.js",
     "/crm-bridge.js/", "/CRM-BRIDGE.JS", "/%2e%2e/__init__.py"],
)  # fmt: skip
def test_serves_nothing_else(server: ThreadingHTTPServer, path: str) -> None:
    assert request(server, "GET", path)[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_is_read_only(server: ThreadingHTTPServer, method: str) -> None:
    status, headers, _ = request(server, method, "/crm-bridge.js")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


def test_make_server_wants_absolute_url_paths() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        make_server({"crm-bridge.js": module_path()})


def test_widget_serve_runs_until_stopped() -> None:
    """The real command in its own process: prints the URLs, serves, stops on Ctrl-C."""
    script = (
        "import argparse, sys\n"
        "from reconciler.widget.command import register\n"
        "parser = argparse.ArgumentParser(prog='reconciler')\n"
        "register(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, "widget", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline().strip() for _ in asset_paths()]
        assert [url.rsplit("/", 1)[1] for url in urls] == list(asset_paths())
        assert all(url.startswith("http://127.0.0.1:") for url in urls)
        host_port = urls[0].removeprefix("http://").split("/", 1)[0]
        connection = http.client.HTTPConnection(host_port, timeout=30)
        connection.request("GET", "/widget-receiver.js")
        response = connection.getresponse()
        assert response.status == 200
        assert response.read() == receiver_path().read_bytes()
        connection.close()
    finally:
        process.send_signal(2)  # SIGINT, as Ctrl-C
        try:
            # Returns as soon as it exits; the bound only catches a process that never would.
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0
    assert process.stderr is not None
    assert '"GET /widget-receiver.js HTTP/1.1" 200' in process.stderr.read()
