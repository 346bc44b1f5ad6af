"""The shadow tables, the run log and the write lease, on SQLite and PostgreSQL (`state_engine`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from reconciler.adapters.state import db
from reconciler.adapters.state.lease import Lease, break_lease, new_owner
from reconciler.adapters.state.schema import leases, run_steps, runs, shadow_users
from reconciler.adapters.state.store import StateStore, StepWriter, now
from reconciler.core.model import RecordedList, RecordedUser
from reconciler.errors import LeaseLost, LockHeld

ALICE = {"full_name": "Alice Agent", "user_level": "1", "user_group": "AGENTS", "active": "Y"}
ALICE_DIGESTS = {"agent_pass": "d1" * 32}


@pytest.fixture
def store(state_engine: sa.Engine) -> StateStore:
    return StateStore(state_engine, "default")


def save_alice(writer: StepWriter) -> None:
    writer.save_user("1000", ALICE, ALICE_DIGESTS)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --- one step, one transaction ----------------------------------------------------------------


def test_commit_step_writes_the_step_the_shadow_and_the_version_together(
    store: StateStore
) -> None:
    run_id = store.start_run("apply")
    store.commit_step(run_id, 1, "add_user", "1000", "created", "", 12, save_alice)

    recorded = store.load_recorded()
    assert recorded.users == {"1000": RecordedUser("1000", ALICE, ALICE_DIGESTS)}
    assert recorded.version == store.version() == 1
    (step,) = store.steps(run_id)
    assert (step["seq"], step["op"], step["key"], step["outcome"]) == (
        1, "add_user", "1000", "created")
    assert step["message"] is None and step["duration_ms"] == 12
    assert isinstance(step["at"], datetime)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(shadow_users.c.run_id)).scalar_one() == run_id


def test_an_effect_that_raises_leaves_neither_step_nor_shadow_nor_version(
    store: StateStore
) -> None:
    run_id = store.start_run("apply")
    store.commit_step(run_id, 1, "add_user", "1000", "created", "", 5, save_alice)

    def half_done(writer: StepWriter) -> None:
        writer.update_user_fields("1000", {"full_name": "Changed"}, {})
        writer.save_user("1001", {"full_name": "Bob"}, {})
        writer.save_list("1101", {"list_name": "Spring"}, "created")
        raise RuntimeError("crash in the middle of a step")

    with pytest.raises(RuntimeError, match="crash in the middle"):
        store.commit_step(run_id, 2, "update_user", "1000", "updated", "", 5, half_done)

    recorded = store.load_recorded()
    assert recorded.users == {"1000": RecordedUser("1000", ALICE, ALICE_DIGESTS)}
    assert recorded.lists == {}
    assert recorded.version == 1
    assert [s["seq"] for s in store.steps(run_id)] == [1]


def test_the_version_moves_only_when_the_shadow_is_written(store: StateStore) -> None:
    run_id = store.start_run("apply")
    assert store.version() == 0
    store.commit_step(run_id, 1, "add_user", "1000", "failed", "rejected", 1)          # no effect
    store.commit_step(run_id, 2, "add_user", "1000", "failed", "", 1, lambda w: None)  # no write
    assert store.version() == 0
    store.commit_step(run_id, 3, "add_user", "1000", "created", "", 1, save_alice)
    assert store.version() == 1
    store.commit_step(run_id, 4, "add_list", "1101", "created", "", 1,
                      lambda w: w.save_list("1101", {"list_name": "Spring"}, "created"))
    assert store.version() == 2
    store.commit_step(run_id, 5, "deactivate_user", "1000", "deactivated", "", 1,
                      lambda w: w.update_user_fields("1000", {"active": "N"}, {}))
    assert store.version() == 3
    assert len(store.steps(run_id)) == 5


def test_a_step_of_an_unknown_run_is_refused(store: StateStore) -> None:
    """run_steps.run_id is a foreign key (SQLite enforces it: open_engine turns it on)."""
    with pytest.raises(sa.exc.IntegrityError):
        store.commit_step("no-such-run", 1, "add_user", "1000", "created", "", 1, save_alice)
    assert store.load_recorded().users == {}
    assert store.version() == 0


# --- shadow rows ------------------------------------------------------------------------------


def test_load_recorded_round_trips_users_and_lists(store: StateStore) -> None:
    bob = {"full_name": "Bob Ü. Ñandú", "user_level": "7", "active": "N", "email": "b@x.io"}

    def effect(writer: StepWriter) -> None:
        save_alice(writer)
        writer.save_user("1001", bob, {"agent_pass": "aa", "phone_pass": "bb"})
        writer.save_list("1101", {"list_name": "Spring Renewals", "campaign_id": "TESTCAMP",
                                  "active": "Y"}, "created")
        writer.save_list("2018", {"list_name": "kartik jagani", "campaign_id": "kartik"},
                         "adopted")

    store.commit_step(store.start_run("apply"), 1, "batch", "-", "ok", "", 1, effect)
    recorded = store.load_recorded()
    assert recorded.users == {
        "1000": RecordedUser("1000", ALICE, ALICE_DIGESTS),
        "1001": RecordedUser("1001", bob, {"agent_pass": "aa", "phone_pass": "bb"}),
    }
    assert not recorded.users["1001"].active
    assert recorded.lists == {
        "1101": RecordedList("1101", {"list_name": "Spring Renewals", "campaign_id": "TESTCAMP",
                                      "active": "Y"}, "created"),
        "2018": RecordedList("2018", {"list_name": "kartik jagani", "campaign_id": "kartik"},
                             "adopted"),
    }
    assert recorded.version == 1


def test_save_user_replaces_and_update_user_fields_merges(store: StateStore) -> None:
    run_id = store.start_run("apply")
    store.commit_step(run_id, 1, "add_user", "1000", "created", "", 1, save_alice)
    store.commit_step(run_id, 2, "update_user", "1000", "updated", "", 1,
                      lambda w: w.update_user_fields("1000", {"full_name": "Alice B."},
                                                     {"phone_pass": "d2"}))
    user = store.load_recorded().users["1000"]
    assert user.fields == {**ALICE, "full_name": "Alice B."}
    assert user.digests == {**ALICE_DIGESTS, "phone_pass": "d2"}

    # Merging into a user with no shadow row creates it.
    store.commit_step(run_id, 3, "update_user", "1002", "recreated", "", 1,
                      lambda w: w.update_user_fields("1002", {"active": "Y"}, {}))
    assert store.load_recorded().users["1002"] == RecordedUser("1002", {"active": "Y"}, {})

    # save_user replaces the whole row.
    store.commit_step(run_id, 4, "add_user", "1000", "created", "", 1,
                      lambda w: w.save_user("1000", {"active": "N"}, {}))
    assert store.load_recorded().users["1000"] == RecordedUser("1000", {"active": "N"}, {})
    assert store.version() == 4


def test_targets_are_kept_apart(state_engine: sa.Engine) -> None:
    a, b = StateStore(state_engine, "site-a"), StateStore(state_engine, "site-b")
    a.commit_step(a.start_run("apply"), 1, "add_user", "1000", "created", "", 1, save_alice)
    b.commit_step(b.start_run("apply"), 1, "add_user", "1000", "created", "", 1,
                  lambda w: w.save_user("1000", {"full_name": "Other"}, {}))
    b.commit_step(b.start_run("apply"), 1, "add_user", "1001", "created", "", 1,
                  lambda w: w.save_user("1001", {}, {}))
    assert a.load_recorded().users["1000"].fields == ALICE
    assert b.load_recorded().users["1000"].fields == {"full_name": "Other"}
    assert set(a.load_recorded().users) == {"1000"}
    assert (a.version(), b.version()) == (1, 2)


# --- runs -------------------------------------------------------------------------------------


def test_runs_start_finish_and_list_their_steps_in_order(store: StateStore) -> None:
    run_id = store.start_run("apply", plan_digest="ab" * 32)
    started = store.run(run_id)
    assert started is not None
    assert (started["target"], started["kind"], started["plan_digest"]) == (
        "default", "apply", "ab" * 32)
    assert isinstance(started["started_at"], datetime)
    assert started["finished_at"] is None and started["outcome"] is None

    for seq in (2, 1, 3):                           # written out of order, read back by seq
        store.commit_step(run_id, seq, "add_user", f"100{seq}", "created", f"m{seq}", seq)
    assert [(s["seq"], s["key"], s["message"]) for s in store.steps(run_id)] == [
        (1, "1001", "m1"), (2, "1002", "m2"), (3, "1003", "m3")]

    store.finish_run(run_id, "partial", {"created": 2, "failed": 1}, "1 row rejected")
    finished = store.run(run_id)
    assert finished is not None
    assert finished["outcome"] == "partial"
    assert finished["counts"] == {"created": 2, "failed": 1}
    assert finished["message"] == "1 row rejected"
    assert isinstance(finished["finished_at"], datetime)

    other = store.start_run("plan")
    store.finish_run(other, "ok", {})
    assert store.run(other)["message"] is None    # type: ignore[index]
    assert store.steps(other) == []
    assert store.run("no-such-run") is None
    assert count(store.engine, run_steps) == 3


# --- the write lease --------------------------------------------------------------------------

NAME = "apply:default"


def test_only_one_of_two_owners_holds_the_lease(state_engine: sa.Engine) -> None:
    first = Lease(state_engine, NAME, owner="host-a:101")
    second = Lease(state_engine, NAME, owner="host-b:202")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.try_acquire()                      # the holder may take it again (extends it)
    held = second.holder()
    assert held is not None and held["owner"] == "host-a:101"
    expires, acquired = held["expires_at"], held["acquired_at"]
    assert isinstance(expires, datetime) and isinstance(acquired, datetime)
    assert expires > acquired
    # Another name is another lease.
    assert Lease(state_engine, "apply:other", owner="host-b:202").try_acquire()


def test_acquire_gives_up_with_a_message_naming_the_holder(state_engine: sa.Engine) -> None:
    Lease(state_engine, NAME, owner="host-a:101:cafe").acquire()
    waiting = Lease(state_engine, NAME, owner="host-b:202")
    began = time.monotonic()
    with pytest.raises(LockHeld) as caught:
        waiting.acquire(wait_seconds=0.3, poll_seconds=0.1)
    assert time.monotonic() - began >= 0.3
    message = str(caught.value)
    assert "host-a:101:cafe" in message
    assert "reconciler unlock --force" in message
    assert repr(NAME) in message


def test_acquire_waits_for_the_holder_to_release(state_engine: sa.Engine) -> None:
    holder = Lease(state_engine, NAME, owner="a")
    holder.acquire()
    timer = threading.Timer(0.2, holder.release)
    timer.start()
    try:
        Lease(state_engine, NAME, owner="b").acquire(wait_seconds=60, poll_seconds=0.05)
    finally:
        timer.join()
    held = holder.holder()
    assert held is not None and held["owner"] == "b"


def test_an_expired_lease_can_be_taken_and_its_old_holder_cannot_renew(
    state_engine: sa.Engine
) -> None:
    crashed = Lease(state_engine, NAME, owner="crashed", ttl_seconds=60)
    assert crashed.try_acquire()
    other = Lease(state_engine, NAME, owner="other")
    assert not other.try_acquire()                  # not yet expired
    # Its holder died long ago: the expiry is written in the past rather than waited for,
    # which no slow machine can get wrong.
    assert Lease(state_engine, NAME, owner="crashed", ttl_seconds=-60).renew()
    assert other.try_acquire()
    assert not crashed.renew()
    assert not crashed.try_acquire()
    held = other.holder()
    assert held is not None and held["owner"] == "other"


def test_renew_keeps_a_short_lease_alive(state_engine: sa.Engine) -> None:
    # A TTL long enough that no pause of a loaded machine between two statements reaches it,
    # short enough to outlive it within the test.
    ttl = 2.0
    holder = Lease(state_engine, NAME, owner="a", ttl_seconds=ttl)
    holder.acquire()
    before = holder.holder()
    time.sleep(0.05)
    assert holder.renew()
    after = holder.holder()
    assert before is not None and after is not None
    old_expiry, new_expiry = before["expires_at"], after["expires_at"]
    assert isinstance(old_expiry, datetime) and isinstance(new_expiry, datetime)
    assert new_expiry > old_expiry
    outlived = time.monotonic() + ttl + 0.2         # past the first expiry
    while time.monotonic() < outlived:
        time.sleep(0.25)
        assert holder.renew()
    assert not Lease(state_engine, NAME, owner="b").try_acquire()


def test_release_frees_the_lease_but_only_for_its_owner(state_engine: sa.Engine) -> None:
    holder = Lease(state_engine, NAME, owner="a")
    holder.acquire()
    Lease(state_engine, NAME, owner="b").release()        # not b's: nothing happens
    assert holder.holder() is not None
    with holder:                                           # leaving the block releases
        pass
    assert holder.holder() is None
    assert Lease(state_engine, NAME, owner="b").try_acquire()
    assert not holder.renew()


def test_break_lease_removes_whoever_holds_it(state_engine: sa.Engine) -> None:
    Lease(state_engine, NAME, owner="gone:4242").acquire()
    held = break_lease(state_engine, NAME)
    assert held is not None and held["owner"] == "gone:4242"
    assert break_lease(state_engine, NAME) is None
    assert Lease(state_engine, NAME, owner="new").try_acquire()


def test_new_owner_names_host_and_process_and_is_unique() -> None:
    owners = {new_owner() for _ in range(20)}
    assert len(owners) == 20
    host, pid, _ = next(iter(owners)).split(":")
    assert host and pid.isdigit()


def expire(engine: sa.Engine, name: str) -> None:
    """What a holder stalled past its TTL leaves: a lease another process may take over."""
    with engine.begin() as conn:
        conn.execute(sa.update(leases).where(leases.c.name == name)
                     .values(expires_at=now() - timedelta(seconds=1)))


def test_every_take_over_gets_a_larger_generation(state_engine: sa.Engine) -> None:
    first = Lease(state_engine, NAME, owner="a")
    assert first.generation is None and first.try_acquire() and first.generation == 1
    expire(state_engine, NAME)
    second = Lease(state_engine, NAME, owner="b")
    assert second.try_acquire() and second.generation == 2
    assert second.try_acquire() and second.generation == 3      # taken again by its holder


def test_a_fenced_write_is_refused_once_the_lease_was_taken_over(state_engine: sa.Engine) -> None:
    holder = Lease(state_engine, NAME, owner="host-a:1:aaaa")
    assert holder.try_acquire()
    store = StateStore(state_engine, "default").fenced(holder.fence)
    store.start_run("apply")                                   # ours: written
    holder.verify()

    expire(state_engine, NAME)
    assert Lease(state_engine, NAME, owner="host-b:2:bbbb").try_acquire()
    with pytest.raises(LeaseLost) as caught:
        store.start_run("apply")
    message = str(caught.value)
    assert "expired and was taken over by host-b:2:bbbb" in message
    assert "unlock --force" not in message
    with pytest.raises(LeaseLost):
        holder.verify()
    assert not holder.renew()
    with state_engine.connect() as conn:                      # the refused write left nothing
        assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one() == 1
    # Broken instead (`unlock --force`), or taken over and released since: the row is gone.
    break_lease(state_engine, NAME)
    with pytest.raises(LeaseLost, match="unlock --force"):
        store.commit_step("r", 1, "add_user", "1000", "created", "", 1, save_alice)


def test_a_take_over_waits_for_a_fenced_write_and_then_sees_it(state_engine: sa.Engine) -> None:
    """The fence locks the lease row until its transaction ends: a process taking the lease
    over meanwhile waits, and then plans from what was written (so nothing is sent twice)."""
    holder = Lease(state_engine, NAME, owner="stalled")
    assert holder.try_acquire()
    expire(state_engine, NAME)
    seen: dict[str, object] = {}

    def take_over() -> None:
        seen["taken"] = Lease(state_engine, NAME, owner="rival").try_acquire()
        with state_engine.connect() as conn:
            seen["runs"] = conn.execute(sa.select(runs.c.run_id)).scalars().all()

    with state_engine.connect() as conn, conn.begin():
        holder.fence(conn)                   # still ours (expired, not yet taken over)
        conn.execute(sa.insert(runs).values(run_id="fenced", target="default", kind="apply",
                                            started_at=now()))
        rival = threading.Thread(target=take_over)
        rival.start()
        rival.join(timeout=0.5)
        assert rival.is_alive()              # waiting for this transaction to end
    rival.join(timeout=30)
    assert seen == {"taken": True, "runs": ["fenced"]}
    with pytest.raises(LeaseLost, match="taken over by rival"), \
            state_engine.connect() as conn, conn.begin():
        holder.fence(conn)


@pytest.fixture
def engines(state_engine: sa.Engine) -> Iterator[list[sa.Engine]]:
    """Eight engines on one database, as eight processes would have."""
    url = state_engine.url.render_as_string(hide_password=False)
    made = [db.open_engine(url) for _ in range(8)]
    yield made
    for engine in made:
        engine.dispose()


def race(engines: list[sa.Engine], name: str) -> dict[str, bool]:
    """Every engine tries to take lease `name` at the same instant; who got it."""
    barrier = threading.Barrier(len(engines))
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def contend(engine: sa.Engine, owner: str) -> None:
        lease = Lease(engine, name, owner=owner)
        try:
            barrier.wait(timeout=10)
            results[owner] = lease.try_acquire()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(engine, f"owner-{i}"))
               for i, engine in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(results) == len(engines)
    return results


@pytest.mark.parametrize("lease_exists", [False, True], ids=["insert-race", "update-race"])
def test_concurrent_acquisition_has_exactly_one_winner(
    engines: list[sa.Engine], lease_exists: bool
) -> None:
    for round_no in range(3):
        name = f"apply:race-{round_no}"
        if lease_exists:                            # an expired row: the race is on the UPDATE
            Lease(engines[0], name, owner="expired", ttl_seconds=0).try_acquire()
        results = race(engines, name)
        winners = [owner for owner, won in results.items() if won]
        assert len(winners) == 1, results
        held = Lease(engines[0], name).holder()
        assert held is not None and held["owner"] == winners[0]
