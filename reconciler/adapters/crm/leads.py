"""Stream the CRM's leads in key order, each with a digest of its CRM row.

Leads come in millions, so nothing here holds them all: rows are streamed in byte order of the
key (the order Python compares strings in, so the planner can merge this stream with the
recorded one), and only the key, the list and a digest of the row are read from each. The
fields are mapped (`LeadMapper.fields`) only for the leads about to be sent: a plan over a
million unchanged leads does a million digests, not seven million conversions.

A phone is compared as the dialer stores it (`phone_digits`): the CRM database finds the phones
shared in a list with that very rule in SQL (`shared_phones`), or, when it cannot,
`shared_phones_by_reading` finds them in Python; both give the same answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from hashlib import blake2b
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.crm.source import CrmUnavailable, convert, read_only_connection
from reconciler.adapters.keyorder import binary_key_order, stream_rows
from reconciler.config.spec import LEAD_KEY, FieldSource, ResourceSpec
from reconciler.core.model import DesiredLead, RowRejection

_PHONE_FIELDS = frozenset({"phone_number", "alt_phone", "phone_code"})
# Every character Python counts as a space (str.strip, str.isspace): tab, CR, LF, the
# non-breaking and the other Unicode spaces. Spelled out, because SQL must drop the very same.
SPACES = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
          "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
PHONE_MARKS = "+-.()/"
_PHONE_DROPPED = str.maketrans("", "", SPACES + PHONE_MARKS)
# Where the shared phones can be found by the database with exactly the Python rule.
_SQL_DIALECTS = ("sqlite", "postgresql")


def phone_digits(text: str) -> str:
    """A phone as the dialer stores it: every space and `+-.()/` dropped, wherever they are.

    What is left is checked by the field rules (6-18 digits), so letters are never dropped.
    """
    return text.translate(_PHONE_DROPPED)


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
        """The phone as sent (`phone_digits`); "" when there is none."""
        return phone_digits(self._value(self._phone, row) or "")

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
                values[name] = phone_digits(value) if name in _PHONE_FIELDS else value
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


def lead_source(resource: ResourceSpec) -> Any:
    """The spec's leads table or query, with its change column (if any) beside the mapped ones."""
    names = resource.columns
    if resource.change_column is not None and resource.change_column not in names:
        names = (*names, resource.change_column)
    columns: list[sa.ColumnClause[Any]] = [sa.column(c) for c in names]
    if resource.query is not None:
        return sa.text(resource.query).columns(*columns).subquery("crm_leads")
    assert resource.table is not None
    schema, _, name = resource.table.rpartition(".")
    return sa.table(name, *columns, schema=schema or None)


def lead_statement(resource: ResourceSpec, dialect: str, since: Any = None) -> sa.Select[Any]:
    """Every lead row in key order; with `since`, only those whose change column is past it
    (docs/incremental.md). The change column is never selected: it is not part of the row's
    digest, so a row touched without a change to its data is not drift."""
    key_column = resource.fields[LEAD_KEY].column
    assert key_column is not None
    source = lead_source(resource)
    statement = (sa.select(*(source.c[c] for c in resource.columns))
                 .order_by(binary_key_order(source.c[key_column], dialect)))
    if since is not None:
        assert resource.change_column is not None
        statement = statement.where(source.c[resource.change_column] > since)
    return statement


SharedPhones = dict[tuple[str, str], str]


def shared_phones_later(engine: sa.Engine, resource: ResourceSpec
                        ) -> Callable[[], SharedPhones]:
    """The phones several leads of a list share; call the result to get them.

    Asked of the database when it can (`shared_phones`), started now on a thread of its own:
    the database does the work and releases the interpreter meanwhile, so it overlaps the merge.
    Otherwise read by reconciler (`shared_phones_by_reading`), once, when first needed.
    """
    if not (_plain_phone_mapping(resource) and engine.dialect.name in _SQL_DIALECTS):
        return cache(partial(shared_phones_by_reading, engine, resource))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared-phones")
    future = pool.submit(shared_phones, engine, resource)
    pool.shutdown(wait=False)
    return future.result


def _plain_phone_mapping(resource: ResourceSpec) -> bool:
    plain = [resource.fields[name] for name in ("list_id", "phone_number", LEAD_KEY)]
    return not any(s.column is None or s.value is not None or s.default is not None or s.map
                   or s.yes_no for s in plain)


