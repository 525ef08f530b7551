from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from batchgate.client import BatchClient, JobNotFound, JobWaitTimeout, queue_region
from batchgate.domain.catalog import load_catalog
from batchgate.domain.jobs import JobStatus, job_id_for
from batchgate.domain.messages import RejectedMessage, SubmitMessage, parse_submit_message
from botocore.stub import Stubber

from tests.conftest import ROOT, Stack, event_fixture
from tests.test_dispatch import PAYROLL_JOB
from tests.test_track import dispatched_job

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

QUEUE_NAME = "batchgate-test-JobsQueue"


@pytest.fixture
def queue_url(aws: None) -> str:
    url: str = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    return url


def received(queue_url: str) -> list[MessageTypeDef]:
    """Every visible message on the queue."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    messages: list[MessageTypeDef] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not batch.get("Messages"):
            return messages
        messages.extend(batch["Messages"])


def test_submit_sends_a_message_that_dispatch_accepts(queue_url: str) -> None:
    client = BatchClient(queue_url)  # SQS client built on first use
    receipt = client.submit(
        "payroll-calculation",
        ["2026-11", "acme"],
        environment={"LOG_LEVEL": "DEBUG"},
        idempotency_key="payroll-2026-11-acme",
        priority=5,
        deadline=datetime(2026, 11, 28, 18, 0, tzinfo=UTC),
        strategy="FARGATE",
    )
    assert receipt.job_id_hint == job_id_for("payroll-calculation", "payroll-2026-11-acme")
    [message] = received(queue_url)
    assert message["MessageId"] == receipt.message_id
    assert parse_submit_message(message["Body"], load_catalog()) == SubmitMessage(
        batch="payroll-calculation",
        arguments=("2026-11", "acme"),
        environment={"LOG_LEVEL": "DEBUG"},
        idempotency_key="payroll-2026-11-acme",
        priority=5,
        deadline=datetime(2026, 11, 28, 18, 0, tzinfo=UTC),
        strategy="FARGATE",
    )


def test_without_idempotency_key_the_job_id_is_not_known_in_advance(queue_url: str) -> None:
    receipt = BatchClient(queue_url).submit("report-export", ["headcount"])
    assert receipt.job_id_hint is None
    assert receipt.message_id


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"batch": "report-export", "priority": 12}, "field 'priority' must be smaller than or equal to 9"),
        ({"batch": "Report Export"}, "field 'batch' must match pattern"),
        ({"batch": "report-export", "idempotency_key": "has space"}, "field 'idempotency_key' must match"),
        ({"batch": "report-export", "strategy": "SPOT"}, "field 'strategy' must be one of"),
        ({"batch": "report-export", "arguments": ["x" * 9000]}, "the limit is 8192 bytes"),
    ],
)
def test_shape_mistakes_fail_at_the_call_site_and_send_nothing(
    queue_url: str, kwargs: dict[str, Any], reason: str
) -> None:
    with pytest.raises(RejectedMessage, match=reason):
        BatchClient(queue_url).submit(**kwargs)
    assert received(queue_url) == []


def test_catalog_rules_are_checked_when_a_catalog_is_given(queue_url: str) -> None:
    checked = BatchClient(queue_url, catalog=load_catalog())
    with pytest.raises(RejectedMessage, match="unknown batch 'payroll-calc'"):
        checked.submit("payroll-calc", ["2026-11"])
    with pytest.raises(RejectedMessage, match=r"argument 1 \('2026 11'\) does not match"):
        checked.submit("payroll-calculation", ["2026 11"])
    assert received(queue_url) == []
    # Without a catalog only the shape is known here: dispatch will reject it with the same reason.
    BatchClient(queue_url).submit("payroll-calc", ["2026-11"])
    assert len(received(queue_url)) == 1


def test_invalid_arguments_of_the_call_itself_raise_value_error(queue_url: str) -> None:
    client = BatchClient(queue_url)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.submit("report-export", ["headcount"], deadline=datetime(2026, 11, 28, 18, 0))
    with pytest.raises(ValueError, match="delay_seconds must be from 0 to 900"):
        client.submit("report-export", ["headcount"], delay_seconds=901)
    assert received(queue_url) == []


def test_delay_seconds_hides_the_message_for_that_long(queue_url: str) -> None:
    BatchClient(queue_url).submit("report-export", ["headcount"], delay_seconds=300)
    assert received(queue_url) == []
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def reports(count: int) -> list[SubmitMessage]:
    return [
        SubmitMessage(
            batch="report-export", arguments=("headcount", f"part-{index:02d}"), idempotency_key=f"r-{index}"
        )
        for index in range(count)
    ]


def test_submit_many_sends_in_chunks_of_ten(queue_url: str) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    calls: list[int] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: calls.append(len(params["Entries"])),
    )
    messages = reports(23)
    result = BatchClient(queue_url, sqs).submit_many(messages)
    assert calls == [10, 10, 3]
    assert result.all_sent and sorted(result.receipts) == list(range(23))
    assert result.receipts[7].job_id_hint == job_id_for("report-export", "r-7")
    bodies = {message["MessageId"]: message["Body"] for message in received(queue_url)}
    assert set(bodies) == {receipt.message_id for receipt in result.receipts.values()}
    catalog = load_catalog()
    parsed = [parse_submit_message(text, catalog) for text in bodies.values()]
    assert sorted(parsed, key=lambda message: int(message.arguments[1][-2:])) == messages


def test_submit_many_checks_every_message_before_sending_any(queue_url: str) -> None:
    messages = reports(12)
    messages[11] = SubmitMessage(batch="report-export", arguments=("headcount",), priority=42)
    with pytest.raises(RejectedMessage, match="message 11: field 'priority'") as raised:
        BatchClient(queue_url).submit_many(messages)
    assert raised.value.batch == "report-export"
    assert received(queue_url) == []


def test_submit_many_reports_entries_sqs_refused(aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/batchgate-test-JobsQueue"
    with Stubber(sqs) as stubber:
        stubber.add_client_error(
            "send_message_batch",
            service_error_code="RequestThrottled",
            service_message="slow down",
            http_status_code=400,
        )
        stubber.add_response(
            "send_message_batch",
            {
                "Successful": [
                    {"Id": str(index), "MessageId": f"m-{index}", "MD5OfMessageBody": "0" * 32}
                    for index in range(10, 14)
                ],
                "Failed": [
                    {"Id": "14", "SenderFault": False, "Code": "InternalError", "Message": "try again"},
                ],
            },
        )
        result = BatchClient(url, sqs).submit_many(reports(15))
        stubber.assert_no_pending_responses()
    assert not result.all_sent
    assert sorted(result.receipts) == [10, 11, 12, 13]
    assert [failure.index for failure in result.failures] == [*range(10), 14]
    first, last = result.failures[0], result.failures[-1]
    assert (first.code, first.reason, first.sender_fault) == ("RequestThrottled", "slow down", True)
    assert (last.code, last.reason, last.sender_fault) == ("InternalError", "try again", False)
    assert last.message.idempotency_key == "r-14"


def test_submit_many_of_nothing_sends_nothing(queue_url: str) -> None:
    result = BatchClient(queue_url).submit_many([])
    assert result.all_sent and not result.receipts


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.ap-northeast-1.amazonaws.com/123456789012/batchgate-prod-JobsQueue", "ap-northeast-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        ("http://localhost:4566/000000000000/q", None),
    ],
)
def test_queue_region_is_read_from_the_url(url: str, region: str | None) -> None:
    assert queue_region(url) == region


# --- the job id of every submit, get and wait ------------------------------------------------------------


def test_without_a_key_the_job_id_is_the_one_dispatch_derives_from_the_message_id(queue_url: str) -> None:
    receipt = BatchClient(queue_url).submit("report-export", ["headcount"])
    assert receipt.job_id == job_id_for("report-export", receipt.message_id)
    assert not receipt.keyed and receipt.job_id_hint is None
    [message] = received(queue_url)
    assert message["MessageId"] == receipt.message_id
    result = BatchClient(queue_url).submit_many([*reports(2), SubmitMessage("report-export", ("headcount",))])
    assert result.receipts[0].job_id == job_id_for("report-export", "r-0") == result.receipts[0].job_id_hint
    assert result.receipts[2].job_id == job_id_for("report-export", result.receipts[2].message_id)


def job_id_vectors() -> list[tuple[str, str, str]]:
    """The test vectors table of docs/submit-message.md: batch, key, job id."""
    text = (ROOT / "docs" / "submit-message.md").read_text()
    return re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| `(bg-[^`]+)` \|$", text, re.M)


def test_the_documented_job_id_vectors_are_what_dispatch_computes() -> None:
    vectors = job_id_vectors()
    assert len(vectors) >= 6
    for batch, key, job_id in vectors:
        assert job_id_for(batch, key) == job_id, (batch, key)
        digest = hashlib.sha256(batch.encode() + b"\x00" + key.encode()).hexdigest()[:20]
        assert job_id.endswith(f"-{digest}")  # the formula as the docs state it, in any language


class Clock:
    """time.monotonic and time.sleep stand-ins: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def jobs(stack: Stack, queue_url: str) -> tuple[BatchClient, Clock]:
    clock = Clock()
    client = BatchClient(queue_url, table_name=stack.settings.table_name, sleep=clock.sleep, clock=clock)
    return client, clock


