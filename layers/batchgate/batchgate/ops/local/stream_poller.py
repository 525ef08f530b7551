"""Lambda's DynamoDB stream event source mapping, for one function execution environment.

Reads every shard of the stream (DescribeStream, again now and then for shards that appear later; a
child shard only once its parent is read to its end), one batch per shard at a time, so that a
shard's records reach the handler in stream order (ParallelizationFactor 1). A batch is up to the
batch size, gathered for at most the batching window once a first record is in; records that match
none of the mapping's filter patterns are dropped, as Lambda drops them. On success the shard moves
past the batch. With ReportBatchItemFailures it resumes at the lowest sequence number the handler
names; an invalid partial response, or a raised error, fails the whole batch. After
MaximumRetryAttempts retries, or for records older than MaximumRecordAgeInSeconds, the records are
named in the on-failure destination (Lambda's record, with DDBStreamBatchInfo) and the shard moves past
them. BisectBatchOnFunctionError and tumbling windows are not emulated; positions are kept in memory
only (a restarted host starts again at the mapping's starting position).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batchgate.domain.jobs import iso
from batchgate.ops.local.filters import matches_any, parse_patterns
from batchgate.ops.local.poller import Invoke, PollResult, failed_message_ids, poll_until_stopped
from batchgate.ops.local.resources import StreamEventSource
from batchgate.ops.stream_records import (
    GET_RECORDS_LIMIT,
    StreamsClient,
    arrival_text,
    lambda_stream_record,
    record_sequence,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

TRIM_HORIZON = "TRIM_HORIZON"
AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"
AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class StreamPacing:
    """How often the poller looks again; tests and benchmarks make these zero."""

    # Lambda polls each shard about four times a second. Once a second here: the endpoint keeps every
    # shard iterator it hands out, so an idle stack left running grows with each empty read.
    idle_seconds: float = 1.0
    gather_seconds: float = 0.05  # between reads while the batching window is open
    retry_seconds: float = 0.5  # before a failed batch is retried
    shard_refresh_seconds: float = 5.0  # between DescribeStream calls that look for new shards

    @classmethod
    def without_pauses(cls) -> StreamPacing:
        return cls(idle_seconds=0, gather_seconds=0, retry_seconds=0, shard_refresh_seconds=0)


@dataclass
class ShardPosition:
    """Where the poller is in one shard: an iterator while reading goes on, else where to get one."""

    shard_id: str
    parent_id: str | None
    iterator_type: str
    sequence_number: str | None = None
    iterator: str | None = None
    failed_invocations: int = 0  # of the batch that starts at this position
    not_before: float = 0.0  # monotonic time of the next retry
    finished: bool = False  # closed and read to its end

    def move(self, iterator_type: str, sequence_number: str | None, iterator: str | None = None) -> None:
        self.iterator_type = iterator_type
        self.sequence_number = sequence_number
        self.iterator = iterator


def _arrival(record: Mapping[str, Any]) -> str:
    return arrival_text(record["dynamodb"].get("ApproximateCreationDateTime", 0))


def on_failure_record(
    source: StreamEventSource,
    shard_id: str,
    records: Sequence[Mapping[str, Any]],
    *,
    condition: str,
    invocations: int,
    function_arn: str,
    function_error: bool,
    now: float,
) -> dict[str, Any]:
    """What Lambda sends to a stream mapping's on-failure destination: where the discarded records are
    in the stream (not the records themselves)."""
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error:
        response["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invocations,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": iso(datetime.fromtimestamp(now, UTC)),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": record_sequence(records[0]),
            "endSequenceNumber": record_sequence(records[-1]),
            "approximateArrivalOfFirstRecord": _arrival(records[0]),
            "approximateArrivalOfLastRecord": _arrival(records[-1]),
            "batchSize": len(records),
            "streamArn": source.stream_arn,
        },
    }


class StreamPoller:
    def __init__(
        self,
        streams: StreamsClient,
        sqs: SQSClient,
        source: StreamEventSource,
        invoke: Invoke,
        *,
        region: str,
        function_arn: str,
        pacing: StreamPacing | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._streams = streams
        self._sqs = sqs
        self._source = source
        self._invoke = invoke
        self._region = region
        self._function_arn = function_arn
        self._pacing = pacing or StreamPacing()
        self._clock = clock
        self._patterns = parse_patterns(source.filter_patterns)
        self._shards: dict[str, ShardPosition] = {}  # in the order DescribeStream lists them
        self._described = False
        self._next_describe = 0.0

    @property
    def shards(self) -> list[ShardPosition]:
        return list(self._shards.values())

    def run(self, stop: threading.Event) -> None:
        def poll() -> None:
            if self.poll_once().received == 0:
                stop.wait(self._pacing.idle_seconds)

        poll_until_stopped(poll, stop, type(self).__name__)

    def poll_once(self) -> PollResult:
        """One batch from each shard that is ready (its parent finished, no retry pending)."""
        if time.monotonic() >= self._next_describe:
            self._describe()
        received = failed = 0
        errors: list[str] = []
        for shard in list(self._shards.values()):
            if not self._ready(shard):
                continue
            result = self._poll_shard(shard)
            received += result.received
            failed += result.failed
            if result.error:
                errors.append(result.error)
            if shard.finished:
                self._next_describe = 0.0  # its children, if any, are next
        return PollResult(received, failed, "; ".join(errors) or None)

    # --- shards ----------------------------------------------------------------------------------------

    def _describe(self) -> None:
        found: list[Mapping[str, Any]] = []
        request: dict[str, Any] = {"StreamArn": self._source.stream_arn}
        while True:
            description = self._streams.describe_stream(**request)["StreamDescription"]
            found.extend(description.get("Shards") or [])
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            request["ExclusiveStartShardId"] = last
        for shard in found:
            shard_id = str(shard["ShardId"])
            if shard_id not in self._shards:
                # Shards there when the mapping starts begin at its starting position; later ones
                # (children of a split) from their start, so that none of their records is missed.
                start = self._source.starting_position if not self._described else TRIM_HORIZON
                self._shards[shard_id] = ShardPosition(shard_id, shard.get("ParentShardId"), start)
        self._described = True
        self._next_describe = time.monotonic() + self._pacing.shard_refresh_seconds

    def _ready(self, shard: ShardPosition) -> bool:
        if shard.finished or time.monotonic() < shard.not_before:
            return False
        parent = self._shards.get(shard.parent_id or "")
        return parent is None or parent.finished

    def _iterator(self, shard: ShardPosition) -> str:
        request: dict[str, Any] = {
            "StreamArn": self._source.stream_arn,
            "ShardId": shard.shard_id,
            "ShardIteratorType": shard.iterator_type,
        }
        if shard.sequence_number is not None:
            request["SequenceNumber"] = shard.sequence_number
        return str(self._streams.get_shard_iterator(**request)["ShardIterator"])

    def _read(self, shard: ShardPosition) -> tuple[list[Mapping[str, Any]], str | None]:
        """Up to the batch size from the shard's position, and the iterator after them (None: the
        shard is closed and read to its end)."""
        iterator: str | None = shard.iterator or self._iterator(shard)
        records: list[Mapping[str, Any]] = []
        window_ends: float | None = None
        while iterator is not None:
            response = self._streams.get_records(
                ShardIterator=iterator,
                Limit=min(GET_RECORDS_LIMIT, self._source.batch_size - len(records)),
            )
            records.extend(response.get("Records") or [])
            iterator = response.get("NextShardIterator")
            if not records or len(records) >= self._source.batch_size:
                break
            if window_ends is None:
                window_ends = time.monotonic() + self._source.window_seconds
            if time.monotonic() >= window_ends:
                break
            time.sleep(self._pacing.gather_seconds)
        return records, iterator

    # --- one batch -------------------------------------------------------------------------------------

    def _poll_shard(self, shard: ShardPosition) -> PollResult:
        try:
            read, after = self._read(shard)
        except ClientError as failure:
            shard.iterator = None  # the next poll starts again from the shard's position
            code = failure.response.get("Error", {}).get("Code")
            if code == "TrimmedDataAccessException":
                shard.move(TRIM_HORIZON, None)  # what the position pointed at has left the stream
            if code in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                return PollResult(0, 0)
            raise
        if not read:
            shard.iterator = after
            shard.finished = after is None
            return PollResult(0, 0)
        records = [lambda_stream_record(record, self._source.stream_arn, self._region) for record in read]
        batch = [record for record in records if matches_any(record, self._patterns)]
        expired = self._expired(batch)
        if expired:
            self._discard(shard, expired, AGE_EXCEEDED, function_error=False)
            # The rest of the batch is read again (and is younger).
            shard.move(AFTER_SEQUENCE_NUMBER, record_sequence(expired[-1]))
            return PollResult(len(read), len(expired))
        if not batch:
            self._passed(shard, read[-1], after)  # filtered out: dropped without an invocation
            return PollResult(len(read), 0)
        error: str | None = None
        try:
            response = self._invoke({"Records": batch})
        except Exception as failure:  # a failed invocation fails the whole batch, whatever the error
            error = f"{type(failure).__name__}: {failure}"
            first_failed = 0
        else:
            ids = [record_sequence(record) for record in batch]
            failed = failed_message_ids(response, ids, self._source.report_item_failures)
            first_failed = next((index for index, id_ in enumerate(ids) if id_ in failed), len(batch))
        if first_failed == len(batch):
            self._passed(shard, read[-1], after)
            return PollResult(len(read), 0)
        failed_records = batch[first_failed:]
        shard.failed_invocations += 1
        retries = self._source.max_retry_attempts
        if 0 <= retries < shard.failed_invocations:
            self._discard(shard, failed_records, RETRIES_EXHAUSTED, function_error=error is not None)
            self._passed(shard, read[-1], after)
        else:
            shard.move(AT_SEQUENCE_NUMBER, record_sequence(failed_records[0]))
            shard.not_before = time.monotonic() + self._pacing.retry_seconds
        return PollResult(len(read), len(failed_records), error)

    def _expired(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The oldest records of the batch, past the mapping's maximum record age."""
        limit = self._source.max_record_age_seconds
        if limit < 0:
            return []
        oldest_allowed = self._clock() - limit
        expired: list[dict[str, Any]] = []
        for record in batch:
            if record["dynamodb"].get("ApproximateCreationDateTime", oldest_allowed) >= oldest_allowed:
                break
            expired.append(record)
        return expired

    def _passed(self, shard: ShardPosition, last: Mapping[str, Any], after: str | None) -> None:
        """The shard moves past `last` (the batch's last record read), keeping the iterator after it."""
        shard.move(AFTER_SEQUENCE_NUMBER, record_sequence(last), after)
        shard.failed_invocations = 0
        shard.finished = after is None

    def _discard(
        self,
        shard: ShardPosition,
        records: Sequence[Mapping[str, Any]],
        condition: str,
        *,
        function_error: bool,
    ) -> None:
        invocations = shard.failed_invocations
        shard.failed_invocations = 0
        if not self._source.on_failure_url:
            return  # no destination: Lambda drops the records
        record = on_failure_record(
            self._source,
            shard.shard_id,
            records,
            condition=condition,
            invocations=invocations,
            function_arn=self._function_arn,
            function_error=function_error,
            now=self._clock(),
        )
        self._sqs.send_message(QueueUrl=self._source.on_failure_url, MessageBody=json.dumps(record))
