"""History: the latency sketch, and the history table adapter (batchgate.services.history_feed feeds it: see
tests/test_history_feed.py)."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.job_table import ConcurrentUpdateError
from batchgate.domain.latency_sketch import (
    GROWTH,
    AttemptObservation,
    LatencySketch,
    StrategyHistory,
    bucket_of,
)
from batchgate.ops.stats import percentile
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Stack, create_history_table

HISTORY_TABLE = "batchgate-test-history"
DAY = 86400.0
# Relative error of a percentile read from the sketch: half a bucket's width, plus rank rounding.
TOLERANCE = GROWTH - 1


# The sketch, pure.


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.2, 50_000), min_size=20, max_size=300))
def test_sketch_percentiles_are_within_a_bucket_of_the_exact_ones(values: list[float]) -> None:
    sketch = LatencySketch()
    for value in values:
        sketch = sketch.add(value)
    ordered = sorted(values)
    for fraction in (0.5, 0.95):
        estimate = sketch.quantile(fraction)
        assert estimate is not None
        # The sketch answers with a value of the bucket holding the rank-ceil(fraction * n) value.
        exact = ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]
        assert bucket_of(estimate) == bucket_of(exact) or abs(estimate - exact) <= exact * TOLERANCE


def test_sketch_stays_small_and_old_runs_fade() -> None:
    history = StrategyHistory("payroll-calculation", "FARGATE")
    for day in range(30):
        for _ in range(20):
            history = history.observe(
                AttemptObservation("FARGATE", succeeded=day >= 20, run_seconds=100 if day < 20 else 1000),
                now=day * DAY,
                half_life=2 * DAY,
            )
    summary = history.summary()
    assert history.observed == 600
    # Ten days of 1000 s runs after twenty of 100 s runs: the recent ones decide, the old ones faded.
    assert summary.run_p50 == pytest.approx(1000, rel=TOLERANCE)
    assert summary.success_rate is not None and summary.success_rate > 0.95
    assert len(history.sketch("run").buckets) <= 2
    assert summary.attempts < 100  # decayed weight (about 20 a day over a 2-day half-life), not 600


def test_empty_history_has_no_percentiles() -> None:
    summary = StrategyHistory("b", "EC2").summary()
    figures = (summary.attempts, summary.success_rate, summary.run_p95, summary.start_p50)
    assert figures == (0, None, None, None)


# The history table, on the moto stack.


@pytest.fixture
def history(stack: Stack) -> HistoryTable:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    return HistoryTable(HISTORY_TABLE, client)


class LosingClient:
    """The history table's client, with another writer recording an attempt of the same pair between
    each of our first `losses` reads and our write."""

    def __init__(self, client: Any, other: HistoryTable, losses: int) -> None:
        self._client = client
        self._other = other
        self.losses = losses

    def get_item(self, **request: Any) -> Any:
        response = self._client.get_item(**request)
        if self.losses:
            self.losses -= 1
            self._other.record("payroll-calculation", AttemptObservation("FARGATE", succeeded=False))
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def losing_history(losses: int) -> tuple[HistoryTable, list[int]]:
    """A history table whose first `losses` writes lose to another writer, and the pauses it makes."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    pauses: list[int] = []
    losing = LosingClient(client, HistoryTable(HISTORY_TABLE, client), losses)
    return HistoryTable(HISTORY_TABLE, losing, pause=pauses.append), pauses  # type: ignore[arg-type]


def stored_history() -> tuple[StrategyHistory, int]:
    """The pair's history as stored, read past the losing client (whose reads let others write)."""
    return HistoryTable(HISTORY_TABLE, boto3.client("dynamodb", region_name="us-east-1")).get(
        "payroll-calculation", "FARGATE"
    )


