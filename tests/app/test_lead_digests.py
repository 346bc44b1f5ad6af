"""Leads an earlier version recorded, with a digest of another format: an unchanged row is not
drift, an apply records its digest anew (nothing is sent), and a changed row is still drift."""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from pathlib import Path

import pytest
import sqlalchemy as sa
from xxhash import xxh3_64_hexdigest

from reconciler.adapters.crm.leads import stream_leads
from reconciler.core.model import DesiredLead
from reconciler.core.plan import Plan
from reconciler.sandbox import SandboxDialer
from tests.app.test_leads import LISTS, add_multi_lead_calls, lead, run
from tests.helpers import crm_execute, engine_context, make_crm


def recorded_digests(state: sa.Engine) -> dict[str, str]:
    with state.connect() as conn:
        return dict(conn.execute(sa.text("SELECT lead_key, fields_digest FROM shadow_leads")).all())


def notes(plan: Plan, topic: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(n.message, n.keys) for n in plan.notes if n.topic == topic]


EARLIER_FORMATS = {
    "blake2b": lambda text: blake2b(text, digest_size=16).hexdigest(),
    "xxh3 of repr": xxh3_64_hexdigest,
}


@pytest.mark.parametrize("earlier_format", EARLIER_FORMATS.values(), ids=EARLIER_FORMATS.keys())
def test_leads_recorded_with_earlier_digests_are_recorded_anew_not_sent_again(
    sandbox: SandboxDialer, state_engine: sa.Engine, tmp_path: Path,
    earlier_format: Callable[[bytes], str]
) -> None:
    crm = make_crm(tmp_path, [], LISTS, [lead(n) for n in range(1, 7)])
    with engine_context(sandbox, state_engine, crm, tmp_path) as ctx:
        run(ctx)
        assert ctx.spec.leads is not None
        current = {row.key: row.digest for row in stream_leads(ctx.crm, ctx.spec.leads)
                   if isinstance(row, DesiredLead)}
        earlier = {row.key: earlier_format(repr(tuple(row.row)).encode())
                   for row in stream_leads(ctx.crm, ctx.spec.leads)
                   if isinstance(row, DesiredLead)}
        with state_engine.begin() as conn:            # as an earlier version recorded them
            conn.execute(sa.text("UPDATE shadow_leads SET fields_digest = :digest "
                                 "WHERE lead_key = :key"),
                         [{"key": key, "digest": digest} for key, digest in earlier.items()])
        crm_execute(crm, "UPDATE crm_leads SET city = 'York' WHERE id = 2")   # changed since
        crm_execute(crm, "DELETE FROM crm_leads WHERE id = 3")                # gone since
        sent = add_multi_lead_calls(sandbox)
        version = ctx.store.load_recorded().version

        preview = run(ctx)[0].plan
        assert not preview.has_changes
        assert notes(preview, "earlier_digests") == [(
            "4 lead(s) were recorded with the digest of an earlier version: they are "
            "unchanged, and the next apply records their digest anew", ())]
        assert [keys for _, keys in notes(preview, "drift")] == [("2",)]

        now = recorded_digests(state_engine)
        assert {key for key, digest in now.items() if digest != earlier[key]} \
            == {"1", "4", "5", "6"}
        assert all(now[key] == current[key] for key in ("1", "4", "5", "6"))
        assert (now["2"], now["3"]) == (earlier["2"], earlier["3"])   # kept: no row to match
        assert ctx.store.load_recorded().version == version     # what the leads mean is the same

        again = run(ctx)[0].plan
        assert not again.has_changes and not notes(again, "earlier_digests")
        assert [keys for _, keys in notes(again, "drift")] == [("2",)]
    assert add_multi_lead_calls(sandbox) == sent
