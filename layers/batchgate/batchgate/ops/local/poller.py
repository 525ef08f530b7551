"""Lambda's SQS event source mapping, for one function execution environment.

Receives up to the mapping's batch size (waiting at most its batching window once a first message is
in), invokes the handler with an SQS-shaped event, and deletes what succeeded. With
ReportBatchItemFailures only the records the handler names stay; without it, or when the handler
raises, the whole batch stays. Records left undeleted come back after the queue's visibility timeout,
and the endpoint moves them to the dead-letter queue after the redrive policy's maxReceiveCount, as SQS
does.
"""

from __future__ import annotations

import base64
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.ops.local.resources import SqsEventSource
from batchgate.ops.terminal import terminal_text

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

SQS_RECEIVE_LIMIT = 10
LONG_POLL_SECONDS = 1  # bounded: a stop that does not interrupt the wait (StopRequest) waits that long
GATHER_PAUSE_SECONDS = 0.05

ERROR_PAUSE_SECONDS = 1.0

Invoke = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class PollResult:
    received: int
    failed: int
    error: str | None = None


def lambda_record(message: MessageTypeDef, source: SqsEventSource, region: str) -> dict[str, Any]:
    """One SQS message as Lambda's SQS event presents it."""
    attributes: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        attribute: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            attribute["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        attributes[name] = attribute
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(response: Any, message_ids: Sequence[str], report_item_failures: bool) -> set[str]:
    """Which records of the batch failed after a handler returned `response` (they stay on the queue;
    a stream mapping resumes at the lowest): the identifiers are message ids, or sequence numbers.

    Lambda treats an invalid partial-batch response (an identifier missing or not in the batch) as a
    failure of the whole batch."""
    if not report_item_failures:
        return set()
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return set()
    named = {str(failure.get("itemIdentifier") or "") for failure in failures if isinstance(failure, dict)}
    if len(named) != len(failures) or not named <= set(message_ids):
        return set(message_ids)
    return named


class WaitInterrupted(BaseException):
    """A stop request that ended a wait for messages. A BaseException, as KeyboardInterrupt is: the SDK,
    which catches Exception to retry a request, lets it through."""


class StopRequest(threading.Event):
    """A host process's stop, set by its SIGTERM handler (`request`). A host waiting for a first message
    stops at once: the handler raises WaitInterrupted into the wait, which nothing depends on (a message
    the long poll was about to return comes back after its visibility timeout, as from any poller that
    stops). In an invocation the request is only noted; the loop ends once the invocation is over.

    Signal handlers run in the main thread, so only a loop running there may wait interruptibly."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting = False

    def request(self, signum: int, frame: FrameType | None) -> None:
        self.set()
        if self._waiting:
            self._waiting = False
            raise WaitInterrupted

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """The block is a wait that a stop request ends by raising WaitInterrupted."""
        if self.is_set():
            raise WaitInterrupted
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


def waiting_for_messages(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    """A long poll: interruptible when `stop` is the host's StopRequest, an ordinary call otherwise."""
    return stop.interruptible() if isinstance(stop, StopRequest) else contextlib.nullcontext()


def poll_until_stopped(poll_once: Callable[[], object], stop: threading.Event, name: str) -> None:
    """Poll until `stop` is set (or a stop request interrupts a wait for messages); an endpoint error
    pauses the loop instead of ending it, as Lambda's own pollers keep polling."""
    while not stop.is_set():
        try:
            poll_once()
        except WaitInterrupted:
            return
        except (ClientError, BotoCoreError) as error:
            print(terminal_text(f"batchgate local: {name}: {error}"), file=sys.stderr, flush=True)
            stop.wait(ERROR_PAUSE_SECONDS)


class SqsPoller:
    def __init__(self, sqs: SQSClient, source: SqsEventSource, invoke: Invoke, region: str) -> None:
        self._sqs = sqs
        self._source = source
        self._invoke = invoke
        self._region = region
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        poll_until_stopped(self.poll_once, stop, type(self).__name__)

    def poll_once(self) -> PollResult:
        messages = self._receive()
        if not messages:
            return PollResult(0, 0)
        ids = [message["MessageId"] for message in messages]
        event = {"Records": [lambda_record(message, self._source, self._region) for message in messages]}
        try:
            response = self._invoke(event)
        except Exception as error:  # a failed invocation returns the whole batch, whatever the error
            return PollResult(len(messages), len(messages), f"{type(error).__name__}: {error}")
        failed = failed_message_ids(response, ids, self._source.report_item_failures)
        self._delete([message for message in messages if message["MessageId"] not in failed])
        return PollResult(len(messages), len(failed))

    def _receive(self) -> list[MessageTypeDef]:
        """Up to the batch size: wait for a first message, then gather for the batching window."""
        batch: list[MessageTypeDef] = []
        window_ends: float | None = None
        while len(batch) < self._source.batch_size:
            if window_ends is not None and time.monotonic() >= window_ends:
                break
            # Only the wait for a first message is interruptible: a batch being gathered is invoked.
            with contextlib.nullcontext() if batch else waiting_for_messages(self._stop):
                response = self._sqs.receive_message(
                    QueueUrl=self._source.queue_url,
                    MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, self._source.batch_size - len(batch)),
                    WaitTimeSeconds=0 if batch else LONG_POLL_SECONDS,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            received = response.get("Messages", [])
            if not batch and not received:
                return batch
            if window_ends is None:
                window_ends = time.monotonic() + self._source.window_seconds
            batch.extend(received)
            if not received:
                time.sleep(GATHER_PAUSE_SECONDS)
        return batch

    def _delete(self, messages: list[MessageTypeDef]) -> None:
        for start in range(0, len(messages), SQS_RECEIVE_LIMIT):
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages[start : start + SQS_RECEIVE_LIMIT])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._source.queue_url, Entries=entries)
