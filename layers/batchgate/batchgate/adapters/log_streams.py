"""The CloudWatch Logs adapter that writes: a warm attempt's own log stream (PutLogEvents).

ops/logs.py reads a stream by the log group and stream an attempt records; a warm pool's worker writes
each attempt's output to its own stream there. PutLogEvents takes at most 10,000 events and 1,048,576
bytes a call, each event counting its UTF-8 message plus 26 bytes, at most 256 KB per event, in
chronological order: `put` splits what it is given into such calls.

The worker passes its client in: the Lambda layer keeps botocore's models only for the services its
functions call, and no function writes logs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

MAX_EVENTS_PER_CALL = 10_000
MAX_BYTES_PER_CALL = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD_BYTES


@dataclass(frozen=True)
class LogLine:
    """One line of a job's CloudWatch Logs."""

    timestamp: int  # epoch milliseconds
    message: str

    @property
    def size(self) -> int:
        return len(self.message.encode("utf-8")) + EVENT_OVERHEAD_BYTES


def within_event_limit(message: str) -> list[str]:
    """`message` cut into pieces of at most MAX_EVENT_BYTES of UTF-8, never inside a character."""
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_EVENT_BYTES:
        return [message]
    pieces = []
    start = 0
    while start < len(encoded):
        end = min(start + MAX_EVENT_BYTES, len(encoded))
        while end < len(encoded) and (encoded[end] & 0xC0) == 0x80:  # a continuation byte
            end -= 1
        pieces.append(encoded[start:end].decode("utf-8"))
        start = end
    return pieces


def put_log_events_batches(lines: Sequence[LogLine]) -> Iterator[list[LogLine]]:
    """`lines` (each within the event limit, in order) as the calls PutLogEvents accepts."""
    batch: list[LogLine] = []
    size = 0
    for line in lines:
        if batch and (len(batch) >= MAX_EVENTS_PER_CALL or size + line.size > MAX_BYTES_PER_CALL):
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += line.size
    if batch:
        yield batch


class LogStreamWriter:
    def __init__(self, client: CloudWatchLogsClient) -> None:
        self._client = client

    def create_stream(self, group: str, stream: str) -> None:
        """Create the stream; one that exists already (a retried attempt's start) is kept."""
        try:
            self._client.create_log_stream(logGroupName=group, logStreamName=stream)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                raise

    def put(self, group: str, stream: str, lines: Sequence[LogLine]) -> None:
        for batch in put_log_events_batches(lines):
            self._client.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": line.timestamp, "message": line.message} for line in batch],
            )
