"""The three dead-letter queues: look at what is in them, and send it back to be processed again.

- The jobs DLQ holds submit messages that dispatch could not handle `maxReceiveCount` times. Redrive
  sends them back to the jobs queue.
- The track DLQ holds ECS task state change events that EventBridge could not deliver to the track
  function, and on-failure records of events the function failed on after its asynchronous retries.
  Their source is the function, not a queue, so redrive invokes the track function again
  (asynchronously) with each event.
- The history DLQ holds the records of the history function's stream event source mapping: Lambda's
  on-failure record for a batch of the job table's stream it kept failing on. It names the records
  (stream, shard, sequence number range), it does not hold them. Redrive reads them from the stream
  while it still has them (DynamoDB Streams keeps records 24 hours) and invokes the history function
  (synchronously) with them, shaped as Lambda delivers them. Records that have left the stream cannot be
  redriven: the history misses the attempts they finished (the job items themselves are unaffected).

Looking is a peek: messages are received with a short visibility timeout and made visible again at
once (ChangeMessageVisibility 0), so a look never hides them from a redrive or from another look for
long. Each look does count as a receive in `ApproximateReceiveCount`.

Redrive is a bounded receive -> send -> delete loop (SQS's StartMessageMoveTask only moves messages back
to a source *queue*, and the in-process AWS mock used for tests does not implement it). A message is
deleted only after it was sent, so a failure in between can only duplicate it, which dispatch and track
both tolerate. A submit message without an idempotency key gets its original SQS message id as key
when it is sent back: its job id stays the one dispatch already derived from that message id, so the
redriven message continues the same job instead of starting a second one. The history function does
not tolerate repeats (a folded attempt counts again), so a history message whose records the function
folded in part is replaced by one naming only the records from the first it reported failed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.domain.jobs import is_job_id, iso, job_id_for
from batchgate.domain.relaunch import KIND_ATTRIBUTE, RETRY_KIND, InvalidRelaunchMessage, Relaunch
from batchgate.ops.stream_records import (
    GET_RECORDS_LIMIT,
    StreamsClient,
    arrival_text,
    lambda_stream_record,
    record_sequence,
    stream_region,
)

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient

JOBS = "jobs"
TRACK = "track"
HISTORY = "history"
QUEUES = (JOBS, TRACK, HISTORY)
PEEK_VISIBILITY_SECONDS = 5
REDRIVE_VISIBILITY_SECONDS = 60
RECEIVE_BATCH = 10
REDRIVEN_FROM_ATTRIBUTE = "batchgate-redriven-from"
# Attributes Lambda (async DLQ) and EventBridge (target DLQ) put on a failed event's message.
ERROR_ATTRIBUTES = ("ErrorCode", "ErrorMessage", "RequestID", "ERROR_CODE", "ERROR_MESSAGE", "RULE_ARN")
MAX_RANGE_READS = 100  # GetRecords calls for one message's range (Lambda's batches hold at most 10,000)
MAX_EMPTY_READS = 3  # in a row, before the range is taken as not there
# What DynamoDB Streams answers for a position whose records were trimmed (older than 24 hours), or an
# iterator that is no longer valid.
GONE_ERRORS = ("TrimmedDataAccessException", "ExpiredIteratorException")


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


@dataclass(frozen=True)
class StreamBatch:
    """The records of the job table's stream a history dead letter names (Lambda's DDBStreamBatchInfo)."""

    stream_arn: str
    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    batch_size: int
    first_arrival: str | None = None
    last_arrival: str | None = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> StreamBatch:
        return cls(
            stream_arn=str(info["streamArn"]),
            shard_id=str(info["shardId"]),
            start_sequence_number=str(info["startSequenceNumber"]),
            end_sequence_number=str(info["endSequenceNumber"]),
            batch_size=int(info.get("batchSize") or 0),
            first_arrival=info.get("approximateArrivalOfFirstRecord"),
            last_arrival=info.get("approximateArrivalOfLastRecord"),
        )

    def describe(self) -> str:
        return (
            f"shard {self.shard_id}, sequence numbers {self.start_sequence_number}"
            f"..{self.end_sequence_number}"
        )


def stream_batch_of(body: str) -> tuple[StreamBatch | None, dict[str, Any]]:
    """The stream records a history dead letter names, and the failure Lambda recorded with them
    (condition, approximateInvokeCount, functionError). None when the body names no records."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, {}
    if not isinstance(document, dict):
        return None, {}
    error: dict[str, Any] = {}
    context = document.get("requestContext")
    if isinstance(context, dict):
        for key in ("condition", "approximateInvokeCount"):
            if context.get(key) is not None:
                error[key] = context[key]
    response = document.get("responseContext")
    if isinstance(response, dict) and response.get("functionError"):
        error["functionError"] = response["functionError"]
    info = document.get("DDBStreamBatchInfo")
    try:
        batch = StreamBatch.from_info(info) if isinstance(info, dict) else None
    except (KeyError, TypeError, ValueError):
        batch = None
    return batch, error


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
    """What a dead letter is about: the batch and job of a submit message, the job and attempt of a
    relaunch message, the task and job of a task event, and the error Lambda or EventBridge recorded."""
    if queue == HISTORY:
        return _summarize_stream_batch(body)
    if queue == JOBS and attributes.get(KIND_ATTRIBUTE) == RETRY_KIND:
        return _summarize_relaunch(body, attributes)
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
    error.update(_attribute_errors(attributes))
    if error:
        summary["error"] = error
    return summary


