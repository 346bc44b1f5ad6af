"""The write lease: exactly one process applies to a dialer target at a time.

A row per lease name holds the owner and an expiry. Taking it is one conditional UPDATE (free,
expired, or already ours) or one INSERT guarded by the primary key, so two processes racing on
the same database cannot both win. A crashed holder's lease simply expires.

A live holder can lose it too: stalled past its expiry (a suspended machine, a state database it
could not reach), it finds another process holding it. Every acquisition therefore gets a
`generation` (1 when the row is inserted, one more on each take-over; with the owner, unique to
each process, it names the acquisition), and the writes that come before a send call `fence`
first in their own transaction: an UPDATE of our row, matched by owner and generation. It fails
once the lease is another's, so the write and the send after it never happen. Being an UPDATE,
it also holds the row until the transaction commits: a take-over waits for that commit, and the
new holder then plans from what it wrote.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa

from reconciler.adapters.state.schema import leases
from reconciler.adapters.state.store import now
from reconciler.errors import LeaseLost, LockHeld


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"



# Made once (see Lease.fence): an apply fences every lead batch between two requests.
_FENCE = (
    sa.update(leases)
    .where(leases.c.name == sa.bindparam("lease"), leases.c.owner == sa.bindparam("holder"),
           leases.c.generation == sa.bindparam("taken"))
    .values(generation=leases.c.generation)
)


class Lease:
    def __init__(self, engine: sa.Engine, name: str, owner: str | None = None,
                 ttl_seconds: float = 300.0) -> None:
        self.engine, self.name = engine, name
        self.owner = owner or new_owner()
        self.ttl = timedelta(seconds=ttl_seconds)
        self.generation: int | None = None          # this acquisition's, once taken

    def try_acquire(self) -> bool:
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(leases)
                .where(leases.c.name == self.name)
                .where(sa.or_(leases.c.expires_at < now(), leases.c.owner == self.owner))
                .values(owner=self.owner, acquired_at=now(), expires_at=now() + self.ttl,
                        generation=leases.c.generation + 1)
            )
            if taken.rowcount == 1:
                self.generation = conn.execute(
                    sa.select(leases.c.generation).filter_by(name=self.name)).scalar_one()
                return True
            exists = conn.execute(sa.select(leases.c.name).filter_by(name=self.name)).first()
            if exists:
                return False
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(leases).values(
                    name=self.name, owner=self.owner, acquired_at=now(),
                    expires_at=now() + self.ttl, generation=1))
        except sa.exc.IntegrityError:
            return False   # another process inserted it first
        self.generation = 1
        return True

    def acquire(self, wait_seconds: float = 0.0, poll_seconds: float = 0.5) -> None:
        deadline = time.monotonic() + wait_seconds
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockHeld(self._held_message())
            time.sleep(poll_seconds)

    def renew(self) -> bool:
        with self.engine.begin() as conn:
            renewed = conn.execute(
                sa.update(leases).where(self._ours()).values(expires_at=now() + self.ttl))
            return renewed.rowcount == 1

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(leases).where(self._ours()))

    def fence(self, conn: sa.Connection) -> None:
        """Call first in a write transaction that must only commit while the lease is ours:
        raises LeaseLost (the transaction then rolls back) when it is not."""
        if self.generation is None:
            raise LeaseLost(f"the write lease {self.name!r} was never taken by this process")
        # A no-op UPDATE: it locks the row until this transaction ends.
        held = conn.execute(_FENCE, {"lease": self.name, "holder": self.owner,
                                     "taken": self.generation})
        if held.rowcount != 1:
            row = conn.execute(sa.select(leases).filter_by(name=self.name)).mappings().first()
            raise LeaseLost(self.lost_message(dict(row) if row else None))

    def verify(self) -> None:
        """Raise LeaseLost unless the lease is still this acquisition's. A plain read: it
        neither waits for nor holds up anyone, so it is asked between steps, where a fence
        would be too much."""
        held = self.holder()
        if held is None or held["owner"] != self.owner or held["generation"] != self.generation:
            raise LeaseLost(self.lost_message(held))

    def lost_message(self, held: dict[str, object] | None) -> str:
        """Why the lease is not ours any more, given who holds it now."""
        if held is None:
            how = ("it expired and was taken over by another process (which has released it "
                   "since), or it was broken with `reconciler unlock --force`")
        elif held["owner"] == self.owner:
            how = "it expired and was taken again by a later run of this process"
        else:
            how = f"it expired and was taken over by {held['owner']}"
        return (f"the write lease {self.name!r} is no longer ours: {how}; stopped, nothing "
                f"more is sent")

    def _ours(self) -> sa.ColumnElement[bool]:
        """This acquisition's row: same owner and generation (none taken yet: any of ours)."""
        mine = sa.and_(leases.c.name == self.name, leases.c.owner == self.owner)
        if self.generation is None:
            return mine
        return sa.and_(mine, leases.c.generation == self.generation)

    def holder(self) -> dict[str, object] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(leases).filter_by(name=self.name)).mappings().first()
            return dict(row) if row else None

    def _held_message(self) -> str:
        held = self.holder()
        if held is None:
            return f"lease {self.name!r} could not be taken; try again"
        return (f"another process holds the write lease {self.name!r}: {held['owner']}, "
                f"until {held['expires_at']}; wait, or run `reconciler unlock --force` if that "
                f"process is gone")

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def break_lease(engine: sa.Engine, name: str) -> dict[str, object] | None:
    """Remove a lease whoever holds it (`reconciler unlock --force`)."""
    held = Lease(engine, name).holder()
    with engine.begin() as conn:
        conn.execute(sa.delete(leases).filter_by(name=name))
    return held
