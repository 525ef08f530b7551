"""Relaunch messages are acted on only when they match the job's awaited attempt and its due time; a
deferred launch is recorded on its attempt, so the sweep leaves it alone and one job keeps one chain of
relaunch messages however long the throttling lasts. moto's RunTask never throttles: RunTask answers
are scripted (tests/test_fallback.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.backoff import MAX_DELAY_SECONDS
from batchgate.domain.jobs import Job, JobStatus, iso
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS
from batchgate.services.dispatch import Dispatcher, DispatchResult
from batchgate.services.launch_deferral import LaunchDeferral
from batchgate.services.launch_governor import LaunchGovernor
from batchgate.services.sweep import Sweeper

from tests.conftest import RecordingSqs, Stack
from tests.reliability.test_events_and_retries import retargeted, tracker
from tests.test_dispatch import PAYROLL, PAYROLL_JOB
from tests.test_fallback import (
    ATTENDANCE,
    ATTENDANCE_JOB,
    FAKE_EC2_TASK,
    JOBS_QUEUE,
    T0,
    deferring_to,
    dispatcher,
    stored,
    throttling,
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def deferring_by_half_minutes(sqs: Any) -> LaunchDeferral:
    """Back-off 30 s * 2**(deferral - 1): each due time well beyond the clocks' tolerance."""
    settings = DEFAULT_STRATEGY_SETTINGS._replace(backoff_base_seconds=30)
    return LaunchDeferral(JobsQueue(JOBS_QUEUE, sqs), settings, rand=lambda: 1.0)


def deferred_once(stack: Stack, script: list[Any]) -> tuple[Dispatcher, Any, RecordingSqs, Clock]:
    """The attendance job, its first launch throttled and put back (deferral 1, due 30 s later)."""
    clock, sqs = Clock(), RecordingSqs()
    dispatch, ecs = dispatcher(
        stack, [throttling(), *script], deferral=deferring_by_half_minutes(sqs), clock=clock
    )
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DEFERRED
    assert sqs.relaunches() == [(Relaunch(ATTENDANCE_JOB, 1, deferrals=1), 30)]
    return dispatch, ecs, sqs, clock


def launched(stack: Stack) -> bool:
    attempt = stored(stack, ATTENDANCE_JOB).attempt
    return attempt is not None and attempt.task_arn == FAKE_EC2_TASK


def test_a_forged_relaunch_before_the_due_time_launches_nothing_and_changes_nothing(stack: Stack) -> None:
    dispatch, ecs, sqs, clock = deferred_once(stack, ["ok"])
    before = stored(stack, ATTENDANCE_JOB)
    clock.advance(20)
    for forged in (Relaunch(ATTENDANCE_JOB, 1), Relaunch(ATTENDANCE_JOB, 1, deferrals=10_000)):
        assert dispatch.relaunch(forged.body()) is DispatchResult.DUPLICATE
    assert len(ecs.requests) == 1  # the throttled RunTask only
    assert stored(stack, ATTENDANCE_JOB) == before  # count, due time, revision untouched
    assert len(sqs.sent) == 1
    # The genuine relaunch, when it arrives after its delay, launches the job.
    clock.advance(10)
    assert dispatch.relaunch(sqs.sent[0]["MessageBody"]) is DispatchResult.DISPATCHED
    assert len(ecs.requests) == 2 and launched(stack)


def test_a_forged_deferral_count_neither_resets_nor_inflates_the_back_off(stack: Stack) -> None:
    dispatch, _, sqs, clock = deferred_once(stack, [throttling(), throttling(), throttling()])
    clock.advance(30)
    # Due now: a forged message acts as the genuine one would, with the attempt's count.
    for claimed in (0, 10_000):
        forged = json.dumps({"job_id": ATTENDANCE_JOB, "attempt": 1, "deferrals": claimed})
        assert dispatch.relaunch(forged) is DispatchResult.DEFERRED
        delay = sqs.relaunches()[-1][1]
        clock.advance(delay)
    assert [delay for _, delay in sqs.relaunches()] == [30, 60, 120]  # 30 s * 2**(deferral - 1)
    attempt = stored(stack, ATTENDANCE_JOB).attempt
    assert attempt is not None and attempt.deferrals == 3


