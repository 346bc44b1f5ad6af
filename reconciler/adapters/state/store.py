"""Read and write the shadow tables and the run log for one dialer target.

Each executor step is one transaction (`StateStore.commit_step()`): the shadow change, the step
row and the version bump commit together or not at all, so a crash at any instant loses nothing.

A store `fenced` by the write lease checks, first thing in the transaction of each write that
comes before a send (a run's start, every step, a lead batch's intent), that the lease is still
ours: when it is not, LeaseLost is raised and nothing is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reconciler.adapters.state.schema import (
    dialer_rejections,
    run_steps,
    runs,
    shadow_lists,
    shadow_users,
    state_targets,
)
from reconciler.core.model import Recorded, RecordedList, RecordedRejection, RecordedUser


def now() -> datetime:
    return datetime.now(UTC)


# Made once: a statement built per call, with its cache key, costs more than the write, and an
# apply bumps the version three times a lead batch, once between two requests.
_BUMP_VERSION = (
    sa.update(state_targets).where(state_targets.c.target == sa.bindparam("for_target"))
    .values(version=state_targets.c.version + 1,
            updated_at=sa.bindparam("at", type_=state_targets.c.updated_at.type))
)
_NEW_STEP = sa.insert(run_steps)       # one a lead batch too


class StepWriter:
    """What one step may change, inside its transaction."""

    def __init__(self, conn: sa.Connection, target: str, run_id: str) -> None:
        self._conn, self._target, self._run_id = conn, target, run_id
        self._shadow_changed = False

    def save_user(self, agent_user: str, fields: Mapping[str, str],
                  digests: Mapping[str, str]) -> None:
        values = {"fields": dict(fields), "digests": dict(digests),
                  "updated_at": now(), "run_id": self._run_id}
        self._upsert(shadow_users, {"agent_user": agent_user}, values)

    def update_user_fields(self, agent_user: str, fields: Mapping[str, str],
                           digests: Mapping[str, str]) -> None:
        """Merge confirmed changes into an existing shadow row (or create it)."""
        key = {"target": self._target, "agent_user": agent_user}
        row = self._conn.execute(
            sa.select(shadow_users.c.fields, shadow_users.c.digests).filter_by(**key)
        ).first()
        merged_fields = {**(row.fields if row else {}), **fields}
        merged_digests = {**(row.digests if row else {}), **digests}
        self.save_user(agent_user, merged_fields, merged_digests)

    def save_list(self, list_id: str, fields: Mapping[str, str], origin: str) -> None:
        values = {"fields": dict(fields), "origin": origin, "updated_at": now(),
                  "run_id": self._run_id}
        self._upsert(shadow_lists, {"list_id": list_id}, values)

    def update_list_fields(self, list_id: str, fields: Mapping[str, str], origin: str) -> None:
        """Merge confirmed changes into an existing shadow row (or create it with `origin`)."""
        key = {"target": self._target, "list_id": list_id}
        row = self._conn.execute(
            sa.select(shadow_lists.c.fields, shadow_lists.c.origin).filter_by(**key)).first()
        merged = {**(row.fields if row else {}), **fields}
        self.save_list(list_id, merged, row.origin if row else origin)

    def record_rejection(self, resource: str, key: str, op: str, row_digest: str,
                         message: str) -> None:
        """The dialer refused `op` on this object: hold it back while its CRM row is unchanged."""
        self._upsert(dialer_rejections, {"resource": resource, "key": key},
                     {"op": op, "row_digest": row_digest, "message": message,
                      "rejected_at": now(), "run_id": self._run_id})

    def clear_rejection(self, resource: str, key: str) -> None:
        """A change to this object succeeded: whatever the dialer refused before is over."""
        cleared = self._conn.execute(sa.delete(dialer_rejections).filter_by(
            target=self._target, resource=resource, key=key))
        if cleared.rowcount:
            self._shadow_changed = True

    def _upsert(self, table: sa.Table, key: Mapping[str, str], values: dict[str, Any]) -> None:
        where = {"target": self._target, **key}
        result = self._conn.execute(sa.update(table).filter_by(**where).values(**values))
        if result.rowcount == 0:
            self._conn.execute(sa.insert(table).values(**where, **values))
        self._shadow_changed = True

    def bump_version_if_changed(self) -> None:
        if self._shadow_changed:
            self.bump_version()

    def bump_version(self) -> None:
        updated = self._conn.execute(_BUMP_VERSION, {"for_target": self._target, "at": now()})
        if updated.rowcount == 0:
            self._conn.execute(sa.insert(state_targets).values(
                target=self._target, version=1, updated_at=now()))


ShadowEffect = Callable[[StepWriter], None]
# Lease.fence: raises LeaseLost, inside the caller's transaction, unless the lease is still ours.
Fence = Callable[[sa.Connection], None]


class StateStore:
    def __init__(self, engine: sa.Engine, target: str, fence: Fence | None = None,
                 owner: str | None = None) -> None:
        self.engine, self.target = engine, target
        self._fence = fence
        self.owner = owner          # recorded with each run: the lease holder that ran it

    def fenced(self, fence: Fence, owner: str | None = None) -> StateStore:
        """This store, its writes before a send checked by `fence` (a held lease's), its runs
        recorded as `owner`'s."""
        return StateStore(self.engine, self.target, fence, owner)

    def fence(self, conn: sa.Connection) -> None:
        """First in a transaction whose write comes before a send (no-op when not fenced)."""
        if self._fence is not None:
            self._fence(conn)

    # --- reading ------------------------------------------------------------------------------

    def load_recorded(self) -> Recorded:
        with self.engine.connect() as conn:
            users = {
                r.agent_user: RecordedUser(r.agent_user, r.fields, r.digests)
                for r in conn.execute(sa.select(shadow_users).filter_by(target=self.target))
            }
            lists = {
                r.list_id: RecordedList(r.list_id, r.fields, r.origin)
                for r in conn.execute(sa.select(shadow_lists).filter_by(target=self.target))
            }
            rejections = {
                (r.resource, r.key): RecordedRejection(r.resource, r.key, r.op, r.row_digest,
                                                       r.message)
                for r in conn.execute(sa.select(dialer_rejections).filter_by(target=self.target))
            }
            return Recorded(users, lists, self._version(conn), rejections)

    def version(self) -> int:
        with self.engine.connect() as conn:
            return self._version(conn)

    def _version(self, conn: sa.Connection) -> int:
        found = conn.execute(
            sa.select(state_targets.c.version).filter_by(target=self.target)
        ).scalar()
        return int(found or 0)

    def forget_rejections(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop recorded dialer refusals, by (resource, key), in one transaction."""
        keys = list(keys)
        if not keys:
            return
        with self.engine.begin() as conn:
            for resource, key in keys:
                conn.execute(sa.delete(dialer_rejections).filter_by(
                    target=self.target, resource=resource, key=key))

    # --- runs ---------------------------------------------------------------------------------

    def start_run(self, kind: str, plan_digest: str | None = None) -> str:
        run_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            self.fence(conn)
            conn.execute(sa.insert(runs).values(
                run_id=run_id, target=self.target, kind=kind, started_at=now(),
                plan_digest=plan_digest, **({"owner": self.owner} if self.owner else {})))
        return run_id

    def finish_run(self, run_id: str, outcome: str, counts: Mapping[str, int],
                   message: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(runs).filter_by(run_id=run_id).values(
                finished_at=now(), outcome=outcome, counts=dict(counts), message=message or None))

    def commit_step(
        self, run_id: str, seq: int, op: str, key: str, outcome: str, message: str,
        duration_ms: int, effect: ShadowEffect | None = None, *, fenced: bool = True,
    ) -> None:
        """Record one finished step and its shadow change in a single transaction. `fenced`:
        False only for the record of a step after which nothing is sent (the lease was lost)."""
        with self.engine.begin() as conn:
            if fenced:
                self.fence(conn)
            writer = StepWriter(conn, self.target, run_id)
            if effect is not None:
                effect(writer)
            writer.bump_version_if_changed()
            conn.execute(_NEW_STEP, {
                "run_id": run_id, "seq": seq, "op": op, "key": key, "outcome": outcome,
                "message": message or None, "duration_ms": duration_ms, "at": now()})

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(run_steps).filter_by(run_id=run_id).order_by(run_steps.c.seq)
            ).mappings()
            return [dict(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).filter_by(run_id=run_id)).mappings().first()
            return dict(row) if row else None

