"""Submit batch jobs from a Python application: build the message, check it, put it on the jobs queue.

Each message is checked locally (size, JSON schema, and the catalog's rules when a catalog is given)
before it is sent, so a mistake fails at the call site with the same reason dispatch would record,
instead of becoming a REJECTED job later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from batchgate.domain.catalog import Catalog
from batchgate.domain.jobs import job_id_for
from batchgate.domain.messages import (
    RejectedMessage,
    SubmitMessage,
    parse_submit_message,
    validate_message_shape,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH_LIMIT = 10
MAX_DELAY_SECONDS = 900
_QUEUE_URL_REGION = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


@dataclass(frozen=True)
class SubmitReceipt:
    """A message accepted by SQS. `job_id_hint` is the job id dispatch will use, known in advance
    only when the message has an idempotency key (otherwise it derives from the SQS message id)."""

    message_id: str
    job_id_hint: str | None


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
        self, queue_url: str, sqs_client: SQSClient | None = None, *, catalog: Catalog | None = None
    ) -> None:
        self.queue_url = queue_url
        self.catalog = catalog
        self._sqs = sqs_client

    @property
    def sqs(self) -> SQSClient:
        """Built on first use, in the queue's own region, so that merely constructing a client
        (at import time in many applications) costs nothing."""
        if self._sqs is None:
            self._sqs = boto3.client("sqs", region_name=queue_region(self.queue_url))
        return self._sqs

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
        )
        body = self.checked_body(message)
        response = self.sqs.send_message(
            QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=delay_seconds
        )
        return SubmitReceipt(message_id=response["MessageId"], job_id_hint=job_id_hint(message))

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
            receipts[item.index] = SubmitReceipt(sent["MessageId"], job_id_hint(item.message))
        for failed in response.get("Failed", []):
            item = by_id[failed["Id"]]
            failures.append(
                _failure(item, failed["Code"], failed.get("Message", ""), sender_fault=failed["SenderFault"])
            )


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
