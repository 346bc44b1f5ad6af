"""The HTTP endpoint in process: /healthz, /metrics (format, no secrets), POST /trigger auth."""

from __future__ import annotations

import http.client
import platform
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from reconciler import __version__
from reconciler.app.engine import Context
from reconciler.config.settings import DaemonSettings
from reconciler.daemon.endpoint import Endpoint
from reconciler.daemon.metrics import Stats, exposition
from reconciler.daemon.scheduler import Daemon
from reconciler.sandbox import SandboxDialer
from tests.helpers import agent, engine_context, make_crm, scraped

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
    t = {"target": "default"}
    assert scraped(text, "reconciler_runs_total", **t, kind="daemon", outcome="ok") == 1
    assert scraped(text, "reconciler_steps_total", **t, op="add_user", outcome="created") == 1
    assert scraped(text, "reconciler_lead_batches_in_doubt", **t) == 0
    assert scraped(text, "reconciler_outage", **t, part="dialer") == 0
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    for secret in (TOKEN, "pw-1000", "sqlite:", "http://", "elision_api"):
        assert secret not in text


def test_runs_are_timed_per_kind_and_the_build_and_process_are_shown(
    served: tuple[Daemon, str],
) -> None:
    daemon, url = served
    assert daemon.runner.run() == "ok"
    assert daemon.runner.run(frozenset({"users"})) == "ok"
    assert daemon.runner.run(frozenset({"users"})) == "ok"
    text = httpx.get(f"{url}/metrics").text
    t = {"target": "default"}
    for kind, runs in (("daemon", 1), ("daemon-users", 2)):
        assert scraped(text, "reconciler_runs_total", **t, kind=kind, outcome="ok") == runs
        assert scraped(text, "reconciler_run_duration_seconds_count", **t, kind=kind) == runs
        slowest = scraped(text, "reconciler_run_duration_seconds_bucket", **t, kind=kind,
                          le="+Inf")
        assert slowest == runs
        assert (scraped(text, "reconciler_run_duration_seconds_sum", **t, kind=kind) or 0) > 0
    build = {"version": __version__, "python": platform.python_version()}
    assert scraped(text, "reconciler_build_info", **t, **build) == 1
    assert (scraped(text, "process_cpu_seconds_total") or 0) > 0
    assert (scraped(text, "process_resident_memory_bytes") or 0) > 0
    assert "python_info{" in text


def test_each_daemon_counts_apart_and_reads_the_shared_state_at_each_scrape(ctx: Context) -> None:
    first, second = Daemon(ctx, DaemonSettings(interval=3600)), Daemon(ctx, DaemonSettings())
    before = exposition(second.registry).decode()
    assert scraped(before, "reconciler_last_success_timestamp_seconds", target="default") == 0
    assert first.runner.run() == "ok"
    after = exposition(second.registry).decode()
    # The counters are this process's daemon's own; the state database is one for both.
    assert scraped(after, "reconciler_runs_total", target="default", kind="daemon",
                   outcome="ok") is None
    assert (scraped(after, "reconciler_last_success_timestamp_seconds", target="default")
            or 0) > 0
    # Nothing went to the library's global registry.
    assert not any(family.name.startswith("reconciler_") for family in REGISTRY.collect())


def test_a_scrape_while_the_state_database_is_broken_says_so(served: tuple[Daemon, str],
                                                               sqlite_state: sa.Engine) -> None:
    _daemon, url = served
    with sqlite_state.begin() as conn:
        conn.exec_driver_sql("DROP TABLE runs")
    answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert scraped(answer.text, "reconciler_state_readable", target="default") == 0
    assert "reconciler_last_success_timestamp_seconds{" not in answer.text
    assert scraped(answer.text, "reconciler_outage", target="default", part="dialer") == 0


def test_label_values_are_escaped() -> None:
    odd = 'a "b"\\c\nd'
    stats = Stats(odd)
    stats.run_skipped("backoff")
    text = exposition(stats.registry).decode()
    assert 'target="a \\"b\\"\\\\c\\nd"' in text
    assert scraped(text, "reconciler_runs_skipped_total", reason="backoff", target=odd) == 1


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
