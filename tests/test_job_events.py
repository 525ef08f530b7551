"""Job state change events: built from the job table's stream, put on EventBridge in batches within its
limits, refused entries put again and then reported, a job's events in stream order."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from batchgate.adapters.event_bus import PUT_EVENTS_BYTES, EventBus
from batchgate.adapters.job_table import to_attributes
from batchgate.domain.job_events import (
    JOB_EVENT_SOURCE,
    JOB_STATE_CHANGE,
    REASON_LIMIT,
    entry_size,
    job_state_change,
    log_console_url,
)
from batchgate.domain.jobs import Attempt, Job, JobStatus
from batchgate.services.job_events import EventNotPublished, JobEventPublisher, calls

from tests.conftest import LambdaContextStub, Stack, event_fixture, job_stream_records
from tests.test_dispatch import PAYROLL_JOB
from tests.test_track import dispatched_job

REGION = "eu-west-1"
SECRET = "s3cr3t-value-never-in-an-event"
STREAM_SAMPLE = "job-stream-status-change.json"


def job(
    status: JobStatus = JobStatus.RUNNING, revision: int = 4, job_id: str = "bg-payroll-calculation-1"
) -> Job:
    attempt = Attempt(
        number=1,
        strategy="FARGATE_SPOT",
        capacity_provider="FARGATE_SPOT",
        dispatched_at="2026-11-28T10:00:00.950Z",
        task_arn="arn:aws:ecs:eu-west-1:123456789012:task/batchgate-dev/0123",
        last_status="RUNNING",
        timeline={"created": "2026-11-28T10:00:01.482Z", "started": "2026-11-28T10:00:27.540Z"},
        log_group="/ecs/batchgate-payroll",
        log_stream="batch/payroll/0123",
    )
    return Job(
        job_id=job_id,
        batch="payroll-calculation",
        status=status,
        created_at="2026-11-28T10:00:00.912Z",
        updated_at="2026-11-28T10:00:27.600Z",
        expires_at=1803636001,
        message_id="m-1",
        arguments=("2026-11", SECRET),
        environment={"API_TOKEN": SECRET},
        raw_message=json.dumps({"environment": {"API_TOKEN": SECRET}}),
        attempts=(attempt,),
        revision=revision,
    )


def failed(before: Job) -> Job:
    stopped = before.attempts[0]._replace(last_status="STOPPED", exit_code=3)
    return before._replace(
        status=JobStatus.FAILED,
        reason="exit code 3: payroll run failed",
        attempts=(stopped,),
        revision=before.revision + 1,
        updated_at="2026-11-28T10:15:05.617Z",
    )


def record(
    sequence: int, before: Job | None, after: Job | None, event_name: str = "MODIFY"
) -> dict[str, Any]:
    image = after or before
    assert image is not None
    stream: dict[str, Any] = {"Keys": {"job_id": {"S": image.job_id}}, "SequenceNumber": str(sequence)}
    if before is not None:
        stream["OldImage"] = to_attributes(before.to_item())
    if after is not None:
        stream["NewImage"] = to_attributes(after.to_item())
    return {"eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": stream}


# --- the event ----------------------------------------------------------------------------------------


def test_a_status_change_is_an_event_with_every_field() -> None:
    before = job()
    change = job_state_change(before, failed(before), REGION)
    assert change is not None
    assert change.detail == {
        "version": 1,
        "event_id": "bg-payroll-calculation-1:5:FAILED",
        "job_id": "bg-payroll-calculation-1",
        "batch": "payroll-calculation",
        "tenant": None,
        "status": "FAILED",
        "previous_status": "RUNNING",
        "revision": 5,
        "attempt": 1,
        "strategy": "FARGATE_SPOT",
        "capacity_provider": "FARGATE_SPOT",
        "exit_code": 3,
        "reason": "exit code 3: payroll run failed",
        "log": {
            "group": "/ecs/batchgate-payroll",
            "stream": "batch/payroll/0123",
            "console_url": "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
            "#logsV2:log-groups/log-group/$252Fecs$252Fbatchgate-payroll"
            "/log-events/batch$252Fpayroll$252F0123",
        },
        "times": {
            "created": "2026-11-28T10:00:00.912Z",
            "updated": "2026-11-28T10:15:05.617Z",
            "attempt": {"created": "2026-11-28T10:00:01.482Z", "started": "2026-11-28T10:00:27.540Z"},
        },
    }
    entry = change.entry("default")
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        JOB_EVENT_SOURCE,
        JOB_STATE_CHANGE,
        "default",
    )
    assert json.loads(entry["Detail"]) == change.detail
    assert entry["Time"].isoformat() == "2026-11-28T10:15:05.617000+00:00"


def test_an_event_never_carries_environment_values_arguments_or_the_raw_message() -> None:
    before = job()
    change = job_state_change(before, failed(before), REGION)
    assert change is not None
    assert SECRET not in json.dumps(change.entry("default"), default=str)


def test_a_new_job_has_no_previous_status_and_no_attempt_yet() -> None:
    submitted = job(JobStatus.SUBMITTED, revision=1)._replace(attempts=())
    change = job_state_change(None, submitted, REGION)
    assert change is not None
    assert change.detail["previous_status"] is None
    assert (change.detail["attempt"], change.detail["strategy"], change.detail["exit_code"]) == (
        0,
        None,
        None,
    )
    assert change.detail["log"] == {"group": None, "stream": None, "console_url": None}
    assert change.detail["times"]["attempt"] == {}


def test_writes_that_leave_the_status_publish_nothing() -> None:
    running = job()
    noted = running._replace(revision=5, updated_at="2026-11-28T10:20:00.000Z")
    assert job_state_change(running, noted, REGION) is None
    assert job_state_change(running, None, REGION) is None  # the item expired (TTL)


def test_the_event_id_is_the_same_for_redeliveries_and_differs_per_change() -> None:
    before = job()
    after = failed(before)
    first = job_state_change(before, after, REGION)
    again = job_state_change(job(), failed(job()), REGION)
    assert first is not None and again is not None
    assert first.event_id == again.event_id == first.detail["event_id"]
    earlier = job_state_change(job(JobStatus.PENDING, revision=3), before, REGION)
    other_job = job_state_change(job(job_id="bg-x-2"), failed(job(job_id="bg-x-2")), REGION)
    assert earlier is not None and other_job is not None
    assert len({first.event_id, earlier.event_id, other_job.event_id}) == 3


def test_a_long_reason_is_cut_so_the_event_always_fits() -> None:
    before = job()
    after = failed(before)._replace(reason="x" * 300_000)
    change = job_state_change(before, after, REGION)
    assert change is not None and len(change.detail["reason"]) == REASON_LIMIT
    assert entry_size(change.entry("default")) < 8 * 1024


@pytest.mark.parametrize(
    ("region", "start"),
    [
        ("us-east-1", "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#"),
        ("cn-north-1", "https://cn-north-1.console.amazonaws.cn/cloudwatch/home?region=cn-north-1#"),
        (
            "us-gov-west-1",
            "https://us-gov-west-1.console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1#",
        ),
    ],
)
def test_the_log_link_is_the_console_of_the_region(region: str, start: str) -> None:
    url = log_console_url(region, "/aws/lambda/x", "2026/11/28/[$LATEST]ab")
    assert url is not None and url.startswith(start)
    assert url.endswith(
        "log-group/$252Faws$252Flambda$252Fx/log-events/2026$252F11$252F28$252F$255B$2524LATEST$255Dab"
    )
    assert log_console_url(region, "/ecs/x", None) == start + "logsV2:log-groups/log-group/$252Fecs$252Fx"
    assert log_console_url(region, None, None) is None


# --- the publisher: batching, refused entries, order ----------------------------------------------------


class FakeEventBridge:
    """PutEvents that records each call and refuses the entries `refuse` names (by event id and try)."""

    def __init__(self, refuse: Callable[[str, int], str | None] = lambda event_id, tries: None) -> None:
        self.meta = SimpleNamespace(region_name=REGION)
        self.calls: list[list[dict[str, Any]]] = []
        self.tries: dict[str, int] = {}
        self.refuse = refuse

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        assert sum(entry_size(entry) for entry in Entries) <= PUT_EVENTS_BYTES
        self.calls.append(Entries)
        results: list[dict[str, Any]] = []
        for entry in Entries:
            event_id = json.loads(entry["Detail"])["event_id"]
            self.tries[event_id] = self.tries.get(event_id, 0) + 1
            code = self.refuse(event_id, self.tries[event_id])
            results.append({"ErrorCode": code, "ErrorMessage": "no"} if code else {"EventId": event_id})
        return {"FailedEntryCount": sum(1 for result in results if "ErrorCode" in result), "Entries": results}

    def put_ids(self) -> list[str]:
        return [json.loads(entry["Detail"])["event_id"] for call in self.calls for entry in call]


def publisher(fake: FakeEventBridge) -> JobEventPublisher:
    return JobEventPublisher(EventBus("default", fake), retry_pauses=(0, 0), sleep=lambda seconds: None)  # type: ignore[arg-type]


def job_changes(jobs: int, changes: int) -> list[dict[str, Any]]:
    """`changes` status changes of each of `jobs` jobs, the jobs' records interleaved, each job's in order."""
    statuses = [JobStatus.DISPATCHING, JobStatus.DISPATCHED, JobStatus.PENDING, JobStatus.RUNNING]
    records: list[dict[str, Any]] = []
    for step in range(changes):
        for number in range(jobs):
            job_id = f"bg-payroll-calculation-{number:04d}"
            before = job(statuses[step % len(statuses)], revision=step + 1, job_id=job_id)
            after = job(statuses[(step + 1) % len(statuses)], revision=step + 2, job_id=job_id)
            records.append(record(len(records) + 1, before, after))
    return records


def test_events_are_put_ten_per_call_at_most() -> None:
    fake = FakeEventBridge()
    outcome = publisher(fake).publish(job_changes(jobs=23, changes=1))
    assert [len(call) for call in fake.calls] == [10, 10, 3]
    assert (outcome.published, outcome.failed) == (23, {})


def test_calls_stay_within_256_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    before = job()
    big = [
        record(n, before, failed(before)._replace(job_id=f"bg-x-{n}", reason="r" * 2000)) for n in range(10)
    ]
    pending = publisher(FakeEventBridge())._pending
    items = [pending(r) for r in big]
    sizes = [entry_size(item.change.entry("default")) for item in items if item.change]
    assert [len(call) for call in calls(items, "default")] == [10]
    # A smaller limit, to see the cut: four entries fit, the fifth does not.
    monkeypatch.setattr("batchgate.services.job_events.PUT_EVENTS_BYTES", sum(sizes[:4]))
    assert [len(call) for call in calls(items, "default")] == [4, 4, 2]


def test_a_jobs_events_are_put_in_stream_order_one_per_call_at_a_time() -> None:
    fake = FakeEventBridge()
    records = job_changes(jobs=3, changes=4)
    publisher(fake).publish(records)
    # Each call holds at most one change per job; a job's next change is put after its previous one.
    for call in fake.calls:
        ids = [json.loads(entry["Detail"])["job_id"] for entry in call]
        assert len(ids) == len(set(ids))
    for number in range(3):
        revisions = [
            json.loads(entry["Detail"])["revision"]
            for call in fake.calls
            for entry in call
            if json.loads(entry["Detail"])["job_id"].endswith(f"{number:04d}")
        ]
        assert revisions == [2, 3, 4, 5]


def test_refused_entries_are_put_again_and_then_succeed() -> None:
    fake = FakeEventBridge(lambda event_id, tries: "ThrottlingException" if tries == 1 else None)
    records = job_changes(jobs=4, changes=1)
    outcome = publisher(fake).publish(records)
    assert outcome.failed == {} and outcome.published == 4
    assert [len(call) for call in fake.calls] == [4, 4]


def test_an_entry_refused_every_time_fails_its_record_and_every_later_one_unput() -> None:
    poisoned = "bg-payroll-calculation-0001:3:PENDING"  # job 1's second change
    fake = FakeEventBridge(lambda event_id, tries: "InternalFailure" if event_id == poisoned else None)
    records = job_changes(jobs=3, changes=3)  # records 1-3: first changes, 4-6 second, 7-9 third
    outcome = publisher(fake).publish(records)
    # Lambda delivers the batch again from record 5: records 6 to 9 wait for that delivery, so that no
    # job sees a newer event before an older one.
    assert sorted(outcome.failed, key=int) == ["5", "6", "7", "8", "9"]
    assert "InternalFailure" in outcome.failed["5"] and outcome.failed["9"] == "after record 5"
    assert fake.tries[poisoned] == 3  # the first put and two more
    assert [len(call) for call in fake.calls] == [3, 3, 1, 1]  # only the refused entry is put again
    assert outcome.published == 5  # records 1-4 and 6 (6 again on the next delivery, same event id)
    with pytest.raises(EventNotPublished, match="record 5"):
        outcome.check(records[4])
    outcome.check(records[3])


def test_a_call_that_fails_as_a_whole_is_put_again() -> None:
    fake = FakeEventBridge()
    put = fake.put_events
    calls = 0

    def failing_once(Entries: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="https://events")
        return put(Entries)

    fake.put_events = failing_once  # type: ignore[method-assign]
    outcome = publisher(fake).publish(job_changes(jobs=2, changes=1))
    assert outcome.failed == {} and outcome.published == 2 and calls == 2


def test_unchanged_statuses_and_removed_items_put_nothing() -> None:
    running = job()
    fake = FakeEventBridge()
    records = [
        record(1, running, running._replace(revision=5)),
        record(2, running, None, event_name="REMOVE"),
    ]
    outcome = publisher(fake).publish(records)
    assert fake.calls == [] and outcome.unchanged == 2 and outcome.failed == {}


def test_an_unreadable_record_fails_with_its_jobs_later_records() -> None:
    fake = FakeEventBridge()
    good = job_changes(jobs=1, changes=2)
    bad = {**good[0], "dynamodb": {**good[0]["dynamodb"], "NewImage": {"job_id": {"S": "x"}}}}
    outcome = publisher(fake).publish([bad, good[1]])
    assert sorted(outcome.failed) == ["1", "2"] and fake.calls == []


# --- the handler ------------------------------------------------------------------------------------------


@pytest.fixture
def events_app(stack: Stack, load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("events")


def test_the_sample_event_publishes_its_status_change(events_app: ModuleType) -> None:
    fake = FakeEventBridge()
    events_app.publisher = publisher(  # type: ignore[attr-defined]
        fake
    )
    event = event_fixture(STREAM_SAMPLE)
    response = events_app.handler(event, LambdaContextStub())
    assert response == {"batchItemFailures": []}
    [[entry]] = fake.calls  # the sample's second record changes no status
    detail = json.loads(entry["Detail"])
    assert (detail["previous_status"], detail["status"]) == ("RUNNING", "SUCCEEDED")


def test_the_handler_reports_the_records_whose_events_were_refused(events_app: ModuleType) -> None:
    poisoned = "bg-payroll-calculation-0000:3:PENDING"
    events_app.publisher = publisher(  # type: ignore[attr-defined]
        FakeEventBridge(lambda event_id, tries: "X" if event_id == poisoned else None)
    )
    records = job_changes(jobs=2, changes=2)  # job 0's second change is record 3
    response = events_app.handler({"Records": records}, LambdaContextStub())
    assert response == {"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "4"}]}


def test_a_batch_whose_every_event_was_refused_fails_the_invocation(events_app: ModuleType) -> None:
    events_app.publisher = publisher(  # type: ignore[attr-defined]
        FakeEventBridge(lambda event_id, tries: "X")
    )
    with pytest.raises(BatchProcessingError):
        events_app.handler({"Records": job_changes(jobs=2, changes=1)}, LambdaContextStub())


def test_track_writes_reach_the_bus_as_events_in_order(stack: Stack, events_app: ModuleType) -> None:
    """Through moto: dispatch and track write the job, the stream's records go through the handler,
    and a rule on the default bus sends the events to a queue."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="job-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="jobs", EventPattern=json.dumps({"source": [JOB_EVENT_SOURCE]}))
    events.put_targets(Rule="jobs", Targets=[{"Id": "queue", "Arn": queue_arn}])
    dispatched_job(stack)
    tracker = stack.tracker()
    for name in ("task-pending.json", "task-running.json", "task-running.json", "task-stopped-exit-0.json"):
        tracker.track(event_fixture(name))

    response = events_app.handler({"Records": job_stream_records()}, LambdaContextStub())

    assert response == {"batchItemFailures": []}
    received: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        received.extend(json.loads(message["Body"]) for message in messages)
    assert {event["detail-type"] for event in received} == {JOB_STATE_CHANGE}
    details = [event["detail"] for event in received]
    assert {detail["job_id"] for detail in details} == {PAYROLL_JOB}
    assert [(d["previous_status"], d["status"]) for d in details] == [
        (None, "SUBMITTED"),
        ("SUBMITTED", "DISPATCHING"),
        ("DISPATCHING", "DISPATCHED"),
        ("DISPATCHED", "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert [d["revision"] for d in details] == sorted(d["revision"] for d in details)
