"""How a sweep run is shaped: timeouts first, a deadline that leaves the rest for the next run, and
its AWS calls made at once on a bounded pool (the benchmark of the same code at scale:
bench/sweep_scale.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import Attempt, JobStatus, iso, job_id_for
from batchgate.services.sweep import Sweeper, SweepSettings

from tests.conftest import LambdaContextStub, Stack, event_fixture
from tests.reliability.conftest import FaultyClient, RecordingSqs
from tests.reliability.test_events_and_retries import retargeted
from tests.reliability.test_sweep import T0, DescribedEcs, as_described, sweeper
from tests.test_jobs import make_job

PAYROLL_TIMEOUT_MINUTES = 30


def running(stack: Stack, key: str, *, created_minutes: int, started_minutes: int, idle_seconds: int) -> str:
    """A payroll job created `created_minutes` before T0, its task RUNNING since `started_minutes`
    before T0, its last change `idle_seconds` before T0."""
    started = iso(T0 - timedelta(minutes=started_minutes))
    attempt = Attempt(
        number=1,
        strategy="FARGATE",
        capacity_provider="FARGATE",
        dispatched_at=started,
        task_arn=task_arn(key),
        last_status="RUNNING",
        event_version=3,
        timeline={"created": started, "started": started},
    )
    job = make_job(
        job_id=job_id_for("payroll-calculation", key),
        status=JobStatus.RUNNING,
        created_at=iso(T0 - timedelta(minutes=created_minutes)),
        updated_at=iso(T0 - timedelta(seconds=idle_seconds)),
        attempts=(attempt,),
    )
    assert stack.table.create(job) is not None
    return job.job_id


def task_arn(key: str) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/{key}"


def submitted_long_ago(stack: Stack, key: str) -> str:
    """A job SUBMITTED an hour before T0 whose launch never happened (its message lost)."""
    at = iso(T0 - timedelta(minutes=60))
    job = make_job(job_id=job_id_for("payroll-calculation", key), created_at=at, updated_at=at)
    assert stack.table.create(job) is not None
    return job.job_id


def stopped_in_ecs(client: DescribedEcs, key: str, job_id: str) -> None:
    """ECS says the job's task stopped (exit 0); its STOPPED event was missed."""
    described = as_described("task-stopped-exit-0.json", task_arn(key))
    event = retargeted("task-stopped-exit-0.json", task_arn(key), 1, job_id)
    described.update(startedBy=job_id, overrides=event["detail"]["overrides"])
    client.described[task_arn(key)] = described


def status(stack: Stack, job_id: str) -> JobStatus:
    job = stack.table.get(job_id)
    assert job is not None
    return job.status