def _summarize_relaunch(body: str, attributes: dict[str, str]) -> dict[str, Any]:
    """batchgate's own message that launches a job's attempt again (a retry or a lost launch)."""
    summary: dict[str, Any] = {"kind": "relaunch"}
    try:
        relaunch = Relaunch.parse(body)
    except InvalidRelaunchMessage as wrong:
        summary["job_id"] = None
        summary["note"] = f"marked {KIND_ATTRIBUTE}={RETRY_KIND} but not a relaunch batchgate wrote: {wrong}"
    else:
        summary["job_id"] = relaunch.job_id
        summary["attempt"] = relaunch.attempt
    error = _attribute_errors(attributes)
    if error:
        summary["error"] = error
    return summary


def _attribute_errors(attributes: dict[str, str]) -> dict[str, str]:
    """The error Lambda or EventBridge put in a dead letter's message attributes."""
    return {name: attributes[name] for name in ERROR_ATTRIBUTES if attributes.get(name)}


def _summarize_stream_batch(body: str) -> dict[str, Any]:
    """What a history dead letter names: where its records are in the stream, how many, when they
    arrived, and why Lambda gave up on them. No job: the message does not say which jobs wrote them."""
    batch, error = stream_batch_of(body)
    summary: dict[str, Any] = {"job_id": None}
    if batch is None:
        summary["note"] = "names no stream records (no DDBStreamBatchInfo)"
    else:
        document = json.loads(body)
        context = document.get("requestContext") or {}
        summary.update(
            {
                "stream_arn": batch.stream_arn,
                "shard_id": batch.shard_id,
                "start_sequence_number": batch.start_sequence_number,
                "end_sequence_number": batch.end_sequence_number,
                "batch_size": batch.batch_size,
                "first_record_at": batch.first_arrival,
                "last_record_at": batch.last_arrival,
                "failed_at": document.get("timestamp"),
                "function_arn": context.get("functionArn") if isinstance(context, dict) else None,
            }
        )
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
    """Reads and redrives the dead-letter queues through one SQS client (and, for the track and history
    DLQs, one Lambda client; for the history DLQ, one DynamoDB Streams client)."""

    def __init__(
        self,
        sqs: SQSClient,
        lambda_client: LambdaClient | None = None,
        streams: StreamsClient | None = None,
        region: str = "us-east-1",
    ) -> None:
        self._sqs = sqs
        self._lambda = lambda_client
        self._streams = streams
        self._region = region  # of the records' awsRegion, when a stream ARN does not say

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

        def send(message: dict[str, Any]) -> None:
            body = _keep_job_identity(str(message.get("Body", "")), str(message["MessageId"]))
            self._send_copy(destination_url, body, message)

        return self._redrive(queue, destination_url, limit, send)

    def _send_copy(self, url: str, body: str, message: dict[str, Any]) -> str:
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
        return str(self._sqs.send_message(**request)["MessageId"])

    def redrive_to_function(self, queue: DeadLetterQueue, function_name: str, limit: int) -> RedriveResult:
        """Invoke `function_name` (the track function) asynchronously with each event, up to `limit`."""
        if self._lambda is None:
            raise ValueError("redriving to a function needs a Lambda client")
        client = self._lambda

        def send(message: dict[str, Any]) -> None:
            event, _ = task_event_of(str(message.get("Body", "")))
            client.invoke(FunctionName=function_name, InvocationType="Event", Payload=event.encode())

        return self._redrive(queue, function_name, limit, send)

    def redrive_to_stream_function(
        self, queue: DeadLetterQueue, function_name: str, limit: int
    ) -> RedriveResult:
        """Invoke `function_name` (the history function) synchronously with the stream records each
        message names, read from the stream again, up to `limit` messages."""
        if self._lambda is None or self._streams is None:
            raise ValueError("redriving stream records needs a Lambda and a DynamoDB Streams client")
        client = self._lambda

        def send(message: dict[str, Any]) -> None:
            body = str(message.get("Body", ""))
            batch, _ = stream_batch_of(body)
            if batch is None:
                raise NotRedriven("names no stream records (no DDBStreamBatchInfo): kept")
            # Every record of the range goes, also those the mapping's filter drops: the function
            # skips a record that finishes no attempt, as it does for any record it is given.
            region = stream_region(batch.stream_arn) or self._region
            records = [lambda_stream_record(record, batch.stream_arn, region) for record in self.read(batch)]
            response = client.invoke(
                FunctionName=function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps({"Records": records}).encode(),
            )
            payload = response["Payload"].read()
            if response.get("FunctionError"):
                raise NotRedriven(
                    f"the function failed ({response['FunctionError']}: {_error_text(payload)}) on "
                    f"{batch.describe()}: kept"
                )
            self._keep_unfolded(queue, message, batch, records, payload)

        return self._redrive(queue, function_name, limit, send)

    def read(self, batch: StreamBatch) -> list[dict[str, Any]]:
        """The records of `batch`'s range, as GetRecords returns them, in stream order. Raises
        RecordsGone when the stream no longer has them."""
        if self._streams is None:
            raise ValueError("reading stream records needs a DynamoDB Streams client")
        end = int(batch.end_sequence_number)  # sequence numbers compare as numbers, not as text
        records: list[dict[str, Any]] = []
        try:
            iterator: str | None = self._streams.get_shard_iterator(
                StreamArn=batch.stream_arn,
                ShardId=batch.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=batch.start_sequence_number,
            ).get("ShardIterator")
            empty_reads = 0
            for _ in range(MAX_RANGE_READS):
                if iterator is None:
                    break  # a closed shard, read to its end
                response = self._streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
                page = list(response.get("Records") or [])
                iterator = response.get("NextShardIterator")
                for record in page:
                    sequence = int(record_sequence(record))
                    if sequence > end:
                        return records
                    records.append(dict(record))
                    if sequence == end:
                        return records
                empty_reads = 0 if page else empty_reads + 1
                if empty_reads >= MAX_EMPTY_READS:
                    break
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in GONE_ERRORS:
                raise RecordsGone(_gone_reason(batch, code)) from error
            raise
        if not records:
            raise RecordsGone(_gone_reason(batch, "nothing found for the range"))
        raise NotRedriven(
            f"read {len(records)} records of {batch.describe()} up to {record_sequence(records[-1])}, "
            "not to the range's end: kept"
        )

    def _keep_unfolded(
        self,
        queue: DeadLetterQueue,
        message: dict[str, Any],
        batch: StreamBatch,
        records: list[dict[str, Any]],
        payload: bytes,
    ) -> None:
        """Return when the function folded every record. Otherwise raise NotRedriven; when it folded
        the records before the first it reported failed, first put a message naming only the rest in
        the queue (sent again whole, the folded ones would count twice)."""
        sequences = [record_sequence(record) for record in records]
        failed = _reported_failures(payload)
        if not failed:
            return
        first = next((index for index, sequence in enumerate(sequences) if sequence in failed), None)
        if first is None or any(sequence not in sequences for sequence in failed):
            # Lambda takes a response naming records it did not send as a failure of the whole batch.
            raise NotRedriven(
                f"the function's response names records it was not sent: {sorted(failed)}: kept"
            )
        if first == 0:
            raise NotRedriven(f"the function reported every record of {batch.describe()} failed: kept")
        rest = records[first:]
        narrowed = _narrowed_body(str(message.get("Body", "")), rest)
        replacement = self._send_copy(queue.url, narrowed, message)
        raise NotRedriven(
            f"the function folded {first} records and reported the rest failed from sequence number "
            f"{sequences[first]}: kept as message {replacement}, naming those {len(rest)} records",
            replaced_by=replacement,
        )

    def _redrive(
        self,
        queue: DeadLetterQueue,
        destination: str,
        limit: int,
        send: Callable[[dict[str, Any]], None],
    ) -> RedriveResult:
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
                        self._sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
                    else:
                        kept.append(message["ReceiptHandle"])
                    continue
                self._sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
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


