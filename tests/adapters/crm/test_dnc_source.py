"""The CRM's do-not-call source, on SQLite and PostgreSQL: phones by the lead phone rule, one
query per chunk asked, and only the entries not stored as digits held in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.crm.dnc import DncSource
from reconciler.config.spec import DncSpec
from reconciler.core.leads.dnc import DncEntry
from tests.helpers import crm_execute


def test_phones_are_found_by_the_lead_phone_rule_with_one_query_per_chunk(
    database_url: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}" if database_url.startswith("sqlite") \
        else database_url
    crm_execute(url, "CREATE TABLE optouts (tel VARCHAR(40), lst VARCHAR(14), camp VARCHAR(8))")
    rows = [(f"555{n:07d}", None, None) for n in range(100)] + [
        ("+1 (555) 000-0001", "1101", None), ("555.000.0002\xa0", None, "SALES"),
        (" 5550000003", None, None), (None, None, None), ("", None, None), ("ring me", None, None)]
    for tel, lst, camp in rows:
        crm_execute(url, "INSERT INTO optouts VALUES (:t, :l, :c)", t=tel, l=lst, c=camp)
    engine = sa.create_engine(url)
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "optouts" in statement:
            statements.append(statement)

    source = DncSource(engine, DncSpec(None, "optouts", "tel", "lst", "camp"))
    found = source.entries_for({"15550000001", "5550000002", "5550000003", "5550000050",
                                "5559999999"})
    assert {phone: sorted(entries, key=repr) for phone, entries in found.items()} == {
        "15550000001": [DncEntry("15550000001", "1101", "")],
        "5550000002": [DncEntry("5550000002"), DncEntry("5550000002", "", "SALES")],
        "5550000003": [DncEntry("5550000003"), DncEntry("5550000003")],
        "5550000050": [DncEntry("5550000050")],
    }
    # One query per chunk, by the phone column (the few entries not stored as digits are read
    # once per source, straight from the driver's cursor, and kept).
    assert len(statements) == 1 and "IN (" in statements[0]
    assert source.entries_for({"5550000099"}) == {"5550000099": [DncEntry("5550000099")]}
    assert len(statements) == 2
    assert source._rewritten is not None and sorted(source._rewritten) == [
        "15550000001", "5550000002", "5550000003"]
    bad = [(number, why) for number, why in source.stream() if isinstance(why, str)]
    assert [why for _, why in bad] == ["a blank phone", "a blank phone",
                                       "a phone that is not 6-18 digits"]
    engine.dispose()
