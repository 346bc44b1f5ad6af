"""Open what a run needs from the settings, and close it afterwards. The edges live here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from reconciler.adapters.crm.source import open_crm
from reconciler.adapters.dialer.dialects import dialect_of
from reconciler.adapters.state import db
from reconciler.adapters.state.keyfile import load_or_create_key
from reconciler.adapters.state.lease import Lease
from reconciler.adapters.state.store import StateStore
from reconciler.app.engine import Context
from reconciler.config.load import require_dialer_password
from reconciler.config.routing import routed_spec
from reconciler.config.settings import Settings
from reconciler.config.spec import load_spec


@contextmanager
def open_context(
    settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> Iterator[Context]:
    require_dialer_password(settings)
    # Each target sees the rows the spec routes to it (config.routing).
    spec = routed_spec(load_spec(settings.spec_path), settings.dialer.target,
                       settings.target_names)
    state_engine = db.open_engine(settings.state.url)
    crm_engine = open_crm(settings.crm.url)
    with ExitStack() as stack:
        stack.callback(state_engine.dispose)
        stack.callback(crm_engine.dispose)
        db.require_current(state_engine)
        dialect = dialect_of(settings.dialer)
        client = stack.enter_context(dialect.client(settings.dialer, transport))
        yield Context(
            settings=settings,
            spec=spec,
            store=StateStore(state_engine, settings.dialer.target),
            crm=crm_engine,
            dialer=client,
            digest_key=load_or_create_key(settings.state.digest_key_file),
            dialect=dialect,
        )


@contextmanager
def open_state(settings: Settings) -> Iterator[StateStore]:
    """The state database alone, for commands that neither read the CRM nor call the dialer."""
    engine = db.open_engine(settings.state.url)
    try:
        db.require_current(engine)
        yield StateStore(engine, settings.dialer.target)
    finally:
        engine.dispose()


def write_lease(store: StateStore, wait_seconds: float = 0.0) -> Lease:
    """Taken by every command that writes state or calls the dialer to change it; a context
    manager that releases it. Renew it (lease.renew) while working: it expires otherwise."""
    lease = Lease(store.engine, lease_name(store.target))
    lease.acquire(wait_seconds)
    return lease


def lease_name(target: str) -> str:
    return f"apply:{target}"
