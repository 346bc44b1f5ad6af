"""Fixtures for the widget bridge tests: three loopback origins and one headless Chromium.

- the widget origin serves ``examples/widget/widget-host.html`` (with ``widget-receiver.js``),
- the CRM origin serves ``examples/widget/crm-page.html`` (with ``crm-bridge.js``),
- a foreign origin serves a blank page and a page that frames the CRM page.

Browser tests skip when ``/usr/bin/chromium`` or the ``playwright`` package is missing, unless
``RECONCILER_REQUIRE_BROWSER=1`` (as in CI): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.widget import module_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Frame, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER = "RECONCILER_REQUIRE_BROWSER"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "widget" / "serve.py"
TIMEOUT_MS = 5_000

BLANK = b"<!doctype html><meta charset='utf-8'><title>blank</title>"

# Every message any window of the test page receives, before any page script runs.
RECORD_MESSAGES = """
window.__received = [];
window.addEventListener('message', (event) => {
  window.__received.push({ origin: event.origin, data: event.data });
});
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: runs in headless Chromium (Playwright)")


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("widget_example_serve", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Sites:
    widget: str
    crm: str
    foreign: str


def _start(files: dict[str, Path | bytes]) -> tuple[ThreadingHTTPServer, str]:
    from reconciler.widget.server import make_server

    server = make_server(files, host="127.0.0.1", port=0, quiet=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def sites() -> Iterator[Sites]:
    """The widget, CRM and foreign origins, each a stdlib server on a free loopback port.

    The origins refer to each other, so each server starts with an empty file table that is
    filled in once all three ports are known.
    """
    example = _load_example()
    tables: list[dict[str, Path | bytes]] = [{}, {}, {}]
    started = [_start(table) for table in tables]
    widget, crm, foreign = (url for _, url in started)
    tables[0].update(example.widget_site(crm))
    tables[1].update({**example.crm_site(widget), "/blank.html": BLANK})
    tables[2].update(
        {
            "/blank.html": BLANK,
            "/crm-bridge.js": module_path(),
            "/framer.html": (
                f"<!doctype html><meta charset='utf-8'><title>framer</title>"
                f"<iframe id='crm' src='{crm}/crm-page.html'></iframe>"
            ).encode(),
        }
    )
    yield Sites(widget=widget, crm=crm, foreign=foreign)
    for server, _ in started:
        server.shutdown()
        server.server_close()


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (Debian package: apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    missing = _missing_browser()
    if missing is not None:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{REQUIRE_BROWSER}=1 but {missing}", pytrace=False)
        pytest.skip(f"browser tests need Chromium and Playwright: {missing}")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@dataclass
class WidgetPage:
    """The example widget page with the CRM page loaded in its iframe."""

    page: Page
    crm: Frame
    sites: Sites
    console: list[str]
    errors: list[str]

    def received(self) -> list[dict[str, Any]]:
        """Every message the widget window received, whoever sent it."""
        result: list[dict[str, Any]] = self.page.evaluate("window.__received")
        return result

    def events(self) -> list[dict[str, Any]]:
        """What the example's receiver handled or rejected, in order."""
        result: list[dict[str, Any]] = self.page.evaluate("window.widgetEvents")
        return result

    def wait_for_events(self, count: int) -> list[dict[str, Any]]:
        self.page.wait_for_function(
            "n => window.widgetEvents.length >= n", arg=count, timeout=TIMEOUT_MS
        )
        return self.events()

    def add_frame(self, url: str) -> Frame:
        """Adds an iframe for `url` to the widget page and waits for it to load."""
        self.page.evaluate(
            """url => new Promise((resolve, reject) => {
                 const frame = document.createElement('iframe');
                 frame.onload = resolve;
                 frame.onerror = reject;
                 frame.src = url;
                 document.body.append(frame);
               })""",
            url,
        )
        frame = self.page.frame(url=url)
        assert frame is not None, url
        return frame

    def sentinel(self) -> None:
        """Logs out through the CRM page and waits until the widget has handled it.

        Messages from one window are delivered in the order they were posted, so once the
        sentinel is handled, anything posted before it has been delivered or dropped.
        """
        before = len(self.events())
        self.crm.click("#logout")
        events = self.wait_for_events(before + 1)
        assert events[-1] == {
            "type": "message",
            "origin": self.sites.crm,
            "message": {"action": "logout"},
        }


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context whose windows record every message they receive."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(RECORD_MESSAGES)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def widget_page(context: BrowserContext, sites: Sites) -> Iterator[WidgetPage]:
    page = context.new_page()
    console: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        console.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{sites.widget}/widget-host.html")
    page.frame_locator("#crm").locator("#embedded").filter(has_text="Inside").wait_for()
    crm = page.frame(url=f"{sites.crm}/crm-page.html")
    assert crm is not None
    yield WidgetPage(page=page, crm=crm, sites=sites, console=console, errors=errors)
    assert errors == [], "uncaught errors in the page"
