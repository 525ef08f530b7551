"""The back-off of a deferred launch, its record on the attempt, and its relaunch message on the jobs queue
(moto SQS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.backoff import MAX_DELAY_SECONDS, deferral_delay_seconds
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS
from batchgate.services.launch_deferral import Deferral, LaunchDeferral
from botocore.exceptions import ClientError

from tests.conftest import RecordingSqs, Stack
from tests.test_jobs import make_job

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("deferrals", "rand", "expected"),
    [(1, 1.0, 2), (2, 1.0, 4), (5, 1.0, 32), (20, 1.0, 300), (3, 0.0, 1), (3, 0.5, 4)],
)
def test_backoff_grows_with_the_deferrals_and_is_capped(deferrals: int, rand: float, expected: int) -> None:
    assert deferral_delay_seconds(deferrals, base=2, cap=300, rand=lambda: rand) == expected


def test_backoff_respects_the_governor_hint() -> None:
    assert deferral_delay_seconds(1, base=2, cap=300, at_least=7.2, rand=lambda: 0.0) == 8


def test_backoff_never_exceeds_what_sqs_can_delay() -> None:
    assert deferral_delay_seconds(1, base=2, cap=300, at_least=5000, rand=lambda: 1.0) == MAX_DELAY_SECONDS


def dispatching_job(stack: Stack, deferrals: int = 0) -> Job:
    attempt = Attempt(
        number=1, strategy="FARGATE", capacity_provider="FARGATE", dispatched_at=iso(T0), deferrals=deferrals
    )
    job = stack.table.create(make_job(status=JobStatus.DISPATCHING, attempts=(attempt,)))
    assert job is not None
    return job


def test_a_deferral_counts_on_from_the_attempt_and_is_written_before_it_is_sent(stack: Stack) -> None:
    job = dispatching_job(stack, deferrals=3)
    sqs = RecordingSqs()
    deferral = LaunchDeferral(JobsQueue("https://queue", sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)  # type: ignore[arg-type]
    later = T0 + timedelta(minutes=5)
    sent = deferral.defer(stack.table, Relaunch(job.job_id, 1), 3, later, note="waiting")
    assert sent == Deferral(delay_seconds=16, sent=True)  # 2 s * 2**3
    assert sqs.relaunches() == [(Relaunch(job.job_id, 1, deferrals=4), 16)]
    stored = stack.table.get(job.job_id)
    assert stored is not None and stored.attempt is not None
    assert (stored.attempt.deferrals, stored.attempt.relaunch_due_at, stored.attempt.note) == (
        4,
        iso(later + timedelta(seconds=16)),
        "waiting",
    )
    # The sweep measures a lost launch from the last change: a deferral is one.
    assert stored.updated_at == iso(later)


def test_of_two_deliveries_deferring_one_launch_only_one_sends_a_relaunch(stack: Stack) -> None:
    job = dispatching_job(stack)
    sqs = RecordingSqs()
    deferral = LaunchDeferral(JobsQueue("https://queue", sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)  # type: ignore[arg-type]
    first = deferral.defer(stack.table, Relaunch(job.job_id, 1), 0, T0)
    second = deferral.defer(stack.table, Relaunch(job.job_id, 1), 0, T0)  # decided on the same count
    assert first is not None and first.sent and second is not None and not second.sent
    assert len(sqs.sent) == 1
    stored = stack.table.get(job.job_id)
    assert stored is not None and stored.attempt is not None and stored.attempt.deferrals == 1


def test_a_deferral_sqs_refuses_is_reported_unsent(stack: Stack) -> None:
    job = dispatching_job(stack)
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessage")
    sqs = RecordingSqs(fail=[refused])
    deferral = LaunchDeferral(JobsQueue("https://queue", sqs), DEFAULT_STRATEGY_SETTINGS)  # type: ignore[arg-type]
    assert deferral.defer(stack.table, Relaunch(job.job_id, 1), 0, T0) is None


def test_the_relaunch_waits_on_the_queue_for_its_delay(stack: Stack) -> None:
    job = dispatching_job(stack)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="batchgate-jobs")["QueueUrl"]
    deferral = LaunchDeferral(JobsQueue(url, sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)
    assert deferral.defer(stack.table, Relaunch(job.job_id, 1), 0, T0) == Deferral(2, sent=True)
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
