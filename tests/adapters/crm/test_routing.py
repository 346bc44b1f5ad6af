"""The spec's `targets`: a resource narrowed, in SQL, to the rows one target gets, and the rows
that go to no known target read as rejections, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.adapters.crm.routing import route_rejections
from reconciler.adapters.crm.source import _fetch
from reconciler.config.routing import routed_spec
from reconciler.config.spec import Spec, parse_spec

KNOWN = ("north", "south", "s.1")
ROWS = [  # (list id, routing value)
    ("1101", "north"), ("1102", "south"), ("1103", "north, south"), ("1104", "north,north"),
    ("1105", "west"), ("1106", "north,west"), ("1107", ""), ("1108", None), ("1109", "s.1"),
    ("1110", "sx1"), ("1111", "northsouth"),
]


def _spec(expression: str = "site", query: str | None = None) -> Spec:
    return parse_spec({"lists": {"targets": expression, "fields": {
        "list_id": "id", "list_name": "name", "campaign_id": "campaign"}} | (
        {"query": query} if query else {"table": "crm_lists"})}, Path("spec.toml"))


@pytest.fixture
def crm(database_url: str) -> sa.Engine:
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE crm_lists (id VARCHAR(14), name VARCHAR(30), "
                             "campaign VARCHAR(20), site VARCHAR(40))")
        conn.execute(sa.text("INSERT INTO crm_lists VALUES (:id, 'Some list', 'SALES', :site)"),
                     [{"id": i, "site": site} for i, site in ROWS])
    return engine


@pytest.mark.parametrize(("target", "expected"), [
    ("north", ["1101", "1103", "1104"]),
    ("south", ["1102", "1103"]),
    ("s.1", ["1109"]),                 # the dot is no pattern: `sx1` is not s.1's
])
def test_each_target_reads_only_the_rows_naming_it(crm: sa.Engine, target: str,
                                                    expected: list[str]) -> None:
    spec = routed_spec(_spec(), target, KNOWN)
    assert spec.lists is not None
    assert sorted(row["id"] for row in _fetch(crm, spec.lists)) == expected


def test_rows_routed_to_no_known_target_are_rejections(crm: sa.Engine) -> None:
    spec = routed_spec(_spec(), "north", KNOWN)
    rejected = {r.key: r.rule for r in route_rejections(crm, spec, KNOWN)}
    declared = "(the config's targets: north, south, s.1)"
    assert rejected == {
        "1105": f"names unknown target 'west' {declared}",
        "1106": f"names unknown target 'west' {declared}",
        "1107": f"names no target {declared}",
        "1108": f"names no target {declared}",
        "1110": f"names unknown target 'sx1' {declared}",
        "1111": f"names unknown target 'northsouth' {declared}",
    }
    assert {r.field for r in route_rejections(crm, spec, KNOWN)} == {"targets"}


def test_an_expression_over_a_query_routes_too(crm: sa.Engine) -> None:
    query = "SELECT id, name, campaign, site FROM crm_lists WHERE id < '1103' ORDER BY id"
    expression = "CASE WHEN id = '1101' THEN 'south' ELSE 'north' END"
    spec = routed_spec(_spec(expression, query), "south", KNOWN)
    assert spec.lists is not None
    assert [row["id"] for row in _fetch(crm, spec.lists)] == ["1101"]
    assert route_rejections(crm, spec, KNOWN) == []


def test_a_spec_without_targets_is_left_as_it_is() -> None:
    spec = parse_spec({"lists": {"table": "crm_lists", "fields": {
        "list_id": "id", "list_name": "name", "campaign_id": "campaign"}}}, Path("spec.toml"))
    assert routed_spec(spec, "north", KNOWN) is spec
