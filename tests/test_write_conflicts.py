"""The pause after a lost conditional write: random, below a bound that doubles, capped."""

from __future__ import annotations

import pytest
from batchgate.adapters.write_conflicts import (
    FIRST_PAUSE_SECONDS,
    LONGEST_PAUSE_SECONDS,
    conflict_pause,
    tries_after_conflicts,
)


def test_the_bound_doubles_with_each_loss_up_to_the_longest_pause() -> None:
    bounds = [conflict_pause(lost, draw=lambda: 1.0) for lost in range(7)]
    assert bounds == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5])
    assert (FIRST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS) == (0.02, 0.5)


def test_the_pause_is_drawn_below_the_bound() -> None:
    assert conflict_pause(3, draw=lambda: 0.25) == pytest.approx(0.04)
    assert conflict_pause(3, draw=lambda: 0.0) == 0.0
    # Real draws: all below the bound, and not all the same (losers spread out).
    pauses = {conflict_pause(2) for _ in range(50)}
    assert all(0 <= pause < 0.08 for pause in pauses) and len(pauses) > 1


def test_tries_pause_before_each_retry_and_never_before_the_first_or_after_the_last() -> None:
    pauses: list[int] = []
    seen = []
    for number in tries_after_conflicts(4, pauses.append):
        seen.append((number, list(pauses)))
    assert seen == [(0, []), (1, [0]), (2, [0, 1]), (3, [0, 1, 2])]
    assert pauses == [0, 1, 2]

    pauses.clear()
    for _ in tries_after_conflicts(4, pauses.append):
        break  # the first write won
    assert pauses == []
