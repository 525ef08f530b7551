"""What the three dead-letter queues share: their messages through SQS, looked at and moved.

Looking is a peek: messages are received with a short visibility timeout and made visible again at
once (ChangeMessageVisibility 0), so a look never hides them from a redrive or from another look for
long. Each look does count as a receive in `ApproximateReceiveCount`.

Redrive is a bounded receive -> send -> delete loop (SQS's StartMessageMoveTask only moves messages back
to a source *queue*, and the in-process AWS mock used for tests does not implement it). A message is
deleted only after it was sent, so a failure in between can only duplicate it. Where it is sent, and
how, is each queue kind's own (`jobs`, `track`, `history`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.domain.jobs import is_job_id, iso, job_id_for

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

PEEK_VISIBILITY_SECONDS = 5
REDRIVE_VISIBILITY_SECONDS = 60
RECEIVE_BATCH = 10
REDRIVEN_FROM_ATTRIBUTE = "batchgate-redriven-from"
# Attributes Lambda (async DLQ) and EventBridge (target DLQ) put on a failed event's message.
ERROR_ATTRIBUTES = ("ErrorCode", "ErrorMessage", "RequestID", "ERROR_CODE", "ERROR_MESSAGE", "RULE_ARN")


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # JOBS, TRACK or HISTORY
    url: str


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue, with what it is about."""

    queue: str
    message_id: str
    body: str
    sent_at: str | None
    receive_count: int
    attributes: dict[str, str]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "sent_at": self.sent_at,
            "receive_count": self.receive_count,
            "summary": self.summary,
            "attributes": self.attributes,
            "body": self.body,
        }


@dataclass(frozen=True)
class RedriveResult:
    queue: str
    destination: str
    moved: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (message id, error)
    records_gone: tuple[str, ...] = ()  # of the failed: history messages whose records left the stream

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "destination": self.destination,
            "moved": len(self.moved),
            "moved_message_ids": list(self.moved),
            "failed": [{"message_id": message_id, "error": error} for message_id, error in self.failed],
            "records_gone": list(self.records_gone),
        }


class NotRedriven(Exception):
    """A message that stays in its dead-letter queue (or, with `replaced_by`, whose place a narrower
    message took), and why."""

    def __init__(self, reason: str, replaced_by: str | None = None) -> None:
        super().__init__(reason)
        self.replaced_by = replaced_by


class RecordsGone(NotRedriven):
    """The stream no longer has the records a history message names."""


class RedriveStopped(Exception):
    """A redrive ended early on an AWS error outside one message's send (receiving or deleting):
    `result` is what it had done until then, `error` the AWS error."""

    def __init__(self, result: RedriveResult, error: ClientError | BotoCoreError) -> None:
        super().__init__(str(error))
        self.result = result
        self.error = error


def summarize_json_message(
    message_id: str, text: str, error: dict[str, Any], attributes: dict[str, str]
) -> dict[str, Any]:
    """What a submit message or a task event (`text`) is about: the batch and job of a submit message,
    the task and job of a task event, with `error` and the error in the message attributes."""
    summary: dict[str, Any] = {}
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        if isinstance(document.get("batch"), str):
            key = document.get("idempotency_key")
            summary["batch"] = document["batch"]
            summary["idempotency_key"] = key
            summary["job_id"] = job_id_for(document["batch"], str(key) if key else message_id)
        detail = document.get("detail")
        if isinstance(detail, dict):
            started_by = detail.get("startedBy")
            summary["job_id"] = started_by if is_job_id(started_by) else None
            summary["task_arn"] = detail.get("taskArn")
            summary["last_status"] = detail.get("lastStatus")
            summary["version"] = detail.get("version")
    else:
        summary["note"] = "body is not a JSON object"
    error.update(attribute_errors(attributes))
    if error:
        summary["error"] = error
    return summary


def attribute_errors(attributes: dict[str, str]) -> dict[str, str]:
    """The error Lambda or EventBridge put in a dead letter's message attributes."""
    return {name: attributes[name] for name in ERROR_ATTRIBUTES if attributes.get(name)}