class Trail:
    """What the sweep did, in the order it did it, from every thread: StopTask, job writes (with the
    status written) and relaunch messages."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, kind: str, what: str) -> None:
        with self._lock:
            self.steps.append((kind, what))


class TrailTable(FaultyClient):
    def __init__(self, client: Any, trail: Trail) -> None:
        super().__init__(client)
        self.trail = trail

    def put_item(self, **request: Any) -> Any:
        response = self._client.put_item(**request)
        self.trail.add("write", request["Item"]["status"]["S"])
        return response


class TrailEcs(DescribedEcs):
    """ECS whose StopTask is on the trail, advances `ticks` (the sweep's monotonic clock) by
    `stop_seconds`, and takes `stop_latency` of real time; the most StopTask calls in flight at once."""

    def __init__(
        self, client: Any, trail: Trail, stop_seconds: float = 0.0, stop_latency: float = 0.0
    ) -> None:
        super().__init__(client)
        self.trail = trail
        self.ticks = 0.0
        self.stop_seconds = stop_seconds
        self.stop_latency = stop_latency
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def stop_task(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.stop_latency)
        with self._lock:
            self.in_flight -= 1
            self.ticks += self.stop_seconds
        self.trail.add("stop", request["task"])
        return super().stop_task(**request)


class TrailSqs(RecordingSqs):
    def __init__(self, trail: Trail) -> None:
        super().__init__()
        self.trail = trail

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.trail.add("relaunch", request["MessageBody"])
        return super().send_message(**request)


def traced(stack: Stack, ecs: TrailEcs, sqs: TrailSqs, **settings: Any) -> Sweeper:
    table = JobTable(stack.settings.table_name, TrailTable(boto3.client("dynamodb"), ecs.trail))  # type: ignore[arg-type]
    return replace(
        sweeper(stack, ecs, sqs, 0, SweepSettings(**settings)), table=table, monotonic=lambda: ecs.ticks
    )


@pytest.fixture
def trail() -> Trail:
    return Trail()


def mixed_jobs(stack: Stack, client: DescribedEcs, overdue: int) -> tuple[list[str], list[str], str]:
    """`overdue` jobs past payroll's timeout (oldest first), two jobs whose STOPPED event was missed
    (created before all of them: read first), and a lost launch (read last)."""
    stale = []
    for number in range(2):
        key = f"stale-{number}"
        stale.append(running(stack, key, created_minutes=900 + number, started_minutes=10, idle_seconds=400))
        stopped_in_ecs(client, key, stale[-1])
    late = [
        running(
            stack,
            f"overdue-{number}",
            created_minutes=600 - number,
            started_minutes=600 - number,
            idle_seconds=30,
        )
        for number in range(overdue)
    ]
    return late, stale, submitted_long_ago(stack, "lost")


def test_every_timeout_is_enforced_before_anything_is_reconciled(stack: Stack, trail: Trail) -> None:
    ecs, sqs = TrailEcs(stack.ecs_client, trail), TrailSqs(trail)
    _, stale, lost = mixed_jobs(stack, ecs, overdue=3)
    report = traced(stack, ecs, sqs, concurrency=4).sweep()
    assert (report.timed_out, report.reconciled, report.relaunched, report.deferred) == (3, 2, 1, 0)
    timeouts = {("stop", task_arn(f"overdue-{number}")) for number in range(3)} | {("write", "TIMED_OUT")}
    first_other = next(index for index, step in enumerate(trail.steps) if step not in timeouts)
    assert all(step in timeouts for step in trail.steps[:first_other])
    assert len(trail.steps[:first_other]) == 6  # three StopTask calls, three TIMED_OUT writes
    rest = [
        ("relaunch", "lost") if kind == "relaunch" and lost in what else (kind, what)
        for kind, what in trail.steps[first_other:]
    ]
    assert sorted(rest) == [("relaunch", "lost"), ("write", "SUCCEEDED"), ("write", "SUCCEEDED")]
    for job_id in stale:
        job = stack.table.get(job_id)
        assert job is not None and job.status is JobStatus.SUCCEEDED


def test_the_deadline_stops_the_run_and_the_next_run_takes_up_what_was_left(
    stack: Stack, trail: Trail
) -> None:
    ecs, sqs = TrailEcs(stack.ecs_client, trail, stop_seconds=10), TrailSqs(trail)
    overdue, stale, lost = mixed_jobs(stack, ecs, overdue=5)
    # One thread, each StopTask 10 s on the run's clock, 25 s to start work: three timeouts are started
    # (at 0, 10 and 20 s), the oldest three; nothing else is.
    report = traced(stack, ecs, sqs, concurrency=1, run_seconds=25).sweep()
    assert (report.examined, report.timed_out, report.reconciled, report.relaunched) == (8, 3, 0, 0)
    assert report.deferred == 5 and report.to_dict()["deferred"] == 5
    assert [arn for kind, arn in trail.steps if kind == "stop"] == [
        task_arn(f"overdue-{n}") for n in range(3)
    ]
    assert sqs.sent == []
    assert [status(stack, job_id) for job_id in overdue] == [JobStatus.TIMED_OUT] * 3 + [
        JobStatus.RUNNING
    ] * 2
    assert [status(stack, job_id) for job_id in stale] == [JobStatus.RUNNING] * 2
    # The next run has its own budget: the last two timeouts, then the rest.
    again = traced(stack, ecs, sqs, concurrency=1, run_seconds=25).sweep()
    assert (again.examined, again.timed_out, again.reconciled, again.relaunched, again.deferred) == (
        5,
        2,
        2,
        1,
        0,
    )
    assert len(sqs.sent) == 1 and lost in sqs.sent[0]["MessageBody"]


def test_a_run_with_no_time_left_starts_nothing(stack: Stack, trail: Trail) -> None:
    ecs, sqs = TrailEcs(stack.ecs_client, trail), TrailSqs(trail)
    mixed_jobs(stack, ecs, overdue=2)
    report = traced(stack, ecs, sqs, run_seconds=0).sweep()
    assert (report.examined, report.deferred, report.timed_out) == (5, 5, 0)
    assert trail.steps == [] and ecs.calls["describe_tasks"] == 0


def test_the_budget_is_the_invocations_remaining_time_less_the_margin_at_most_run_seconds(
    stack: Stack,
) -> None:
    sweep = sweeper(stack, DescribedEcs(stack.ecs_client), RecordingSqs(), 0)
    assert sweep.settings.deadline_margin_seconds == 10 and sweep.settings.run_seconds == 50
    assert sweep.budget_seconds(None) == 50
    assert sweep.budget_seconds(120) == 50
    assert sweep.budget_seconds(30) == 20
    assert sweep.budget_seconds(4) == 0


def test_the_handler_bounds_the_run_by_the_invocations_remaining_time(
    stack: Stack, load_handler: Any
) -> None:
    overdue = running(stack, "overdue", created_minutes=600, started_minutes=600, idle_seconds=30)
    app: ModuleType = load_handler("sweep")
    result = app.handler(event_fixture("sweep-schedule.json"), LambdaContextStub(remaining_millis=9_000))
    assert (result["examined"], result["timed_out"], result["deferred"]) == (1, 0, 1)
    job = stack.table.get(overdue)
    assert job is not None and job.status is JobStatus.RUNNING


def test_jobs_are_handled_at_once_up_to_the_concurrency(stack: Stack, trail: Trail) -> None:
    for number in range(8):
        running(stack, f"overdue-{number}", created_minutes=600, started_minutes=600, idle_seconds=30)
    ecs = TrailEcs(stack.ecs_client, trail, stop_latency=0.05)
    report = traced(stack, ecs, TrailSqs(trail), concurrency=4).sweep()
    assert report.timed_out == 8 and 2 <= ecs.most_in_flight <= 4


def test_one_thread_handles_one_job_at_a_time(stack: Stack, trail: Trail) -> None:
    for number in range(3):
        running(stack, f"overdue-{number}", created_minutes=600, started_minutes=600, idle_seconds=30)
    ecs = TrailEcs(stack.ecs_client, trail, stop_latency=0.02)
    assert traced(stack, ecs, TrailSqs(trail), concurrency=1).sweep().timed_out == 3
    assert ecs.most_in_flight == 1
