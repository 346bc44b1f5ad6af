"""Routing rows to dialer targets: a resource's `targets` (docs/spec.md).

`targets` is a SQL expression over the resource's CRM rows (a column name is the simplest one)
whose value names the target(s) a row goes to: one name, or several separated by commas. For
one target, the resource's query is narrowed in SQL to the rows that name it, so every reader
of the resource (users and lists, the lead stream, the duplicate-phone check, the lists leads
name) sees that target's rows and nothing else. A row whose value is empty or names a target
the config does not declare goes nowhere: it is read by its own query and shown as rejected
(key, field `targets`, rule) in every target's plan.

The SQL is built from the spec's expression and the target names, which the config limits to
letters, digits, `_`, `-` and `.`; it is plain SQL that SQLite and PostgreSQL both run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from reconciler.config.spec import ResourceSpec, Spec

ROUTE_FIELD = "targets"          # how a rejection names the spec entry
ROUTE_COLUMN = "reconciler_route"  # the routing value, beside a rejected row's own columns


def routed_spec(spec: Spec, target: str, known: tuple[str, ...]) -> Spec:
    """`spec` as `target` sees it: every routed resource narrowed to the rows naming it."""
    changed: dict[str, Any] = {name: routed_resource(resource, target, known)
               for name in ("users", "lists", "leads")
               if (resource := getattr(spec, name)) is not None and resource.route}
    return replace(spec, **changed) if changed else spec


def routed_resource(resource: ResourceSpec, target: str, known: tuple[str, ...]
                    ) -> ResourceSpec:
    assert resource.route is not None
    inner = _inner(resource)
    names = _names(resource.route)
    query = (f"SELECT * FROM ({inner}\n) AS crm_routed\n"
             f"WHERE REPLACE({names}, ',{target},', '') <> {names} AND {_all_known(names, known)}")
    rejects = (f"SELECT crm_routed.*, {_value(resource.route)} AS {ROUTE_COLUMN} "
               f"FROM ({inner}\n) AS crm_routed\n"
               f"WHERE NOT ({_all_known(names, known)} AND REPLACE({names}, ',', '') <> '')")
    return replace(resource, query=query, table=None, route_rejects=rejects)


def unknown_names(value: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """The names in a routing value that are not targets of the config."""
    return tuple(name for name in _split(value) if name not in known)


def route_rule(value: str | None, known: tuple[str, ...]) -> str:
    """Why a row with this routing value goes nowhere."""
    declared = ", ".join(known)
    unknown = unknown_names(value, known)
    if not unknown:
        return f"names no target (the config's targets: {declared})"
    shown = ", ".join(repr(name) for name in unknown)
    return f"names unknown target {shown} (the config's targets: {declared})"


def _split(value: str | None) -> list[str]:
    return [name for name in (value or "").replace(" ", "").split(",") if name]


def _inner(resource: ResourceSpec) -> str:
    if resource.query is not None:
        return resource.query.strip().rstrip(";")
    return f"SELECT * FROM {resource.table}"


def _value(expression: str) -> str:
    return f"COALESCE(CAST(({expression}) AS VARCHAR(255)), '')"


def _names(expression: str) -> str:
    """The value as `,,a,,b,,`: each name between two commas of its own, so that removing
    `,a,` removes every `a` and nothing else, adjacent names included."""
    return f"REPLACE(',' || REPLACE({_value(expression)}, ' ', '') || ',', ',', ',,')"


def _all_known(names: str, known: tuple[str, ...]) -> str:
    stripped = names
    for name in known:
        stripped = f"REPLACE({stripped}, ',{name},', '')"
    return f"REPLACE({stripped}, ',', '') = ''"
