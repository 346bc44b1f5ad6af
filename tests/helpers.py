"""Building blocks for tests that run the whole engine against the sandbox dialer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from reconciler.adapters.dialer.dialects import dialect_of
from reconciler.adapters.state.schema import lead_batches, shadow_leads
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import Context
from reconciler.config.settings import (
    CrmSettings,
    DialerSettings,
    GuardSettings,
    Settings,
    StateSettings,
)
from reconciler.config.spec import load_spec
from reconciler.demo import crm as democrm
from reconciler.sandbox import API_PATH, VICIDIAL_API_PATH, SandboxDialer
from reconciler.sandbox.wire import Answer, Incoming, parse_params

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SPEC = REPO / "specs" / "example.toml"
# The dialer API document and answers recorded from a real VICIdial 2.14, kept in the checkout
# so that the suite runs from a plain clone.
FIXTURES = REPO / "tests" / "fixtures"
API_DOCUMENT = FIXTURES / "dialer-crm-integration-api.txt"
VICIDIAL_RECORDINGS = FIXTURES / "vicidial-2.14-responses.txt"


def dialer_settings(url: str | None = None, **overrides: Any) -> DialerSettings:
    """Settings for the sandbox; its API path follows `dialect` (elision unless given)."""
    if url is None:
        url = "http://sandbox" + (VICIDIAL_API_PATH if overrides.get("dialect") == "vicidial"
                                  else API_PATH)
    values: dict[str, Any] = {"url": url, "user": "api", "password": "1234", "source": "test",
                              "backoff_base": 0.0, "backoff_max": 0.0, **overrides}
    return DialerSettings(**values)


@contextmanager
def engine_context(
    sandbox: SandboxDialer, state: sa.Engine, crm_url: str, tmp_path: Path,
    spec_path: Path = EXAMPLE_SPEC, guards: GuardSettings | None = None,
    **dialer_overrides: Any,
) -> Iterator[Context]:
    settings = Settings(
        dialer=dialer_settings(**dialer_overrides),
        crm=CrmSettings(crm_url),
        state=StateSettings(url=str(state.url), digest_key_file=tmp_path / "digest.key"),
        guards=guards or GuardSettings(),
        spec_path=spec_path,
    )
    crm = sa.create_engine(crm_url)
    dialect = dialect_of(settings.dialer)
    with dialect.client(settings.dialer, sandbox.transport()) as client:
        yield Context(settings, load_spec(spec_path), StateStore(state, "default"), crm, client,
                      b"k" * 32, dialect)
    crm.dispose()


def make_crm(tmp_path: Path, agents: Sequence[dict[str, Any]] | None = None,
             lists: Sequence[dict[str, Any]] = democrm.LISTS,
             leads: Sequence[dict[str, Any]] = ()) -> str:
    url = democrm.sqlite_url(tmp_path / "crm.db")
    democrm.create_crm(url, agents, lists, leads).dispose()
    return url


def crm_execute(url: str, sql: str, **params: Any) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)
    engine.dispose()


def agent(username: str, **overrides: Any) -> dict[str, Any]:
    row = {"username": username, "password": f"pw-{username}", "full_name": f"Agent {username}",
           "level": 1, "team": "AGENTS", "extension": None, "email": None, "is_active": 1}
    row.update(overrides)
    return row


class HookedSandbox(SandboxDialer):
    """The sandbox dialer, running `action` while it answers the `nth` call of `function`:
    the call has been handled, its answer not yet sent back."""

    def __init__(self, function: str, nth: int, action: Callable[[], None],
                 mode: Any = "elision") -> None:
        super().__init__(mode=mode)
        self.function, self.nth, self.action = function, nth, action
        self.fired = threading.Event()
        self.calls_at_fire = -1
        self._seen = 0
        self._lock = threading.Lock()

    def handle(self, incoming: Incoming) -> Answer:
        answer = super().handle(incoming)
        if parse_params(incoming).get("function") == self.function:
            with self._lock:
                self._seen += 1
                now_is_the_time = self._seen == self.nth
            if now_is_the_time:
                self.calls_at_fire = len(self.snapshot()["calls"])
                try:
                    self.action()
                finally:
                    self.fired.set()
        return answer


def backdate_lead_sends(engine: sa.Engine, seconds: float = 3600) -> datetime:
    """Make every lead batch and lead of the state look last sent `seconds` ago (past the time a
    late request could still land), without waiting. Returns that time."""
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
    with engine.begin() as conn:
        conn.execute(sa.update(lead_batches).values(created_at=when))
        conn.execute(sa.update(shadow_leads).values(updated_at=when))
    return when


def scraped(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text page (labels in any order), or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def write_config(path: Path, *, dialer_url: str, crm_url: str, state_url: str,
                 spec: Path = EXAMPLE_SPEC, dialer_extra: str = "backoff_base = 0") -> Path:
    """A settings file for a test: the sandbox at `dialer_url`, the digest key beside it."""
    path.write_text(f"""
[reconciler]
spec = "{spec}"
[dialer]
url = "{dialer_url}"
user = "api"
{dialer_extra}
[crm]
url = "{crm_url}"
[state]
url = "{state_url}"
digest_key_file = "{path.parent / 'digest.key'}"
""", encoding="utf-8")
    return path
