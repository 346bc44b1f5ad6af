"""CRM lead rows read a chunk at a time: the same keys, lists, rejections and digests as reading
them row by row, and digests stable across versions, those of an earlier format recognised."""

from __future__ import annotations

import marshal
from datetime import date
from decimal import Decimal
from hashlib import blake2b
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from xxhash import xxh3_64_hexdigest

from reconciler.adapters.crm.leads import LeadMapper
from reconciler.adapters.crm.row_digest import matches_earlier_digest, row_digest, row_digests
from reconciler.config.spec import LEAD_KEY, FieldSource, ResourceSpec
from reconciler.core.model import RowRejection


def resource(key: FieldSource, list_id: FieldSource) -> ResourceSpec:
    return ResourceSpec("leads", LEAD_KEY, None, "crm_leads", {
        LEAD_KEY: key, "list_id": list_id, "phone_number": FieldSource(column="phone")})


def row_by_row(mapper: LeadMapper, rows: list[tuple[Any, ...]]
               ) -> list[tuple[str, str, str] | str]:
    """What each row gives when read on its own: (key, list, digest), or why it is refused."""
    read: list[tuple[str, str, str] | str] = []
    for row in rows:
        try:
            key, list_id = mapper.key(row), mapper.list_id(row)
        except ValueError as exc:
            read.append(str(exc))
            continue
        read.append((key, list_id, row_digest(row)) if key else "is required")
    return read


def in_chunk(mapper: LeadMapper, rows: list[tuple[Any, ...]]) -> list[tuple[str, str, str] | str]:
    chunk = mapper.chunk(rows)
    assert chunk.rows[:] == [r if isinstance(r, RowRejection) else rows[n]
                             for n, r in enumerate(chunk.rows)]
    return [row.rule if isinstance(row, RowRejection) else (key, list_id, digest)
            for key, list_id, digest, row in zip(*chunk, strict=True)]


values = st.one_of(
    st.integers(-5, 10**12), st.sampled_from(["", " ", "12", " 12", "12 ", "\t7", "L1", "x y"]),
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("7.00"), Decimal("7.5"), b"9"]))
sources = st.sampled_from([
    FieldSource(column="c"), FieldSource(column="c", default="D"),
    FieldSource(column="c", map={"12": "twelve"}), FieldSource(value="V"), FieldSource(value=""),
    FieldSource(column="c", yes_no=True)])


@settings(max_examples=300, deadline=None)
@given(key=sources, list_id=sources,
       column=st.sampled_from(["keys", "lists", "both"]),
       rows=st.lists(st.tuples(values, values, st.just("5550000001")), min_size=1, max_size=6),
       uniform=st.sampled_from([None, int, str]))
def test_a_chunk_reads_every_row_as_reading_it_alone(
    key: FieldSource, list_id: FieldSource, column: str, rows: list[tuple[Any, ...]],
    uniform: type | None,
) -> None:
    if uniform is int:          # the usual chunk: whole numbers in every row
        rows = [(n, n % 3, phone) for n, (_, _, phone) in enumerate(rows, 1)]
    elif uniform is str:
        rows = [(f"K{n}", "L1", phone) for n, (_, _, phone) in enumerate(rows, 1)]
    key_column = "a" if column != "lists" else "b"
    list_column = "b" if column != "keys" else "a"
    mapper = LeadMapper(resource(
        FieldSource(key_column if key.column else None, key.value, key.default, key.yes_no,
                    key.map),
        FieldSource(list_column if list_id.column else None, list_id.value, list_id.default,
                    list_id.yes_no, list_id.map)))
    assert in_chunk(mapper, rows) == row_by_row(mapper, rows)


def test_the_digest_is_stable_across_runs_and_versions() -> None:
    """States keep these digests: a change of format would report every lead as drift."""
    rows = [(1, "1101", "5550000001", None, 2.5), ("a", "b", "", Decimal("1.0"), b"x")]
    assert row_digests(rows) == [row_digest(row) for row in rows]
    assert row_digest((1, "1101")) == "m9a8ef831768900aa"
    assert row_digests([(1, None, date(2026, 1, 2))]) == ["m72d4f668f9c922d4"]     # its repr
    assert len({row_digest(row) for row in rows}) == 2


def test_a_digest_an_earlier_version_recorded_matches_only_its_row() -> None:
    rows = [(1, "1101", "5550000001", None, 2.5), ("a", "b", "", Decimal("1.0"), b"x")]
    for earlier_digest in (lambda text: blake2b(text, digest_size=16).hexdigest(),
                           xxh3_64_hexdigest):
        earlier = [earlier_digest(repr(row).encode()) for row in rows]
        assert [matches_earlier_digest(d, row) for d, row in zip(earlier, rows, strict=True)] \
            == [True, True]
        assert not matches_earlier_digest(earlier[0], rows[1])
        assert not matches_earlier_digest(earlier[0], (1, "1101", "5550000001", None, 2.6))
    # A digest of this version's format is never taken for an earlier one.
    assert not matches_earlier_digest(row_digest(rows[0]), rows[0])


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                    st.binary(max_size=3), st.dates(), st.decimals(allow_nan=False, places=2),
                    st.lists(st.integers(), max_size=2), st.lists(st.dates(), max_size=1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(), scalars, scalars), max_size=8)
       | st.lists(st.tuples(scalars) | st.tuples(st.integers(), scalars), max_size=8))
def test_a_rows_digest_does_not_depend_on_the_rows_read_with_it(
        rows: list[tuple[Any, ...]]) -> None:
    """A chunk is digested in one go unless marshal cannot write one of its rows: each row's
    digest is still its own, marshal where marshal writes it, repr otherwise (rows all as wide,
    as a database gives them, or not)."""
    assert row_digests(rows) == [row_digest(row) for row in rows]
    for row in rows:
        try:
            data = marshal.dumps(row, 2)
        except ValueError:
            data = repr(row).encode()
        assert row_digest(row) == "m" + xxh3_64_hexdigest(data)
