"""Serve the widget example on two loopback origins: the widget host page and the CRM page.

    python examples/widget/serve.py            # widget on :8001, CRM on :8002
    python examples/widget/serve.py --widget-port 9001 --crm-port 9002

Then open the widget URL it prints. Each origin serves its page, the one bridge module it
needs (from the installed ``reconciler`` package) and a ``config.js`` naming the other origin;
in a real deployment that value comes from your own settings.
"""

from __future__ import annotations

import argparse
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from reconciler.widget import module_path, receiver_path
from reconciler.widget.server import make_server

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def origin(port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}"


def widget_site(crm_origin: str) -> dict[str, Path | bytes]:
    """The widget origin's files: the host page, the receiver and its config."""
    config = f"export const CRM_ORIGIN = {crm_origin!r};\n"
    return {
        "/widget-host.html": HERE / "widget-host.html",
        "/widget-receiver.js": receiver_path(),
        "/config.js": config.encode(),
    }


def crm_site(widget_origin: str) -> dict[str, Path | bytes]:
    """The CRM origin's files: the CRM page, the bridge and its config."""
    config = f"export const WIDGET_ORIGIN = {widget_origin!r};\n"
    return {
        "/crm-page.html": HERE / "crm-page.html",
        "/crm-bridge.js": module_path(),
        "/config.js": config.encode(),
    }


def start(files: dict[str, Path | bytes], port: int, *, quiet: bool = True) -> ThreadingHTTPServer:
    """Binds a loopback server for `files` and runs it in a daemon thread."""
    server = make_server(files, host=HOST, port=port, quiet=quiet)
    threading.Thread(target=server.serve_forever, name=f"serve-{port}", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widget-port", type=int, default=8001)
    parser.add_argument("--crm-port", type=int, default=8002)
    args = parser.parse_args()
    widget_origin, crm_origin = origin(args.widget_port), origin(args.crm_port)
    servers = [
        start(widget_site(crm_origin), args.widget_port, quiet=False),
        start(crm_site(widget_origin), args.crm_port, quiet=False),
    ]
    print(f"widget: {widget_origin}/widget-host.html  (open this one)")
    print(f"CRM:    {crm_origin}/crm-page.html  (shown inside the widget)")
    print("Ctrl-C stops both.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    main()
