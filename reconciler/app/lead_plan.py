"""The lead part of a plan: the lead merge over the CRM's and the state's streams, wired.

`plan_lead_part` adds it to a plan made of users and lists: it chooses the pass (full or
incremental), settles in-doubt leads a look-up can, runs the merge with the keep_first and
do-not-call checks, and keeps the batches it makes for apply to send (apply/leads_spill.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial

import sqlalchemy as sa
import structlog

from reconciler.adapters.crm.dnc import DncSource
from reconciler.adapters.crm.leads import LeadMapper, stream_lead_chunks
from reconciler.adapters.crm.row_digest import matches_earlier_digest
from reconciler.adapters.crm.shared_phones import shared_phones_later
from reconciler.adapters.dialer import requests
from reconciler.adapters.dialer.dialects import Dialect
from reconciler.adapters.dialer.transport import encoded_size, login_of
from reconciler.adapters.state.dnc import DncBook
from reconciler.adapters.state.leads import LeadBook, LeadSettlement
from reconciler.app import dnc, incremental, lead_phones
from reconciler.app.collections_paced import paced
from reconciler.app.context import Context, Gathered
from reconciler.app.incremental import LeadRead
from reconciler.apply import leads_settle
from reconciler.apply.leads_spill import BatchSpill
from reconciler.config.settings import DialerSettings
from reconciler.config.spec import ResourceSpec
from reconciler.core.leads.batching import BatchLimits
from reconciler.core.leads.merge import LeadContext, LeadEvent, lead_chunk_events, lead_events
from reconciler.core.leads.part import plan_leads, usable_lists, with_leads
from reconciler.core.model import Desired, Observed, Recorded, RowRejection
from reconciler.core.plan import Note, Plan, Reject, sealed

log = structlog.get_logger()


def plan_lead_part(ctx: Context, plan: Plan, desired: Desired, recorded: Recorded,
                   observed: Observed, unrouted: Sequence[RowRejection], *, resync: bool,
                   full: bool, settled: tuple[LeadSettlement, ...] | None,
                   keep_batches: bool) -> Gathered:
    """`plan` with its leads (see `engine.gather_and_plan` for the arguments); `unrouted` are
    the CRM rows routed to no target, whose leads join the plan's rejections."""
    assert ctx.spec.leads is not None
    caps = ctx.dialect.capabilities
    lead_rejects = tuple(Reject(r.resource, r.key, r.field, r.rule, r.row)
                         for r in unrouted if r.resource == "leads")
    if lead_rejects:
        plan = replace(plan, rejects=(*plan.rejects, *lead_rejects))
    if ctx.spec.lead_duplicate_check and not caps.sends_leads_one_by_one:
        log.warning("duplicate_check_ignored", dialect=ctx.dialect.name,
                    reason="this dialer takes leads in batches, without duplicate_check")
    book = LeadBook(ctx.store)
    if settled is None:
        settled = leads_settle.look_up(ctx.dialer, ctx.crm, ctx.spec.leads, book,
                                     leads_settle.landing_window(ctx.settings.dialer)) \
            if caps.can_look_up_leads else ()
    if settled:   # recorded by apply before any lead is sent (a settle_leads op)
        plan = replace(plan, ops=(*plan.ops, leads_settle.as_op(settled)))
    read = incremental.choose(ctx.crm, ctx.store, ctx.spec.leads, resync=resync, full=full,
                              settled=bool(settled))
    if read is not None:
        plan = replace(plan, basis=replace(plan.basis, lead_pass=read.lead_pass.basis),
                       lead_pass=read.lead_pass)
    keep_first = ctx.spec.policy.lead_duplicates == "keep_first"
    unknown = book.unknown_phones() if keep_first else 0
    if unknown:
        plan = replace(plan, notes=(*plan.notes, Note(
            "leads", "state", "phones_unknown",
            f"{unknown} lead(s) were recorded before their phone was kept: the next apply "
            f"fills it in from the CRM row when unchanged since export; until then keep_first "
            f"cannot count them")))
    lead_ctx = lead_context(ctx.settings.dialer, ctx.crm, ctx.spec.leads, plan,
                            desired, recorded, observed, keep_first, ctx.dialect,
                            book=book, duplicate_check=ctx.spec.lead_duplicate_check, read=read)
    # Do-not-call: leads about to be sent are checked in the merge; sent ones are drift.
    source = DncSource(ctx.crm, ctx.spec.dnc) if ctx.spec.dnc is not None else None
    campaigns = dnc.campaigns_of(desired, recorded, observed) if source is not None else {}
    if source is not None:
        lead_ctx = replace(lead_ctx, dnc=dnc.dnc_check(source, campaigns))
    events = merged_leads(ctx.crm, ctx.spec.leads, book, lead_ctx, settled, read)
    spill = BatchSpill() if keep_batches else None
    try:
        plan = with_leads(plan, plan_leads(spill.keep(events) if spill else events))
        if source is not None:
            drift = dnc.find_drift(source, DncBook(ctx.store), campaigns, ctx.spec.leads)
            plan = dnc.with_drift(plan, drift, caps.updates_leads)
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    return Gathered(desired, sealed(plan), lead_ctx, spill, read)


