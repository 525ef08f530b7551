"""A run's deadline and its bounded concurrency (batchgate.services.run_budget)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from batchgate.services.run_budget import Deadline, each_before


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_passes_its_seconds_after_it_is_set() -> None:
    ticks = Ticks()
    deadline = Deadline.within(5, ticks)
    ticks.now += 4.9
    assert not deadline.passed()
    ticks.now += 0.1
    assert deadline.passed()
    assert Deadline.within(0, ticks).passed()


def test_units_start_only_before_the_deadline_and_the_rest_is_handed_back_in_order() -> None:
    ticks = Ticks()
    deadline = Deadline.within(25, ticks)

    def work(item: int) -> str:
        ticks.now += 10  # each unit takes 10 s of the run's clock
        return f"done {item}"

    with ThreadPoolExecutor(1) as pool:
        done = each_before(pool, range(6), work, deadline)
    assert done.ran == [(0, "done 0"), (1, "done 1"), (2, "done 2")]
    assert done.not_started == [3, 4, 5]


def test_every_unit_runs_when_the_deadline_is_far() -> None:
    with ThreadPoolExecutor(4) as pool:
        done = each_before(pool, range(20), lambda item: item * 2, Deadline.within(3600))
    assert done.ran == [(item, item * 2) for item in range(20)] and done.not_started == []
