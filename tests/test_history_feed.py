"""The history feed: finished attempts from the job table's stream into the history table, each once."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.job_table import to_attributes
from batchgate.domain.jobs import Job
from batchgate.domain.latency_sketch import GROWTH
from batchgate.services.history_feed import (
    HistoryFeed,
    JobChange,
    SkippedAfterFailure,
    UnreadableJobImage,
    stopped_attempts,
)

from tests.conftest import (
    LambdaContextStub,
    Stack,
    create_history_table,
    event_fixture,
    job_stream_records,
)
from tests.test_dispatch import PAYROLL_JOB
from tests.test_track import dispatched_job

HISTORY_TABLE = "batchgate-test-history"
STREAM_SAMPLE = "job-stream-attempt-stopped.json"
# Relative error of a percentile read from the history's sketch.
TOLERANCE = GROWTH - 1


@pytest.fixture
def history(stack: Stack) -> HistoryTable:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    return HistoryTable(HISTORY_TABLE, client)


def track(stack: Stack, *fixtures: str) -> None:
    tracker = stack.tracker()
    for name in fixtures:
        tracker.track(event_fixture(name))


def fold_stream(history: HistoryTable) -> int:
    """Every record of the job table's stream so far through one invocation's fold."""
    fold = HistoryFeed(history).in_order()
    return sum(fold(record) for record in job_stream_records())


def stopped_job(stack: Stack) -> tuple[Job, Job]:
    """The fixture job before and after its task's STOPPED (exit 0) event."""
    dispatched_job(stack)
    track(stack, "task-running.json")
    running = stack.table.get(PAYROLL_JOB)
    track(stack, "task-stopped-exit-0.json")
    stopped = stack.table.get(PAYROLL_JOB)
    assert running is not None and stopped is not None
    return running, stopped


def stop_record(sequence: int, before: Job, after: Job, job_id: str) -> dict[str, Any]:
    """A MODIFY record of the stream in which job `job_id` (a copy of the fixture job) stops."""
    return {
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"job_id": {"S": job_id}},
            "SequenceNumber": str(sequence),
            "OldImage": to_attributes(before._replace(job_id=job_id).to_item()),
            "NewImage": to_attributes(after._replace(job_id=job_id).to_item()),
        },
    }