def lead_context(settings: DialerSettings, crm: sa.Engine, resource: ResourceSpec, plan: Plan,
                 desired: Desired, recorded: Recorded, observed: Observed,
                 keep_first_phone: bool, dialect: Dialect,
                 book: LeadBook | None = None,
                 duplicate_check: tuple[str, ...] = (), read: LeadRead | None = None
                 ) -> LeadContext:
    """What the lead merge needs besides its two streams, for `plan` and `apply` alike."""
    usable, blockers = usable_lists(plan, desired, recorded, observed)
    mapper = LeadMapper(resource)
    shared = None
    if keep_first_phone:
        shared = incremental.shared_phones_later(crm, resource, read) \
            if read is not None and read.since is not None else shared_phones_later(crm, resource)
    return LeadContext(usable, blockers,
                       batch_limits(settings, dialect.capabilities.sends_leads_one_by_one),
                       mapper.fields, mapper.phone,
                       partial(dialect.lead_problems, duplicate_check=duplicate_check),
                       keep_first_phone, shared,
                       book.phone_holders if book is not None else None,
                       matches_earlier_digest=matches_earlier_digest,
                       shared_phones_soon=shared.soon if shared is not None else None)


def batch_limits(settings: DialerSettings, one_by_one: bool = False) -> BatchLimits:
    if one_by_one:   # each lead is its own request: a batch only groups them for bookkeeping
        return BatchLimits(settings.leads_per_batch, sys.maxsize, 0)
    empty = requests.api_request(login_of(settings), "add_multi_lead", {"multi_leads": "[]"})
    return BatchLimits(settings.leads_per_batch, settings.request_byte_limit,
                       encoded_size(settings, empty))


def merged_leads(crm: sa.Engine, resource: ResourceSpec, book: LeadBook, lead_ctx: LeadContext,
                 settled: tuple[LeadSettlement, ...] = (), read: LeadRead | None = None
                 ) -> Iterator[LeadEvent]:
    """The lead merge; `settled` are look-ups not yet written, planned as if they were. An
    incremental `read` merges the changed rows with the recorded leads of their keys only."""
    if read is not None and read.since is not None:
        assert not settled                  # look-ups make the pass a full one (choose_pass)
        return paced(lead_events(*incremental.changed_leads(crm, resource, book.store, read),
                                 lead_ctx))
    return paced(lead_chunk_events(
        stream_lead_chunks(crm, resource),
        leads_settle.as_recorded_chunks(book.stream_recorded_chunks(), settled), lead_ctx))


def prepare_lead_state(ctx: Context) -> None:
    """The state's writes a plan needs first, under the write lease: the leads' rows of an
    answer a stopped run kept on its batch's row (LeadBook.write_kept_answers), then the phones
    of leads sent before the state kept them (`fill_in_lead_phones`)."""
    kept = LeadBook(ctx.store).write_kept_answers()
    if kept:
        log.warning("lead_answers_written", batches=kept,
                    reason="a previous run stopped before writing them lead by lead")
    fill_in_lead_phones(ctx)


def fill_in_lead_phones(ctx: Context) -> int:
    """Record the phone of leads sent before the state kept phones (docs/leads.md).

    A write to the state: call it with the write lease held, before `gather_and_plan`, so the
    plan counts those leads for keep_first. Returns how many leads it settled; 0 once done.
    """
    if ctx.spec.leads is None:
        return 0
    return lead_phones.fill_in(ctx.crm, ctx.spec.leads, LeadBook(ctx.store))
