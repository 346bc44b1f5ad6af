"""The writes of every lead of a batch (its intent, its answer), at the cost of the writes.

SQLAlchemy builds and type-processes every row's parameters of an executemany, which for a
batch of 500 leads costs more than the writes themselves; here each statement is compiled once
for the dialect and run through the driver's own executemany (`Connection.exec_driver_sql`).
On PostgreSQL, where each statement of an executemany is a statement the server parses and
plans, a batch is one statement instead, its rows passed as arrays (`ArrayRows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from reconciler.adapters.state.schema import shadow_leads

# What a batch's intent writes of each lead's row; a row the key had before (a lead rejected,
# or forgotten, and now sent again) is replaced, its lead id and message cleared.
_WRITTEN = ("list_id", "fields_digest", "status", "batch_id", "phone", "updated_at")


class LeadWrites:
    """The writes of every lead of a batch, compiled once for the dialect (SQLite's or
    PostgreSQL's: an intent replaces a row the key had, ON CONFLICT as both write it)."""

    insert_leads: DriverRows | ArrayRows
    update_outcomes: DriverRows | ArrayRows

    def __init__(self, dialect: sa.Dialect) -> None:
        if dialect.name == "postgresql":
            self.insert_leads, self.update_outcomes = ArrayRows.insert(), ArrayRows.update()
            return
        t, param = shadow_leads.c, sa.bindparam
        insert = sqlite.insert(shadow_leads).values(
            target=param("b_target"), lead_key=param("b_key"), list_id=param("b_list"),
            fields_digest=param("b_digest"), status=param("b_status"), batch_id=param("b_batch"),
            phone=param("b_phone"), updated_at=param("b_at"))
        self.insert_leads = DriverRows(
            insert.on_conflict_do_update(
                index_elements=[t.target, t.lead_key],
                set_={**{name: insert.excluded[name] for name in _WRITTEN},
                      "dialer_lead_id": sa.null(), "message": sa.null()}),
            dialect, per_row=("b_key", "b_digest", "b_phone"),
            per_batch={"target": "b_target", "list_id": "b_list", "status": "b_status",
                       "batch_id": "b_batch", "at": "b_at"})
        self.update_outcomes = DriverRows(
            sa.update(shadow_leads)
            .where(t.target == param("b_target"), t.lead_key == param("b_key"),
                   t.batch_id == param("b_batch"))
            .values(status=param("b_status"), dialer_lead_id=param("b_lead_id"),
                    message=param("b_why"), updated_at=param("b_at")),
            dialect, per_row=("b_key", "b_status", "b_lead_id", "b_why"),
            per_batch={"target": "b_target", "batch_id": "b_batch", "at": "b_at"})


class DriverRows:
    """One statement run for many rows through the driver's executemany, its SQL compiled once.

    SQLAlchemy would build and type-process every row's parameters, which costs more than the
    write itself: here the values the same for every row are processed once, and each row is a
    tuple put in the driver's order. So the binds given per row must need no processing on this
    dialect (text)."""

    def __init__(self, statement: sa.Insert | sa.Update, dialect: sa.Dialect, *,
                 per_row: tuple[str, ...], per_batch: dict[str, str]) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string

        def processor(name: str) -> Callable[[Any], Any] | None:
            bind_type: sa.types.TypeEngine[Any] = compiled.binds[name].type
            process: Callable[[Any], Any] | None = \
                bind_type.dialect_impl(dialect).bind_processor(dialect)
            return process

        if needing := [name for name in per_row if processor(name) is not None]:
            raise TypeError(f"binds given per row need processing on {dialect.name}: {needing}")
        self._per_batch = [(arg, processor(name)) for arg, name in per_batch.items()]
        names = (*per_row, *per_batch.values())
        self._params: Callable[[tuple[Any, ...]], Any]
        if compiled.positional:
            self._params = itemgetter(*(names.index(name) for name in compiled.positiontup or ()))
        else:
            self._params = lambda row: dict(zip(names, row, strict=True))

    def run(self, conn: sa.Connection, rows: Iterable[tuple[Any, ...]], **per_batch: Any) -> None:
        fixed = tuple(per_batch[arg] if process is None else process(per_batch[arg])
                      for arg, process in self._per_batch)
        params = self._params
        conn.exec_driver_sql(self.sql, [params(row + fixed) for row in rows])


class ArrayRows:
    """One PostgreSQL statement for every row of a batch, each column passed as one array and
    read back by `unnest` (`run` as DriverRows.run: rows of the `per_row` values in order)."""

    def __init__(self, sql: str, per_row: tuple[str, ...]) -> None:
        self.statement = sa.text(sql)
        self.per_row = per_row

    @classmethod
    def insert(cls) -> ArrayRows:
        return cls(f"""
            INSERT INTO shadow_leads (target, lead_key, list_id, fields_digest, status,
                                      batch_id, phone, updated_at)
            SELECT :target, v.key, :list_id, v.digest, :status, :batch_id, v.phone, :at
            FROM unnest(CAST(:keys AS text[]), CAST(:digests AS text[]),
                        CAST(:phones AS text[])) AS v(key, digest, phone)
            ON CONFLICT (target, lead_key) DO UPDATE SET
                {", ".join(f"{name} = EXCLUDED.{name}" for name in _WRITTEN)},
                dialer_lead_id = NULL, message = NULL""",
                   ("keys", "digests", "phones"))

    @classmethod
    def update(cls) -> ArrayRows:
        return cls("""
            UPDATE shadow_leads AS s
            SET status = v.status, dialer_lead_id = v.lead_id, message = v.why, updated_at = :at
            FROM unnest(CAST(:keys AS text[]), CAST(:statuses AS text[]),
                        CAST(:lead_ids AS text[]), CAST(:whys AS text[]))
                 AS v(key, status, lead_id, why)
            WHERE s.target = :target AND s.lead_key = v.key AND s.batch_id = :batch_id""",
                   ("keys", "statuses", "lead_ids", "whys"))

    def run(self, conn: sa.Connection, rows: Iterable[tuple[Any, ...]], **per_batch: Any) -> None:
        columns = list(zip(*rows, strict=True)) or [()] * len(self.per_row)
        conn.execute(self.statement, {**per_batch, **{
            name: list(values) for name, values in zip(self.per_row, columns, strict=True)}})
