"""Read the CRM's do-not-call source ([dnc] in the spec): by phone, or all of it.

Phones are compared as the dialer stores them (`phone_digits`, the rule leads are sent with).
A chunk of leads about to be sent is checked with one query: `phone IN (...)`, which the DNC
table's index on its phone column answers, for entries stored as digits (the usual form). The
entries stored otherwise ("+1 (555) 010-0123") are found once per plan, when first needed, by a
query the database answers itself (SQLite and PostgreSQL), and kept in memory, reduced to
digits: only those, not the whole DNC.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterator
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.crm.leads import phone_digits
from reconciler.adapters.crm.source import read_only_connection
from reconciler.adapters.keyorder import stream_rows
from reconciler.config.spec import DncSpec
from reconciler.core.leads.dnc import DncEntry

_PHONE = re.compile(r"[0-9]{6,18}")           # a phone the dialer takes (the lead rule's bounds)
_SQL_DIALECTS = ("sqlite", "postgresql")
Entries = dict[str, list[DncEntry]]           # phone (as sent) -> its entries


class DncSource:
    def __init__(self, engine: sa.Engine, spec: DncSpec) -> None:
        self.engine, self.spec = engine, spec
        self._rewritten: Entries | None = None     # entries not stored as digits

    def _source(self) -> Any:
        columns: list[sa.ColumnClause[Any]] = [sa.column(c) for c in self.spec.columns]
        if self.spec.query is not None:
            return sa.text(self.spec.query).columns(*columns).subquery("crm_dnc")
        assert self.spec.table is not None
        schema, _, name = self.spec.table.rpartition(".")
        return sa.table(name, *columns, schema=schema or None)

    def _select(self) -> tuple[Any, sa.Select[Any]]:
        source = self._source()
        return source, sa.select(*(source.c[c] for c in self.spec.columns))

    def _entry(self, row: tuple[Any, ...]) -> DncEntry | str:
        """The entry of one row (phone, then list and campaign when mapped), or why it cannot
        be read. Runs once per DNC row in every plan: the usual row is taken the short way."""
        raw = row[0]
        if type(raw) is str and raw.isdigit() and 6 <= len(raw) <= 18 and raw.isascii():
            phone = raw
        else:
            phone = phone_digits(_text(raw))
            if not phone:
                return "a blank phone"
            if not _PHONE.fullmatch(phone):
                return "a phone that is not 6-18 digits"   # not echoed: plans hold no phones
        if len(row) == 1:
            return DncEntry(phone)
        scope = iter(row[1:])
        list_id = _text(next(scope)) if self.spec.list_id else ""
        campaign_id = _text(next(scope)) if self.spec.campaign_id else ""
        return DncEntry(phone, list_id, campaign_id)

    def entries_for(self, phones: Collection[str]) -> Entries:
        """The entries of these phones (as sent): one query, by the phone column's index."""
        found: Entries = defaultdict(list)
        if not phones:
            return found
        source, statement = self._select()
        statement = statement.where(source.c[self.spec.phone].in_(sorted(phones)))
        with read_only_connection(self.engine, "dnc") as conn:
            for row in conn.execute(statement):
                entry = self._entry(tuple(row))
                if isinstance(entry, DncEntry) and entry.phone in phones:
                    found[entry.phone].append(entry)
        for phone in phones & self._entries_rewritten().keys():
            found[phone].extend(self._entries_rewritten()[phone])
        return found

    def _entries_rewritten(self) -> Entries:
        """The entries whose phone is not stored as digits only, reduced to digits; once."""
        if self._rewritten is None:
            source, statement = self._select()
            phone = sa.cast(source.c[self.spec.phone], sa.String)
            if self.engine.dialect.name in _SQL_DIALECTS:
                statement = statement.where(sa.func.ltrim(phone, "0123456789") != "")
            self._rewritten = defaultdict(list)
            with read_only_connection(self.engine, "dnc") as conn:
                for row in stream_rows(conn, statement):
                    entry = self._entry(row)
                    if isinstance(entry, DncEntry) and entry.phone != str(row[0]):
                        self._rewritten[entry.phone].append(entry)
        return self._rewritten

    def stream(self) -> Iterator[tuple[int, DncEntry | str]]:
        """Every row: (row number, its entry or why it cannot be read)."""
        _, statement = self._select()
        with read_only_connection(self.engine, "dnc") as conn:
            for number, row in enumerate(stream_rows(conn, statement), start=1):
                yield number, self._entry(row)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip()
