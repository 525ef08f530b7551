"""The launch-rate governor's token buckets and the back-off of a throttled record, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.domain.strategy_settings import StrategySettings
from batchgate.services.launch_governor import LaunchGovernor, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=100, clock=clock)
    for _ in range(100):
        assert bucket.wait_time() == 0
        bucket.take()
    assert bucket.wait_time() == pytest.approx(1 / 20)
    clock.now += 0.5
    assert bucket.tokens == pytest.approx(10)
    clock.now += 3600
    assert bucket.tokens == 100  # never above the burst


def test_governor_waits_briefly_then_defers_instead_of_waiting_long() -> None:
    clock = FakeClock()
    # Sleeping does not move this clock: as if every admission came from another thread at once.
    governor = LaunchGovernor(
        calls_per_second=10,
        fargate_per_second=4,
        fargate_burst=4,
        max_wait=1.0,
        clock=clock,
        sleep=clock.slept.append,
    )
    admitted = [governor.admit("FARGATE") for _ in range(4)]
    assert all(a.admitted and a.waited == 0 for a in admitted)
    # The fifth Fargate launch waits a quarter second for a token; the call bucket is not the limit.
    fifth = governor.admit("FARGATE")
    assert fifth.admitted and fifth.waited == pytest.approx(0.25) and clock.slept == [pytest.approx(0.25)]
    # Reservations pile up: once the wait would exceed max_wait the launch is deferred, nothing taken.
    waits = [governor.admit("FARGATE") for _ in range(3)]
    assert [w.waited for w in waits] == [pytest.approx(0.5), pytest.approx(0.75), pytest.approx(1.0)]
    deferred = governor.admit("FARGATE")
    assert not deferred.admitted and deferred.retry_after > 1.0
    # Spot has its own bucket and EC2 needs no Fargate launch at all: only the call rate applies.
    clock.now += 0.2  # the call bucket (10/s) refills
    assert governor.admit("FARGATE_SPOT").admitted
    assert governor.admit("EC2").admitted


def test_governor_takes_its_share_of_the_account_limits() -> None:
    clock = FakeClock()
    governor = LaunchGovernor.for_settings(StrategySettings(), containers=5, clock=clock, sleep=clock.sleep)
    # 100 burst / 5 containers = 20 launches at once, then 20/s / 5 = 4 per second.
    results = [governor.admit("FARGATE") for _ in range(20)]
    assert all(r.admitted for r in results)
    assert sum(clock.slept) == pytest.approx(16 / 4, rel=0.01)  # the call bucket (4/s, burst 4) paced them


def test_other_ecs_calls_are_paced_by_their_own_share_without_a_limit_on_the_wait() -> None:
    clock = FakeClock()
    # 20 calls/s shared by 3 dispatch containers and the sweep: 5/s each, burst 5.
    governor = LaunchGovernor.for_settings(StrategySettings(), containers=3, clock=clock, sleep=clock.sleep)
    waits = [governor.pace() for _ in range(10)]
    assert waits[:5] == [0.0] * 5
    assert sum(waits) == pytest.approx(5 / 5)  # the next five wait for the refill, however long it takes
    # RunTask's own bucket is untouched by them.
    assert governor.admit("EC2").admitted and governor.admit("EC2").waited == 0


def test_ecs_adapter_paces_every_call_but_run_task() -> None:
    paced: list[str] = []

    class Client:
        def get_paginator(self, name: str) -> Any:
            paced.append(f"paginator {name}")
            return self

        def paginate(self, **request: Any) -> list[dict[str, Any]]:
            return [{"taskArns": []}]

        def describe_tasks(self, **request: Any) -> dict[str, Any]:
            paced.append("DescribeTasks")
            return {"tasks": []}

        def stop_task(self, **request: Any) -> dict[str, Any]:
            paced.append("StopTask")
            return {}

    ecs = EcsTasks("cluster", Client(), pace=lambda: paced.append("pace"))  # type: ignore[arg-type]
    ecs.tasks_started_by("bg-job")
    ecs.describe_tasks(["arn"])
    ecs.stop_task("arn", "why")
    assert paced == ["paginator list_tasks", "pace", "pace", "pace", "DescribeTasks", "pace", "StopTask"]
