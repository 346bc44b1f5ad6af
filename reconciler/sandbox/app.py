"""SandboxDialer: the Elision API as a WSGI app, and as an in-process httpx transport.

`SandboxDialer(mode="vicidial")` answers as VICIdial 2.14 does instead (reconciler.sandbox.
vicidial_api), at VICIdial's path; the store, the faults and the other routes are the same.

Routes:
    GET|POST  /dialer/elision_api.php   the API (query string, form body, or both); in vicidial
                                        mode /vicidial/non_agent_api.php instead
    GET       /_sandbox/state           snapshot() as JSON
    GET       /_sandbox/faults          the pending fault plans
    POST      /_sandbox/faults          inject a fault: a JSON object with FaultPlan's fields
    DELETE    /_sandbox/faults          clear every fault plan

The `/_sandbox/faults` routes let a test drive a sandbox running in another process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, get_args
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx

from reconciler.redact import is_secret_name
from reconciler.sandbox import api, vicidial_api
from reconciler.sandbox.faults import (
    AFTER_COMMIT,
    ConnectionDrop,
    ConnectionHang,
    FaultInjector,
    FaultKind,
    FaultPlan,
)
from reconciler.sandbox.store import SandboxData, Store
from reconciler.sandbox.wire import (
    Answer,
    Incoming,
    error_page,
    json_answer,
    parse_params,
    text_answer,
)

API_PATH = "/dialer/elision_api.php"
VICIDIAL_API_PATH = "/vicidial/non_agent_api.php"
DialerMode = Literal["elision", "vicidial"]
STATE_PATH = "/_sandbox/state"
FAULTS_PATH = "/_sandbox/faults"


class SandboxDialer:
    """A fake Elision (or VICIdial) dialer. A WSGI application; `transport()` serves it to httpx."""

    def __init__(self, data: SandboxData | None = None, state_file: Path | None = None,
                 mode: DialerMode = "elision") -> None:
        if mode not in get_args(DialerMode):
            raise ValueError(f"mode must be one of {', '.join(get_args(DialerMode))}")
        self.mode: DialerMode = mode
        self.store = Store(data or SandboxData(), state_file)
        self.faults = FaultInjector()

    @property
    def api_path(self) -> str:
        """Where this sandbox serves the API: Elision's path, or VICIdial's in vicidial mode."""
        return VICIDIAL_API_PATH if self.mode == "vicidial" else API_PATH

    # --- public API -------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        incoming = Incoming(
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO", ""),
            # PEP 3333 hands the raw bytes over as latin-1 text: turn them back into bytes.
            query=environ.get("QUERY_STRING", "").encode("latin-1"),
            body=body,
            content_type=environ.get("CONTENT_TYPE", ""),
        )
        answer = self.handle(incoming)  # ConnectionDrop escapes on purpose: see server.py
        start_response(f"{answer.status} {answer.reason}", list(answer.headers))
        return [answer.body]

    def transport(self) -> SandboxTransport:
        return SandboxTransport(self)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return self.store.snapshot()

    def inject(self, kind: FaultKind, *, function: str | None = None, times: int | None = 1,
               rate: float | None = None, seed: int | None = None, status: int = 503,
               latency: float = 0.0, retry_after: int | str | None = None, hang: float = 30.0,
               body: str | None = None) -> FaultPlan:
        """Add a fault plan (see reconciler.sandbox.faults); the plan counts its firings."""
        return self.faults.add(FaultPlan(
            kind=kind, function=function, times=times, rate=rate, seed=seed, status=status,
            latency=latency, retry_after=retry_after, hang=hang, body=body))

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- request handling -------------------------------------------------------------------

    def handle(self, incoming: Incoming) -> Answer:
        """Answer one request; raises ConnectionDrop when a fault loses the answer."""
        if incoming.path == self.api_path:
            if incoming.method not in ("GET", "POST"):
                return error_page(405)
            return self._api_call(incoming)
        if incoming.path == STATE_PATH:
            if incoming.method != "GET":
                return error_page(405)
            return json_answer(json.dumps(self.snapshot()))
        if incoming.path == FAULTS_PATH:
            return self._faults_route(incoming)
        return error_page(404)

    def _api_call(self, incoming: Incoming) -> Answer:
        params = parse_params(incoming)
        function = params.get("function", "")
        safe = _safe_params(params)
        fault = self.faults.pick(function)
        if fault is not None and fault.plan.latency > 0:
            time.sleep(fault.plan.latency)
        if fault is not None and not fault.commits:
            self.store.record_call(function=function, method=incoming.method, params=safe,
                                   outcome=f"fault:{fault.kind}", result=None, fault=fault.kind)
            return fault.answer()
        # One transaction: answer, log and persist together, so a crash right after still
        # finds the effect on disk.
        with self.store.lock:
            result = (vicidial_api.call if self.mode == "vicidial" else api.call)(
                self.store, params)
            lost = fault is not None and fault.kind in AFTER_COMMIT
            self.store.record_call(
                function=function, method=incoming.method, params=safe,
                outcome=f"fault:{fault.kind}" if fault is not None and lost else result.outcome,
                result=result.outcome, fault=None if fault is None else fault.kind)
        if fault is not None:
            fault.after_commit()
        if self.mode == "vicidial":
            return vicidial_api.answer(result)
        return json_answer(result.body) if result.is_json else text_answer(result.body)

    def _faults_route(self, incoming: Incoming) -> Answer:
        if incoming.method == "GET":
            plans = [{f.name: getattr(plan, f.name) for f in fields(plan)
                      if not f.name.startswith("_")} for plan in self.faults.plans()]
            return json_answer(json.dumps({"faults": plans}))
        if incoming.method == "DELETE":
            self.clear_faults()
            return json_answer(json.dumps({"ok": True}))
        if incoming.method == "POST":
            try:
                data = json.loads(incoming.body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("the body must be a JSON object")
                self.faults.add(FaultPlan.from_json(data))
            except (ValueError, TypeError) as exc:
                return json_answer(json.dumps({"ok": False, "error": str(exc)}), status=400)
            return json_answer(json.dumps({"ok": True}), status=201)
        return error_page(405)


def _safe_params(params: dict[str, str]) -> dict[str, str]:
    """The request's fields for the call log: no password field, lead batches summarised."""
    safe = {k: v for k, v in params.items() if not is_secret_name(k)}
    if "multi_leads" in safe:
        try:
            leads = json.loads(safe["multi_leads"])
        except ValueError:
            leads = None
        size = len(safe["multi_leads"])
        safe["multi_leads"] = (f"<{len(leads)} leads>" if isinstance(leads, list)
                               else f"<{size} bytes, not a JSON array>")
    return safe


class SandboxTransport(httpx.BaseTransport):
    """Serves a SandboxDialer to an httpx.Client, in process: no sockets, no threads."""

    def __init__(self, dialer: SandboxDialer) -> None:
        self._dialer = dialer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        incoming = Incoming(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            body=request.read(),
            content_type=request.headers.get("content-type", ""),
        )
        try:
            answer = self._dialer.handle(incoming)
        except ConnectionHang:
            # In process there is no clock to wait for: the client's read timeout, at once.
            raise httpx.ReadTimeout("timed out", request=request) from None
        except ConnectionDrop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request) from None
        return httpx.Response(answer.status, headers=list(answer.headers), content=answer.body,
                              request=request)
