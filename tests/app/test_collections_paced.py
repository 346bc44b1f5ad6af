"""The lead merge is read with fewer garbage collections, and the usual pace always comes back."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from reconciler.app.collections_paced import LEAD_PACE, paced


def seen_pace(count: int) -> Iterator[int]:
    for _ in range(count):
        yield gc.get_threshold()[0]


def test_collections_are_paced_only_while_a_merge_is_read() -> None:
    usual = gc.get_threshold()
    assert list(paced(seen_pace(3))) == [max(LEAD_PACE, usual[0])] * 3
    assert gc.get_threshold() == usual


def test_the_usual_pace_comes_back_when_a_merge_is_left_early_or_fails() -> None:
    usual = gc.get_threshold()
    events = paced(seen_pace(3))
    next(events)
    events.close()
    assert gc.get_threshold() == usual

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("the CRM went away")

    with pytest.raises(ValueError, match="went away"):
        list(paced(failing()))
    assert gc.get_threshold() == usual


def test_two_merges_read_in_turn_keep_the_pace_until_both_end() -> None:
    usual = gc.get_threshold()
    plan, apply = paced(seen_pace(2)), paced(seen_pace(2))
    next(plan)
    next(apply)
    assert list(plan) == [max(LEAD_PACE, usual[0])]       # the plan ends first
    assert gc.get_threshold()[0] == max(LEAD_PACE, usual[0])
    assert list(apply) == [max(LEAD_PACE, usual[0])]
    assert gc.get_threshold() == usual
