"""A scheduled run's time budget and its bounded concurrency: work on a thread pool, each unit started
only while the run's deadline has not passed. A unit started is finished (a job's read, ECS call and
conditional write are never cut in half); what is not started by the deadline is left for the next run
and handed back, so that the caller counts it.

boto3 clients are thread-safe (resources and sessions are not): the units share the caller's clients.
"""

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import NamedTuple


class Deadline(NamedTuple):
    """When a run stops starting work, on `monotonic`'s clock."""

    at: float
    monotonic: Callable[[], float] = time.monotonic

    @classmethod
    def within(cls, seconds: float, monotonic: Callable[[], float] = time.monotonic) -> "Deadline":
        return cls(monotonic() + seconds, monotonic)

    def passed(self) -> bool:
        return self.monotonic() >= self.at


class Done[ItemT, ResultT](NamedTuple):
    """The units that ran, with their results, in the items' order, and the items never started."""

    ran: list[tuple[ItemT, ResultT]]
    not_started: list[ItemT]


def each_before[ItemT, ResultT](
    executor: Executor, items: Iterable[ItemT], work: Callable[[ItemT], ResultT], deadline: Deadline
) -> Done[ItemT, ResultT]:
    """`work` of every item on the executor's threads, each started only before `deadline` (checked
    when a thread takes it up, so a unit waiting for a thread is not started late). `work` handles its
    own errors: one that raises fails the whole call."""
    skipped = object()

    def started(item: ItemT) -> ResultT | object:
        if deadline.passed():
            return skipped
        return work(item)

    submitted = [(item, executor.submit(started, item)) for item in items]
    ran: list[tuple[ItemT, ResultT]] = []
    not_started: list[ItemT] = []
    for item, future in submitted:
        result = future.result()
        if result is skipped:
            not_started.append(item)
        else:
            ran.append((item, result))  # type: ignore[arg-type]
    return Done(ran, not_started)
