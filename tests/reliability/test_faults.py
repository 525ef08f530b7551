"""Fault injection: AWS errors and crashes at every point of dispatch and track. After each, the same
invariants: every job ends visible, and no (job, attempt) ever has two tasks."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import JobStatus, job_id_for
from batchgate.domain.task_events import TaskStateChange, apply_task_event
from batchgate.services.dispatch import Dispatcher, DispatchResult
from batchgate.services.track import Tracker

from tests.conftest import LambdaContextStub, Stack, sqs_event
from tests.reliability.conftest import (
    FAULTS,
    FaultyClient,
    RecordingSqs,
    Tally,
    assert_one_task_per_attempt,
    assert_visible,
    server_error,
    tasks_by_attempt,
    throttling,
)
from tests.reliability.test_events_and_retries import retargeted, started_task, tracker
from tests.test_dispatch import PAYROLL, PAYROLL_JOB

DYNAMODB_CALLS = ("get_item", "put_item", "query")
ECS_CALLS = ("run_task", "list_tasks", "describe_tasks")


def faulty_dispatcher(stack: Stack, ecs_client: Any = None, dynamodb: Any = None) -> Dispatcher:
    dispatcher = stack.dispatcher(EcsTasks(stack.settings.cluster, ecs_client or stack.ecs_client))
    if dynamodb is not None:
        dispatcher = replace(dispatcher, table=JobTable(stack.settings.table_name, dynamodb))
    return dispatcher


def deliver_until_done(
    dispatcher: Dispatcher, message_id: str, body: str, rounds: int = 12
) -> DispatchResult:
    """What SQS does: deliver the message again while its processing fails."""
    for _ in range(rounds):
        try:
            return dispatcher.dispatch(message_id, body)
        except Exception:
            continue
    raise AssertionError("still failing after every redelivery")


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("times", [1, 3])
def test_run_task_faults_are_retried_with_one_task(
    stack: Stack, fault: str, times: int, tally: Tally
) -> None:
    client = FaultyClient(stack.ecs_client)
    client.inject("run_task", *[FAULTS[fault]("RunTask") for _ in range(times)])
    assert deliver_until_done(faulty_dispatcher(stack, client), "m-1", PAYROLL) is DispatchResult.DISPATCHED
    tally.add("fault: RunTask", client.injected)
    assert_visible(stack, PAYROLL_JOB, tally)
    assert_one_task_per_attempt(stack, PAYROLL_JOB, tally)
    assert client.calls["run_task"] == times + 1


@pytest.mark.parametrize("operation", ["list_tasks", "describe_tasks"])
def test_resume_lookup_faults_never_start_a_second_task(stack: Stack, operation: str, tally: Tally) -> None:
    # A crash after RunTask (the task exists, the job does not know it), then the lookup failing.
    dispatcher = faulty_dispatcher(stack)
    _crash_after_run_task(stack, dispatcher)
    client = FaultyClient(stack.ecs_client)
    client.inject(operation, throttling(operation), server_error(operation))
    assert deliver_until_done(faulty_dispatcher(stack, client), "m-1", PAYROLL) is DispatchResult.DISPATCHED
    tally.add("fault: ListTasks/DescribeTasks", client.injected)
    tally.add("crash after RunTask")
    assert client.calls["run_task"] == 0  # found by startedBy, never launched again
    assert_one_task_per_attempt(stack, PAYROLL_JOB, tally)


def _crash_after_run_task(stack: Stack, dispatcher: Dispatcher) -> None:
    """Dispatch with the table write after RunTask failing once (the Lambda dies there)."""
    dynamodb = FaultyClient(boto3.client("dynamodb", region_name="us-east-1"))
    crashing = replace(dispatcher, table=JobTable(stack.settings.table_name, dynamodb))  # type: ignore[arg-type]
    original = crashing.ecs.run_task

    def run_then_crash(request: dict[str, Any]) -> Any:
        outcome = original(request)
        dynamodb.inject("put_item", server_error("PutItem"))
        return outcome

    object.__setattr__(crashing, "ecs", _EcsWith(crashing.ecs, run_then_crash))
    with pytest.raises(Exception, match="Service unavailable"):
        crashing.dispatch("m-1", PAYROLL)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHING and job.attempt is not None
    assert job.attempt.task_arn is None and len(stack.tasks_started_by(PAYROLL_JOB)) == 1


class _EcsWith(EcsTasks):
    def __init__(self, inner: EcsTasks, run_task: Callable[[dict[str, Any]], Any]) -> None:
        self.__dict__.update(inner.__dict__)
        self._run = run_task

    def run_task(self, request: dict[str, Any]) -> Any:
        return self._run(request)


def test_a_crash_right_after_run_task_finds_the_task_on_redelivery(stack: Stack, tally: Tally) -> None:
    dispatcher = stack.dispatcher()
    _crash_after_run_task(stack, dispatcher)
    client = FaultyClient(stack.ecs_client)
    assert faulty_dispatcher(stack, client).dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    assert client.calls["list_tasks"] >= 1 and client.calls["run_task"] == 0
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None
    assert job.attempt.task_arn == stack.tasks_started_by(PAYROLL_JOB)[0]
    tally.add("crash after RunTask")
    tally.add("duplicated deliveries")
    assert_one_task_per_attempt(stack, PAYROLL_JOB, tally)


@pytest.mark.parametrize("crash_at", range(8))
def test_a_dynamodb_failure_at_any_call_of_dispatch_is_recovered(
    stack: Stack, crash_at: int, tally: Tally
) -> None:
    """The n-th DynamoDB call of dispatch fails (throttled or 5xx); SQS redelivers until done."""
    dynamodb = _FailNth(boto3.client("dynamodb", region_name="us-east-1"), crash_at)
    result = deliver_until_done(faulty_dispatcher(stack, dynamodb=dynamodb), "m-1", PAYROLL)
    assert result in (DispatchResult.DISPATCHED, DispatchResult.DUPLICATE)
    tally.add("fault: DynamoDB", dynamodb.injected)
    job = assert_visible(stack, PAYROLL_JOB, tally)
    assert job.status is JobStatus.DISPATCHED
    assert_one_task_per_attempt(stack, PAYROLL_JOB, tally)


class _FailNth(FaultyClient):
    def __init__(self, client: Any, nth: int) -> None:
        super().__init__(client)
        self.nth = nth
        self.seen = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in DYNAMODB_CALLS:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            index, self.seen = self.seen, self.seen + 1
            if index == self.nth:
                self.injected += 1
                error = throttling if index % 2 else server_error
                raise error(name)
            return target(*args, **kwargs)

        return call


@pytest.mark.parametrize(
    "name", ["task-running.json", "task-stopped-exit-0.json", "task-stopped-failed-to-start.json"]
)
def test_a_failed_track_invocation_applied_again_gives_the_same_job(
    stack: Stack, sqs: RecordingSqs, name: str, tally: Tally
) -> None:
    stack.dispatcher().dispatch("m-1", PAYROLL)
    event = retargeted(name, started_task(stack, 1), 1)
    before = stack.table.get(PAYROLL_JOB)
    assert before is not None
    dynamodb = FaultyClient(boto3.client("dynamodb", region_name="us-east-1"))
    dynamodb.inject("put_item", server_error("PutItem"))
    failing = replace(tracker(stack, sqs), table=JobTable(stack.settings.table_name, dynamodb))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="Service unavailable"):
        failing.track(event)  # Lambda retries the event (then the track DLQ)
    assert stack.table.get(PAYROLL_JOB) == before
    failing.track(event)
    failing.track(event)  # and a duplicate
    after = stack.table.get(PAYROLL_JOB)
    tally.add("fault: track Lambda")
    tally.add("fault: DynamoDB")
    # The same job as applying the event once, without any failure.
    spec = stack.catalog.batches["payroll-calculation"]
    expected = apply_task_event(before, TaskStateChange.from_event(event), spec.container, None, spec)
    same = (
        after is not None
        and expected is not None
        and after._replace(revision=0) == expected._replace(revision=0)
    )
    tally.check("same final job", same)
    assert same
    if name == "task-stopped-failed-to-start.json":
        assert {relaunch.attempt for relaunch, _ in sqs.relaunches()} == {2}


def test_random_faults_across_a_batch_of_messages(
    stack: Stack, load_handler: Callable[[str], ModuleType], tally: Tally
) -> None:
    """40 messages through the dispatch handler while 15% of ECS and DynamoDB calls fail (throttling,
    5xx, timeouts, seeded); SQS redelivers the failed records until none is left."""
    rng = random.Random(20261128)
    ecs = _RandomFaults(stack.ecs_client, rng, 0.15, ECS_CALLS)
    dynamodb = _RandomFaults(boto3.client("dynamodb", region_name="us-east-1"), rng, 0.15, DYNAMODB_CALLS)
    app = load_handler("dispatch")
    app.dispatcher = faulty_dispatcher(stack, ecs, dynamodb)  # type: ignore[attr-defined]
    bodies = {
        f"m-{index:03d}": json.dumps(
            {
                "schema_version": 1,
                "batch": "attendance-import" if index % 2 else "payroll-calculation",
                "arguments": [f"file-{index}.csv" if index % 2 else "2026-11"],
                "idempotency_key": f"key-{index}",
            }
        )
        for index in range(40)
    }
    pending = dict(bodies)
    for _ in range(80):
        if not pending:
            break
        ids = sorted(pending)
        try:
            event = sqs_event(*[pending[i] for i in ids], message_ids=ids)
            response = app.handler(event, LambdaContextStub())
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        except BatchProcessingError:  # every record failed: the whole batch comes back
            failed = set(ids)
        tally.add("duplicated deliveries", len(failed))
        pending = {i: pending[i] for i in failed}
    assert not pending, f"{len(pending)} messages still failing"
    tally.add("fault: RunTask", ecs.by_operation["run_task"])
    tally.add(
        "fault: ListTasks/DescribeTasks", ecs.by_operation["list_tasks"] + ecs.by_operation["describe_tasks"]
    )
    tally.add("fault: DynamoDB", dynamodb.injected)
    for message_id, body in bodies.items():
        document = json.loads(body)
        job_id = job_id_for(document["batch"], document["idempotency_key"])
        job = assert_visible(stack, job_id, tally)
        assert job.status is JobStatus.DISPATCHED, (message_id, job.status, job.reason)
        assert_one_task_per_attempt(stack, job_id, tally)
        assert tasks_by_attempt(stack, job_id) == {1: 1}


class _RandomFaults(FaultyClient):
    def __init__(self, client: Any, rng: random.Random, rate: float, operations: tuple[str, ...]) -> None:
        super().__init__(client)
        self.rng, self.rate, self.operations = rng, rate, operations
        self.by_operation: dict[str, int] = dict.fromkeys(operations, 0)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in self.operations:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.rng.random() < self.rate:
                self.injected += 1
                self.by_operation[name] += 1
                raise FAULTS[self.rng.choice(sorted(FAULTS))](name)
            return target(*args, **kwargs)

        return call


def test_tracker_type_is_unchanged() -> None:
    assert Tracker.__dataclass_fields__["jobs_queue"].default is None