def test_get_reads_the_job_and_none_when_there_is_none(stack: Stack, jobs: tuple[BatchClient, Clock]) -> None:
    client, _ = jobs
    dispatched_job(stack)
    job = client.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED and job.batch == "payroll-calculation"
    assert client.get("bg-nothing-00000000000000000000") is None
    with pytest.raises(ValueError, match="table_name"):
        BatchClient("https://sqs.us-east-1.amazonaws.com/1/q").get(PAYROLL_JOB)


def test_wait_returns_the_job_once_its_status_is_final(stack: Stack, jobs: tuple[BatchClient, Clock]) -> None:
    client, clock = jobs
    dispatched_job(stack)
    tracker = stack.tracker()

    def sleep_and_progress(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.pauses) == 3:
            tracker.track(event_fixture("task-stopped-exit-0.json"))

    client._sleep = sleep_and_progress
    job = client.wait(PAYROLL_JOB, timeout=60)
    assert job.status is JobStatus.SUCCEEDED
    assert clock.pauses == [0.5, 0.75, 1.125]  # back-off


def test_wait_on_a_job_that_never_ends_times_out_with_the_last_state(
    stack: Stack, jobs: tuple[BatchClient, Clock]
) -> None:
    client, clock = jobs
    dispatched_job(stack)
    with pytest.raises(JobWaitTimeout, match="still DISPATCHED after 120 s") as raised:
        client.wait(PAYROLL_JOB, timeout=120)
    assert raised.value.job.status is JobStatus.DISPATCHED
    assert clock.now == 120 and max(clock.pauses) == 5.0


def test_wait_on_an_unknown_job_is_an_error_after_a_short_grace(jobs: tuple[BatchClient, Clock]) -> None:
    client, clock = jobs
    with pytest.raises(JobNotFound, match="no job bg-nothing"):
        client.wait("bg-nothing-00000000000000000000", timeout=3600, not_found_grace=10)
    assert clock.now == 10


def test_the_client_imports_without_powertools() -> None:
    code = (
        "import sys; sys.modules['aws_lambda_powertools'] = None; "
        "import batchgate.client; print(batchgate.client.BatchClient.wait.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wait"