def _gone_reason(batch: StreamBatch, why: str) -> str:
    return (
        f"the records it names ({batch.describe()}) have left the stream ({why}; DynamoDB Streams keeps "
        "records 24 hours): the history misses the attempts they finished, the job items are "
        "unaffected; kept"
    )


def _error_text(payload: bytes) -> str:
    """errorType: errorMessage of a function error's payload (the payload itself if it is not that)."""
    text = payload.decode(errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(document, dict) and (document.get("errorType") or document.get("errorMessage")):
        return f"{document.get('errorType', '?')}: {document.get('errorMessage', '')}"
    return text[:500]


def _reported_failures(payload: bytes) -> set[str]:
    """The sequence numbers a partial batch response names failed (empty: all succeeded). A response
    item without an identifier fails the whole batch, as Lambda takes it."""
    try:
        document = json.loads(payload or b"null")
    except ValueError:
        return set()
    if not isinstance(document, dict) or not isinstance(document.get("batchItemFailures"), list):
        return set()
    failed: set[str] = set()
    for item in document["batchItemFailures"]:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        failed.add(str(identifier) if identifier else "")
    return failed


def _narrowed_body(body: str, rest: list[dict[str, Any]]) -> str:
    """The history dead letter's body naming only `rest` (Lambda-shaped records, in stream order)."""
    document = json.loads(body)
    info = dict(document["DDBStreamBatchInfo"])
    info["startSequenceNumber"] = record_sequence(rest[0])
    info["batchSize"] = len(rest)
    created = rest[0]["dynamodb"].get("ApproximateCreationDateTime")
    if created is not None:
        info["approximateArrivalOfFirstRecord"] = arrival_text(created)
    return json.dumps({**document, "DDBStreamBatchInfo": info})
