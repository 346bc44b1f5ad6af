"""The HTTP endpoint in process: /healthz, /metrics (format, no secrets), POST /trigger auth."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from reconciler.daemon.endpoint import Endpoint
from reconciler.daemon.metrics import Family, render
from reconciler.daemon.scheduler import Daemon
from reconciler.engine import Context
from reconciler.sandbox import SandboxDialer
from reconciler.settings import DaemonSettings
from tests.helpers import agent, engine_context, make_crm

TOKEN = "crm-hook-" + "7" * 32
SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? -?[0-9.e+]+$')


@pytest.fixture
def ctx(sandbox: SandboxDialer, sqlite_state: sa.Engine, tmp_path: Path) -> Iterator[Context]:
    crm = make_crm(tmp_path, [agent("1000")], lists=[])
    with engine_context(sandbox, sqlite_state, crm, tmp_path) as context:
        yield context


def serve(ctx: Context, token: str | None, settings: DaemonSettings | None = None
          ) -> Iterator[tuple[Daemon, str]]:
    # http_port 0 binds a free port here; `reconciler daemon` reads 0 as "no endpoint".
    daemon = Daemon(ctx, settings or DaemonSettings(interval=3600))
    endpoint = Endpoint(daemon, token).start()
    try:
        yield daemon, endpoint.url
    finally:
        endpoint.stop()


@pytest.fixture
def served(ctx: Context) -> Iterator[tuple[Daemon, str]]:
    yield from serve(ctx, TOKEN)


def test_healthz_follows_the_last_successful_run(ctx: Context) -> None:
    for daemon, url in serve(ctx, TOKEN, DaemonSettings(interval=3600, health_max_age=60)):
        starting = httpx.get(f"{url}/healthz")
        assert starting.status_code == 200 and starting.json()["starting"] is True
        daemon.started_at -= timedelta(seconds=120)
        stale = httpx.get(f"{url}/healthz")
        assert stale.status_code == 503 and stale.json()["reason"] == "no successful run yet"
        assert daemon.runner.run() == "ok"
        healthy = httpx.get(f"{url}/healthz").json()
        assert healthy["healthy"] is True and healthy["last_success_age_s"] < 60


def test_metrics_are_prometheus_text_without_secrets(served: tuple[Daemon, str]) -> None:
    daemon, url = served
    assert daemon.runner.run() == "ok"
    answer = httpx.get(f"{url}/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert 'reconciler_runs_total{target="default",kind="daemon",outcome="ok"} 1' in text
    assert 'reconciler_steps_total{target="default",op="add_user",outcome="created"} 1' in text
    assert 'reconciler_lead_batches_in_doubt{target="default"} 0' in text
    assert 'reconciler_outage{target="default",part="dialer"} 0' in text
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    for secret in (TOKEN, "pw-1000", "sqlite:", "http://", "elision_api"):
        assert secret not in text


def test_render_escapes_label_values() -> None:
    family = Family("x_total", "counter", "X.").add(1, reason='a "b"\\c\nd')
    assert render([family]).splitlines()[-1] == 'x_total{reason="a \\"b\\"\\\\c\\nd"} 1'


def test_trigger_needs_the_bearer_token(served: tuple[Daemon, str]) -> None:
    daemon, url = served
    missing = httpx.post(f"{url}/trigger?resource=users")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(f"{url}/trigger", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401
    basic = httpx.post(f"{url}/trigger", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert daemon.scheduler.get_job("trigger-daemon-users") is None

    auth = {"Authorization": f"Bearer {TOKEN}"}
    accepted = httpx.post(f"{url}/trigger?resource=users", headers=auth)
    assert accepted.status_code == 202 and accepted.json()["run_kind"] == "daemon-users"
    assert daemon.scheduler.get_job("trigger-daemon-users") is not None
    whole = httpx.post(f"{url}/trigger", headers=auth)
    assert whole.status_code == 202 and whole.json()["run_kind"] == "daemon"

    unknown = httpx.post(f"{url}/trigger?resource=agents", headers=auth)
    assert unknown.status_code == 400 and "unknown resource 'agents'" in unknown.json()["error"]
    assert httpx.get(f"{url}/trigger").status_code == 404
    daemon.stopping.set()
    assert httpx.post(f"{url}/trigger", headers=auth).status_code == 503


def test_trigger_refuses_odd_bodies(served: tuple[Daemon, str]) -> None:
    _daemon, url = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{url}/trigger", headers=auth, content=b"x" * 5000).status_code == 413
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.putrequest("POST", "/trigger")
    conn.putheader("Content-Length", "lots")
    conn.endheaders()
    assert conn.getresponse().status == 400
    conn.close()


def test_trigger_is_off_without_a_token(ctx: Context) -> None:
    for _daemon, url in serve(ctx, None):
        answer = httpx.post(f"{url}/trigger", headers={"Authorization": "Bearer anything"})
        assert answer.status_code == 403 and "no token is configured" in answer.json()["error"]