class FailingWrites:
    """The history table's client, failing PutItem while `failing` is set."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failing = False

    def put_item(self, **request: Any) -> Any:
        if self.failing:
            raise RuntimeError("history table unavailable")
        return self._client.put_item(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# Which attempts a write finished.


def test_an_attempt_finishes_in_the_write_that_stops_it(stack: Stack) -> None:
    running, stopped = stopped_job(stack)
    [attempt] = stopped_attempts(running, stopped)
    assert (attempt.number, attempt.last_status, attempt.exit_code) == (1, "STOPPED", 0)
    assert stopped_attempts(stopped, stopped) == []  # a later write of the stopped job
    assert stopped_attempts(None, running) == []
    assert stopped_attempts(running, None) == []  # the job's item removed (TTL)
    deleted = stopped._replace(attempts=(stopped.attempts[0]._replace(last_status="DELETED"),))
    assert len(stopped_attempts(running, deleted)) == 1


# Through the stream of the moto job table, as track writes it.


def test_a_finished_attempt_is_folded_once_with_its_phases(stack: Stack, history: HistoryTable) -> None:
    dispatched_job(stack)
    # Out of order, then duplicated: several job writes, one of them stops the attempt.
    track(
        stack,
        "task-stopped-exit-0.json",
        "task-running.json",
        "task-provisioning.json",
        "task-stopped-exit-0.json",
        "task-stopped-exit-0.json",
    )

    assert fold_stream(history) == 1

    stored, version = history.get("payroll-calculation", "FARGATE")
    assert (stored.observed, version) == (1, 1)
    summary = stored.summary()
    assert summary.success_rate == 1.0
    # From the fixture: created 10:00:01.482, pull 10:00:10.302-10:00:24.871, started 10:00:27.540,
    # stopped 10:15:05.617.
    assert summary.start_p50 == pytest.approx(26.06, rel=TOLERANCE)
    assert summary.provisioning_p50 == pytest.approx(8.82, rel=TOLERANCE)
    assert summary.pull_p50 == pytest.approx(14.57, rel=TOLERANCE)
    assert summary.run_p50 == pytest.approx(878.08, rel=TOLERANCE)


@pytest.mark.parametrize(
    ("fixture", "succeeded", "interrupted"),
    [
        ("task-stopped-exit-1.json", False, False),
        ("task-stopped-failed-to-start.json", False, False),
        ("task-stopped-spot-interruption.json", False, True),
    ],
)
def test_failures_and_interruptions_are_counted(
    stack: Stack, history: HistoryTable, fixture: str, succeeded: bool, interrupted: bool
) -> None:
    event = event_fixture(fixture)
    dispatched_job(stack, event["detail"]["taskArn"])
    stack.tracker().track(event)

    assert fold_stream(history) == 1

    stored, _ = history.get("payroll-calculation", "FARGATE")
    assert stored.observed == 1
    assert stored.successes == (1 if succeeded else 0)
    assert stored.interruptions == (1 if interrupted else 0)


def test_writes_before_the_stop_fold_nothing(stack: Stack, history: HistoryTable) -> None:
    dispatched_job(stack)
    track(stack, "task-provisioning.json", "task-pending.json", "task-running.json")
    assert len(job_stream_records()) >= 4  # the job's creation, dispatch and three events
    assert fold_stream(history) == 0
    assert history.summaries("payroll-calculation") == {}


# Failures: in stream order, from the first failed record on.


def test_records_after_a_failed_one_fail_unfolded_and_the_retry_folds_each_once(stack: Stack) -> None:
    running, stopped = stopped_job(stack)
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, HISTORY_TABLE)
    writes = FailingWrites(client)
    feed = HistoryFeed(HistoryTable(HISTORY_TABLE, writes))  # type: ignore[arg-type]
    records = [stop_record(sequence, running, stopped, f"bg-job-{sequence}") for sequence in (11, 12, 13)]

    fold = feed.in_order()
    assert fold(records[0]) == 1
    writes.failing = True
    with pytest.raises(RuntimeError, match="unavailable"):
        fold(records[1])
    writes.failing = False
    with pytest.raises(SkippedAfterFailure, match="12"):
        fold(records[2])  # would succeed, but its turn is after the failed record's
    assert feed.history.get("payroll-calculation", "FARGATE")[0].observed == 1

    retry = feed.in_order()  # Lambda resumes the shard at the first failed record
    assert [retry(record) for record in records[1:]] == [1, 1]
    stored, version = feed.history.get("payroll-calculation", "FARGATE")
    assert (stored.observed, version) == (3, 3)


def test_an_invocation_retried_whole_folds_its_last_attempt_once(stack: Stack, history: HistoryTable) -> None:
    """An invocation that crashed after folding is retried with the same records: the attempt it folded
    last is the item's last fold, and is not folded again (one folded before it, by then not the last
    fold of its pair, would be)."""
    running, stopped = stopped_job(stack)
    feed = HistoryFeed(history)
    record = stop_record(21, running, stopped, "bg-job-21")

    assert feed.in_order()(record) == 1
    assert feed.in_order()(record) == 1  # the retry: the attempt is reported, not folded again

    stored, version = history.get("payroll-calculation", "FARGATE")
    assert (stored.observed, version) == (1, 1)
    assert feed.in_order()(stop_record(22, running, stopped, "bg-job-22")) == 1
    assert history.get("payroll-calculation", "FARGATE")[0].observed == 2


def test_a_time_stored_unreadable_fails_no_record_and_holds_back_no_other_job(
    stack: Stack, history: HistoryTable
) -> None:
    """Times stored before task events were checked: the phases they bound go unmeasured, the rest of
    the attempt still counts, and the records after it fold in the same invocation."""
    running, stopped = stopped_job(stack)
    attempt = stopped.attempts[0]
    damaged = stopped._replace(
        attempts=(attempt._replace(timeline={**attempt.timeline, "created": "1764324001482"}),),
    )
    records = [
        stop_record(21, running, damaged, "bg-job-21"),
        stop_record(22, running, stopped, "bg-job-22"),
    ]

    fold = HistoryFeed(history).in_order()
    assert [fold(record) for record in records] == [1, 1]

    summary = history.get("payroll-calculation", "FARGATE")[0].summary()
    assert round(summary.attempts) == 2 and summary.success_rate == 1.0
    assert summary.run_p50 == pytest.approx(878.08, rel=TOLERANCE)  # both attempts' runs
    assert summary.start_p50 == pytest.approx(26.06, rel=TOLERANCE)  # the readable attempt's start


def test_a_record_that_holds_no_job_is_a_clear_error() -> None:
    record = {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "7", "NewImage": {"job_id": {"S": "x"}}}}
    with pytest.raises(UnreadableJobImage, match=r"stream record 7 .* holds no readable job"):
        JobChange.from_record(record)


# The handler: Powertools batch processing of the stream's records, partial failures reported.


@pytest.fixture
def history_app(
    stack: Stack, load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    create_history_table(boto3.client("dynamodb", region_name="us-east-1"), HISTORY_TABLE)
    monkeypatch.setenv("HISTORY_TABLE_NAME", HISTORY_TABLE)
    return load_handler("history")


def stored_observations() -> int:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return HistoryTable(HISTORY_TABLE, client).get("payroll-calculation", "FARGATE")[0].observed


def test_the_sample_stream_event_folds_its_finished_attempt(history_app: ModuleType) -> None:
    event = event_fixture(STREAM_SAMPLE)
    changes = [JobChange.from_record(record) for record in event["Records"]]
    assert [len(change.finished) for change in changes] == [0, 1]  # RUNNING, then STOPPED

    response = history_app.handler(event, LambdaContextStub())

    assert response == {"batchItemFailures": []}
    assert stored_observations() == 1


def test_the_handler_reports_the_failed_record_and_every_later_one(history_app: ModuleType) -> None:
    event = event_fixture(STREAM_SAMPLE)
    good = event["Records"][1]
    bad = {
        **good,
        "dynamodb": {**good["dynamodb"], "SequenceNumber": "9001", "NewImage": {"job_id": {"S": "x"}}},
    }
    later = {**good, "dynamodb": {**good["dynamodb"], "SequenceNumber": "9002"}}

    response = history_app.handler({"Records": [good, bad, later]}, LambdaContextStub())

    assert response == {"batchItemFailures": [{"itemIdentifier": "9001"}, {"itemIdentifier": "9002"}]}
    assert stored_observations() == 1


def test_a_batch_that_fails_from_its_first_record_fails_the_invocation(history_app: ModuleType) -> None:
    good = event_fixture(STREAM_SAMPLE)["Records"][1]
    bad = {**good, "dynamodb": {**good["dynamodb"], "NewImage": {"job_id": {"S": "x"}}}}
    # Powertools raises when every record failed: Lambda retries the whole batch.
    with pytest.raises(BatchProcessingError):
        history_app.handler({"Records": [bad, good]}, LambdaContextStub())


def test_track_and_the_history_function_together(
    stack: Stack, history_app: ModuleType, load_handler: Callable[[str], ModuleType]
) -> None:
    dispatched_job(stack)
    track_app = load_handler("track")  # HISTORY_TABLE_NAME is set: track still writes no history
    for name in ["task-running.json", "task-stopped-exit-0.json"]:
        track_app.handler(event_fixture(name), LambdaContextStub())
    assert stored_observations() == 0

    response = history_app.handler({"Records": job_stream_records()}, LambdaContextStub())

    assert response == {"batchItemFailures": []}
    assert stored_observations() == 1
