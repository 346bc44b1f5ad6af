"""The plan's lead batches, kept in a temporary file for `apply` to send: planned once, sent as
planned.

The plan holds only keys, so that its memory stays bounded whatever the CRM holds; the batches
themselves (keys, digests and the `multi_leads` JSON each request carries) are written here as
the plan's lead merge makes them, one batch at a time, and read back one at a time when sent.
Sending does no per-lead work again: no second read of the CRM, no second merge, no second
field check or JSON encoding.

The file is anonymous where the system allows it (it has no name to leave behind, even when the
process dies) and is closed, so removed, when the run ends or its owner is collected. It is made
in the same process as the plan, from the same read of the CRM the plan was made of, moments
before sending: a CRM row changed in between is sent as it was read, with that reading's digest,
so the next plan sees the change and reports it as drift (docs/leads.md).

Leads recorded with a digest of an earlier version and unchanged since (`LeadRedigest`) are
kept in a second file the same way, for apply to record their digest anew.
"""

from __future__ import annotations

import json
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

from reconciler.core.leads.merge import LeadBatch, LeadEvent, LeadRedigest
from reconciler.errors import ReconcilerError

E = TypeVar("E")


class SpillFailed(ReconcilerError):
    """The temporary directory could not hold the planned lead batches."""


def _failed(exc: OSError) -> SpillFailed:
    return SpillFailed(f"cannot keep the planned lead batches in the temporary directory "
                       f"{tempfile.gettempdir()} (set TMPDIR to another): "
                       f"{exc.strerror or type(exc).__name__}")


def _temporary_file(owner: object, prefix: str) -> IO[bytes]:
    """Open beyond this call: closed by `BatchSpill.close`, or when its owner is collected."""
    file = tempfile.TemporaryFile(prefix=prefix)  # noqa: SIM115
    weakref.finalize(owner, file.close)
    return file


class BatchSpill:
    """Lead batches on disk, written while planning (`keep`), read back in order (`batches`)."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._redigest_file: IO[bytes] | None = None
        self.count = 0
        self.redigest_count = 0
        self.closed = False

    def keep(self, events: Iterable[LeadEvent]) -> Iterator[LeadEvent]:
        """Pass the merge's events through, writing each batch (and each lead to record anew)
        down as it goes by."""
        for event in events:
            if isinstance(event, LeadBatch):
                self._write(self._write_down, event)
            elif isinstance(event, LeadRedigest):
                self._write(self._write_redigest, event)
            yield event

    @staticmethod
    def _write(write: Callable[[E], None], event: E) -> None:
        try:
            write(event)
        except OSError as exc:
            raise _failed(exc) from None

    def _write_redigest(self, lead: LeadRedigest) -> None:
        if self._redigest_file is None:
            self._redigest_file = _temporary_file(self, "reconciler-digests-")
        self._redigest_file.write(json.dumps([lead.key, lead.recorded, lead.digest]).encode()
                                  + b"\n")
        self.redigest_count += 1

    def _write_down(self, batch: LeadBatch) -> None:
        if self._file is None:    # made at the first batch: a no-change plan makes none
            self._file = _temporary_file(self, "reconciler-batches-")
        head = [batch.list_id, batch.seq, [key for key, _, _ in batch.items],
                [digest for _, _, digest in batch.items]]
        # Both lines are JSON (ASCII, no raw line break), so a line break ends each.
        self._file.write(json.dumps(head, separators=(",", ":")).encode() + b"\n"
                         + batch.multi_leads.encode() + b"\n")
        self.count += 1

    def batches(self) -> Iterator[LeadBatch]:
        """The batches, in the order they were planned; one in memory at a time."""
        if self.closed:
            raise ValueError("the lead batches were already sent: plan again")
        if self._file is None:
            return
        file = self._file
        try:
            file.flush()
            file.seek(0)
        except OSError as exc:
            raise _failed(exc) from None
        for _ in range(self.count):
            try:
                head, line = file.readline(), file.readline()
            except OSError as exc:
                raise _failed(exc) from None
            list_id, seq, keys, digests = json.loads(head)
            multi_leads = line.decode().rstrip("\n")
            leads = json.loads(multi_leads)
            yield LeadBatch(list_id, seq, tuple(zip(keys, leads, digests, strict=True)),
                            multi_leads)

    def redigests(self) -> Iterator[LeadRedigest]:
        """The leads to record anew with the digest of this version, in key order."""
        if self.closed:
            raise ValueError("the lead batches were already sent: plan again")
        file = self._redigest_file
        if file is None:
            return
        try:
            file.flush()
            file.seek(0)
            for line in file:
                yield LeadRedigest(*json.loads(line))
        except OSError as exc:
            raise _failed(exc) from None

    def close(self) -> None:
        """Remove the files. Reading is refused from now on."""
        self.closed = True
        for file in (self._file, self._redigest_file):
            if file is not None:
                file.close()
