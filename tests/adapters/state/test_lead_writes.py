"""A batch's lead rows written in one go (an executemany compiled once; on PostgreSQL, one
statement over arrays) hold exactly what was given, whatever the keys and messages hold:
quotes, commas, braces, backslashes, spaces, the word NULL, other scripts, and no value at all.
"""

from __future__ import annotations

import sqlalchemy as sa

from reconciler.adapters.state.leads import LeadBook, LeadResult
from reconciler.adapters.state.schema import shadow_leads
from reconciler.adapters.state.store import StateStore

KEYS = ['a"b', "c,d", "{e}", "f\\g", " h ", "NULL", "", "ключ-7", "x'y"]


def rows(engine: sa.Engine) -> dict[str, tuple[object, ...]]:
    t = shadow_leads.c
    with engine.connect() as conn:
        return {key: tuple(rest) for key, *rest in conn.execute(sa.select(
            t.lead_key, t.list_id, t.fields_digest, t.status, t.batch_id, t.phone,
            t.dialer_lead_id, t.message))}


def test_a_batch_of_awkward_keys_is_written_and_answered_as_given(
    state_engine: sa.Engine,
) -> None:
    book = LeadBook(StateStore(state_engine, "default"))
    items = [(key, {"phone_number": f"55500{n:05d}"} if n % 2 else {}, f"digest {key}")
             for n, key in enumerate(KEYS)]
    batch = book.record_intent("run", "1101", items)
    assert rows(state_engine) == {
        key: ("1101", f"digest {key}", "pending", batch, f"55500{n:05d}" if n % 2 else None,
              None, None) for n, key in enumerate(KEYS)}

    results = [LeadResult(key, "sent", f"{1000 + n}") if n % 3 == 0 else
               LeadResult(key, "rejected", None, f'bad "{key}", {{x}}') if n % 3 == 1 else
               LeadResult(key, "in_doubt") for n, key in enumerate(KEYS)]
    book.record_outcome(batch, results, "in_doubt")
    recorded = rows(state_engine)
    assert {key: recorded[key][2:] for key in KEYS} == {
        r.key: (r.status, batch, recorded[r.key][4], r.dialer_lead_id, r.message or None)
        for r in results}

    # A batch carrying some of the keys again replaces their rows; the others stay.
    again = book.record_intent("run", "1102", [(key, {}, "new") for key in KEYS[:3]],
                               "queued")
    recorded = rows(state_engine)      # the earlier lead id and message went with the row
    assert {key: recorded[key] for key in KEYS[:3]} == {
        key: ("1102", "new", "queued", again, None, None, None) for key in KEYS[:3]}
    book.record_outcome(again, [LeadResult(key, "rejected") for key in KEYS[:3]], "answered")
    recorded = rows(state_engine)
    assert len(recorded) == len(KEYS)
    assert {recorded[key][:4] for key in KEYS[:3]} == {("1102", "new", "rejected", again)}
    assert {recorded[key][3] for key in KEYS[3:]} == {batch}