def message_attributes(message: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        text = value.get("StringValue")
        if text is None and value.get("BinaryValue") is not None:
            text = "<binary>"
        values[name] = str(text)
    return values


def sent_at(message: dict[str, Any]) -> str | None:
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    if not sent:
        return None
    return iso(datetime.fromtimestamp(int(sent) / 1000, tz=UTC))


class DeadLetterMessages:
    """A dead-letter queue's messages through one SQS client: how many, a peek, a copy sent elsewhere,
    and the redrive loop that a queue kind gives its own way of sending a message."""

    def __init__(self, sqs: SQSClient) -> None:
        self.sqs = sqs

    def depth(self, queue: DeadLetterQueue) -> int:
        """ApproximateNumberOfMessages (visible) + ApproximateNumberOfMessagesNotVisible."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def _receive(self, queue: DeadLetterQueue, visibility: int, count: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=max(1, min(RECEIVE_BATCH, count)),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = [dict(message) for message in response.get("Messages", [])]
        return messages

    def peek(self, queue: DeadLetterQueue, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` messages as SQS returns them, left in the queue and visible again when this
        returns."""
        received: list[dict[str, Any]] = []
        try:
            while len(received) < limit:
                batch = self._receive(queue, PEEK_VISIBILITY_SECONDS, limit - len(received))
                if not batch:
                    break
                received.extend(batch)
        finally:
            self._release(queue, [message["ReceiptHandle"] for message in received])
        return received

    def _release(self, queue: DeadLetterQueue, receipt_handles: list[str]) -> None:
        """Make received messages visible again."""
        for start in range(0, len(receipt_handles), RECEIVE_BATCH):
            chunk = receipt_handles[start : start + RECEIVE_BATCH]
            self.sqs.change_message_visibility_batch(
                QueueUrl=queue.url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for index, handle in enumerate(chunk)
                ],
            )

    def send_copy(self, url: str, body: str, message: dict[str, Any]) -> str:
        """Send `body` with the message's attributes to `url`; the new message id."""
        request: dict[str, Any] = {
            "QueueUrl": url,
            "MessageBody": body,
            "MessageAttributes": _resendable_attributes(message),
        }
        if url.endswith(".fifo"):
            attributes = message.get("Attributes") or {}
            request["MessageGroupId"] = attributes.get("MessageGroupId", "batchgate")
            request["MessageDeduplicationId"] = str(message["MessageId"])
        return str(self.sqs.send_message(**request)["MessageId"])

    def redrive(
        self,
        queue: DeadLetterQueue,
        destination: str,
        limit: int,
        send: Callable[[dict[str, Any]], None],
    ) -> RedriveResult:
        """`send` each of up to `limit` messages, and delete it from the queue once sent. A message
        `send` refuses (NotRedriven, or an AWS error of its own) stays, unless a narrower message took
        its place."""
        moved: list[str] = []
        failed: list[tuple[str, str]] = []
        gone: list[str] = []
        # Kept messages stay hidden until the loop ends, so that one run tries each message once (and
        # not a replacement it put in the queue itself).
        seen: set[str] = set()
        kept: list[str] = []

        def result() -> RedriveResult:
            return RedriveResult(
                queue=queue.name,
                destination=destination,
                moved=tuple(moved),
                failed=tuple(failed),
                records_gone=tuple(gone),
            )

        try:
            for message in self._take(queue, limit):
                message_id = str(message["MessageId"])
                if message_id in seen:
                    kept.append(message["ReceiptHandle"])
                    continue
                seen.add(message_id)
                try:
                    send(message)
                except (ClientError, NotRedriven) as error:
                    failed.append((message_id, str(error)))
                    if isinstance(error, RecordsGone):
                        gone.append(message_id)
                    if isinstance(error, NotRedriven) and error.replaced_by:
                        seen.add(error.replaced_by)
                        self.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
                    else:
                        kept.append(message["ReceiptHandle"])
                    continue
                self.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
                moved.append(message_id)
        except (ClientError, BotoCoreError) as error:
            raise RedriveStopped(result(), error) from error
        finally:
            self._release(queue, kept)
        return result()

    def _take(self, queue: DeadLetterQueue, limit: int) -> Iterator[dict[str, Any]]:
        """Up to `limit` messages, each hidden while it is being moved. Stops at the first empty receive
        (short polling can miss messages on a nearly empty queue: run redrive again to pick them up)."""
        taken = 0
        while taken < limit:
            batch = self._receive(queue, REDRIVE_VISIBILITY_SECONDS, limit - taken)
            if not batch:
                return
            for message in batch:
                taken += 1
                yield message


def _resendable_attributes(message: dict[str, Any]) -> dict[str, Any]:
    """The message's attributes in SendMessage's shape, plus where it was redriven from (SQS allows ten)."""
    attributes: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        kept = {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
        attributes[name] = kept
    if len(attributes) < 10:
        attributes[REDRIVEN_FROM_ATTRIBUTE] = {"DataType": "String", "StringValue": str(message["MessageId"])}
    return attributes
