"""Submit batch jobs from a Python application: build the message, check it, put it on the jobs queue.

Each message is checked locally (size, JSON schema, and the catalog's rules when a catalog is given)
before it is sent, so a mistake fails at the call site with the same reason dispatch would record,
instead of becoming a REJECTED job later.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.job_table import KEY_ATTRIBUTE, from_attributes
from batchgate.domain.catalog import Catalog
from batchgate.domain.jobs import Job, job_id_for
from batchgate.domain.messages import (
    RejectedMessage,
    SubmitMessage,
    parse_submit_message,
    validate_message_shape,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH_LIMIT = 10
MAX_DELAY_SECONDS = 900
_QUEUE_URL_REGION = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
# wait(): the first poll after this long, each next one 1.5 times later, at most WAIT_POLL_MAX_SECONDS.
WAIT_POLL_FIRST_SECONDS = 0.5
WAIT_POLL_MAX_SECONDS = 5.0
# wait(): how long a job may be missing before it is an error (dispatch records it within seconds).
NOT_FOUND_GRACE_SECONDS = 30.0


class JobNotFound(LookupError):
    """No job has this id (after the grace period, for wait)."""


class JobWaitTimeout(TimeoutError):
    """The job did not reach a final status in time; `job` is how it was last seen."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


@dataclass(frozen=True)
class SubmitReceipt:
    """A message accepted by SQS and the id of the job dispatch makes of it: `job_id_for(batch,
    idempotency key)`, or `job_id_for(batch, SQS message id)` without a key."""

    message_id: str
    job_id: str
    keyed: bool = True  # the job id comes from an idempotency key (known before sending)

    @property
    def job_id_hint(self) -> str | None:
        """The job id when it was known before sending (an idempotency key), else None."""
        return self.job_id if self.keyed else None


@dataclass(frozen=True)
class SubmitFailure:
    """A message of `submit_many` that SQS did not take. `index` is its position in the input."""

    index: int
    message: SubmitMessage
    code: str
    reason: str
    sender_fault: bool


