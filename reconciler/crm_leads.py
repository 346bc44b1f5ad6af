"""Stream the CRM's leads in key order, normalised, with a digest per lead.

Leads come in millions, so nothing here holds them all: rows are streamed from the database in
byte order of the key (the order Python compares strings in, so the planner can merge this
stream with the recorded one), mapped, and handed on one by one. Field rules are checked later,
only for the leads that are about to be sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from reconciler.crm import CrmUnavailable, read_only_connection, source_value
from reconciler.keyorder import binary_key_order
from reconciler.model import DesiredLead, RowRejection
from reconciler.spec import LEAD_KEY, ResourceSpec

STREAM_CHUNK = 5000
_PHONE_FIELDS = ("phone_number", "alt_phone", "phone_code")


def lead_statement(resource: ResourceSpec, dialect: str) -> sa.Select[Any]:
    key_column = resource.fields[LEAD_KEY].column
    assert key_column is not None
    columns: list[sa.ColumnClause[Any]] = [sa.column(c) for c in resource.columns]
    if resource.query is not None:
        source: Any = sa.text(resource.query).columns(*columns).subquery("crm_leads")
    else:
        assert resource.table is not None
        schema, _, name = resource.table.rpartition(".")
        source = sa.table(name, *columns, schema=schema or None)
    return sa.select(source).order_by(binary_key_order(source.c[key_column], dialect))


def stream_leads(engine: sa.Engine, resource: ResourceSpec
                 ) -> Iterator[DesiredLead | RowRejection]:
    statement = lead_statement(resource, engine.dialect.name)
    sources = [(name, source) for name, source in resource.fields.items() if name != LEAD_KEY]
    key_source = resource.fields[LEAD_KEY]
    with read_only_connection(engine, "leads") as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_CHUNK).execute(
            statement)
        for row in result.mappings():
            yield _lead(row, key_source, sources)


def _lead(row: sa.RowMapping, key_source: Any, sources: list[tuple[str, Any]]
          ) -> DesiredLead | RowRejection:
    """A lead is named by its key: row positions in key order mean nothing to a person."""
    try:
        key = source_value(key_source, row)
    except ValueError as exc:
        return RowRejection("leads", "", LEAD_KEY, str(exc), 0)
    if not key:
        return RowRejection("leads", "", LEAD_KEY, "is required", 0)
    fields: dict[str, str] = {}
    for name, source in sources:
        try:
            value = source_value(source, row)
        except ValueError as exc:
            return RowRejection("leads", key, name, str(exc), 0)
        if value is None:
            continue
        fields[name] = _digits_only(value) if name in _PHONE_FIELDS else value
    return DesiredLead(key, fields.get("list_id", ""), fields, lead_digest(fields))


def _digits_only(value: str) -> str:
    """'+1 (555) 010-0123' -> '15550100123'. Letters stay, so the field rule refuses them."""
    return "".join(ch for ch in value if ch not in " +-.()/")


def lead_digest(fields: dict[str, str]) -> str:
    text = "\x1f".join(f"{name}\x1e{fields[name]}" for name in sorted(fields))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


__all__ = ["CrmUnavailable", "lead_digest", "stream_leads"]
