"""DynamoDB stream records as Lambda delivers them to a function, from what GetRecords returns.

Shared by the local stack's stream event source mapping and by the CLI's redrive of the history
dead-letter queue, which sends the records it names to the history function again.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

EVENT_VERSION = "1.1"
GET_RECORDS_LIMIT = 1000  # DynamoDB Streams' most per GetRecords call


class StreamsClient(Protocol):
    """The DynamoDB Streams calls made here and by the local stack (boto3's "dynamodbstreams" client)."""

    def describe_stream(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def get_shard_iterator(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def get_records(self, **kwargs: Any) -> Mapping[str, Any]: ...


def epoch_seconds(value: Any) -> int:
    """ApproximateCreationDateTime as Lambda passes it: whole seconds since the epoch (the SDK parses
    the endpoint's timestamp into a datetime)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return epoch_seconds(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return int(value)


def _json_ready(value: Any) -> Any:
    """Binary attribute values as the base64 text of Lambda's JSON event."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | set | tuple):
        return [_json_ready(item) for item in value]
    return value


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One GetRecords record as Lambda's DynamoDB event presents it."""
    dynamodb: dict[str, Any] = _json_ready(dict(record.get("dynamodb") or {}))
    if "ApproximateCreationDateTime" in dynamodb:
        dynamodb["ApproximateCreationDateTime"] = epoch_seconds(dynamodb["ApproximateCreationDateTime"])
    shaped: dict[str, Any] = {
        "eventID": record.get("eventID", ""),
        "eventName": record.get("eventName", ""),
        "eventVersion": EVENT_VERSION,
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:  # deletions by TTL
        shaped["userIdentity"] = dict(record["userIdentity"])
    return shaped


def arrival_text(seconds: float) -> str:
    """A record's ApproximateCreationDateTime as Lambda's on-failure record writes it (DDBStreamBatchInfo's
    approximateArrival... fields): whole seconds, UTC."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_sequence(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def stream_region(stream_arn: str) -> str | None:
    """The region named in a stream ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/T/stream/LABEL)."""
    parts = stream_arn.split(":")
    if len(parts) > 3 and parts[3]:
        return parts[3]
    return None
