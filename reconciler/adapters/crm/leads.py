"""Stream the CRM's leads in key order, each with a digest of its CRM row.

Leads come in millions, so nothing here holds them all: rows are streamed in byte order of the
key (the order Python compares strings in, so the planner can merge this stream with the
recorded one), a chunk at a time, and only the key, the list and a digest of the row are
read from each (`LeadMapper.chunk`: a column at once where the column is plain). The fields are
mapped (`LeadMapper.fields`) only for the leads about to be sent: a plan over a million
unchanged leads does a million digests, not seven million conversions.

A phone is compared as the dialer stores it (`phone_digits`); the phones several leads of a
list share are found in `reconciler.adapters.crm.shared_phones`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.crm.row_digest import row_digest, row_digests
from reconciler.adapters.crm.source import CrmUnavailable, convert, read_only_connection
from reconciler.adapters.keyorder import binary_key_order, stream_chunks
from reconciler.config.spec import LEAD_KEY, FieldSource, ResourceSpec
from reconciler.core.model import DesiredLead, LeadChunk, RowRejection

_PHONE_FIELDS = frozenset({"phone_number", "alt_phone", "phone_code"})
# Every character Python counts as a space (str.strip, str.isspace): tab, CR, LF, the
# non-breaking and the other Unicode spaces. Spelled out, because SQL must drop the very same.
SPACES = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
          "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
PHONE_MARKS = "+-.()/"
_PHONE_DROPPED = str.maketrans("", "", SPACES + PHONE_MARKS)


def phone_digits(text: str) -> str:
    """A phone as the dialer stores it: every space and `+-.()/` dropped, wherever they are.

    What is left is checked by the field rules (6-18 digits), so letters are never dropped.
    """
    if text.isdigit() and text.isascii():     # the usual phone: nothing to drop, half the time
        return text
    return text.translate(_PHONE_DROPPED)


class LeadMapper:
    """Turns one CRM row (a tuple in `columns` order) into what the dialer is sent."""

    def __init__(self, resource: ResourceSpec) -> None:
        self.columns = resource.columns
        index = {name: i for i, name in enumerate(self.columns)}
        self._fields = [(name, *self._locate(source, index), name in _PHONE_FIELDS)
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
        for name, source, i, plain, phone in self._fields:
            raw = None if i is None else row[i]
            # The common cases, for every lead sent, without `convert` (`_value` does the same).
            if plain and type(raw) is str and (text := raw.strip()):
                value: str | None = text
            elif plain and type(raw) is int:
                value = str(raw)
            else:
                try:
                    value = convert(source, raw)
                except ValueError as exc:
                    problems.append((name, str(exc)))
                    continue
            if value is not None:
                values[name] = phone_digits(value) if phone else value
        return values, problems

    def chunk(self, rows: list[tuple[Any, ...]]) -> LeadChunk:
        """Key, list and digest of each row, as `key` and `list_id` read them, a chunk at once.

        A row whose key cannot be read gets the key "" and its RowRejection in `rows`.
        """
        keys = self._plain_column(self._key, rows, blank_ok=False)
        list_ids = self._plain_column(self._list, rows, blank_ok=True)
        if keys is None or list_ids is None:
            return self._chunk_row_by_row(rows)
        return LeadChunk(keys, list_ids, row_digests(rows), rows)

    @staticmethod
    def _plain_column(located: tuple[FieldSource, int | None, bool], rows: list[tuple[Any, ...]],
                      *, blank_ok: bool) -> list[str] | None:
        """A column of whole numbers, or of text without spaces around it, read in one step,
        exactly as `key` / `list_id` read each value; None when the chunk holds anything else.
        """
        source, i, plain = located
        if source.value is not None and (source.value or blank_ok):
            return [source.value] * len(rows)
        if not plain or i is None or not rows:
            return None
        raw = list(map(itemgetter(i), rows))
        kinds = set(map(type, raw))
        if kinds == {int}:
            return list(map(str, raw))
        if kinds == {str} and raw == list(map(str.strip, raw)) \
                and ((blank_ok and source.default is None) or "" not in raw):
            return raw
        return None

    def _chunk_row_by_row(self, rows: list[tuple[Any, ...]]) -> LeadChunk:
        chunk = LeadChunk([], [], [], [])
        for row in rows:
            try:
                key, list_id = self.key(row), self.list_id(row)
            except ValueError as exc:
                key, list_id, rejection = "", "", RowRejection("leads", "", LEAD_KEY, str(exc), 0)
            else:
                if not key:
                    rejection = RowRejection("leads", "", LEAD_KEY, "is required", 0)
            chunk.keys.append(key)
            chunk.list_ids.append(list_id)
            chunk.digests.append(row_digest(row) if key else "")
            chunk.rows.append(row if key else rejection)
        return chunk

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


def stream_leads(engine: sa.Engine, resource: ResourceSpec, mapper: LeadMapper | None = None,
                 since: Any = None) -> Iterator[DesiredLead | RowRejection]:
    """The CRM's leads in key order, one by one; with `since`, only the rows changed past that
    mark (docs/incremental.md)."""
    for chunk in stream_lead_chunks(engine, resource, mapper, since):
        for key, list_id, digest, row in zip(*chunk, strict=True):
            yield row if isinstance(row, RowRejection) else DesiredLead(key, list_id, digest, row)


def stream_lead_chunks(engine: sa.Engine, resource: ResourceSpec,
                       mapper: LeadMapper | None = None, since: Any = None
                       ) -> Iterator[LeadChunk]:
    """The CRM's leads in key order, a chunk at a time, column by column (for the merge)."""
    mapper = mapper or LeadMapper(resource)
    statement = lead_statement(resource, engine.dialect.name, since)
    with read_only_connection(engine, "leads") as conn:
        for rows in stream_chunks(conn, statement):
            yield mapper.chunk(rows)


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


__all__ = [
    "CrmUnavailable",
    "LeadMapper",
    "lead_list_ids",
    "phone_digits",
    "stream_lead_chunks",
    "stream_leads",
]
