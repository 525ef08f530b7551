"""Faults by AWS operation: for every operation the Lambda functions call, errors (throttling, 5xx, read
timeouts; one to three in a row) are injected into that operation while a function does the work that
calls it, and the work is delivered again as Lambda and SQS would until it is done. After each: the job
ends as it would have without the fault, no (job, attempt) has two tasks, nothing is lost or counted
twice.

The operations, from the adapters (only they touch boto3), by the function that calls them:
- dispatch: DynamoDB GetItem and PutItem (job table), ECS RunTask, and after a crash between RunTask and
  the table write, ECS ListTasks and DescribeTasks (the task found by startedBy);
- track: DynamoDB GetItem and PutItem, ECS DescribeTaskDefinition (the log pointer), SQS SendMessage
  (a retry's relaunch);
- sweep: DynamoDB Query (the status index), ECS DescribeTasks and StopTask (a timeout);
- history: DynamoDB GetItem and PutItem (history table);
- job events: EventBridge PutEvents.
CloudWatch PutMetricData and the CloudWatch Logs calls are the warm pool worker's (it runs in the batch's
image), not a function's; the functions' metrics go out as EMF log lines.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.event_bus import EventBus
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import JobStatus, job_id_for, parse_iso
from batchgate.domain.task_events import TIMELINE_FIELDS
from batchgate.services.dispatch import Dispatcher, DispatchResult
from batchgate.services.history_feed import HistoryFeed, JobChange
from batchgate.services.job_events import JobEventPublisher
from batchgate.services.sweep import Sweeper, SweepSettings
from batchgate.services.track import Tracker

from tests.conftest import Stack, create_history_table, event_fixture
from tests.reliability.conftest import (
    FAULTS,
    FaultyClient,
    RecordingSqs,
    Tally,
    assert_one_task_per_attempt,
    assert_visible,
)
from tests.reliability.test_events_and_retries import retargeted
from tests.reliability.test_sweep import DescribedEcs, at

# Faults injected per operation: the default run, and the full one (`make test-reliability`).
FAULTS_PER_OPERATION = (3, 102)
REDELIVERIES = 12
HISTORY_TABLE = "batchgate-faults-history"
FAULT_KINDS = sorted(FAULTS)


class SweptEcs(DescribedEcs):
    """moto's ECS answering DescribeTasks like ECS for the tasks given (in-process moto walks a task to
    STOPPED one step per DescribeTasks), every operation's faults injected first."""

    def stop_task(self, **request: Any) -> dict[str, Any]:
        self.calls["stop_task"] += 1
        queued = self.faults.get("stop_task")
        if queued:
            self.injected += 1
            raise queued.pop(0)
        return super().stop_task(**request)

    def running(self, job_id: str, task_arn: str) -> None:
        detail = retargeted("task-running.json", task_arn, 1, job_id)["detail"]
        for name in [*TIMELINE_FIELDS, "updatedAt"]:
            if isinstance(detail.get(name), str):
                detail[name] = parse_iso(detail[name])
        self.described[task_arn] = detail


@dataclass
class Clients:
    """The clients a function gets, each a FaultyClient over moto (SQS and EventBridge over fakes)."""

    stack: Stack
    ecs: SweptEcs
    dynamodb: FaultyClient
    sqs: FaultyClient
    events: FaultyClient
    sent: RecordingSqs
    put: list[dict[str, Any]]

    def dispatcher(self) -> Dispatcher:
        return replace(
            self.stack.dispatcher(EcsTasks(self.stack.settings.cluster, self.ecs)),  # type: ignore[arg-type]
            table=JobTable(self.stack.settings.table_name, self.dynamodb),  # type: ignore[arg-type]
            clock=at(0),
        )

    def tracker(self) -> Tracker:
        return Tracker(
            catalog=self.stack.catalog,
            table=JobTable(self.stack.settings.table_name, self.dynamodb),  # type: ignore[arg-type]
            ecs=EcsTasks(self.stack.settings.cluster, self.ecs),  # type: ignore[arg-type]
            jobs_queue=JobsQueue("https://sqs.example/jobs", self.sqs),  # type: ignore[arg-type]
        )

    def sweeper(self, seconds: float) -> Sweeper:
        return Sweeper(
            catalog=self.stack.catalog,
            table=JobTable(self.stack.settings.table_name, self.dynamodb),  # type: ignore[arg-type]
            ecs=EcsTasks(self.stack.settings.cluster, self.ecs),  # type: ignore[arg-type]
            jobs_queue=JobsQueue("https://sqs.example/jobs", self.sqs),  # type: ignore[arg-type]
            settings=SweepSettings(),
            clock=at(seconds),
        )