def test_duplicates_of_the_genuine_relaunch_launch_once(stack: Stack) -> None:
    dispatch, ecs, sqs, clock = deferred_once(stack, ["ok", "ok"])
    clock.advance(30)
    body = sqs.sent[0]["MessageBody"]
    assert dispatch.relaunch(body) is DispatchResult.DISPATCHED
    assert dispatch.relaunch(body) is DispatchResult.DUPLICATE
    assert len(ecs.requests) == 2 and launched(stack)


def test_a_duplicate_of_an_earlier_deferral_arriving_before_the_latest_due_time_is_ignored(
    stack: Stack,
) -> None:
    dispatch, ecs, sqs, clock = deferred_once(stack, [throttling(), "ok"])
    clock.advance(30)
    first = sqs.sent[0]["MessageBody"]
    assert dispatch.relaunch(first) is DispatchResult.DEFERRED  # deferral 2, due 60 s later
    assert dispatch.relaunch(first) is DispatchResult.DUPLICATE  # SQS delivers the first one again
    clock.advance(60)
    assert dispatch.relaunch(sqs.sent[-1]["MessageBody"]) is DispatchResult.DISPATCHED
    assert len(ecs.requests) == 3 and len(sqs.sent) == 2


def test_a_forged_relaunch_cannot_skip_a_retrys_back_off(stack: Stack) -> None:
    clock, sqs = Clock(), RecordingSqs()
    dispatch = replace(stack.dispatcher(), clock=clock)
    assert dispatch.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job = stored(stack, PAYROLL_JOB)
    assert job.attempt is not None and job.attempt.task_arn is not None
    event = retargeted("task-stopped-spot-interruption.json", job.attempt.task_arn, 1)
    tracker(stack, sqs).track(event)
    [(retry, delay)] = sqs.relaunches()
    failed = stored(stack, PAYROLL_JOB)
    assert failed.status is JobStatus.RETRYING and failed.attempt is not None
    stopped_at = failed.updated_at
    assert failed.attempt.relaunch_due_at == iso(
        datetime.fromisoformat(stopped_at.replace("Z", "+00:00")) + timedelta(seconds=delay)
    )
    clock.now = datetime.fromisoformat(stopped_at.replace("Z", "+00:00"))
    assert dispatch.relaunch(retry.body()) is DispatchResult.DUPLICATE  # forged: before the back-off
    assert stored(stack, PAYROLL_JOB) == failed
    clock.advance(delay)
    assert dispatch.relaunch(retry.body()) is DispatchResult.DISPATCHED
    assert stored(stack, PAYROLL_JOB).attempt_number == 2


# The sweep and long deferrals.


@dataclass
class DelayedQueue:
    """An SQS client for the jobs queue: each message becomes visible after its DelaySeconds."""

    clock: Clock
    messages: list[tuple[datetime, str]] = field(default_factory=list)
    sent: int = 0

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.sent += 1
        visible = self.clock() + timedelta(seconds=int(request.get("DelaySeconds", 0)))
        self.messages.append((visible, request["MessageBody"]))
        return {"MessageId": f"m-{self.sent}"}

    def receive_visible(self) -> list[str]:
        now = self.clock()
        visible = [body for at, body in self.messages if at <= now]
        self.messages = [(at, body) for at, body in self.messages if at > now]
        return visible


def sweep_of(stack: Stack, ecs: Any, queue: DelayedQueue) -> Sweeper:
    return Sweeper(
        catalog=stack.catalog,
        table=stack.table,
        ecs=EcsTasks(stack.settings.cluster, ecs),
        jobs_queue=JobsQueue("https://sqs.example/jobs", queue),  # type: ignore[arg-type]
        clock=queue.clock,
    )


