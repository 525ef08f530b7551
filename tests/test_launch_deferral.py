"""The back-off of a throttled launch, and its relaunch message on the jobs queue (moto SQS)."""

from __future__ import annotations

import boto3
import pytest
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.backoff import MAX_DELAY_SECONDS, deferral_delay_seconds
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS
from batchgate.services.launch_deferral import LaunchDeferral
from botocore.exceptions import ClientError

from tests.conftest import RecordingSqs, Stack

JOB = "bg-report-export-0123456789abcdef0123"


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


def test_a_deferral_counts_on_from_the_message_it_came_from() -> None:
    sqs = RecordingSqs()
    deferral = LaunchDeferral(JobsQueue("https://queue", sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)  # type: ignore[arg-type]
    assert deferral.defer(Relaunch(JOB, 2), previous_deferrals=3) == 16  # 2 s * 2**3
    assert sqs.relaunches() == [(Relaunch(JOB, 2, deferrals=4), 16)]


def test_a_deferral_sqs_refuses_is_reported_unsent() -> None:
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessage")
    sqs = RecordingSqs(fail=[refused])
    deferral = LaunchDeferral(JobsQueue("https://queue", sqs), DEFAULT_STRATEGY_SETTINGS)  # type: ignore[arg-type]
    assert deferral.defer(Relaunch(JOB, 1), previous_deferrals=0) is None


def test_the_relaunch_waits_on_the_queue_for_its_delay(stack: Stack) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="batchgate-jobs")["QueueUrl"]
    deferral = LaunchDeferral(JobsQueue(url, sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)
    assert deferral.defer(Relaunch(JOB, 1), previous_deferrals=0) == 2
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