@dataclass(frozen=True)
class SubmitManyResult:
    receipts: Mapping[int, SubmitReceipt]
    failures: tuple[SubmitFailure, ...]

    @property
    def all_sent(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class _Prepared:
    index: int
    message: SubmitMessage
    body: str


class BatchClient:
    """Puts submit messages on the batchgate jobs queue (a standard SQS queue)."""

    def __init__(
        self,
        queue_url: str,
        sqs_client: SQSClient | None = None,
        *,
        catalog: Catalog | None = None,
        table_name: str | None = None,
        dynamodb_client: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue_url = queue_url
        self.catalog = catalog
        self.table_name = table_name  # the stack output JobTableName; needed by get and wait only
        self._sqs = sqs_client
        self._dynamodb = dynamodb_client
        self._sleep = sleep
        self._clock = clock

    @property
    def sqs(self) -> SQSClient:
        """Built on first use, in the queue's own region, so that merely constructing a client
        (at import time in many applications) costs nothing."""
        if self._sqs is None:
            self._sqs = boto3.client("sqs", region_name=queue_region(self.queue_url))
        return self._sqs

    @property
    def dynamodb(self) -> DynamoDBClient:
        """Built on first use, in the queue's region (the job table is in the stack's region)."""
        if self._dynamodb is None:
            self._dynamodb = boto3.client("dynamodb", region_name=queue_region(self.queue_url))
        return self._dynamodb

    def get(self, job_id: str) -> Job | None:
        """The job as the job table holds it now (a strongly consistent read), None if there is none."""
        if not self.table_name:
            raise ValueError("BatchClient needs table_name (the stack output JobTableName) to read jobs")
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": job_id}}, ConsistentRead=True
        ).get("Item")
        return Job.from_item(from_attributes(dict(item))) if item else None

    def wait(self, job_id: str, timeout: float, *, not_found_grace: float = NOT_FOUND_GRACE_SECONDS) -> Job:
        """The job once its status is final (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, REJECTED),
        polling with back-off. Raises JobWaitTimeout after `timeout` seconds, and JobNotFound when no
        such job appeared within `not_found_grace` seconds (longer for a message sent with a delay)."""
        started = self._clock()
        pause = WAIT_POLL_FIRST_SECONDS
        while True:
            job = self.get(job_id)
            waited = self._clock() - started
            if job is not None and job.status.is_terminal:
                return job
            limit = timeout if job is not None else min(not_found_grace, timeout)
            if waited >= limit:
                if job is None:
                    raise JobNotFound(f"no job {job_id} after {waited:.0f} s (table {self.table_name})")
                raise JobWaitTimeout(f"job {job_id} still {job.status.value} after {waited:.0f} s", job)
            self._sleep(min(pause, limit - waited))
            pause = min(pause * 1.5, WAIT_POLL_MAX_SECONDS)

    def submit(
        self,
        batch: str,
        arguments: Sequence[str] = (),
        *,
        environment: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        deadline: datetime | None = None,
        strategy: str | None = None,
        tenant: str | None = None,
        delay_seconds: int = 0,
    ) -> SubmitReceipt:
        """Send one job. Raises RejectedMessage (nothing sent) when the message would be rejected."""
        check_delay(delay_seconds)
        message = SubmitMessage(
            batch=batch,
            arguments=tuple(arguments),
            environment=dict(environment or {}),
            idempotency_key=idempotency_key,
            priority=priority,
            deadline=deadline,
            strategy=strategy,
            tenant=tenant,
        )
        body = self.checked_body(message)
        response = self.sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay_seconds
        )
        return receipt_of(message, response["MessageId"])

    def submit_many(self, messages: Iterable[SubmitMessage], *, delay_seconds: int = 0) -> SubmitManyResult:
        """Send many jobs, ten per SQS call. Every message is checked before any is sent: one bad
        message raises RejectedMessage and nothing goes out. What SQS refuses comes back as failures."""
        check_delay(delay_seconds)
        prepared = [self._prepare(index, message) for index, message in enumerate(messages)]
        receipts: dict[int, SubmitReceipt] = {}
        failures: list[SubmitFailure] = []
        for start in range(0, len(prepared), SQS_BATCH_LIMIT):
            chunk = prepared[start : start + SQS_BATCH_LIMIT]
            self._send_chunk(chunk, delay_seconds, receipts, failures)
        return SubmitManyResult(receipts=MappingProxyType(receipts), failures=tuple(failures))

    def checked_body(self, message: SubmitMessage) -> str:
        """The message's wire form, checked as dispatch will check it (as far as is known here)."""
        body = message.to_json()
        if self.catalog is None:
            validate_message_shape(body)
        else:
            parse_submit_message(body, self.catalog)
        return body

    def _prepare(self, index: int, message: SubmitMessage) -> _Prepared:
        try:
            return _Prepared(index=index, message=message, body=self.checked_body(message))
        except RejectedMessage as rejected:
            raise RejectedMessage(
                f"message {index}: {rejected.reason}",
                batch=rejected.batch,
                idempotency_key=rejected.idempotency_key,
            ) from rejected

    def _send_chunk(
        self,
        chunk: Sequence[_Prepared],
        delay_seconds: int,
        receipts: dict[int, SubmitReceipt],
        failures: list[SubmitFailure],
    ) -> None:
        by_id = {str(item.index): item for item in chunk}
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": entry_id, "MessageBody": item.body, "DelaySeconds": delay_seconds}
            for entry_id, item in by_id.items()
        ]
        try:
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except ClientError as error:
            # The whole call failed: report every entry of this chunk and carry on with the next.
            details = error.response.get("Error", {})
            code, reason = details.get("Code", "ClientError"), details.get("Message", str(error))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            failures.extend(_failure(item, code, reason, sender_fault=status < 500) for item in chunk)
            return
        except BotoCoreError as error:
            failures.extend(
                _failure(item, type(error).__name__, str(error), sender_fault=False) for item in chunk
            )
            return
        for sent in response.get("Successful", []):
            item = by_id[sent["Id"]]
            receipts[item.index] = receipt_of(item.message, sent["MessageId"])
        for failed in response.get("Failed", []):
            item = by_id[failed["Id"]]
            failures.append(
                _failure(item, failed["Code"], failed.get("Message", ""), sender_fault=failed["SenderFault"])
            )


def receipt_of(message: SubmitMessage, message_id: str) -> SubmitReceipt:
    """The receipt of a sent message: its job id as dispatch computes it (batchgate.services.dispatch)."""
    key = message.idempotency_key
    return SubmitReceipt(message_id, job_id_for(message.batch, key or message_id), keyed=key is not None)


def job_id_hint(message: SubmitMessage) -> str | None:
    return job_id_for(message.batch, message.idempotency_key) if message.idempotency_key else None


def check_delay(delay_seconds: int) -> None:
    if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
        raise ValueError(f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS}, got {delay_seconds}")


def queue_region(queue_url: str) -> str | None:
    """The region in an SQS queue URL; None (the SDK's default region) for other URL forms."""
    match = _QUEUE_URL_REGION.match(queue_url)
    return match.group(1) if match else None


def _failure(item: _Prepared, code: str, reason: str, *, sender_fault: bool) -> SubmitFailure:
    return SubmitFailure(
        index=item.index, message=item.message, code=code, reason=reason, sender_fault=sender_fault
    )
