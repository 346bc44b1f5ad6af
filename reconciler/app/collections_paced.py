"""Fewer garbage collections while the lead merge runs.

The merge reads a million rows a few thousand at a time; each chunk is a few thousand fresh
tuples, and the interpreter's default pace (a young-generation collection every 700 new
objects) spends about a sixth of a no-change plan collecting objects that are freed anyway as
soon as their chunk is done. While any merge runs, collections come every LEAD_PACE new objects
instead; memory stays bounded (the chunks are freed by reference counting, not by the
collector) and the usual pace is back as soon as the last merge ends, however it ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

LEAD_PACE = 10_000

_lock = threading.Lock()
_running = 0
_usual: tuple[int, ...] = ()


def paced(events: Iterable[T]) -> Iterator[T]:
    """`events`, collected at LEAD_PACE while they are being read."""
    _begin()
    try:
        yield from events
    finally:
        _end()


def _begin() -> None:
    global _running, _usual
    with _lock:
        if _running == 0:
            _usual = gc.get_threshold()
            gc.set_threshold(max(LEAD_PACE, _usual[0]), *_usual[1:])
        _running += 1


def _end() -> None:
    global _running
    with _lock:
        _running -= 1
        if _running == 0:
            gc.set_threshold(*_usual)
