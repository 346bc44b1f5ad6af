"""The CRM side of incremental lead reads (docs/incremental.md).

A spec's `[leads] change_column` grows whenever a row changes: a timestamp, a sequence or a
rowversion. Its highest value is read before the rows (`high_water`), so a row committed while
they are read is read again next time, never skipped; it is kept in the state database as text
with its type (`ChangeMark`), so that it compares as what it was: 10 after 9, not before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.crm.leads import LeadMapper, lead_source, lead_statement
from reconciler.adapters.crm.shared_phones import (
    SharedPhones,
    in_database,
    shared_phones,
    shared_phones_by_reading,
)
from reconciler.adapters.crm.source import read_only_connection
from reconciler.adapters.keyorder import stream_rows
from reconciler.config.spec import ResourceSpec
from reconciler.errors import SpecError

# Asked of the database in one query up to this many (list, phone) pairs; past it, all of them.
PAIRS_ASKED = 2000

_DECODE: dict[str, Any] = {
    "integer": int, "decimal": Decimal, "float": float, "text": str,
    "timestamp": datetime.fromisoformat, "date": date.fromisoformat,
}


@dataclass(frozen=True)
class ChangeMark:
    """A change-column value, as text plus its type."""

    text: str
    type: str            # one of _DECODE

    @classmethod
    def of(cls, value: Any) -> ChangeMark:
        if isinstance(value, date):         # a datetime is a date too
            return cls(value.isoformat(), "timestamp" if isinstance(value, datetime) else "date")
        for name, kind in (("integer", int), ("decimal", Decimal), ("float", float),
                           ("text", str)):
            if isinstance(value, kind) and not isinstance(value, bool):
                return cls(str(value), name)
        raise SpecError(f"[leads] change_column holds {type(value).__name__} values: use a "
                       f"timestamp, integer or text column")

    def value(self) -> Any:
        """The value again, as the CRM gave it (a datetime compares as a datetime)."""
        return _DECODE[self.type](self.text)

    def __str__(self) -> str:
        return self.text


def high_water(engine: sa.Engine, resource: ResourceSpec) -> ChangeMark | None:
    """The highest change-column value now in the CRM; None when no row has one."""
    assert resource.change_column is not None
    source = lead_source(resource)
    with read_only_connection(engine, "leads") as conn:
        value = conn.execute(sa.select(sa.func.max(source.c[resource.change_column]))
                             ).scalar_one()
    return None if value is None else ChangeMark.of(value)


def shared_phones_of_changes(engine: sa.Engine, resource: ResourceSpec, since: Any
                             ) -> SharedPhones:
    """`shared_phones`, for the (list, phone) pairs of the rows changed since `since` only: an
    incremental pass decides only those leads, and asks about nothing else."""
    mapper = LeadMapper(resource)
    pairs: set[tuple[str, str]] = set()
    statement = lead_statement(resource, engine.dialect.name, since).order_by(None)
    with read_only_connection(engine, "leads") as conn:
        for row in stream_rows(conn, statement):
            try:
                list_id, phone = mapper.list_id(row), mapper.phone(row)
            except ValueError:
                continue                # a lead the merge rejects: it holds no phone
            if list_id and phone:
                pairs.add((list_id, phone))
    if not pairs:
        return {}
    if in_database(engine, resource):
        if len(pairs) <= PAIRS_ASKED:
            return shared_phones(engine, resource, pairs)
        found = shared_phones(engine, resource)
    else:
        found = shared_phones_by_reading(engine, resource)
    return {pair: key for pair, key in found.items() if pair in pairs}