class AcceptingEventBridge:
    """PutEvents that takes every entry (moto's EventBridge has no bus for the job events here)."""

    def __init__(self, accepted: list[dict[str, Any]]) -> None:
        self.meta = SimpleNamespace(region_name="us-east-1")
        self.accepted = accepted

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.accepted.extend(json.loads(entry["Detail"]) for entry in Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e-{n}"} for n in range(len(Entries))]}


def until_done(work: Callable[[], Any]) -> Any:
    """What Lambda and SQS do: run the work again while it fails."""
    for _ in range(REDELIVERIES):
        try:
            return work()
        except Exception:  # any failure: the record or event comes back
            continue
    raise AssertionError(f"still failing after {REDELIVERIES} deliveries")


def submit(batch: str, key: str) -> str:
    arguments = ["2026-11"] if batch == "payroll-calculation" else ["uploads/file.csv"]
    return json.dumps({"schema_version": 1, "batch": batch, "arguments": arguments, "idempotency_key": key})


# The work of each function, on job number n, as far as it calls the operation under test.


def dispatch_a_submit(clients: Clients, n: int, tally: Tally) -> None:
    """A submit message, then the same message delivered again (read back by GetItem)."""
    key = f"dispatch-{n}"
    body = submit("payroll-calculation", key)
    result = until_done(lambda: clients.dispatcher().dispatch(f"m-{key}", body))
    assert result in (DispatchResult.DISPATCHED, DispatchResult.DUPLICATE)
    assert until_done(lambda: clients.dispatcher().dispatch(f"m-{key}", body)) is DispatchResult.DUPLICATE
    tally.add("duplicated deliveries")
    job_id = job_id_for("payroll-calculation", key)
    job = assert_visible(clients.stack, job_id, tally)
    assert job.status is JobStatus.DISPATCHED
    assert_one_task_per_attempt(clients.stack, job_id, tally)


def dispatch_after_a_crash(clients: Clients, n: int, tally: Tally) -> None:
    """RunTask succeeded, then the Lambda died before the table write: the redelivery finds the task."""
    key = f"crash-{n}"
    body, job_id = submit("payroll-calculation", key), job_id_for("payroll-calculation", key)
    crashing = FaultyClient(boto3.client("dynamodb", region_name="us-east-1"))
    dispatcher = replace(
        clients.stack.dispatcher(),
        table=JobTable(clients.stack.settings.table_name, crashing),  # type: ignore[arg-type]
    )
    launch = dispatcher.ecs.run_task

    def run_then_crash(request: dict[str, Any]) -> Any:
        outcome = launch(request)
        crashing.inject("put_item", FAULTS["5xx"]("PutItem"))
        return outcome

    object.__setattr__(dispatcher.ecs, "run_task", run_then_crash)
    with pytest.raises(Exception, match="Service unavailable"):
        dispatcher.dispatch(f"m-{key}", body)
    assert until_done(lambda: clients.dispatcher().dispatch(f"m-{key}", body)) is DispatchResult.DISPATCHED
    assert clients.ecs.calls["run_task"] == 0  # found by startedBy, never launched again
    job = assert_visible(clients.stack, job_id, tally)
    assert job.attempt is not None and job.attempt.task_arn == clients.stack.tasks_started_by(job_id)[0]
    assert_one_task_per_attempt(clients.stack, job_id, tally)
    tally.add("crash after RunTask")
    tally.add("duplicated deliveries")


def dispatched(clients: Clients, key: str) -> tuple[str, str]:
    """A payroll job dispatched without faults: its id and task."""
    dispatcher = replace(clients.stack.dispatcher(), clock=at(0))
    assert dispatcher.dispatch(f"m-{key}", submit("payroll-calculation", key)) is DispatchResult.DISPATCHED
    job_id = job_id_for("payroll-calculation", key)
    job = clients.stack.table.get(job_id)
    assert job is not None and job.attempt is not None and job.attempt.task_arn
    return job_id, job.attempt.task_arn


def track_a_failure_to_start(clients: Clients, n: int, tally: Tally) -> None:
    """RUNNING is missed; the task stops having failed to start: the job's next attempt is sent."""
    job_id, task_arn = dispatched(clients, f"track-{n}")
    before = len(clients.sent.sent)
    for name in ["task-pending.json", "task-stopped-failed-to-start.json"]:
        event = retargeted(name, task_arn, 1, job_id)
        until_done(lambda event=event: clients.tracker().track(event))  # type: ignore[misc]
    job = assert_visible(clients.stack, job_id, tally)
    relaunches = [relaunch for relaunch, _ in clients.sent.relaunches()[before:]]
    assert [(r.job_id, r.attempt) for r in relaunches] == [(job_id, 2)], relaunches
    assert job.status is JobStatus.RETRYING, job.status  # attempt 2 comes with the relaunch
    assert_one_task_per_attempt(clients.stack, job_id, tally)


def sweep_a_timeout(clients: Clients, n: int, tally: Tally) -> None:
    """A task RUNNING past its batch's timeout: the scheduled sweep runs again until the job ended."""
    job_id, task_arn = dispatched(clients, f"sweep-{n}")
    for name in ["task-provisioning.json", "task-pending.json", "task-running.json"]:
        clients.stack.tracker().track(retargeted(name, task_arn, 1, job_id))
    clients.ecs.running(job_id, task_arn)
    for _ in range(REDELIVERIES):
        with contextlib.suppress(Exception):  # the invocation failed: the next schedule runs it again
            clients.sweeper(27 + 1801).sweep()
        job = clients.stack.table.get(job_id)
        if job is not None and job.status is JobStatus.TIMED_OUT:
            break
    job = assert_visible(clients.stack, job_id, tally)
    ended = job.status is JobStatus.TIMED_OUT
    tally.check("sweep ended it", ended)
    assert ended, (job.status, job.reason)
    assert (
        clients.stack.ecs_client.describe_tasks(cluster=clients.stack.settings.cluster, tasks=[task_arn])[
            "tasks"
        ][0]["desiredStatus"]
        == "STOPPED"
    )
    tally.add("sweep: timeouts")


def fold_into_history(clients: Clients, n: int, tally: Tally) -> None:
    """A finished attempt from the job table's stream, folded into the history table once."""
    _, stopped = event_fixture("job-stream-attempt-stopped.json")["Records"]
    record = json.loads(json.dumps(stopped))
    job_id = {"S": f"bg-payroll-calculation-{n:020x}"}
    stream = record["dynamodb"]
    stream["Keys"]["job_id"] = stream["NewImage"]["job_id"] = stream["OldImage"]["job_id"] = job_id
    stream["SequenceNumber"] = str(10_000 + n)
    change = JobChange.from_record(record)
    feed = HistoryFeed(HistoryTable(HISTORY_TABLE, clients.dynamodb))  # type: ignore[arg-type]
    history = HistoryTable(HISTORY_TABLE, boto3.client("dynamodb", region_name="us-east-1"))
    assert change.after is not None and len(change.finished) == 1
    batch, strategy = change.after.batch, change.finished[0].strategy
    before = history.get(batch, strategy)[1]  # the version: one more per attempt recorded
    until_done(lambda: feed.fold(change))
    after = history.get(batch, strategy)[1]
    once = after == before + 1
    tally.check("folded once", once)
    assert once, (before, after)


def publish_a_job_event(clients: Clients, n: int, tally: Tally) -> None:
    running, _ = event_fixture("job-stream-attempt-stopped.json")["Records"]
    record = json.loads(json.dumps(running))
    record["dynamodb"]["SequenceNumber"] = str(20_000 + n)
    publisher = JobEventPublisher(EventBus("batchgate-jobs", clients.events), sleep=lambda _: None)  # type: ignore[arg-type]
    before = len(clients.put)

    def publish() -> None:
        outcome = publisher.publish([record])
        assert not outcome.failed, outcome.failed

    until_done(publish)
    assert len(clients.put) - before == 1  # a call that raised put nothing


@dataclass(frozen=True)
class Operation:
    name: str  # as AWS names it
    client: str  # the Clients field whose calls fail
    method: str
    work: Callable[[Clients, int, Tally], None]


OPERATIONS = [
    Operation("ECS RunTask", "ecs", "run_task", dispatch_a_submit),
    Operation("ECS ListTasks", "ecs", "list_tasks", dispatch_after_a_crash),
    Operation("ECS DescribeTasks (dispatch)", "ecs", "describe_tasks", dispatch_after_a_crash),
    Operation("ECS DescribeTasks (sweep)", "ecs", "describe_tasks", sweep_a_timeout),
    Operation("ECS StopTask", "ecs", "stop_task", sweep_a_timeout),
    Operation("ECS DescribeTaskDefinition", "ecs", "describe_task_definition", track_a_failure_to_start),
    Operation("DynamoDB GetItem (dispatch)", "dynamodb", "get_item", dispatch_a_submit),
    Operation("DynamoDB PutItem (dispatch)", "dynamodb", "put_item", dispatch_a_submit),
    Operation("DynamoDB GetItem (track)", "dynamodb", "get_item", track_a_failure_to_start),
    Operation("DynamoDB PutItem (track)", "dynamodb", "put_item", track_a_failure_to_start),
    Operation("DynamoDB Query (sweep)", "dynamodb", "query", sweep_a_timeout),
    Operation("DynamoDB PutItem (sweep)", "dynamodb", "put_item", sweep_a_timeout),
    Operation("DynamoDB GetItem (history)", "dynamodb", "get_item", fold_into_history),
    Operation("DynamoDB PutItem (history)", "dynamodb", "put_item", fold_into_history),
    Operation("SQS SendMessage (track)", "sqs", "send_message", track_a_failure_to_start),
    Operation("EventBridge PutEvents", "events", "put_events", publish_a_job_event),
]


@pytest.fixture
def clients(stack: Stack) -> Clients:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(dynamodb, HISTORY_TABLE)
    sent = RecordingSqs()
    put: list[dict[str, Any]] = []
    return Clients(
        stack=stack,
        ecs=SweptEcs(stack.ecs_client),
        dynamodb=FaultyClient(dynamodb),
        sqs=FaultyClient(sent),
        events=FaultyClient(AcceptingEventBridge(put)),
        sent=sent,
        put=put,
    )


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(FAULTS_PER_OPERATION[0], id="default"),
        pytest.param(FAULTS_PER_OPERATION[1], marks=pytest.mark.reliability_full, id="full"),
    ],
)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.name)
def test_faults_in_every_operation_are_survived(
    clients: Clients, operation: Operation, target: int, tally: Tally
) -> None:
    faulty: FaultyClient = getattr(clients, operation.client)
    injected: Counter[str] = Counter()
    n = 0
    while faulty.injected < target:
        in_a_row = 1 + n % 3
        kind = FAULT_KINDS[n % len(FAULT_KINDS)]
        faulty.faults.clear()
        faulty.calls.clear()
        faulty.inject(operation.method, *[FAULTS[kind](operation.method) for _ in range(in_a_row)])
        before = faulty.injected
        operation.work(clients, n, tally)
        injected[kind] += faulty.injected - before
        n += 1
        assert n <= target, f"{operation.name}: the work never called {operation.method}"
    tally.add(f"fault by operation: {operation.name}", faulty.injected)
    assert faulty.injected >= target


def test_a_throttled_stop_task_leaves_the_timeout_to_the_next_sweep(clients: Clients, tally: Tally) -> None:
    """Ending the job after a throttled StopTask would leave its task running with nothing to stop it."""
    job_id, task_arn = dispatched(clients, "stop-throttled")
    for name in ["task-provisioning.json", "task-pending.json", "task-running.json"]:
        clients.stack.tracker().track(retargeted(name, task_arn, 1, job_id))
    clients.ecs.running(job_id, task_arn)
    clients.ecs.inject("stop_task", FAULTS["throttling"]("StopTask"))
    first = clients.sweeper(27 + 1801).sweep()
    job = clients.stack.table.get(job_id)
    assert job is not None and job.status is JobStatus.RUNNING and first.errors == 1
    second = clients.sweeper(27 + 1861).sweep()
    job = clients.stack.table.get(job_id)
    assert job is not None and job.status is JobStatus.TIMED_OUT and second.timed_out == 1
    described = clients.stack.ecs_client.describe_tasks(
        cluster=clients.stack.settings.cluster, tasks=[task_arn]
    )
    assert described["tasks"][0]["desiredStatus"] == "STOPPED"
    tally.add("sweep: timeouts")
