"""The state schema: Alembic migrations round-trip, agree with schema.metadata, and are enforced.

Every test runs on SQLite and on PostgreSQL (`database_url`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from reconciler.adapters.state import db, schema
from reconciler.adapters.state.lease import Lease
from reconciler.cli.main import main
from reconciler.errors import SchemaOutdated, StateError

OUR_TABLES = {"state_targets", "shadow_users", "shadow_lists", "shadow_leads", "lead_batches",
              "runs", "run_steps", "leases", "dialer_rejections", "sync_marks", "dnc_flags"}
HEAD = "0010_shadow_leads_key_order"


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.open_engine(database_url)
    yield engine
    engine.dispose()


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_metadata_lists_the_tables_we_expect() -> None:
    assert set(schema.metadata.tables) == OUR_TABLES


def test_head_is_the_newest_migration() -> None:
    assert db.head_revision() == HEAD


def test_an_empty_database_is_refused_until_upgraded(engine: sa.Engine) -> None:
    assert db.current_revision(engine) is None
    with pytest.raises(SchemaOutdated) as caught:
        db.require_current(engine)
    message = str(caught.value)
    assert message == (f"state database is empty, this version needs {HEAD}: "
                       "run `reconciler db upgrade`")
    assert "reconciler db upgrade" in message

    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision() == HEAD
    db.require_current(engine)                   # does not raise


def test_a_database_from_a_newer_version_is_not_sent_to_upgrade(engine: sa.Engine) -> None:
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_future'")
    with pytest.raises(SchemaOutdated, match="does not know") as caught:
        db.require_current(engine)
    assert "db upgrade" not in str(caught.value)


def test_upgrade_downgrade_upgrade_round_trips(engine: sa.Engine) -> None:
    db.upgrade(engine)
    assert tables(engine) == OUR_TABLES
    inspector = sa.inspect(engine)
    # (PostgreSQL lists the index behind the unique constraint too; SQLite does not.)
    assert {ix["name"] for ix in inspector.get_indexes("run_steps")
            if "duplicates_constraint" not in ix} == {"ix_run_steps_run_id"}
    assert [u["column_names"] for u in inspector.get_unique_constraints("run_steps")] == [
        ["run_id", "seq"]]
    (fk,) = inspector.get_foreign_keys("run_steps")
    assert (fk["referred_table"], fk["constrained_columns"]) == ("runs", ["run_id"])

    db.downgrade(engine, "base")
    assert tables(engine) == set()
    assert db.current_revision(engine) is None
    with pytest.raises(SchemaOutdated):
        db.require_current(engine)

    db.upgrade(engine)
    assert tables(engine) == OUR_TABLES
    assert db.current_revision(engine) == HEAD
    # Usable again: the lease table takes a row.
    assert Lease(engine, "apply:default", owner="a").try_acquire()


def test_upgrade_twice_is_harmless(engine: sa.Engine) -> None:
    db.upgrade(engine)
    db.upgrade(engine)
    assert tables(engine) == OUR_TABLES
    assert db.current_revision(engine) == HEAD


def test_upgrade_keeps_leads_recorded_before_phones_were_kept(engine: sa.Engine) -> None:
    """shadow_leads gains `phone` in place: the rows stay, with NULL (filled in by an apply)."""
    db.upgrade(engine, "0001_baseline")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO shadow_leads (target, lead_key, list_id, fields_digest, status, "
            "updated_at) VALUES ('default', '500', '1101', 'abc', 'sent', :at)"),
            {"at": datetime.now(UTC)})
    db.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT lead_key, status, phone FROM shadow_leads")).all()
    assert [tuple(r) for r in rows] == [("500", "sent", None)]
    assert "ix_shadow_leads_target_phone_list_id" in {
        ix["name"] for ix in sa.inspect(engine).get_indexes("shadow_leads")}
    db.downgrade(engine, "0001_baseline")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT lead_key FROM shadow_leads")).scalars().all() == [
            "500"]
    assert "phone" not in {c["name"] for c in sa.inspect(engine).get_columns("shadow_leads")}


def test_a_baseline_database_upgrades_in_place_to_hold_dialer_rejections(
    engine: sa.Engine
) -> None:
    from reconciler.adapters.state.store import StateStore

    db.upgrade(engine, "0001_baseline")
    store = StateStore(engine, "default")
    run_id = store.start_run("apply")
    store.commit_step(run_id, 1, "add_user", "1000", "created", "", 1,
                      lambda w: w.save_user("1000", {"active": "Y"}, {}))
    db.upgrade(engine)
    assert db.current_revision(engine) == HEAD and tables(engine) == OUR_TABLES
    assert set(store.load_recorded().users) == {"1000"}        # kept
    store.commit_step(run_id, 2, "add_user", "1001", "rejected", "no such group", 1,
                      lambda w: w.record_rejection("users", "1001", "add_user", "d" * 64,
                                                   "no such group"))
    held = store.load_recorded().rejections
    assert held["users", "1001"].message == "no such group"
    db.downgrade(engine, "0001_baseline")
    assert "dialer_rejections" not in tables(engine)


def test_the_migrations_match_schema_metadata(engine: sa.Engine) -> None:
    """What the code reads and writes (schema.py) is what the migrations built."""
    db.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, schema.metadata)
    assert differences == []


def test_an_unreachable_database_is_a_state_error(tmp_path: Path) -> None:
    engine = db.open_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'state.db'}")
    for action in (db.current_revision, db.upgrade):
        with pytest.raises(StateError, match=r"^state database sqlite:///.*/no/such/dir/state\.db: "
                                             r"unable to open database file$"):
            action(engine)
    engine.dispose()


def test_a_refused_connection_does_not_show_the_password() -> None:
    engine = db.open_engine("postgresql+psycopg://rec:Canary-pw-7f3e@127.0.0.1:1/state")
    with pytest.raises(StateError) as caught:
        db.current_revision(engine)
    assert "Canary" not in str(caught.value)
    engine.dispose()


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y",
                                 "mysql+pymysql://rec:Canary-pw-7f3e@db/state"])
def test_an_unusable_url_is_a_state_error(url: str) -> None:
    with pytest.raises(StateError, match=r"state\.url is not usable") as caught:
        db.open_engine(url)
    assert "Canary" not in str(caught.value)


def test_db_commands(database_url: str, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "reconciler.toml"
    config.write_text(f"""
[dialer]
url = "http://dialer/dialer/elision_api.php"
user = "api"
[crm]
url = "sqlite:///{tmp_path / 'crm.db'}"
[state]
url = "{database_url}"
""")

    def run(*args: str) -> str:
        assert main(["--config", str(config), "--log-format", "json", "db", *args]) == 0
        return capsys.readouterr().out

    assert run("current") == f"empty (behind {HEAD}: run `reconciler db upgrade`)\n"
    assert run("upgrade") == f"state database at {HEAD}\n"
    assert run("current") == f"{HEAD} (current)\n"
    assert run("downgrade", "base") == "state database at base (empty)\n"
    assert run("current").startswith("empty (behind")
