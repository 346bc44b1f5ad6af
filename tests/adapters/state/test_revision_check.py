"""`require_current` answers the usual case (the database at the head) without Alembic: the
head it reads from the migration files is the one Alembic finds, and a database anywhere else
still gets Alembic's verdict (tests/adapters/state/test_state_schema.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.adapters.state import db


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert db._head_of_files() == db.head_revision() is not None


def test_a_head_is_found_whether_the_ids_are_annotated_or_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a.py").write_text('revision = "a"\ndown_revision = None\nX = f()\n')
    (versions / "b.py").write_text('revision: str = "b"\ndown_revision: str | None = "a"\n')
    monkeypatch.setattr(db, "MIGRATIONS", tmp_path)
    db._head_of_files.cache_clear()
    try:
        assert db._head_of_files() == "b"
        (versions / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')
        db._head_of_files.cache_clear()
        assert db._head_of_files() is None            # two heads: Alembic decides
    finally:
        db._head_of_files.cache_clear()
