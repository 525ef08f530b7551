"""What a conditional write does after losing to another writer: wait a random, growing pause, then
read again. Writers that lost together would otherwise read again together and lose together again:
on a busy item (a batch's history when many of its jobs stop at once) immediate retries let about one
writer through per round, and the rest run out of tries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

FIRST_PAUSE_SECONDS = 0.02
LONGEST_PAUSE_SECONDS = 0.5


def conflict_pause(lost: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait after losing `lost + 1` times in a row: uniform below a bound that starts at
    FIRST_PAUSE_SECONDS and doubles with each loss, up to LONGEST_PAUSE_SECONDS ("full jitter")."""
    return draw() * min(LONGEST_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2.0**lost)


def pause_after_conflict(lost: int) -> None:
    time.sleep(conflict_pause(lost))


def tries_after_conflicts(tries: int, pause: Callable[[int], None] = pause_after_conflict) -> Iterator[int]:
    """The numbers of an optimistic write's tries, pausing before each one after the first: a loop
    over them returns on success and goes round only when its write lost."""
    for lost in range(tries):
        if lost:
            pause(lost - 1)
        yield lost
