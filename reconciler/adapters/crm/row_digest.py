"""The digest a lead's CRM row is recorded with when it is exported, to see it change after.

A plan takes one for every lead it reads, a million times for a million leads: `row_digests`
takes those of a chunk in one chain of C calls. The digest is DIGEST_TAG and 16 hex digits of
xxh3-64 over the row's bytes: its marshal (format 2, which has no back-references, so equal
values give equal bytes however the driver shares its objects), or its `repr` for a row holding
a type marshal cannot write (a date, a Decimal ...); marshal is about a third faster than
`repr`. The tag gives these digests a length of their own, so that one recorded in an earlier
format is told apart and compared in that format (`matches_earlier_digest`, docs/leads.md).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from hashlib import blake2b
from itertools import repeat
from operator import add
from typing import Any
from uuid import UUID

from xxhash import xxh3_64_hexdigest

DIGEST_TAG = "m"                # "m" for marshal: 17 characters in all
_MARSHALLED = frozenset({type(None), bool, int, float, str, bytes})
# What drivers return that marshal cannot write: such a row is its `repr`, without a try.
_NOT_MARSHALLED = frozenset({date, datetime, time, timedelta, Decimal, UUID})
_MARSHALLED_OR_NOT = _MARSHALLED | _NOT_MARSHALLED


def row_digest(row: tuple[Any, ...]) -> str:
    """Tells whether a lead's CRM row changed since it was exported (see DIGEST_TAG)."""
    return row_digests([row])[0]


def row_digests(rows: Iterable[tuple[Any, ...]]) -> list[str]:
    """`row_digest` of each row, in one chain of calls the interpreter runs without a Python
    frame per row. The very same digests: the state compares them with those it recorded."""
    rows = list(rows)
    if not all(type(row) is tuple for row in rows[:1]):    # a driver's own row type: as tuples
        rows = list(map(tuple, rows))
    try:
        data = list(map(marshal.dumps, rows, repeat(2)))
    except ValueError:
        data = _row_bytes_one_by_one(rows)
    return list(map(add, repeat(DIGEST_TAG), map(xxh3_64_hexdigest, data)))


def _row_bytes_one_by_one(rows: list[tuple[Any, ...]]) -> list[bytes]:
    """A chunk some row of which marshal cannot write: each row as its marshal where marshal
    can write it, else as its `repr` (the rule does not depend on the row's chunk).

    A database's rows are all as wide and a column holds one type, often with NULLs: the rows
    holding a date, a Decimal ... are then told apart a column at a time."""
    columns = list(zip(*rows, strict=False))
    if any(len(row) != len(columns) for row in rows):
        return list(map(_row_bytes, rows))
    odd = [column for column in columns if not _MARSHALLED.issuperset(map(type, column))]
    if not all(_MARSHALLED_OR_NOT.issuperset(map(type, column)) for column in odd):
        return list(map(_row_bytes, rows))          # a list, a dict ...: row by row
    plain = map(all, zip(*(map(_MARSHALLED.__contains__, map(type, c)) for c in odd),
                         strict=True))
    return [marshal.dumps(row, 2) if is_plain else repr(row).encode()
            for row, is_plain in zip(rows, plain, strict=True)]


def _row_bytes(row: tuple[Any, ...]) -> bytes:
    kinds = set(map(type, row))
    if kinds <= _MARSHALLED:
        return marshal.dumps(row, 2)
    if kinds.isdisjoint(_NOT_MARSHALLED):       # a list, a dict ...: marshal may write it
        with suppress(ValueError):
            return marshal.dumps(row, 2)
    return repr(row).encode()


# Earlier versions recorded, of the row's `repr`: a 128-bit BLAKE2b (32 hex digits), then
# xxh3-64 (16 hex digits). A lead recorded so is compared in its format until an apply records
# it anew (docs/leads.md).
_EARLIER_DIGESTS: dict[int, Callable[[bytes], str]] = {
    32: lambda text: blake2b(text, digest_size=16).hexdigest(),
    16: xxh3_64_hexdigest,
}


def matches_earlier_digest(recorded_digest: str, row: tuple[Any, ...]) -> bool:
    """Whether a digest an earlier version recorded is that of `row` (False for a digest of
    this version's format: compare those with `row_digest` as they are)."""
    earlier = _EARLIER_DIGESTS.get(len(recorded_digest))
    return earlier is not None and recorded_digest == earlier(repr(tuple(row)).encode())
