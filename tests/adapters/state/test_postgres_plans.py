"""The state on PostgreSQL plans every statement afresh, and leaves room for HOT updates.

psycopg prepares a statement on the server once it has run five times, and PostgreSQL may then
keep one plan for it. An apply's lead table grows from empty by thousands of rows a minute: a
plan made while it was small walked the whole table for every lead recorded, so that an apply
of 100,000 new leads spent a minute on it (docs/performance.md). The state engine turns that
off; here, a run of lead batches recorded the way an apply records them leaves no statement
prepared on its connection. The lead table's pages are written half full (migration 0009), so
that the two updates a lead's row gets just after it is written stay on its page.
"""

from __future__ import annotations

import sqlalchemy as sa

from reconciler.adapters.keyorder import binary_key_order
from reconciler.adapters.state import db
from reconciler.adapters.state.leads import LeadBook, LeadResult
from reconciler.adapters.state.schema import shadow_leads
from reconciler.adapters.state.store import StateStore
from tests.conftest import PostgresServer


def test_lead_batches_recorded_leave_no_statement_prepared(postgres: PostgresServer) -> None:
    engine = db.open_engine(postgres.new_database())
    try:
        db.upgrade(engine)
        book = LeadBook(StateStore(engine, "default"))
        for batch in range(8):
            items = [(f"{batch}-{n}", {"phone_number": f"555{batch:03d}{n:04d}",
                                       "list_id": "1101"}, "digest") for n in range(20)]
            queued = book.record_intent("run", "1101", items, "queued")
            book.record_sending(queued)
            book.record_outcome(queued, [LeadResult(key, "sent", str(n))
                                         for n, (key, _, _) in enumerate(items)], "answered")
        with engine.connect() as conn:
            assert conn.connection.driver_connection.prepare_threshold is None
            prepared = conn.execute(sa.text("SELECT count(*) FROM pg_prepared_statements"))
            assert prepared.scalar_one() == 0
    finally:
        engine.dispose()


def test_lead_pages_are_written_half_full_from_the_migration_on(
    postgres: PostgresServer,
) -> None:
    engine = db.open_engine(postgres.new_database())

    def options() -> list[str] | None:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT reloptions FROM pg_class "
                                        "WHERE relname = 'shadow_leads'")).scalar_one()
    try:
        db.upgrade(engine, "0008_lead_batch_answer")
        assert options() is None
        db.upgrade(engine)
        assert options() == ["fillfactor=50"]
        db.downgrade(engine, "0008_lead_batch_answer")
        assert options() is None
    finally:
        engine.dispose()


def test_recorded_leads_are_read_in_key_order_from_the_primary_key_not_sorted(
    postgres: PostgresServer,
) -> None:
    """Migration 0010: the lead key in the "C" collation, so that PostgreSQL walks the primary
    key in the merge's byte order instead of sorting every recorded lead for each plan; the
    order is byte order all the same, and it was before (sorted)."""
    engine = db.open_engine(postgres.new_database())
    keys = ["b", "B", "a b", "a", "é", "z", "Ä", "10", "9", "~", "ß", "\u4e2d", "a\u00a0"]

    def read_back() -> list[str]:
        return [key for chunk in LeadBook(StateStore(engine, "default")).stream_recorded_chunks()
                for key in chunk.keys]

    def plan_of_the_read() -> str:
        t = shadow_leads.c
        statement = (sa.select(t.lead_key).where(t.target == "default", t.status != "queued")
                     .order_by(binary_key_order(t.lead_key, "postgresql", is_text=True)))
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")    # a few rows: as with millions
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            return "\n".join(conn.exec_driver_sql(f"EXPLAIN {compiled}").scalars())
    try:
        db.upgrade(engine, "0009_shadow_leads_fillfactor")
        book = LeadBook(StateStore(engine, "default"))
        batch = book.record_intent("run", "1101", [(key, {"phone_number": f"55500{n:05d}"}, "d")
                                                   for n, key in enumerate(keys)])
        book.record_outcome(batch, [LeadResult(key, "sent", str(n))
                                    for n, key in enumerate(keys)], "answered")
        in_byte_order = sorted(keys)
        assert read_back() == in_byte_order
        assert "Sort" in plan_of_the_read()
        db.upgrade(engine)
        assert read_back() == in_byte_order
        assert "Sort" not in plan_of_the_read()
        assert "Index Scan using pk_shadow_leads" in plan_of_the_read()
        db.downgrade(engine, "0009_shadow_leads_fillfactor")
        assert read_back() == in_byte_order
    finally:
        engine.dispose()
