"""The two dead-letter queues: look at what is in them, and send it back to be processed again.

- The jobs DLQ holds submit messages that dispatch could not handle `maxReceiveCount` times. Redrive
  sends them back to the jobs queue.
- The track DLQ holds ECS task state change events that EventBridge could not deliver to the track
  function, and on-failure records of events the function failed on after its asynchronous retries.
  Their source is the function, not a queue, so redrive invokes the track function again
  (asynchronously) with each event.

Looking is a peek: messages are received with a short visibility timeout and made visible again at
once (ChangeMessageVisibility 0), so a look never hides them from a redrive or from another look for
long. Each look does count as a receive in `ApproximateReceiveCount`.

Redrive is a bounded receive -> send -> delete loop (SQS's StartMessageMoveTask only moves messages back
to a source *queue*, and the in-process AWS mock used for tests does not implement it). A message is
deleted only after it was sent, so a failure in between can only duplicate it, which dispatch and track
both tolerate. A submit message without an idempotency key gets its original SQS message id as key
when it is sent back: its job id stays the one dispatch already derived from that message id, so the
redriven message continues the same job instead of starting a second one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batchgate.jobs import is_job_id, iso, job_id_for

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient

JOBS = "jobs"
TRACK = "track"
PEEK_VISIBILITY_SECONDS = 5
REDRIVE_VISIBILITY_SECONDS = 60
RECEIVE_BATCH = 10
REDRIVEN_FROM_ATTRIBUTE = "batchgate-redriven-from"
# Attributes Lambda (async DLQ) and EventBridge (target DLQ) put on a failed event's message.
ERROR_ATTRIBUTES = ("ErrorCode", "ErrorMessage", "RequestID", "ERROR_CODE", "ERROR_MESSAGE", "RULE_ARN")


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # JOBS or TRACK
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "destination": self.destination,
            "moved": len(self.moved),
            "moved_message_ids": list(self.moved),
            "failed": [{"message_id": message_id, "error": error} for message_id, error in self.failed],
        }


def task_event_of(body: str) -> tuple[str, dict[str, Any]]:
    """The task state change event a track dead letter carries, and any error recorded with it.

    Two shapes land in the track DLQ: the event itself (EventBridge could not invoke the function; the
    error is in the message attributes), and a Lambda on-failure destination record (the function
    failed on every retry) holding the event as `requestPayload` and the error as `responsePayload`.
    Returns the event as JSON text (the body unchanged when it is not a destination record).
    """
    try:
        document = json.loads(body)
    except ValueError:
        return body, {}
    if not isinstance(document, dict) or "requestPayload" not in document:
        return body, {}
    error: dict[str, Any] = {}
    response = document.get("responsePayload")
    if isinstance(response, dict):
        for key in ("errorType", "errorMessage"):
            if response.get(key):
                error[key] = response[key]
    context = document.get("requestContext")
    if isinstance(context, dict):
        for key in ("condition", "approximateInvokeCount"):
            if context.get(key) is not None:
                error[key] = context[key]
    return json.dumps(document["requestPayload"]), error


def summarize(queue: str, message_id: str, body: str, attributes: dict[str, str]) -> dict[str, Any]:
    """What a dead letter is about: the batch and job of a submit message, the task and job of a task
    event, and the error Lambda or EventBridge recorded."""
    summary: dict[str, Any] = {}
    event_text, error = task_event_of(body) if queue == TRACK else (body, {})
    try:
        document = json.loads(event_text)
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
    for name in ERROR_ATTRIBUTES:
        if attributes.get(name):
            error[name] = attributes[name]
    if error:
        summary["error"] = error
    return summary


def _message_attributes(message: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        text = value.get("StringValue")
        if text is None and value.get("BinaryValue") is not None:
            text = "<binary>"
        values[name] = str(text)
    return values


def _sent_at(message: dict[str, Any]) -> str | None:
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    if not sent:
        return None
    return iso(datetime.fromtimestamp(int(sent) / 1000, tz=UTC))


class DeadLetters:
    """Reads and redrives the dead-letter queues through one SQS client (and, for the track DLQ, one
    Lambda client)."""

    def __init__(self, sqs: SQSClient, lambda_client: LambdaClient | None = None) -> None:
        self._sqs = sqs
        self._lambda = lambda_client

    def depth(self, queue: DeadLetterQueue) -> int:
        """ApproximateNumberOfMessages (visible) + ApproximateNumberOfMessagesNotVisible."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def _receive(self, queue: DeadLetterQueue, visibility: int, count: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=max(1, min(RECEIVE_BATCH, count)),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = [dict(message) for message in response.get("Messages", [])]
        return messages

    def peek(self, queue: DeadLetterQueue, limit: int = 50) -> list[DeadLetter]:
        """Up to `limit` messages, left in the queue and visible again when this returns."""
        received: list[dict[str, Any]] = []
        try:
            while len(received) < limit:
                batch = self._receive(queue, PEEK_VISIBILITY_SECONDS, limit - len(received))
                if not batch:
                    break
                received.extend(batch)
        finally:
            self._release(queue, [message["ReceiptHandle"] for message in received])
        letters = []
        for message in received:
            attributes = _message_attributes(message)
            body = str(message.get("Body", ""))
            letters.append(
                DeadLetter(
                    queue=queue.name,
                    message_id=str(message["MessageId"]),
                    body=body,
                    sent_at=_sent_at(message),
                    receive_count=int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 0)),
                    attributes=attributes,
                    summary=summarize(queue.name, str(message["MessageId"]), body, attributes),
                )
            )
        return letters

    def _release(self, queue: DeadLetterQueue, receipt_handles: list[str]) -> None:
        """Make received messages visible again."""
        for start in range(0, len(receipt_handles), RECEIVE_BATCH):
            chunk = receipt_handles[start : start + RECEIVE_BATCH]
            self._sqs.change_message_visibility_batch(
                QueueUrl=queue.url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for index, handle in enumerate(chunk)
                ],
            )

    def redrive_to_queue(self, queue: DeadLetterQueue, destination_url: str, limit: int) -> RedriveResult:
        """Move up to `limit` messages back to `destination_url` (the jobs queue)."""
        fifo = destination_url.endswith(".fifo")

        def send(message: dict[str, Any]) -> None:
            request: dict[str, Any] = {
                "QueueUrl": destination_url,
                "MessageBody": _keep_job_identity(str(message.get("Body", "")), str(message["MessageId"])),
                "MessageAttributes": _resendable_attributes(message),
            }
            if fifo:
                attributes = message.get("Attributes") or {}
                request["MessageGroupId"] = attributes.get("MessageGroupId", "batchgate")
                request["MessageDeduplicationId"] = str(message["MessageId"])
            self._sqs.send_message(**request)

        return self._redrive(queue, destination_url, limit, send)

    def redrive_to_function(self, queue: DeadLetterQueue, function_name: str, limit: int) -> RedriveResult:
        """Invoke `function_name` (the track function) asynchronously with each event, up to `limit`."""
        if self._lambda is None:
            raise ValueError("redriving to a function needs a Lambda client")
        client = self._lambda

        def send(message: dict[str, Any]) -> None:
            event, _ = task_event_of(str(message.get("Body", "")))
            client.invoke(FunctionName=function_name, InvocationType="Event", Payload=event.encode())

        return self._redrive(queue, function_name, limit, send)

    def _redrive(
        self,
        queue: DeadLetterQueue,
        destination: str,
        limit: int,
        send: Callable[[dict[str, Any]], None],
    ) -> RedriveResult:
        moved: list[str] = []
        failed: list[tuple[str, str]] = []
        for message in self._take(queue, limit):
            message_id = str(message["MessageId"])
            try:
                send(message)
            except ClientError as error:
                failed.append((message_id, str(error)))
                self._release(queue, [message["ReceiptHandle"]])
                continue
            self._sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            moved.append(message_id)
        return RedriveResult(
            queue=queue.name, destination=destination, moved=tuple(moved), failed=tuple(failed)
        )

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


def _keep_job_identity(body: str, message_id: str) -> str:
    """The submit message with its original message id as idempotency key when it had none, so that the
    job id (batch + key, else message id) does not change with the new message id."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict) or "batch" not in document or document.get("idempotency_key"):
        return body
    return json.dumps({**document, "idempotency_key": message_id}, separators=(",", ":"))
