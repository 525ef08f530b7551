"""The local stack's DynamoDB stream event source mapping: a table's stream read as Lambda reads it
(order, record shape, filters, partial batch responses, retries and the on-failure destination),
against moto in this process; shard splits against a stand-in streams client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
    DynamoDBStreamModel,
)
from batchgate.ops.local.filters import FilterError, matches_any, parse_patterns
from batchgate.ops.local.functions import HostConfig
from batchgate.ops.local.poller import PollResult
from batchgate.ops.local.resources import FunctionSpec, StreamEventSource
from batchgate.ops.local.stream_poller import StreamPacing, StreamPoller
from batchgate.ops.stream_records import epoch_seconds, lambda_stream_record

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:batchgate-local-history"
NO_PAUSES = StreamPacing.without_pauses()
MODIFY_ONLY = '{"eventName": ["MODIFY"]}'

Response = Callable[[list[dict[str, Any]]], Any]


@dataclass
class Handler:
    """A stand-in for the function: records each batch, answers with `respond`."""

    respond: Response = lambda records: {"batchItemFailures": []}
    batches: list[list[dict[str, Any]]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> Any:
        records: list[dict[str, Any]] = event["Records"]
        self.batches.append(records)
        return self.respond(records)

    def keys(self) -> list[list[str]]:
        return [[record["dynamodb"]["Keys"]["id"]["S"] for record in batch] for batch in self.batches]


def failing(*keys: str) -> Response:
    """Reports the records of the given keys as failed (the order Lambda gets them in does not matter)."""

    def respond(records: list[dict[str, Any]]) -> dict[str, Any]:
        named = [
            r["dynamodb"]["SequenceNumber"]
            for r in reversed(records)
            if r["dynamodb"]["Keys"]["id"]["S"] in keys
        ]
        return {"batchItemFailures": [{"itemIdentifier": number} for number in named]}

    return respond


@dataclass
class Table:
    dynamodb: DynamoDBClient
    sqs: SQSClient
    stream_arn: str
    dlq_url: str
    dlq_arn: str

    def put(self, key: str, **attributes: str) -> None:
        item = {"id": {"S": key}, **{name: {"S": value} for name, value in attributes.items()}}
        self.dynamodb.put_item(TableName="jobs", Item=item)

    def source(self, **changes: Any) -> StreamEventSource:
        source = StreamEventSource(
            function="HistoryFunction",
            stream_arn=self.stream_arn,
            starting_position="TRIM_HORIZON",
            batch_size=100,
            report_item_failures=True,
            max_retry_attempts=10,
            on_failure_arn=self.dlq_arn,
            on_failure_url=self.dlq_url,
        )
        return replace(source, **changes)

    def poller(
        self,
        handler: Handler,
        clock: Callable[[], float] = time.time,
        pacing: StreamPacing = NO_PAUSES,
        **changes: Any,
    ) -> StreamPoller:
        return StreamPoller(
            boto3.client("dynamodbstreams", region_name=REGION),
            self.sqs,
            self.source(**changes),
            handler,
            region=REGION,
            function_arn=FUNCTION_ARN,
            pacing=pacing,
            clock=clock,
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]


@pytest.fixture
def table(aws: None) -> Table:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    created = dynamodb.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName="history-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Table(dynamodb, sqs, created["TableDescription"]["LatestStreamArn"], dlq_url, dlq_arn)


def test_records_reach_the_handler_in_order_and_lambda_shaped(table: Table) -> None:
    table.put("a", status="QUEUED")
    table.put("b", status="QUEUED")
    table.put("a", status="RUNNING")
    table.dynamodb.put_item(TableName="jobs", Item={"id": {"S": "c"}, "blob": {"B": b"\x00\x01"}})
    handler = Handler()
    poller = table.poller(handler)

    assert poller.poll_once() == PollResult(received=4, failed=0)
    assert poller.poll_once() == PollResult(received=0, failed=0)  # nothing is delivered twice

    assert handler.keys() == [["a", "b", "a", "c"]]
    records = handler.batches[0]
    numbers = [int(record["dynamodb"]["SequenceNumber"]) for record in records]
    assert numbers == sorted(numbers)
    assert [record["eventName"] for record in records] == ["INSERT", "INSERT", "MODIFY", "INSERT"]
    DynamoDBStreamModel.model_validate({"Records": records})  # Powertools' model of Lambda's event
    first = records[0]
    assert (first["eventSourceARN"], first["eventVersion"], first["eventSource"], first["awsRegion"]) == (
        table.stream_arn,
        "1.1",
        "aws:dynamodb",
        REGION,
    )
    created = first["dynamodb"]["ApproximateCreationDateTime"]
    assert isinstance(created, int) and abs(created - time.time()) < 60
    assert records[2]["dynamodb"]["OldImage"]["status"] == {"S": "QUEUED"}
    assert records[2]["dynamodb"]["NewImage"]["status"] == {"S": "RUNNING"}
    assert records[3]["dynamodb"]["NewImage"]["blob"] == {"B": "AAE="}  # base64, as in Lambda's JSON
    json.dumps(records)


def test_batches_are_at_most_the_batch_size(table: Table) -> None:
    for key in "abcde":
        table.put(key)
    handler = Handler()
    poller = table.poller(handler, batch_size=2)

    for _ in range(4):
        poller.poll_once()

    assert handler.keys() == [["a", "b"], ["c", "d"], ["e"]]


def test_the_batching_window_gathers_records_that_arrive_meanwhile(table: Table) -> None:
    table.put("a")
    handler = Handler()
    poller = table.poller(handler, pacing=replace(NO_PAUSES, gather_seconds=0.02), window_seconds=0.3)
    writer = threading.Timer(0.05, lambda: table.put("b"))
    writer.start()
    started = time.monotonic()

    poller.poll_once()

    writer.join()
    assert handler.keys() == [["a", "b"]]
    assert 0.3 <= time.monotonic() - started < 1.0


def test_the_filter_drops_what_does_not_match(table: Table) -> None:
    table.put("a", status="QUEUED")
    table.put("b", status="QUEUED")
    table.put("a", status="RUNNING")
    handler = Handler()
    poller = table.poller(handler, filter_patterns=(MODIFY_ONLY,))

    assert poller.poll_once().received == 3
    table.put("c", status="QUEUED")  # dropped without an invocation
    poller.poll_once()

    assert handler.keys() == [["a"]]
    assert handler.batches[0][0]["eventName"] == "MODIFY"
    table.put("c", status="RUNNING")
    poller.poll_once()
    assert handler.keys() == [["a"], ["c"]]  # the dropped records are not read again


def test_a_partial_failure_resumes_at_the_lowest_failed_record(table: Table) -> None:
    for key in "abcd":
        table.put(key)
    answers: list[Response] = [failing("c", "b"), lambda records: None]

    def respond(records: list[dict[str, Any]]) -> Any:
        return answers.pop(0)(records)

    handler = Handler(respond=respond)
    poller = table.poller(handler)

    assert poller.poll_once() == PollResult(received=4, failed=3)
    poller.poll_once()
    poller.poll_once()

    assert handler.keys() == [["a", "b", "c", "d"], ["b", "c", "d"]]


def test_a_raised_error_redelivers_the_whole_batch(table: Table) -> None:
    table.put("a")
    table.put("b")
    calls = iter([True, False])

    def respond(records: list[dict[str, Any]]) -> None:
        if next(calls):
            raise RuntimeError("history table unavailable")

    handler = Handler(respond=respond)
    poller = table.poller(handler)

    first = poller.poll_once()
    poller.poll_once()
    poller.poll_once()

    assert (first.failed, first.error) == (2, "RuntimeError: history table unavailable")
    assert handler.keys() == [["a", "b"], ["a", "b"]]


@pytest.mark.parametrize(
    ("report_item_failures", "response", "redelivered"),
    [
        (True, {"batchItemFailures": [{"itemIdentifier": "1"}]}, True),  # not in the batch: invalid
        (True, {"batchItemFailures": [{"itemIdentifier": None}]}, True),
        (True, None, False),
        (False, {"batchItemFailures": [{"itemIdentifier": "1"}]}, False),  # not read without the setting
    ],
)
def test_partial_batch_responses_as_lambda_reads_them(
    table: Table, report_item_failures: bool, response: Any, redelivered: bool
) -> None:
    table.put("a")
    table.put("b")
    answers = iter([response, None])
    handler = Handler(respond=lambda records: next(answers))
    poller = table.poller(handler, report_item_failures=report_item_failures)

    poller.poll_once()
    poller.poll_once()

    assert handler.keys() == ([["a", "b"], ["a", "b"]] if redelivered else [["a", "b"]])


def test_a_retry_waits_for_the_retry_pause(table: Table) -> None:
    table.put("a")
    handler = Handler(respond=failing("a"))
    poller = table.poller(handler, pacing=replace(NO_PAUSES, retry_seconds=60))

    poller.poll_once()
    assert poller.poll_once() == PollResult(received=0, failed=0)
    assert len(handler.batches) == 1


@pytest.mark.parametrize("raises", [False, True])
def test_after_the_last_retry_the_records_are_named_in_the_destination(table: Table, raises: bool) -> None:
    for key in "abc":
        table.put(key)

    def respond(records: list[dict[str, Any]]) -> Any:
        if raises:
            raise ValueError("cannot fold")
        return failing("b")(records)

    handler = Handler(respond=respond)
    poller = table.poller(handler, max_retry_attempts=2)

    for _ in range(3):
        poller.poll_once()

    failed_part = [["a", "b", "c"]] * 3 if raises else [["a", "b", "c"], ["b", "c"], ["b", "c"]]
    assert handler.keys() == failed_part
    [letter] = table.dead_letters()
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(letter)
    last_batch = handler.batches[-1]
    info = letter["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == last_batch[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == last_batch[-1]["dynamodb"]["SequenceNumber"]
    assert info["batchSize"] == len(last_batch)
    assert info["streamArn"] == table.stream_arn
    assert info["shardId"] == poller.shards[0].shard_id
    assert letter["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert letter["requestContext"]["approximateInvokeCount"] == 3
    assert letter["requestContext"]["functionArn"] == FUNCTION_ARN
    assert letter["responseContext"].get("functionError") == ("Unhandled" if raises else None)

    table.put("d")
    poller.poll_once()
    assert handler.keys()[3:] == [["d"]]  # moved past the discarded batch
    assert table.dead_letters() == []


def test_records_older_than_the_maximum_age_are_named_without_an_invocation(table: Table) -> None:
    table.put("a")
    table.put("b")
    handler = Handler()
    poller = table.poller(handler, max_record_age_seconds=60, clock=lambda: time.time() + 120)

    assert poller.poll_once() == PollResult(received=2, failed=2)
    poller.poll_once()

    assert handler.batches == []
    [letter] = table.dead_letters()
    assert letter["requestContext"]["condition"] == "RecordAgeExceeded"
    assert letter["requestContext"]["approximateInvokeCount"] == 0
    assert letter["DDBStreamBatchInfo"]["batchSize"] == 2


def test_without_a_destination_the_discarded_records_are_dropped(table: Table) -> None:
    table.put("a")
    handler = Handler(respond=failing("a"))
    poller = table.poller(handler, max_retry_attempts=0, on_failure_arn=None, on_failure_url=None)

    poller.poll_once()
    table.put("b")
    poller.poll_once()

    assert handler.keys() == [["a"], ["b"]]
    assert table.dead_letters() == []


def test_latest_starts_after_what_the_stream_holds(table: Table) -> None:
    table.put("a")
    handler = Handler()
    poller = table.poller(handler, starting_position="LATEST")

    poller.poll_once()
    table.put("b")
    poller.poll_once()

    assert handler.keys() == [["b"]]


# --- shards: a stand-in streams client, since the endpoint's stream never splits -------------------


@dataclass
class Shard:
    shard_id: str
    parent: str | None
    keys: list[str]
    closed: bool


@dataclass
class SplittingStreams:
    """DescribeStream one shard per page; iterators are "shard|index"."""

    shards: list[Shard]
    reads: list[str] = field(default_factory=list)

    def describe_stream(self, **request: Any) -> dict[str, Any]:
        ids = [shard.shard_id for shard in self.shards]
        start = ids.index(request["ExclusiveStartShardId"]) + 1 if "ExclusiveStartShardId" in request else 0
        page = self.shards[start : start + 1]
        description: dict[str, Any] = {
            "Shards": [
                {
                    "ShardId": shard.shard_id,
                    "SequenceNumberRange": {"StartingSequenceNumber": self._number(shard, 0)},
                    **({"ParentShardId": shard.parent} if shard.parent else {}),
                }
                for shard in page
            ]
        }
        if start + 1 < len(self.shards):
            description["LastEvaluatedShardId"] = page[0].shard_id
        return {"StreamDescription": description}

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        shard = self._shard(request["ShardId"])
        kind = request["ShardIteratorType"]
        index = {"TRIM_HORIZON": 0, "LATEST": len(shard.keys)}.get(kind)
        if index is None:
            index = int(request["SequenceNumber"]) % 1000 + (kind == "AFTER_SEQUENCE_NUMBER")
        return {"ShardIterator": f"{shard.shard_id}|{index}"}

    def get_records(self, **request: Any) -> dict[str, Any]:
        shard_id, index_text = str(request["ShardIterator"]).split("|")
        shard, index = self._shard(shard_id), int(index_text)
        self.reads.append(shard_id)
        end = min(len(shard.keys), index + int(request["Limit"]))
        records = [
            {
                "eventID": f"{shard_id}-{position}",
                "eventName": "INSERT",
                "dynamodb": {
                    "ApproximateCreationDateTime": time.time(),
                    "Keys": {"id": {"S": shard.keys[position]}},
                    "SequenceNumber": self._number(shard, position),
                },
            }
            for position in range(index, end)
        ]
        response: dict[str, Any] = {"Records": records}
        if not (shard.closed and end == len(shard.keys)):
            response["NextShardIterator"] = f"{shard_id}|{end}"
        return response

    def _shard(self, shard_id: str) -> Shard:
        return next(shard for shard in self.shards if shard.shard_id == shard_id)

    def _number(self, shard: Shard, position: int) -> str:
        return str((self.shards.index(shard) + 1) * 1000 + position)


def splitting_poller(streams: SplittingStreams, handler: Handler, **changes: Any) -> StreamPoller:
    source = replace(StreamEventSource("HistoryFunction", "arn:aws:dynamodb:stream", "LATEST"), **changes)
    sqs: Any = None  # no destination: never used
    return StreamPoller(
        streams, sqs, source, handler, region=REGION, function_arn=FUNCTION_ARN, pacing=NO_PAUSES
    )


def test_a_child_shard_is_read_after_its_parent_and_new_shards_from_their_start() -> None:
    streams = SplittingStreams(
        [
            Shard("child", "parent", ["c1"], closed=False),
            Shard("parent", None, ["p1", "p2", "p3"], closed=True),
        ]
    )
    handler = Handler()
    poller = splitting_poller(streams, handler, batch_size=2, starting_position="TRIM_HORIZON")

    for _ in range(3):
        poller.poll_once()
    streams.shards.append(Shard("later", None, ["l1"], closed=False))  # appears after the start
    for _ in range(2):
        poller.poll_once()

    assert handler.keys() == [["p1", "p2"], ["p3"], ["c1"], ["l1"]]
    assert streams.reads[: streams.reads.index("child")] == ["parent", "parent"]
    assert [shard.shard_id for shard in poller.shards if shard.finished] == ["parent"]


def test_latest_applies_to_the_shards_there_at_the_start_only() -> None:
    streams = SplittingStreams([Shard("first", None, ["old"], closed=False)])
    handler = Handler()
    poller = splitting_poller(streams, handler)

    poller.poll_once()
    streams.shards.append(Shard("second", None, ["new"], closed=False))
    poller.poll_once()

    assert handler.keys() == [["new"]]


# --- pieces ---------------------------------------------------------------------------------------------


def test_filters_match_exact_values_and_nested_keys() -> None:
    patterns = parse_patterns(
        ['{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["SUCCEEDED", "FAILED"]}}}}']
    )
    modify = {"eventName": "MODIFY", "dynamodb": {"NewImage": {"status": {"S": "FAILED"}}}}

    assert matches_any(modify, patterns)
    assert not matches_any({**modify, "eventName": "INSERT"}, patterns)
    assert not matches_any({"eventName": "MODIFY", "dynamodb": {"NewImage": {}}}, patterns)
    assert not matches_any({"eventName": "MODIFY", "dynamodb": "text"}, patterns)
    assert matches_any({"eventName": "REMOVE"}, [])  # no filter: everything
    assert matches_any({"flag": True}, parse_patterns(['{"flag": [true]}']))
    assert not matches_any({"flag": 1}, parse_patterns(['{"flag": [true]}']))
    assert matches_any({"tags": ["a", "b"]}, parse_patterns(['{"tags": ["b"]}']))  # an array: any element


@pytest.mark.parametrize(
    "pattern", ['{"eventName": [{"prefix": "MOD"}]}', '{"eventName": "MODIFY"}', "[1]", "{", '{"a": []}']
)
def test_filters_the_local_stack_cannot_match_are_refused(pattern: str) -> None:
    with pytest.raises(FilterError):
        parse_patterns([pattern])


def test_creation_times_become_epoch_seconds() -> None:
    assert epoch_seconds("2026-11-28T10:00:27.912Z") == 1795860027
    assert epoch_seconds("1795860027.5") == 1795860027
    assert epoch_seconds(1795860027.9) == 1795860027
    record = {"eventID": "e", "eventName": "REMOVE", "dynamodb": {"SequenceNumber": "1"}, "userIdentity": {}}
    assert lambda_stream_record(record, "arn:stream", REGION)["userIdentity"] == {}


def test_a_host_config_with_a_stream_source_survives_json() -> None:
    function = FunctionSpec(
        logical_id="HistoryFunction",
        name="batchgate-local-history",
        arn=FUNCTION_ARN,
        code_path=Path("/work/functions/history"),
        handler="app.handler",
        timeout_seconds=30,
        memory_mb=256,
        environment={"HISTORY_TABLE_NAME": "history"},
        log_group="/aws/lambda/batchgate-local-history",
    )
    source = StreamEventSource(
        "HistoryFunction", "arn:stream", "TRIM_HORIZON", filter_patterns=(MODIFY_ONLY,), on_failure_url="u"
    )
    config = HostConfig(function=function, region=REGION, stream_source=source)

    assert HostConfig.from_json(config.to_json()) == config
