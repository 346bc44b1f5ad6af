"""A CRM whose leads carry a change column, and a spec that names it (docs/incremental.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconciler.demo import crm as democrm
from tests.app.test_leads import LISTS
from tests.helpers import EXAMPLE_SPEC

# How each kind of change column is declared on each backend, and its n-th value.
COLUMN_TYPES = {
    "integer": {"sqlite": "INTEGER", "postgresql": "BIGINT"},
    "timestamp": {"sqlite": "TIMESTAMP", "postgresql": "TIMESTAMP WITH TIME ZONE"},
    "text": {"sqlite": "TEXT", "postgresql": "TEXT"},
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
LEAD_COLUMNS = ("id", "list_id", "phone", "first_name", "last_name", "city", "email",
                "postal_code", "updated_at")


def change_value(kind: str, n: int | None) -> Any:
    """The n-th value of a change column of this kind (they grow with n); None stays NULL."""
    if n is None:
        return None
    if kind == "integer":
        return n
    if kind == "timestamp":
        return EPOCH + timedelta(seconds=n, microseconds=n % 7)
    return f"v{n:08d}"          # text: grows as text does


def incremental_spec(tmp_path: Path, full_pass_every: int | None = None) -> Path:
    spec = tmp_path / "incremental.toml"
    every = "" if full_pass_every is None else f"full_pass_every = {full_pass_every}\n"
    spec.write_text(EXAMPLE_SPEC.read_text()
                    .replace("postal_code FROM crm_leads", "postal_code, updated_at FROM crm_leads")
                    .replace('key = "id"', f'change_column = "updated_at"\n{every}key = "id"'))
    return spec


def crm_with_change_column(url: str, kind: str) -> str:
    """The demo CRM (example lists, no leads) with an indexed `updated_at` on its leads."""
    engine = democrm.create_crm(url, [], LISTS, [])
    column = COLUMN_TYPES[kind][engine.dialect.name]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE crm_leads ADD COLUMN updated_at {column}")
        conn.exec_driver_sql("CREATE INDEX ix_crm_leads_updated_at ON crm_leads (updated_at)")
    engine.dispose()
    return url


def write_leads(url: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, or replace those whose id is already there."""
    if not rows:
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM crm_leads WHERE id = :id"),
                     [{"id": r["id"]} for r in rows])
        conn.execute(sa.text(f"INSERT INTO crm_leads ({', '.join(LEAD_COLUMNS)}) VALUES "
                             f"({', '.join(':' + c for c in LEAD_COLUMNS)})"),
                     [{c: r.get(c) for c in LEAD_COLUMNS} for r in rows])
    engine.dispose()


def crm_sql(url: str, sql: str, **params: Any) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)
    engine.dispose()
