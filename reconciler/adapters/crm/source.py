"""Read the desired state from the CRM database, read-only, through a spec.

Every row is checked against the dialer's field rules before it reaches the planner: a bad row
becomes a RowRejection (key, field, rule) and the rest of the run goes on. Two rows with one key
are both rejected, never silently overwritten.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import sqlalchemy as sa

from reconciler.config.spec import FieldSource, ResourceSpec, Spec
from reconciler.core.fields import check_field
from reconciler.core.model import (
    USER_SECRET_FIELDS,
    Desired,
    DesiredList,
    DesiredUser,
    RowRejection,
)
from reconciler.errors import ReconcilerError
from reconciler.redact import redact_text

# field, value -> keyed digest
Digester = Callable[[str, str], str]

_CHECKED_AS = {"users": "update_user", "lists": "add_list"}
_TRUE = {"1", "y", "yes", "true", "t", "on", "active"}
_FALSE = {"0", "n", "no", "false", "f", "off", "inactive"}


class CrmUnavailable(ReconcilerError):
    """The CRM database could not be read (down, or the spec's query fails): no plan."""


@dataclass(frozen=True)
class MappedRow:
    row: int
    key: str
    values: dict[str, str]                           # as the dialer will store them
    rewrites: tuple[tuple[str, str], ...] = ()       # (field, how the dialer alters it)


class FieldJudge(Protocol):
    """How the dialer judges a CRM value (a reconciler.adapters.dialer.dialects.Dialect is one)."""

    def check(self, function: str, field: str, value: object) -> str | None: ...

    def stored(self, function: str, field: str, value: str) -> str: ...

    def rewrite_rule(self, function: str, field: str, value: str) -> str | None: ...


class ApiRules:
    """The API's field rules alone, for a dialer that stores what it is sent."""

    def check(self, function: str, field: str, value: object) -> str | None:
        return check_field(function, field, value)

    def stored(self, function: str, field: str, value: str) -> str:
        return value

    def rewrite_rule(self, function: str, field: str, value: str) -> str | None:
        return None


API_RULES = ApiRules()


def open_crm(url: str) -> sa.Engine:
    try:
        return sa.create_engine(_read_only_sqlite(sa.make_url(url)))
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise CrmUnavailable(f"crm.url is not usable: {redact_text(str(exc))}") from None


def _read_only_sqlite(url: sa.URL) -> sa.URL:
    """A SQLite CRM file opened read-only (a URI with mode=ro): SQLite would otherwise create
    a missing file, and a mistyped path would read as an empty CRM. Other URLs as they are."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return url
    if url.query.get("uri") == "true":                   # already a URI: make it read-only
        return url.update_query_dict({"mode": "ro"})
    path = Path(url.database).resolve()
    if not path.exists():
        raise CrmUnavailable(f"crm.url: the SQLite database {path} does not exist (the CRM is "
                             f"only read, never created)")
    return url.set(database=f"file:{quote(str(path))}").update_query_dict(
        {"mode": "ro", "uri": "true"})


def read_desired(engine: sa.Engine, spec: Spec, digest: Digester,
                 judge: FieldJudge = API_RULES) -> Desired:
    """The CRM's users and lists, checked by `judge`; values the dialer would alter but we
    accept are kept in the form the dialer stores, and listed in `Desired.rewrites`."""
    rejections: list[RowRejection] = []
    rewrites: list[RowRejection] = []
    users: dict[str, DesiredUser] = {}
    lists: dict[str, DesiredList] = {}

    def checked(resource: ResourceSpec) -> list[MappedRow]:
        rows = _checked_rows(engine, resource, rejections, judge)
        rewrites.extend(RowRejection(resource.name, m.key, name, rule, m.row)
                        for m in rows for name, rule in m.rewrites)
        return rows

    if spec.users is not None:
        for mapped in checked(spec.users):
            secrets = {k: v for k, v in mapped.values.items() if k in USER_SECRET_FIELDS}
            plain = {k: v for k, v in mapped.values.items()
                     if k not in USER_SECRET_FIELDS and k != "agent_user"}
            digests = {k: digest(k, v) for k, v in secrets.items()}
            users[mapped.key] = DesiredUser(mapped.key, plain, digests, secrets)
    if spec.lists is not None:
        for mapped in checked(spec.lists):
            plain = {k: v for k, v in mapped.values.items() if k != "list_id"}
            plain.setdefault("active", "N")   # the dialer's own default for add_list
            lists[mapped.key] = DesiredList(mapped.key, plain)
    return Desired(users, lists, tuple(rejections), tuple(rewrites))


def _checked_rows(
    engine: sa.Engine, resource: ResourceSpec, rejections: list[RowRejection],
    judge: FieldJudge = API_RULES,
) -> list[MappedRow]:
    good: dict[str, MappedRow] = {}
    rows_of: dict[str, list[int]] = {}
    for number, row in enumerate(_fetch(engine, resource), start=1):
        key, mapped = _map_row(resource, number, row, rejections, judge)
        if key:
            rows_of.setdefault(key, []).append(number)
        if mapped is not None:
            good.setdefault(mapped.key, mapped)
    # A key on two rows (valid or not) is ambiguous: neither row is used.
    for key, numbers in sorted(rows_of.items()):
        if len(numbers) > 1:
            good.pop(key, None)
            listed = ", ".join(str(n) for n in numbers)
            rejections.extend(
                RowRejection(resource.name, key, resource.key_field,
                             f"duplicate key: CRM rows {listed} share it", n)
                for n in numbers)
    rejections.sort(key=lambda r: (r.resource, r.row))
    return [good[k] for k in sorted(good)]


def _map_row(
    resource: ResourceSpec, number: int, row: sa.RowMapping,
    rejections: list[RowRejection], judge: FieldJudge = API_RULES,
) -> tuple[str, MappedRow | None]:
    """The row's key (empty when the key itself is bad) and the mapped row, if it is valid."""
    values: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    rewrites: list[tuple[str, str]] = []
    function = _CHECKED_AS[resource.name]
    for dialer_field, source in resource.fields.items():
        try:
            value = source_value(source, row)
        except KeyError:
            raise CrmUnavailable(
                f"{resource.name}: CRM column {source.column!r} is not in the result"
            ) from None
        except ValueError as bad:
            problems.append((dialer_field, str(bad)))
            continue
        if value is None:
            continue
        rule = judge.check(function, dialer_field, value)
        if rule is not None:
            problems.append((dialer_field, rule))
        else:
            altered = judge.rewrite_rule(function, dialer_field, value)
            if altered is not None:
                rewrites.append((dialer_field, altered))
                value = judge.stored(function, dialer_field, value)
        values[dialer_field] = value
    key = values.get(resource.key_field, "")
    reported = {name for name, _ in problems}
    missing = [f for f in (resource.key_field, *resource.required)
               if f not in values and f not in reported]
    problems = [(f, "is required") for f in missing] + problems
    if problems:
        shown_key = "" if any(f == resource.key_field for f, _ in problems) else key
        for field_name, rule in problems:
            rejections.append(RowRejection(resource.name, shown_key, field_name, rule, number))
        return shown_key, None
    return key, MappedRow(number, key, values, tuple(rewrites))


def source_value(source: FieldSource, row: sa.RowMapping) -> str | None:
    """One dialer field's value from a CRM row: constant, column, default, yes/no, map."""
    if source.value is not None:
        return source.value
    assert source.column is not None
    return convert(source, row[source.column])


def convert(source: FieldSource, raw: Any) -> str | None:
    """A CRM value as the dialer field `source` describes it; ValueError names the rule."""
    if source.value is not None:
        return source.value
    text = "" if raw is None else _as_text(raw).strip()
    if not text:
        if source.default is None:
            return None
        text = source.default      # a default goes through yes_no and map like a CRM value
    if source.yes_no:
        lowered = text.lower()
        if lowered in _TRUE:
            return "Y"
        if lowered in _FALSE:
            return "N"
        raise ValueError("must be a yes/no value (1/0, true/false, Y/N)")
    return source.map.get(text, text)


def _as_text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "1" if raw else "0"
    # A level stored as 7.0 or NUMERIC 7.00 is the level 7.
    if isinstance(raw, (float, Decimal)) and math.isfinite(raw) and raw == int(raw):
        return str(int(raw))
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def _fetch(engine: sa.Engine, resource: ResourceSpec) -> Iterator[sa.RowMapping]:
    statement: sa.Executable
    if resource.query is not None:
        statement = sa.text(resource.query)
    else:
        assert resource.table is not None
        schema, _, name = resource.table.rpartition(".")
        table = sa.table(name, *(sa.column(c) for c in resource.columns), schema=schema or None)
        statement = sa.select(table)
    with read_only_connection(engine, resource.name) as conn:
        yield from conn.execute(statement).mappings()


@contextmanager
def read_only_connection(engine: sa.Engine, what: str) -> Iterator[sa.Connection]:
    """A connection that cannot write (where the database can enforce it); errors say `what`."""
    try:
        with engine.connect() as conn:
            dialect = conn.dialect.name
            if dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = ON")
            elif dialect in ("postgresql", "mysql", "mariadb"):
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield conn
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise CrmUnavailable(f"{what}: CRM query failed: {redact_text(reason)}") from None