def shared_phones(engine: sa.Engine, resource: ResourceSpec,
                  pairs: Collection[tuple[str, str]] | None = None) -> SharedPhones:
    """(list, phone) -> the first key (in key order) of every phone on several leads of a list.

    Asked of the database, so a plan need not hold a million phones to apply `keep_first`.
    Only for a spec whose key, list and phone are plain columns (see `_plain_phone_mapping`),
    on SQLite and PostgreSQL; it counts exactly the leads `shared_phones_by_reading` counts:
    a key the merge takes (not blank, no spaces around it), a list, and a phone, each as
    LeadMapper reads it. `pairs`: only those (list, phone) pairs are asked about.
    """
    plain = [resource.fields[name] for name in ("list_id", "phone_number", LEAD_KEY)]
    dialect = engine.dialect.name
    source = lead_statement(resource, dialect).order_by(None).subquery("crm_leads_all")
    list_col, phone_col, key_col = (source.c[s.column or ""] for s in plain)
    key = sa.cast(key_col, sa.String)
    leads = _with_phone_digits(sa.select(
        key.label("key"), _sql_strip(sa.cast(list_col, sa.String), dialect).label("list_id"),
        sa.cast(phone_col, sa.String).label("phone"),
    ).where(key == _sql_strip(key, dialect), key != ""), dialect).subquery("crm_phones")
    list_id = binary_key_order(leads.c.list_id, dialect)
    phone = binary_key_order(leads.c.phone, dialect)
    statement = (
        sa.select(list_id, phone, sa.func.min(binary_key_order(leads.c.key, dialect)))
        .where(list_id != "", phone != "")
        .group_by(list_id, phone).having(sa.func.count() > 1)
    )
    if pairs is not None:
        statement = statement.where(sa.tuple_(list_id, phone).in_(sorted(pairs)))
    with read_only_connection(engine, "leads") as conn:
        return {(str(lst), str(ph)): str(first) for lst, ph, first in stream_rows(conn, statement)}


def _sql_strip(text: Any, dialect: str) -> Any:
    """str.strip() in SQL: every space in SPACES off both ends."""
    return sa.func.btrim(text, SPACES) if dialect == "postgresql" else sa.func.trim(text, SPACES)


def _with_phone_digits(leads: sa.Select[Any], dialect: str) -> sa.Select[Any]:
    """`leads` (key, list_id, phone) with `phone_digits` applied to the phone, in SQL."""
    marks = SPACES + PHONE_MARKS
    if dialect == "postgresql":
        key, list_id, phone = leads.subquery("crm_phones_raw").c
        return sa.select(key, list_id, sa.func.translate(phone, marks, "").label("phone"))
    # SQLite has no translate(): one replace() per character, a dozen per subquery (deeper
    # nesting overflows its parser; SQLite flattens them again), and none at all for the usual
    # phone, digits only.
    leads = sa.select(*leads.selected_columns, leads.selected_columns.phone.label("digits"))
    for start in range(0, len(marks), 12):
        key, list_id, phone, digits = leads.subquery(f"crm_phones_{start}").c
        dropped: Any = digits
        for mark in marks[start:start + 12]:
            dropped = sa.func.replace(dropped, mark, "")
        leads = sa.select(key, list_id, phone, dropped.label("digits"))
    key, list_id, phone, digits = leads.subquery("crm_phones_digits").c
    digits_only = sa.func.ltrim(phone, "0123456789") == ""
    return sa.select(key, list_id, sa.case((digits_only, phone), else_=digits).label("phone"))


def shared_phones_by_reading(engine: sa.Engine, resource: ResourceSpec) -> SharedPhones:
    """What `shared_phones` finds, found by reading the leads: for any spec and database.

    Two reads, to keep memory to one hash per lead: the first finds which (list, phone) hashes
    come up more than once; the second keeps the first key of those, checked exactly.
    """
    mapper = LeadMapper(resource)

    def phones() -> Iterator[tuple[str, tuple[str, str]]]:
        statement = lead_statement(resource, engine.dialect.name).order_by(None)
        with read_only_connection(engine, "leads") as conn:
            for row in stream_rows(conn, statement):
                try:
                    key, list_id, phone = mapper.key(row), mapper.list_id(row), mapper.phone(row)
                except ValueError:
                    continue                # a lead the merge rejects: it holds no phone
                if key and list_id and phone:
                    yield key, (list_id, phone)

    seen: set[int] = set()
    again: set[int] = set()
    for _, pair in phones():
        token = hash(pair)
        (again if token in seen else seen).add(token)
    seen.clear()
    first: SharedPhones = {}
    leads: Counter[tuple[str, str]] = Counter()
    for key, pair in phones():
        if hash(pair) in again:
            leads[pair] += 1
            if pair not in first or key < first[pair]:
                first[pair] = key
    return {pair: key for pair, key in first.items() if leads[pair] > 1}


def stream_leads(engine: sa.Engine, resource: ResourceSpec, mapper: LeadMapper | None = None,
                 since: Any = None) -> Iterator[DesiredLead | RowRejection]:
    """The leads in key order; with `since`, only the rows changed past that mark."""
    mapper = mapper or LeadMapper(resource)
    statement = lead_statement(resource, engine.dialect.name, since)
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


__all__ = ["CrmUnavailable", "LeadMapper", "lead_list_ids", "phone_digits", "row_digest",
           "stream_leads"]
