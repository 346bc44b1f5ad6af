"""What a run works with: its context (opened once, passed in) and what it gathered."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from reconciler.adapters.dialer.dialects import Dialect
from reconciler.adapters.state.store import StateStore
from reconciler.app.incremental import LeadRead
from reconciler.apply.leads_spill import BatchSpill
from reconciler.config.settings import Settings
from reconciler.config.spec import Spec
from reconciler.core.leads.merge import LeadContext
from reconciler.core.model import Desired
from reconciler.core.plan import Plan
from reconciler.core.ports import DialerPort


@dataclass(frozen=True)
class Context:
    """Everything a run needs, opened once by the CLI (or a test) and passed in."""

    settings: Settings
    spec: Spec
    store: StateStore
    crm: sa.Engine
    dialer: DialerPort
    digest_key: bytes
    dialect: Dialect           # what the dialer can do; built `dialer`


@dataclass(frozen=True)
class Gathered:
    desired: Desired
    plan: Plan
    leads: LeadContext | None = None     # how leads were planned
    # The planned lead batches, kept on disk for apply to send (apply/leads_spill.py); without
    # them (or once sent), apply merges the leads again alike.
    spill: BatchSpill | None = None
    lead_read: LeadRead | None = None    # which lead rows (docs/incremental.md); None: all
