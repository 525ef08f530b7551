"""The history DLQ: Lambda's on-failure records of the history function's stream event source mapping,
one for each batch of the job table's stream it kept failing on.

A record names the stream records (stream, shard, sequence number range), it does not hold them.
Redrive reads them from the stream while it still has them (DynamoDB Streams keeps records 24 hours) and
invokes the history function (synchronously) with them, shaped as Lambda delivers them. Records that
have left the stream cannot be redriven: the history misses the attempts they finished (the job items
themselves are unaffected). The history function does not tolerate repeats (a folded attempt counts
again), so a message whose records the function folded in part is replaced by one naming only the
records from the first it reported failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batchgate.ops.dead_letters.messages import (
    DeadLetterMessages,
    DeadLetterQueue,
    NotRedriven,
    RecordsGone,
    RedriveResult,
)
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

HISTORY = "history"
MAX_RANGE_READS = 100  # GetRecords calls for one message's range (Lambda's batches hold at most 10,000)
MAX_EMPTY_READS = 3  # in a row, before the range is taken as not there
# What DynamoDB Streams answers for a position whose records were trimmed (older than 24 hours), or an
# iterator that is no longer valid.
GONE_ERRORS = ("TrimmedDataAccessException", "ExpiredIteratorException")


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


def summarize_history_letter(body: str) -> dict[str, Any]:
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


def read_stream_batch(streams: StreamsClient, batch: StreamBatch) -> list[dict[str, Any]]:
    """The records of `batch`'s range, as GetRecords returns them, in stream order. Raises RecordsGone
    when the stream no longer has them."""
    end = int(batch.end_sequence_number)  # sequence numbers compare as numbers, not as text
    records: list[dict[str, Any]] = []
    try:
        iterator: str | None = streams.get_shard_iterator(
            StreamArn=batch.stream_arn,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=batch.start_sequence_number,
        ).get("ShardIterator")
        empty_reads = 0
        for _ in range(MAX_RANGE_READS):
            if iterator is None:
                break  # a closed shard, read to its end
            response = streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
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


def redrive_to_stream_function(
    messages: DeadLetterMessages,
    lambda_client: LambdaClient,
    streams: StreamsClient,
    queue: DeadLetterQueue,
    *,
    function_name: str,
    limit: int,
    region: str,
) -> RedriveResult:
    """Invoke `function_name` (the history function) synchronously with the stream records each
    message names, read from the stream again, up to `limit` messages. `region` is the records'
    awsRegion when a stream ARN does not say."""

    def send(message: dict[str, Any]) -> None:
        body = str(message.get("Body", ""))
        batch, _ = stream_batch_of(body)
        if batch is None:
            raise NotRedriven("names no stream records (no DDBStreamBatchInfo): kept")
        # Every record of the range goes, also those the mapping's filter drops: the function
        # skips a record that finishes no attempt, as it does for any record it is given.
        record_region = stream_region(batch.stream_arn) or region
        records = [
            lambda_stream_record(record, batch.stream_arn, record_region)
            for record in read_stream_batch(streams, batch)
        ]
        response = lambda_client.invoke(
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
        _keep_unfolded(messages, queue, message, batch=batch, records=records, payload=payload)

    return messages.redrive(queue, function_name, limit, send)


def _keep_unfolded(
    messages: DeadLetterMessages,
    queue: DeadLetterQueue,
    message: dict[str, Any],
    *,
    batch: StreamBatch,
    records: list[dict[str, Any]],
    payload: bytes,
) -> None:
    """Return when the function folded every record. Otherwise raise NotRedriven; when it folded the
    records before the first it reported failed, first put a message naming only the rest in the queue
    (sent again whole, the folded ones would count twice)."""
    sequences = [record_sequence(record) for record in records]
    failed = _reported_failures(payload)
    if not failed:
        return
    first = next((index for index, sequence in enumerate(sequences) if sequence in failed), None)
    if first is None or any(sequence not in sequences for sequence in failed):
        # Lambda takes a response naming records it did not send as a failure of the whole batch.
        raise NotRedriven(f"the function's response names records it was not sent: {sorted(failed)}: kept")
    if first == 0:
        raise NotRedriven(f"the function reported every record of {batch.describe()} failed: kept")
    rest = records[first:]
    narrowed = _narrowed_body(str(message.get("Body", "")), rest)
    replacement = messages.send_copy(queue.url, narrowed, message)
    raise NotRedriven(
        f"the function folded {first} records and reported the rest failed from sequence number "
        f"{sequences[first]}: kept as message {replacement}, naming those {len(rest)} records",
        replaced_by=replacement,
    )


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
