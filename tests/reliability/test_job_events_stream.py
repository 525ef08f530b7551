"""The job events publisher under refused entries: the job table's stream delivered in batches as Lambda
delivers them (resuming a shard at the lowest record reported failed), EventBridge refusing entries at
random. Whatever is refused and however often, every status change is put at least once, and a job's
changes are first put in stream order; what comes again is a repeat with the same event id.
docs/events.md quotes the figures of `test_the_documented_figures`."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from batchgate.adapters.event_bus import EventBus
from batchgate.services.job_events import JobEventPublisher
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_job_events import job_changes

MAX_INVOCATIONS = 1000


class RandomlyRefusingEventBridge:
    """PutEvents refusing each entry with probability `rate`; remembers what it took, in order."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.meta = SimpleNamespace(region_name="us-east-1")
        self.rng = rng
        self.rate = rate
        self.accepted: list[dict[str, Any]] = []
        self.calls = 0

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        results = []
        for entry in Entries:
            if self.rng.random() < self.rate:
                results.append({"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"})
            else:
                self.accepted.append(json.loads(entry["Detail"]))
                results.append({"EventId": "e"})
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


@dataclass
class Figures:
    changes: int
    invocations: int = 0
    failed_invocations: int = 0
    put_calls: int = 0
    accepted: int = 0
    out_of_order: int = 0  # a job's event put after a later event of that job had first been put
    first_puts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def repeats(self) -> int:
        return self.accepted - self.changes


def deliver(records: list[dict[str, Any]], batch_size: int, rng: random.Random, rate: float) -> Figures:
    """Lambda's shard loop over the records, each batch through the publisher."""
    bus = RandomlyRefusingEventBridge(rng, rate)
    publisher = JobEventPublisher(EventBus("default", bus), retry_pauses=(0, 0), sleep=lambda _: None)  # type: ignore[arg-type]
    figures = Figures(changes=len(records))
    position = 0
    while position < len(records):
        figures.invocations += 1
        assert figures.invocations <= MAX_INVOCATIONS, "the stream never got through"
        batch = records[position : position + batch_size]
        outcome = publisher.publish(batch)
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        failed = [index for index, number in enumerate(sequence_numbers) if number in outcome.failed]
        if failed:
            figures.failed_invocations += 1
            position += min(failed)
        else:
            position += len(batch)
    figures.put_calls = bus.calls
    figures.accepted = len(bus.accepted)
    seen: set[str] = set()
    latest: dict[str, int] = {}
    for detail in bus.accepted:
        job_id, revision = detail["job_id"], detail["revision"]
        if revision < latest.get(job_id, 0):
            figures.out_of_order += 1
        latest[job_id] = max(revision, latest.get(job_id, 0))
        if detail["event_id"] not in seen:
            seen.add(detail["event_id"])
            figures.first_puts.setdefault(job_id, []).append(revision)
    assert len(seen) == len(records), "a status change was never put"
    return figures


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    jobs=st.integers(1, 12),
    changes=st.integers(1, 4),
    batch_size=st.integers(1, 30),
    rate=st.sampled_from([0.1, 0.3, 0.5]),
)
def test_every_change_is_put_and_a_jobs_first_puts_keep_stream_order(
    seed: int, jobs: int, changes: int, batch_size: int, rate: float
) -> None:
    figures = deliver(job_changes(jobs, changes), batch_size, random.Random(seed), rate)
    for revisions in figures.first_puts.values():
        assert revisions == sorted(revisions)
        assert len(revisions) == changes
    # A repeat is put before any newer event of its job: a job's events never go back in time.
    assert figures.out_of_order == 0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        # rate: (invocations, failed invocations, PutEvents calls, events put, repeats)
        (0.1, (2, 0, 36, 200, 0)),
        (0.3, (10, 9, 72, 255, 55)),
        (0.5, (35, 34, 118, 343, 143)),
    ],
)
def test_the_documented_figures(rate: float, expected: tuple[int, int, int, int, int]) -> None:
    """50 jobs x 4 status changes (200 records, the jobs interleaved), batches of 100, EventBridge
    refusing each entry it gets with probability `rate`, three puts per entry per invocation: the
    figures docs/events.md quotes (one seeded run each)."""
    figures = deliver(job_changes(50, 4), 100, random.Random(20261128), rate)
    assert all(revisions == [2, 3, 4, 5] for revisions in figures.first_puts.values())
    assert figures.out_of_order == 0
    found = (
        figures.invocations,
        figures.failed_invocations,
        figures.put_calls,
        figures.accepted,
        figures.repeats,
    )
    assert found == expected
