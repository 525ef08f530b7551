"""Invariant 2 over retries: any duplication and order of a job's task events, across a failed attempt and
its retry, gives the same job; and the retry itself, end to end through track, SQS and dispatch."""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import ModuleType
from typing import Any

from batchgate.adapters.ecs import LaunchOutcome
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import Job, JobStatus, LaunchPlan, client_token
from batchgate.domain.relaunch import KIND_ATTRIBUTE, RETRY_KIND, Relaunch
from batchgate.domain.task_events import TaskStateChange, apply_task_event
from batchgate.services.dispatch import DispatchResult, begin_attempt, record_task
from batchgate.services.track import Tracker
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import LambdaContextStub, Stack, event_fixture
from tests.reliability.conftest import (
    TALLY,
    RecordingSqs,
    Tally,
    assert_one_task_per_attempt,
    tasks_by_attempt,
)
from tests.test_dispatch import PAYROLL, PAYROLL_JOB, RecordingEcs
from tests.test_jobs import make_job

CATALOG_SPEC_NAME = "payroll-calculation"
TASK_1 = "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/11111111111111111111111111111111"
TASK_2 = "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/22222222222222222222222222222222"
STARTING = ["task-provisioning.json", "task-pending.json", "task-running.json"]


def retargeted(name: str, task_arn: str, attempt: int, job_id: str = PAYROLL_JOB) -> dict[str, Any]:
    """A sample event for another task, attempt and job."""
    event = copy.deepcopy(event_fixture(name))
    detail = event["detail"]
    detail["taskArn"] = task_arn
    detail["startedBy"] = job_id
    for container in detail.get("containers", []):
        container["taskArn"] = task_arn
    for override in detail["overrides"]["containerOverrides"]:
        for variable in override["environment"]:
            if variable["name"] == "BATCHGATE_ATTEMPT":
                variable["value"] = str(attempt)
            if variable["name"] == "BATCHGATE_JOB_ID":
                variable["value"] = job_id
    return event


ATTEMPT_1 = [retargeted(name, TASK_1, 1) for name in [*STARTING, "task-stopped-spot-interruption.json"]]
ATTEMPT_2 = [retargeted(name, TASK_2, 2) for name in [*STARTING, "task-stopped-exit-0.json"]]
ALL_1 = list(range(len(ATTEMPT_1)))
ALL_2 = list(range(len(ATTEMPT_2)))


def spec() -> Any:
    from batchgate.domain.catalog import load_catalog

    return load_catalog().batches[CATALOG_SPEC_NAME]


SPEC = spec()


def replay(job: Job, events: list[dict[str, Any]]) -> Job:
    for event in events:
        change = TaskStateChange.from_event(event)
        job = apply_task_event(job, change, SPEC.container, None, SPEC) or job
    return job


def first_attempt_job() -> Job:
    plan = LaunchPlan("FARGATE_SPOT", "FARGATE_SPOT", "catalog default")
    job = begin_attempt(make_job(job_id=PAYROLL_JOB), plan, "2026-11-28T10:00:00.000Z")
    assert job is not None
    return record_task(job, 1, TASK_1, LaunchOutcome(TASK_1), "2026-11-28T10:00:00.100Z") or job


def second_attempt(job: Job) -> Job:
    plan = LaunchPlan("FARGATE", "FARGATE", "after a Spot interruption")
    begun = begin_attempt(job, plan, "2026-11-28T10:20:00.000Z", 2)
    assert begun is not None and begun.status is JobStatus.DISPATCHING
    return record_task(begun, 2, TASK_2, LaunchOutcome(TASK_2), "2026-11-28T10:20:00.100Z") or begun


EXPECTED_RETRYING = replay(first_attempt_job(), ATTEMPT_1)
EXPECTED_FINAL = replay(second_attempt(EXPECTED_RETRYING), ATTEMPT_2)


def orders(indexes: list[int]) -> st.SearchStrategy[list[int]]:
    return st.lists(st.sampled_from(indexes), max_size=5).flatmap(
        lambda extra: st.permutations(indexes + extra)
    )


def test_expected_sequence_is_a_retry_then_a_success() -> None:
    assert EXPECTED_RETRYING.status is JobStatus.RETRYING
    assert "SpotInterruption" in (EXPECTED_RETRYING.reason or "")
    assert "attempt 2 of 3" in (EXPECTED_RETRYING.reason or "")
    assert EXPECTED_FINAL.status is JobStatus.SUCCEEDED
    first = EXPECTED_FINAL.attempt_by_number(1)
    assert first is not None and first.stop_code == "SpotInterruption" and first.task_arn == TASK_1
    assert EXPECTED_FINAL.attempt is not None and EXPECTED_FINAL.attempt.exit_code == 0


@settings(max_examples=400, deadline=None)
@given(
    first=orders(ALL_1),
    late=st.lists(st.sampled_from(ALL_1), max_size=4),
    second=orders(ALL_2),
    data=st.data(),
)
def test_any_duplication_and_order_across_a_retry_gives_the_same_job(
    first: list[int], late: list[int], second: list[int], data: st.DataObject
) -> None:
    retrying = replay(first_attempt_job(), [ATTEMPT_1[i] for i in first])
    same_retrying = retrying == EXPECTED_RETRYING
    # Attempt 1's late duplicates interleaved anywhere among attempt 2's events.
    mixed: list[dict[str, Any]] = [ATTEMPT_2[i] for i in second]
    for index in late:
        position = data.draw(st.integers(0, len(mixed)))
        mixed.insert(position, ATTEMPT_1[index])
    final = replay(second_attempt(retrying), mixed)
    TALLY.add("event sequences (two attempts)")
    TALLY.add("events applied", len(first) + len(mixed))
    TALLY.add("duplicate events", len(first) - len(ALL_1) + len(mixed) - len(ALL_2))
    TALLY.check("same final job", same_retrying and final == EXPECTED_FINAL)
    assert same_retrying
    assert final == EXPECTED_FINAL


