"""The write lease: exactly one process applies to a dialer target at a time.

A row per lease name holds the owner and an expiry. Taking it is one conditional UPDATE (free,
expired, or already ours) or one INSERT guarded by the primary key, so two processes racing on
the same database cannot both win. A crashed holder's lease simply expires.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa

from reconciler.errors import LockHeld
from reconciler.state.schema import leases
from reconciler.state.store import now


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, engine: sa.Engine, name: str, owner: str | None = None,
                 ttl_seconds: float = 300.0) -> None:
        self.engine, self.name = engine, name
        self.owner = owner or new_owner()
        self.ttl = timedelta(seconds=ttl_seconds)

    def try_acquire(self) -> bool:
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(leases)
                .where(leases.c.name == self.name)
                .where(sa.or_(leases.c.expires_at < now(), leases.c.owner == self.owner))
                .values(owner=self.owner, acquired_at=now(), expires_at=now() + self.ttl)
            )
            if taken.rowcount == 1:
                return True
            exists = conn.execute(sa.select(leases.c.name).filter_by(name=self.name)).first()
            if exists:
                return False
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(leases).values(
                    name=self.name, owner=self.owner, acquired_at=now(),
                    expires_at=now() + self.ttl))
            return True
        except sa.exc.IntegrityError:
            return False   # another process inserted it first

    def acquire(self, wait_seconds: float = 0.0, poll_seconds: float = 0.5) -> None:
        deadline = time.monotonic() + wait_seconds
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockHeld(self._held_message())
            time.sleep(poll_seconds)

    def renew(self) -> bool:
        with self.engine.begin() as conn:
            renewed = conn.execute(
                sa.update(leases).filter_by(name=self.name, owner=self.owner)
                .values(expires_at=now() + self.ttl))
            return renewed.rowcount == 1

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(leases).filter_by(name=self.name, owner=self.owner))

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