def test_a_record_that_loses_to_other_writers_pauses_and_reads_again(stack: Stack) -> None:
    history, pauses = losing_history(losses=3)

    history.record("payroll-calculation", AttemptObservation("FARGATE", succeeded=True))

    assert pauses == [0, 1, 2]  # one pause after each lost write, the bound growing each time
    stored, version = stored_history()
    # The three other writers' attempts and ours: none lost.
    assert (stored.observed, stored.successes, version) == (4, 1, 4)


def test_a_record_that_keeps_losing_gives_up_after_its_tries(stack: Stack) -> None:
    history, pauses = losing_history(losses=10)

    with pytest.raises(ConcurrentUpdateError, match="history payroll-calculation/FARGATE"):
        history.record("payroll-calculation", AttemptObservation("FARGATE", succeeded=True), tries=4)

    assert pauses == [0, 1, 2]  # no pause after the last try: the caller gets the error at once
    stored, _ = stored_history()
    assert (stored.observed, stored.successes) == (4, 0)


class RetriedPutClient:
    """The history table's client, whose first PutItem lands but whose response is lost: it is sent again,
    as the SDK retries a request that timed out, and the repeat fails its condition on the version."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.puts = 0

    def put_item(self, **request: Any) -> Any:
        self.puts += 1
        if self.puts == 1:
            self._client.put_item(**request)
        return self._client.put_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize(("fold_key", "observed"), [("bg-payroll-1#1", 1), (None, 2)])
def test_a_write_retried_after_it_landed_folds_the_attempt_once(
    stack: Stack, fold_key: str | None, observed: int
) -> None:
    """With its fold key, the attempt is found as the item's last fold after the retry's conflict; without
    one (what the key is for), the retry's conflict read folds it a second time."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    retried = RetriedPutClient(client)
    history = HistoryTable(HISTORY_TABLE, retried, pause=lambda _: None)  # type: ignore[arg-type]

    history.record("payroll-calculation", AttemptObservation("FARGATE", succeeded=True), fold_key=fold_key)

    stored, version = stored_history()
    assert (stored.observed, version) == (observed, observed)
    # Another attempt of the pair is folded as usual after it.
    history.record(
        "payroll-calculation", AttemptObservation("FARGATE", succeeded=True), fold_key="bg-payroll-2#1"
    )
    assert stored_history()[0].observed == observed + 1


def test_summaries_are_cached_per_batch(stack: Stack) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    now = [0.0]
    table = HistoryTable(HISTORY_TABLE, client, cache_seconds=60, clock=lambda: now[0])
    assert table.summaries("payroll-calculation") == {}
    table.record("payroll-calculation", AttemptObservation("EC2", succeeded=True, start_seconds=9))
    assert table.summaries("payroll-calculation") == {}  # still the cached read
    now[0] = 61
    assert table.summaries("payroll-calculation")["EC2"].start_p50 == pytest.approx(9, rel=TOLERANCE)


def test_concurrent_callers_on_a_cold_cache_make_one_query(stack: Stack) -> None:
    """A cold dispatch container plans a batch of jobs on several threads at once: one Query."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    table = HistoryTable(HISTORY_TABLE, client, cache_seconds=60)
    table.record("payroll-calculation", AttemptObservation("EC2", succeeded=True, start_seconds=9))
    queries: list[str] = []

    def slow_query(**_: Any) -> None:
        queries.append("Query")
        time.sleep(0.05)  # long enough for every thread to arrive while it runs

    client.meta.events.register("before-call.dynamodb.Query", slow_query)
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda _: table.summaries("payroll-calculation"), range(8)))

    assert queries == ["Query"]
    assert all(summaries["EC2"].observed == 1 for summaries in seen)


def test_stats_percentile_agrees_with_the_sketch_on_a_known_sample() -> None:
    values = [float(v) for v in range(1, 101)]
    sketch = LatencySketch()
    for value in values:
        sketch = sketch.add(value)
    exact = percentile(values, 0.95)
    assert exact is not None
    assert sketch.quantile(0.95) == pytest.approx(exact, rel=TOLERANCE)