@settings(max_examples=300, deadline=None)
@given(order=orders(ALL_1))
def test_one_attempt_any_order_gives_the_same_job(order: list[int]) -> None:
    TALLY.add("event sequences (one attempt)")
    TALLY.add("events applied", len(order))
    TALLY.add("duplicate events", len(order) - len(ALL_1))
    result = replay(first_attempt_job(), [ATTEMPT_1[i] for i in order])
    TALLY.check("same final job", result == EXPECTED_RETRYING)
    assert result == EXPECTED_RETRYING


def tracker(stack: Stack, sqs: RecordingSqs) -> Tracker:
    return Tracker(
        catalog=stack.catalog,
        table=stack.table,
        ecs=stack.dispatcher().ecs,
        jobs_queue=JobsQueue("https://sqs.example/jobs", sqs),  # type: ignore[arg-type]
    )


def started_task(stack: Stack, attempt: int) -> str:
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None
    found = job.attempt_by_number(attempt)
    assert found is not None and found.task_arn is not None
    return found.task_arn


def test_a_spot_interruption_is_retried_end_to_end_exactly_once(
    stack: Stack, sqs: RecordingSqs, load_handler: Callable[[str], ModuleType], tally: Tally
) -> None:
    ecs = RecordingEcs(stack)
    assert stack.dispatcher(ecs).dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    task_1 = started_task(stack, 1)
    track = tracker(stack, sqs)
    for name in [*STARTING, "task-stopped-spot-interruption.json"]:
        track.track(retargeted(name, task_1, 1))
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RETRYING
    [(relaunch, delay)] = sqs.relaunches()
    assert relaunch == Relaunch(PAYROLL_JOB, 2)
    assert 15 <= delay <= 30  # base 30 s, equal jitter
    assert sqs.sent[0]["MessageAttributes"][KIND_ATTRIBUTE]["StringValue"] == RETRY_KIND

    app = load_handler("dispatch")
    app.dispatcher = stack.dispatcher(ecs)  # type: ignore[attr-defined]
    event = sqs.as_sqs_event()
    assert app.handler(event, LambdaContextStub()) == {"batchItemFailures": []}
    # The relaunch message delivered again, and a late duplicate of attempt 1's STOPPED event.
    assert app.handler(event, LambdaContextStub()) == {"batchItemFailures": []}
    track.track(retargeted("task-stopped-spot-interruption.json", task_1, 1))
    tally.add("duplicated deliveries", 2)
    tally.add("retries")
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED and job.attempt_number == 2
    previous = job.attempt_by_number(1)
    assert previous is not None and previous.stop_code == "SpotInterruption"
    assert [r["clientToken"] for r in ecs.requests] == [
        client_token(PAYROLL_JOB, 1),
        client_token(PAYROLL_JOB, 2),
    ]
    assert tasks_by_attempt(stack, PAYROLL_JOB) == {1: 1, 2: 1}
    assert_one_task_per_attempt(stack, PAYROLL_JOB, tally)

    # Attempt 2 fails in the application: not retried.
    task_2 = started_task(stack, 2)
    track.track(retargeted("task-stopped-exit-1.json", task_2, 2))
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.FAILED and "exit code 1" in (job.reason or "")
    tally.check("not retried", len(sqs.sent) == 1)
    assert len(sqs.sent) == 1


def test_infrastructure_failures_stop_at_max_attempts(stack: Stack, sqs: RecordingSqs, tally: Tally) -> None:
    dispatcher = stack.dispatcher()
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    track = tracker(stack, sqs)
    for number in (1, 2, 3):
        track.track(retargeted("task-stopped-failed-to-start.json", started_task(stack, number), number))
        job = stack.table.get(PAYROLL_JOB)
        assert job is not None
        if number < 3:
            assert job.status is JobStatus.RETRYING
            relaunch, _ = sqs.relaunches()[-1]
            assert relaunch.attempt == number + 1
            assert dispatcher.relaunch(relaunch.body()) is DispatchResult.DISPATCHED
            tally.add("retries")
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.FAILED
    assert "attempt 3 of 3 was the last" in (job.reason or "")
    assert tasks_by_attempt(stack, PAYROLL_JOB) == {1: 1, 2: 1, 3: 1}
    tally.check("not retried", len(sqs.sent) == 2)
    assert len(sqs.sent) == 2


def test_retry_message_lost_to_an_sqs_error_is_sent_when_the_event_is_retried(
    stack: Stack, tally: Tally
) -> None:
    from tests.reliability.conftest import server_error

    failing = RecordingSqs(fail=[server_error("SendMessage")])
    assert stack.dispatcher().dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    track = tracker(stack, failing)
    event = retargeted("task-stopped-failed-to-start.json", started_task(stack, 1), 1)
    try:
        track.track(event)
        raised = False
    except Exception:
        raised = True
    assert raised  # the invocation fails: Lambda retries the event
    tally.add("fault: SQS")
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RETRYING
    track.track(event)  # the retried invocation: the job is unchanged, the message is sent now
    assert [r.attempt for r, _ in failing.relaunches()] == [2]
