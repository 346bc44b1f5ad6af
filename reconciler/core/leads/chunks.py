"""The two key-ordered lead streams, read a chunk at a time, column by column.

The merge compares an unchanged run of leads in one step: a slice of keys, of digests and of
statuses against the other side's, compared by the list comparisons of the interpreter (in C),
instead of one lead at a time. The cursors here hold the current chunk of each stream and join
the rest of a chunk to the next when the merge must look past its end.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Generator, Iterable, Iterator, Sequence
from itertools import compress, count, islice, repeat
from operator import ge, ne
from typing import Any, Protocol, TypeVar

from reconciler.core.model import (
    SENT_STATUS,
    DesiredLead,
    LeadChunk,
    RecordedChunk,
    RecordedLead,
    RowRejection,
)
from reconciler.core.plan import Reject
from reconciler.errors import ReconcilerError

CHUNK = 5000
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


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
                columns = [column if type(column) is list else list(column) for column in chunk]
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


class Decisions(Protocol[E_co]):
    """What the merge decides for the leads the walk here brings to it (`merge._Merge`)."""

    def decide(self, lead: DesiredLead, have: RecordedLead | None) -> Iterable[E_co]: ...

    def unchanged(self, list_ids: list[str], digests: list[str]) -> None: ...

    def drifts(self, keys: list[str], list_ids: list[str], lists_then: list[str]) -> E_co: ...

    def gone(self, list_id: str) -> None: ...


def unchanged_run(merge: Decisions[E], crm: Cursor, state: StateCursor, run: int
                  ) -> Generator[E | Reject, None, int]:
    """Up to `run` leads on which both streams have the same keys, rising strictly (no
    duplicate, nothing out of order: those are left to `one_lead`), and where the CRM's next
    key differs from the last taken. Sent leads are counted in one step, those changed since
    (drift) noted; the others are decided one by one. Returns how many leads were taken."""
    keys, lists, digests, rows = crm.columns
    their_keys, their_lists, their_digests, statuses = state.columns
    i, j = crm.at, state.at
    mine = keys[i:i + run + 1]                  # and the next one: a duplicate of the last?
    theirs = their_keys[j:j + run]
    taken = next(compress(count(), map(ne, mine, theirs)), run)
    taken = next(compress(count(), map(ge, mine, islice(mine, 1, taken + 1))), taken)
    if not taken:
        return 0
    digests_now, digests_then = digests[i:i + taken], their_digests[j:j + taken]
    statuses_then = statuses[j:j + taken]
    all_sent = statuses_then.count(SENT_STATUS) == taken
    if all_sent and digests_now == digests_then:
        merge.unchanged(lists[i:i + taken], digests_now)
        return taken
    # Decided one by one: a lead not sent, or recorded with a digest of another format (its
    # length differs). A sent lead whose digest of the same format differs is drift: counted
    # and remembered with its run, as `decide` would.
    unsent = set() if all_sent else set(compress(count(), map(ne, statuses_then,
                                                              repeat(SENT_STATUS))))
    changed = set(compress(count(), map(ne, digests_now, digests_then))) - unsent
    drifted = sorted(at for at in changed if len(digests_now[at]) == len(digests_then[at]))
    alone = sorted(unsent | changed.difference(drifted))
    start, drift_at = 0, 0
    for at in (*alone, taken):
        if at > start:
            merge.unchanged(lists[i + start:i + at], digests_now[start:at])
            upto = bisect_left(drifted, at, drift_at)
            if upto > drift_at:           # one event for the segment's drift, in key order
                mine_drifted = drifted[drift_at:upto]
                yield merge.drifts([mine[k] for k in mine_drifted],
                                   [lists[i + k] for k in mine_drifted],
                                   [their_lists[j + k] for k in mine_drifted])
                drift_at = upto
        if at == taken:
            break
        yield from merge.decide(
            DesiredLead(mine[at], lists[i + at], digests_now[at], rows[i + at]),
            RecordedLead(mine[at], their_lists[j + at], digests_then[at], statuses_then[at]))
        start = at + 1
    return taken


def new_run(merge: Decisions[E], crm: Cursor, state: StateCursor, run: int
            ) -> Generator[E | Reject, None, int]:
    """Up to `run` CRM leads whose keys rise strictly (no duplicate, no rejected row, nothing
    out of order: those are left to `one_lead`) and come before the state's next key: leads
    never recorded, decided one by one without looking at the state for each. Returns how
    many leads were taken."""
    keys, lists, digests, rows = crm.columns
    i = crm.at
    mine = keys[i:i + run + 1]                  # and the next one: a duplicate of the last?
    taken = next(compress(count(), map(ge, mine, islice(mine, 1, run + 1))), min(run, len(mine)))
    if state.ensure(1):
        taken = bisect_left(mine, state.columns[0][state.at], 0, taken)
    for at in range(taken):
        yield from merge.decide(DesiredLead(mine[at], lists[i + at], digests[i + at],
                                            rows[i + at]), None)
    return taken


def one_lead(merge: Decisions[E], crm: Cursor, state: StateCursor, previous: str
             ) -> Generator[E | Reject, None, str]:
    """Merge the CRM's next lead (with any that share its key). Returns the last key merged."""
    i = crm.at
    key: str = crm.columns[0][i]
    row = crm.columns[3][i]
    if isinstance(row, RowRejection):
        crm.at = i + 1
        yield Reject(row.resource, row.key, row.field, row.rule, row.row)
        return previous
    if key < previous:
        raise LeadOrderError(f"the CRM returned leads out of key order "
                             f"({key!r} after {previous!r})")
    rows = 1                                    # with this key
    while crm.ensure(rows + 1) > rows and crm.columns[0][crm.at + rows] == key:
        rows += 1
    i = crm.at
    lead = DesiredLead(key, crm.columns[1][i], crm.columns[2][i], crm.columns[3][i])
    crm.at = i + rows
    while state.ensure(1) and state.columns[0][state.at] < key:
        merge.gone(state.columns[1][state.at])
        state.advance(1)
    mine = None
    if state.ensure(1) and state.columns[0][state.at] == key:
        j = state.at
        mine = RecordedLead(key, *(column[j] for column in state.columns[1:]))
        state.advance(1)
    if rows > 1:
        yield from duplicate_key(key, rows)
    else:
        yield from merge.decide(lead, mine)
    return key


def duplicate_key(key: str, rows: int) -> Iterator[Reject]:
    """One key on several rows: which one is meant? None of them is sent."""
    for _ in range(rows):
        yield Reject("leads", key, "lead_key", f"duplicate key: {rows} CRM rows share it")


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
