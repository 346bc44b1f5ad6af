"""The two key-ordered lead streams, read a chunk at a time, column by column.

The merge compares an unchanged run of leads in one step: a slice of keys, of digests and of
statuses against the other side's, compared by the list comparisons of the interpreter (in C),
instead of one lead at a time. The cursors here hold the current chunk of each stream and join
the rest of a chunk to the next when the merge must look past its end.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from reconciler.core.model import (
    DesiredLead,
    LeadChunk,
    RecordedChunk,
    RecordedLead,
    RowRejection,
)
from reconciler.errors import ReconcilerError

CHUNK = 5000


class LeadOrderError(ReconcilerError):
    """A stream was not in key order: merging it would give a wrong plan."""


class Cursor:
    """A position in a stream of column chunks; `columns[c][at]` is the current item."""

    def __init__(self, chunks: Iterable[Sequence[list[Any]]], width: int) -> None:
        self._chunks = iter(chunks)
        self.columns: list[list[Any]] = [[] for _ in range(width)]
        self.at = 0

    def ensure(self, wanted: int) -> int:
        """Make `wanted` items from `at` on readable, as far as the stream has them.

        Returns how many are readable (fewer than wanted only at the end of the stream).
        """
        columns, at = self.columns, self.at
        while len(columns[0]) - at < wanted:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            if at == len(columns[0]):     # the usual case: nothing left of the chunk before
                columns = [list(column) for column in chunk]
            else:
                columns = [old[at:] + list(new) for old, new in zip(columns, chunk, strict=True)]
            at = 0
        self.columns, self.at = columns, at
        return len(columns[0]) - at


class StateCursor(Cursor):
    """The recorded leads; raises LeadOrderError as soon as a key comes after a greater one."""

    def __init__(self, chunks: Iterable[RecordedChunk]) -> None:
        super().__init__(chunks, 4)

    def advance(self, passed: int) -> None:
        """Go `passed` leads further, checking the one reached against the last one passed."""
        keys, at = self.columns[0], self.at
        last = keys[at + passed - 1]
        self.at = at + passed
        if self.ensure(1):
            following = self.columns[0][self.at]
            if following < last:
                raise LeadOrderError(f"the state database returned leads out of key order "
                                     f"({following!r} after {last!r})")

    def start(self) -> None:
        """Read the first chunk (its first lead needs no check)."""
        self.ensure(1)


def desired_chunks(desired: Iterable[DesiredLead | RowRejection], size: int = CHUNK
                   ) -> Iterator[LeadChunk]:
    """CRM leads given one by one, as chunks (a rejected row gets the key "")."""
    items = iter(desired)
    while batch := list(islice(items, size)):
        chunk = LeadChunk([], [], [], [])
        for item in batch:
            if isinstance(item, RowRejection):
                chunk.keys.append("")
                chunk.list_ids.append("")
                chunk.digests.append("")
                chunk.rows.append(item)
            else:
                chunk.keys.append(item.key)
                chunk.list_ids.append(item.list_id)
                chunk.digests.append(item.digest)
                chunk.rows.append(item.row)
        yield chunk


def recorded_chunks(recorded: Iterable[RecordedLead], size: int = CHUNK
                    ) -> Iterator[RecordedChunk]:
    """Recorded leads given one by one, as chunks."""
    items = iter(recorded)
    while batch := list(islice(items, size)):
        keys, list_ids, digests, statuses = (list(column) for column in zip(*batch, strict=True))
        yield RecordedChunk(keys, list_ids, digests, statuses)


def recorded_leads(chunks: Iterable[RecordedChunk]) -> Iterator[RecordedLead]:
    """Recorded leads one by one, from chunks."""
    for chunk in chunks:
        yield from map(RecordedLead, *chunk)
