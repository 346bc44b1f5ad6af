"""Do-not-call in the state database: which sent leads hold a phone, and which were flagged.

Finding sent leads newly on the DNC asks, a chunk of DNC phones at a time, which sent leads
hold them: one query per chunk by the index on shadow_leads (target, phone, list_id), leaving
out the leads already flagged on the dialer (dnc_flags). Its cost follows the DNC's size, not
the number of leads.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa

from reconciler.adapters.state.schema import dnc_flags, shadow_leads
from reconciler.adapters.state.store import StateStore, StepWriter, now

FLAGGED, ABSENT = "flagged", "absent"


@dataclass(frozen=True)
class SentLead:
    key: str
    list_id: str
    phone: str
    dialer_lead_id: str              # "" when not known (confirmed sent by an operator)


class DncBook:
    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.engine, self.target = store.engine, store.target

    def sent_with_phones(self, phones: Collection[str]) -> list[SentLead]:
        """Sent leads holding one of `phones`, not yet flagged. Ask a few hundred at a time."""
        if not phones:
            return []
        t, f = shadow_leads.c, dnc_flags.c
        statement = (
            sa.select(t.lead_key, t.list_id, t.phone, t.dialer_lead_id)
            .outerjoin(dnc_flags, sa.and_(f.target == t.target, f.lead_key == t.lead_key))
            .where(t.target == self.target, t.phone.in_(set(phones)), t.status == "sent",
                   f.lead_key.is_(None))
        )
        with self.engine.connect() as conn:
            return [SentLead(key, list_id, phone, lead_id or "")
                    for key, list_id, phone, lead_id in conn.execute(statement)]

    def record_flag(self, key: str, list_id: str, outcome: str, run_id: str) -> None:
        """Flagged on the dialer (or not there to flag): never planned again."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(dnc_flags).where(dnc_flags.c.target == self.target,
                                                    dnc_flags.c.lead_key == key))
            conn.execute(sa.insert(dnc_flags).values(
                target=self.target, lead_key=key, list_id=list_id, outcome=outcome,
                flagged_at=now(), run_id=run_id or None))
            StepWriter(conn, self.target, run_id).bump_version()

    def flagged(self) -> dict[str, str]:
        """lead key -> outcome, of every lead flagged for this target (for tests and status)."""
        f = dnc_flags.c
        with self.engine.connect() as conn:
            return {key: outcome for key, outcome in conn.execute(
                sa.select(f.lead_key, f.outcome).where(f.target == self.target))}
