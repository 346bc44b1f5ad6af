"""keep_first against the CRM: the phones several leads of a list share.

A phone is compared as the dialer stores it (`phone_digits`): the CRM database finds the phones
shared in a list with that very rule in SQL (`shared_phones`), or, when it cannot,
`shared_phones_by_reading` finds them in Python; both give the same answer. Either is asked
only when a lead is about to be sent (`shared_phones_later`), and works on a thread of its own
while the merge goes on (`SharedPhonesLater`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from reconciler.adapters.crm.leads import (
    PHONE_MARKS,
    SPACES,
    LeadMapper,
    lead_statement,
)
from reconciler.adapters.crm.source import read_only_connection
from reconciler.adapters.keyorder import binary_key_order, stream_rows
from reconciler.config.spec import LEAD_KEY, ResourceSpec

# Where the shared phones can be found by the database with exactly the Python rule.
_SQL_DIALECTS = ("sqlite", "postgresql")

SharedPhones = dict[tuple[str, str], str]


class SharedPhonesLater:
    """What `find` answers (the shared phones), found once: started by `soon`, on a thread of
    its own, and waited for by the call; or found by the call itself when `soon` was not told.

    The merge tells `soon` at its first lead about to be sent and asks only when it decides the
    leads waiting for their phone check (up to 500 later, or at the end): the CRM's database
    groups its phones (1.5 s for a million leads on SQLite) while the merge reads on. Only
    where the database does the work (`in_database`): reading every lead in Python on another
    thread would only take turns with the merge for the interpreter. And an engine whose
    connection is one for all (StaticPool) or one per thread (an in-memory SQLite) cannot serve
    a second thread: it is asked on the call.
    """

    def __init__(self, find: Callable[[], SharedPhones], engine: sa.Engine, *,
                 in_database: bool = True) -> None:
        self._find = find
        self._may_start = in_database and not isinstance(engine.pool,
                                                         (StaticPool, SingletonThreadPool))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._answer: list[SharedPhones] = []
        self._error: list[BaseException] = []

    def soon(self) -> None:
        with self._lock:
            if self._may_start and self._thread is None and not self._answer:
                # A daemon thread: a plan abandoned meanwhile does not wait for the query.
                self._thread = threading.Thread(target=self._run, name="shared-phones",
                                                daemon=True)
                self._thread.start()

    def __call__(self) -> SharedPhones:
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
            if self._error:
                raise self._error[0]
        elif not self._answer:
            self._run()
            if self._error:
                raise self._error.pop()     # asked again on the next call
        return self._answer[0]

    def _run(self) -> None:
        try:
            self._answer.append(self._find())
        except BaseException as exc:     # raised again on the caller's thread
            self._error.append(exc)


def shared_phones_later(engine: sa.Engine, resource: ResourceSpec) -> SharedPhonesLater:
    """The phones several leads of a list share; call the result to get them.

    Nothing is asked before the merge meets a lead about to be sent (new, or changed after a
    rejection): a run where nothing new came in never groups the CRM's phones. Asked of the
    database when it can (`shared_phones`), otherwise read by reconciler
    (`shared_phones_by_reading`); once either way.
    """
    if in_database(engine, resource):
        return SharedPhonesLater(partial(shared_phones, engine, resource), engine)
    return SharedPhonesLater(partial(shared_phones_by_reading, engine, resource), engine,
                             in_database=False)


def in_database(engine: sa.Engine, resource: ResourceSpec) -> bool:
    """Whether the CRM database finds the shared phones itself (`shared_phones`)."""
    return plain_phone_mapping(resource) and engine.dialect.name in _SQL_DIALECTS


def plain_phone_mapping(resource: ResourceSpec) -> bool:
    plain = [resource.fields[name] for name in ("list_id", "phone_number", LEAD_KEY)]
    return not any(s.column is None or s.value is not None or s.default is not None or s.map
                   or s.yes_no for s in plain)


def shared_phones(engine: sa.Engine, resource: ResourceSpec,
                  pairs: Collection[tuple[str, str]] | None = None) -> SharedPhones:
    """(list, phone) -> the first key (in key order) of every phone on several leads of a list.

    Asked of the database, so a plan need not hold a million phones to apply `keep_first`.
    Only for a spec whose key, list and phone are plain columns (see `plain_phone_mapping`),
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
