"""The three dead-letter queues behind one object: look at any of them, redrive each its own way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchgate.ops.dead_letters.history import (
    HISTORY,
    StreamBatch,
    read_stream_batch,
    redrive_to_stream_function,
    summarize_history_letter,
)
from batchgate.ops.dead_letters.jobs import JOBS, redrive_to_queue, summarize_jobs_letter
from batchgate.ops.dead_letters.messages import (
    DeadLetter,
    DeadLetterMessages,
    DeadLetterQueue,
    RedriveResult,
    message_attributes,
    sent_at,
    summarize_json_message,
)
from batchgate.ops.dead_letters.track import (
    TRACK,
    redrive_to_event_queue,
    redrive_to_function,
    summarize_track_letter,
)
from batchgate.ops.stream_records import StreamsClient

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient

QUEUES = (JOBS, TRACK, HISTORY)


def summarize(queue: str, message_id: str, body: str, attributes: dict[str, str]) -> dict[str, Any]:
    """What a dead letter is about: the batch and job of a submit message, the job and attempt of a
    relaunch message, the task and job of a task event, the stream records of a history message, and
    the error Lambda or EventBridge recorded."""
    if queue == HISTORY:
        return summarize_history_letter(body)
    if queue == JOBS:
        return summarize_jobs_letter(message_id, body, attributes)
    if queue == TRACK:
        return summarize_track_letter(message_id, body, attributes)
    return summarize_json_message(message_id, body, {}, attributes)


class DeadLetters:
    """Reads and redrives the dead-letter queues through one SQS client (and, for the track and history
    DLQs, one Lambda client; for the history DLQ, one DynamoDB Streams client)."""

    def __init__(
        self,
        sqs: SQSClient,
        lambda_client: LambdaClient | None = None,
        streams: StreamsClient | None = None,
        region: str = "us-east-1",
    ) -> None:
        self._messages = DeadLetterMessages(sqs)
        self._lambda = lambda_client
        self._streams = streams
        self._region = region  # of the records' awsRegion, when a stream ARN does not say

    def depth(self, queue: DeadLetterQueue) -> int:
        """ApproximateNumberOfMessages (visible) + ApproximateNumberOfMessagesNotVisible."""
        return self._messages.depth(queue)

    def peek(self, queue: DeadLetterQueue, limit: int = 50) -> list[DeadLetter]:
        """Up to `limit` messages, left in the queue and visible again when this returns."""
        letters = []
        for message in self._messages.peek(queue, limit):
            attributes = message_attributes(message)
            body = str(message.get("Body", ""))
            letters.append(
                DeadLetter(
                    queue=queue.name,
                    message_id=str(message["MessageId"]),
                    body=body,
                    sent_at=sent_at(message),
                    receive_count=int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 0)),
                    attributes=attributes,
                    summary=summarize(queue.name, str(message["MessageId"]), body, attributes),
                )
            )
        return letters

    def redrive_to_queue(self, queue: DeadLetterQueue, destination_url: str, limit: int) -> RedriveResult:
        """Move up to `limit` messages back to `destination_url` (the jobs queue)."""
        return redrive_to_queue(self._messages, queue, destination_url, limit)

    def redrive_to_function(self, queue: DeadLetterQueue, function_name: str, limit: int) -> RedriveResult:
        """Invoke `function_name` (the track function) asynchronously with each event, up to `limit`."""
        if self._lambda is None:
            raise ValueError("redriving to a function needs a Lambda client")
        return redrive_to_function(
            self._messages, self._lambda, queue, function_name=function_name, limit=limit
        )

    def redrive_to_event_queue(self, queue: DeadLetterQueue, queue_url: str, limit: int) -> RedriveResult:
        """Send up to `limit` task events to `queue_url`, the local track host's event queue."""
        return redrive_to_event_queue(self._messages, queue, queue_url=queue_url, limit=limit)

    def redrive_to_stream_function(
        self, queue: DeadLetterQueue, function_name: str, limit: int
    ) -> RedriveResult:
        """Invoke `function_name` (the history function) synchronously with the stream records each
        message names, read from the stream again, up to `limit` messages."""
        if self._lambda is None or self._streams is None:
            raise ValueError("redriving stream records needs a Lambda and a DynamoDB Streams client")
        return redrive_to_stream_function(
            self._messages,
            self._lambda,
            self._streams,
            queue,
            function_name=function_name,
            limit=limit,
            region=self._region,
        )

    def read(self, batch: StreamBatch) -> list[dict[str, Any]]:
        """The records of `batch`'s range, as GetRecords returns them, in stream order. Raises
        RecordsGone when the stream no longer has them."""
        if self._streams is None:
            raise ValueError("reading stream records needs a DynamoDB Streams client")
        return read_stream_batch(self._streams, batch)
