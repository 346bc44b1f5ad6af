"""Stream the CRM's leads in key order, each with a digest of its CRM row.

Leads come in millions, so nothing here holds them all: rows are streamed in byte order of the
key (the order Python compares strings in, so the planner can merge this stream with the
recorded one), and only the key, the list and a digest of the row are read from each. The
fields are mapped (`LeadMapper.fields`) only for the leads about to be sent: a plan over a
million unchanged leads does a million digests, not seven million conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b
from typing import Any

import sqlalchemy as sa

from reconciler.crm import CrmUnavailable, convert, read_only_connection
from reconciler.keyorder import binary_key_order, stream_rows
from reconciler.model import DesiredLead, RowRejection
from reconciler.spec import LEAD_KEY, FieldSource, ResourceSpec

_PHONE_FIELDS = frozenset({"phone_number", "alt_phone", "phone_code"})
_PHONE_PUNCTUATION = str.maketrans("", "", " +-.()/")


class LeadMapper:
    """Turns one CRM row (a tuple in `columns` order) into what the dialer is sent."""

    def __init__(self, resource: ResourceSpec) -> None:
        self.columns = resource.columns
        index = {name: i for i, name in enumerate(self.columns)}
        self._fields = [(name, source, index.get(source.column or ""))
                        for name, source in resource.fields.items() if name != LEAD_KEY]
        self._key = self._locate(resource.fields[LEAD_KEY], index)
        self._list = self._locate(resource.fields["list_id"], index)
        self._phone = self._locate(resource.fields["phone_number"], index)

    @staticmethod
    def _locate(source: FieldSource, index: Mapping[str, int]
                ) -> tuple[FieldSource, int | None, bool]:
        plain = source.value is None and not source.yes_no and not source.map
        return source, index.get(source.column or ""), plain

    def key(self, row: tuple[Any, ...]) -> str:
        """The key exactly as the database sorted it: trimming would break the merge's order.

        A key with spaces around it is refused (ValueError), never silently changed.
        """
        source, i, _ = self._key
        raw = None if i is None else row[i]
        if type(raw) is str:
            if raw != raw.strip() and raw.strip():
                raise ValueError("must not start or end with spaces")
            return raw.strip() and raw      # a blank key is a missing one
        return convert(source, raw) or ""

    def list_id(self, row: tuple[Any, ...]) -> str:
        return self._value(self._list, row) or ""

    def phone(self, row: tuple[Any, ...]) -> str:
        return (self._value(self._phone, row) or "").translate(_PHONE_PUNCTUATION)

    def fields(self, row: tuple[Any, ...]) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """The lead as sent, phones reduced to digits; and the fields that could not be read."""
        values: dict[str, str] = {}
        problems: list[tuple[str, str]] = []
        for name, source, i in self._fields:
            try:
                value = convert(source, None if i is None else row[i])
            except ValueError as exc:
                problems.append((name, str(exc)))
                continue
            if value is not None:
                values[name] = value.translate(_PHONE_PUNCTUATION) \
                    if name in _PHONE_FIELDS else value
        return values, problems

    @staticmethod
    def _value(located: tuple[FieldSource, int | None, bool], row: tuple[Any, ...]
               ) -> str | None:
        source, i, plain = located
        raw = None if i is None else row[i]
        if plain:                           # the common cases, a million times: keep them short
            if type(raw) is str:
                text = raw.strip()
                if text:
                    return text
            elif type(raw) is int:
                return str(raw)
        return convert(source, raw)


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
    return (sa.select(*(source.c[c] for c in resource.columns))
            .order_by(binary_key_order(source.c[key_column], dialect)))


SharedPhones = dict[tuple[str, str], str]


def shared_phones_later(engine: sa.Engine, resource: ResourceSpec
                        ) -> Callable[[], SharedPhones] | None:
    """`shared_phones`, started now on a thread of its own; call the result to wait for it.

    The database does the work (and releases the interpreter meanwhile), so it overlaps the
    merge instead of adding to it. None when it cannot be asked of the database.
    """
    if not _plain_phone_mapping(resource):
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared-phones")
    future = pool.submit(shared_phones, engine, resource)
    pool.shutdown(wait=False)
    return future.result


def _plain_phone_mapping(resource: ResourceSpec) -> bool:
    plain = [resource.fields[name] for name in ("list_id", "phone_number", LEAD_KEY)]
    return not any(s.column is None or s.value is not None or s.default is not None or s.map
                   or s.yes_no for s in plain)


def shared_phones(engine: sa.Engine, resource: ResourceSpec) -> SharedPhones:
    """(list, phone) -> the first key (in key order) of every phone on several leads of a list.

    Asked of the database, so a plan need not hold a million phones to apply `keep_first`.
    Only for a spec whose list and phone are plain columns (see `_plain_phone_mapping`): with a
    default or a map the planner tracks every phone itself.
    """
    plain = [resource.fields[name] for name in ("list_id", "phone_number", LEAD_KEY)]
    dialect = engine.dialect.name
    source = lead_statement(resource, dialect).order_by(None).subquery("crm_leads_all")
    list_col, phone_col, key_col = (source.c[s.column or ""] for s in plain)
    phone: Any = sa.func.trim(sa.cast(phone_col, sa.String))
    for mark in " +-.()/":                  # as LeadMapper.phone normalises it
        phone = sa.func.replace(phone, mark, "")
    list_id = sa.func.trim(sa.cast(list_col, sa.String))
    statement = (
        sa.select(list_id, phone, sa.func.min(binary_key_order(key_col, dialect)))
        .where(phone_col.is_not(None), list_col.is_not(None))
        .group_by(list_id, phone).having(sa.func.count() > 1)
    )
    with read_only_connection(engine, "leads") as conn:
        return {(str(lst), str(ph)): str(first) for lst, ph, first in stream_rows(conn, statement)}


def stream_leads(engine: sa.Engine, resource: ResourceSpec, mapper: LeadMapper | None = None
                 ) -> Iterator[DesiredLead | RowRejection]:
    mapper = mapper or LeadMapper(resource)
    statement = lead_statement(resource, engine.dialect.name)
    key_of, list_of = mapper.key, mapper.list_id
    with read_only_connection(engine, "leads") as conn:
        for row in stream_rows(conn, statement):
            try:
                key, list_id = key_of(row), list_of(row)
            except ValueError as exc:
                yield RowRejection("leads", "", LEAD_KEY, str(exc), 0)
                continue
            if not key:
                yield RowRejection("leads", "", LEAD_KEY, "is required", 0)
                continue
            yield DesiredLead(key, list_id, row_digest(row), row)


def lead_list_ids(engine: sa.Engine, resource: ResourceSpec) -> set[str]:
    """Every list the CRM's leads name (one DISTINCT query), for dialers read list by list."""
    source = resource.fields["list_id"]
    if source.column is None:
        return {source.value} if source.value else set()
    statement = sa.select(lead_statement(resource, engine.dialect.name).subquery()
                          .c[source.column]).distinct()
    found: set[str] = set()
    with read_only_connection(engine, "leads") as conn:
        for (raw,) in conn.execute(statement):
            try:
                value = convert(source, raw)
            except ValueError:
                continue
            if value:
                found.add(value)
    return found


def row_digest(row: tuple[Any, ...]) -> str:
    """Tells whether a lead's CRM row changed since it was exported."""
    return blake2b(repr(tuple(row)).encode(), digest_size=16).hexdigest()


__all__ = ["CrmUnavailable", "LeadMapper", "lead_list_ids", "row_digest", "stream_leads"]
