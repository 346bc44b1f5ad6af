"""The CRM rows that a resource's `targets` routes to no target of the config (config.routing):
each is a rejection (key, field `targets`, rule), shown in every target's plan."""

from __future__ import annotations

import sqlalchemy as sa

from reconciler.adapters.crm.source import convert, read_only_connection
from reconciler.config.routing import ROUTE_COLUMN, ROUTE_FIELD, route_rule
from reconciler.config.spec import Spec
from reconciler.core.model import RowRejection


def route_rejections(engine: sa.Engine, spec: Spec, known: tuple[str, ...]
                     ) -> list[RowRejection]:
    """Rows of the (routed) spec's resources whose routing value names no known target."""
    found: list[RowRejection] = []
    for resource in (spec.users, spec.lists, spec.leads):
        if resource is None or resource.route_rejects is None:
            continue
        key_source = resource.fields[resource.key_field]
        assert key_source.column is not None
        with read_only_connection(engine, f"{resource.name} targets") as conn:
            for row in conn.execute(sa.text(resource.route_rejects)).mappings():
                try:
                    key = convert(key_source, row[key_source.column]) or ""
                except ValueError:
                    key = ""
                found.append(RowRejection(resource.name, key, ROUTE_FIELD,
                                          route_rule(row[ROUTE_COLUMN], known), 0))
    return found