def test_throttling_that_outlasts_the_sweeps_grace_keeps_one_relaunch_chain(stack: Stack) -> None:
    """Every RunTask throttled for an hour, a sweep every 5 minutes. Before deferrals were recorded on
    the attempt (its `updated_at` never moved), each sweep after 600 s sent one more relaunch and every
    chain lived on: 1 message in flight grew to 7 over 6 sweeps, each hop making its own ListTasks
    calls. Now the sweep sees the pending relaunch and one message stays one."""
    clock = Clock()
    queue = DelayedQueue(clock)
    dispatch, ecs = dispatcher(
        stack, [throttling() for _ in range(500)], deferral=deferring_to(queue), clock=clock
    )
    sweeper = sweep_of(stack, ecs, queue)
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DEFERRED

    in_flight: list[int] = [len(queue.messages)]
    for minute in range(1, 37):  # sweeps at 11, 16, ..., 36 min: six after the 600 s grace
        clock.advance(60)
        for body in queue.receive_visible():
            dispatch.relaunch(body)
        if minute >= 11 and minute % 5 == 1:
            sweeper.sweep()
            in_flight.append(len(queue.messages))
    assert in_flight == [1] * 7, f"relaunch messages in flight after each sweep: {in_flight}"
    job = stored(stack, ATTENDANCE_JOB)
    assert job.status is JobStatus.DISPATCHING and job.attempt is not None
    assert job.attempt.deferrals == len(ecs.requests)  # one RunTask per hop, every hop counted


def test_the_sweep_relaunches_a_deferred_launch_only_once_its_due_time_is_well_past(stack: Stack) -> None:
    clock = Clock()
    queue = DelayedQueue(clock)
    dispatch, ecs = dispatcher(stack, [throttling(), "ok"], deferral=deferring_to(queue), clock=clock)
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DEFERRED
    queue.messages.clear()  # the relaunch is lost
    sweeper = sweep_of(stack, ecs, queue)
    clock.advance(600)  # created long enough ago to be read; due 2 s after T0, grace 600 s
    assert sweeper.sweep().relaunched == 0
    clock.advance(3)
    assert sweeper.sweep().relaunched == 1
    [(_, body)] = queue.messages
    assert Relaunch.parse(body) == Relaunch(ATTENDANCE_JOB, 1)
    assert dispatch.relaunch(body) is DispatchResult.DISPATCHED
    attempt = stored(stack, ATTENDANCE_JOB).attempt
    assert attempt is not None and attempt.deferrals == 1 and attempt.task_arn is not None


def test_the_sweep_resends_a_lost_retry_from_its_due_time(stack: Stack) -> None:
    clock, lost = Clock(), RecordingSqs()
    dispatch = replace(stack.dispatcher(), clock=clock)
    assert dispatch.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job: Job | None = stored(stack, PAYROLL_JOB)
    assert job is not None and job.attempt is not None and job.attempt.task_arn is not None
    tracker(stack, lost).track(retargeted("task-stopped-spot-interruption.json", job.attempt.task_arn, 1))
    [(_, delay)] = lost.relaunches()
    job = stored(stack, PAYROLL_JOB)
    assert job.attempt is not None and job.attempt.relaunch_due_at is not None
    due = datetime.fromisoformat(job.attempt.relaunch_due_at.replace("Z", "+00:00"))
    queue = DelayedQueue(clock)
    sweeper = sweep_of(stack, stack.ecs_client, queue)
    # Read once the longest back-off and the grace have passed since its creation, as before.
    clock.now = max(due, T0 + timedelta(seconds=MAX_DELAY_SECONDS)) + timedelta(seconds=301)
    assert sweeper.sweep().relaunched == 1
    assert [Relaunch.parse(body) for _, body in queue.messages] == [Relaunch(PAYROLL_JOB, 2)]
    assert delay > 0


def test_a_resumed_launch_the_governor_puts_back_makes_no_ecs_call(stack: Stack) -> None:
    clock, sqs = Clock(), RecordingSqs()
    governor = LaunchGovernor(
        calls_per_second=0.001, fargate_per_second=1, fargate_burst=1, max_wait=0.5, clock=lambda: 0.0
    )
    assert governor.admit("EC2").admitted  # the only RunTask token for a long while
    dispatch, ecs = dispatcher(
        stack, [], deferral=deferring_by_half_minutes(sqs), clock=clock, governor=governor
    )
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DEFERRED
    listings: list[str] = []
    paginator = stack.ecs_client.get_paginator

    def get_paginator(name: str) -> Any:
        listings.append(name)
        return paginator(name)

    ecs.get_paginator = get_paginator  # type: ignore[attr-defined]
    for _ in range(3):
        clock.advance(sqs.relaunches()[-1][1])
        assert dispatch.relaunch(sqs.sent[-1]["MessageBody"]) is DispatchResult.DEFERRED
    assert listings == [] and ecs.requests == []  # no ListTasks, no RunTask: only the deferrals
    attempt = stored(stack, ATTENDANCE_JOB).attempt
    assert attempt is not None and attempt.deferrals == 4
