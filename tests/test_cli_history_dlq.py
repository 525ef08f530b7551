"""`batchgate dlq` and the history dead-letter queue against moto: what a message names, and redrive
reading those records from the job table's stream and invoking the real history handler with them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchgate.adapters.history_table import HistoryTable
from batchgate.ops.dead_letters import (
    HISTORY,
    DeadLetters,
    RecordsGone,
    StreamBatch,
    stream_batch_of,
)
from botocore.stub import Stubber

from tests.cli_support import NOW, CliHarness, harness
from tests.conftest import REGION, LambdaContextStub, create_history_table, job_stream_records
from tests.test_cli import failed_payroll_job, without_option

__all__ = ["harness"]  # the fixture, imported for pytest

HISTORY_TABLE = "batchgate-test-history"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:batchgate-test-history"


def on_failure_body(records: list[dict[str, Any]], invocations: int = 11) -> str:
    """What Lambda puts in the mapping's on-failure destination for `records` (stream-shaped)."""
    first, last = records[0], records[-1]
    return json.dumps(
        {
            "requestContext": {
                "requestId": "c9b2f3f4-6ad2-4a3c-9a52-2f5b8f1f0e11",
                "functionArn": FUNCTION_ARN,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": "2026-11-28T11:58:30.120Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001541626099285-f35f62ef",
                "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": "2026-11-28T11:20:00Z",
                "approximateArrivalOfLastRecord": "2026-11-28T11:42:53Z",
                "batchSize": len(records),
                "streamArn": first["eventSourceARN"],
            },
        }
    )


@dataclass
class HistoryFunction:
    """Lambda Invoke in moto, answered by the real history handler; an exception it raises is a
    function error, as in Lambda."""

    app: ModuleType
    calls: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)

    def invoke(self, function_name: str, body: Any, headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body)
        self.calls.append((function_name, event, headers.get("X-Amz-Invocation-Type")))
        try:
            result = self.app.handler(event, LambdaContextStub())
        except Exception as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()
        return json.dumps(result).encode()


@pytest.fixture
def history_function(
    harness: CliHarness, load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> HistoryFunction:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.config import default_user_config

    create_history_table(boto3.client("dynamodb", region_name=REGION), HISTORY_TABLE)
    monkeypatch.setenv("HISTORY_TABLE_NAME", HISTORY_TABLE)
    function = HistoryFunction(load_handler("history"))
    monkeypatch.setitem(default_user_config, "lambda", {"use_docker": False})

    def invoke(backend: Any, function_name: str, qualifier: Any, *rest: Any) -> bytes:
        return function.invoke(function_name, *rest)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    return function


def observed() -> int:
    """Finished payroll attempts the history holds."""
    history = HistoryTable(HISTORY_TABLE, boto3.client("dynamodb", region_name=REGION))
    return history.get("payroll-calculation", "FARGATE")[0].observed


def history_letters(harness: CliHarness) -> list[dict[str, Any]]:
    document = harness.json("dlq", "list", "--queue", "history")
    [queue] = document["queues"]
    assert queue["queue"] == HISTORY
    letters: list[dict[str, Any]] = queue["messages"]
    return letters


def put_letter(harness: CliHarness, body: str) -> str:
    message_id: str = harness.sqs.send_message(QueueUrl=harness.history_dlq_url, MessageBody=body)[
        "MessageId"
    ]
    return message_id


def test_dlq_list_shows_what_a_history_message_names(harness: CliHarness) -> None:
    failed_payroll_job(harness)
    records = job_stream_records()
    message_id = put_letter(harness, on_failure_body(records))
    document = harness.json("dlq", "list")
    assert [queue["queue"] for queue in document["queues"]] == ["jobs", "track", "history"]
    [letter] = document["queues"][2]["messages"]
    assert letter["message_id"] == message_id
    assert letter["summary"] == {
        "job_id": None,
        "stream_arn": records[0]["eventSourceARN"],
        "shard_id": "shardId-00000001541626099285-f35f62ef",
        "start_sequence_number": records[0]["dynamodb"]["SequenceNumber"],
        "end_sequence_number": records[-1]["dynamodb"]["SequenceNumber"],
        "batch_size": len(records),
        "first_record_at": "2026-11-28T11:20:00Z",
        "last_record_at": "2026-11-28T11:42:53Z",
        "failed_at": "2026-11-28T11:58:30.120Z",
        "function_arn": FUNCTION_ARN,
        "error": {
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 11,
            "functionError": "Unhandled",
        },
    }
    human = harness.ok("dlq", "list", "--queue", "history").stdout
    assert "history dead-letter queue" in human
    about = " ".join(human.split())  # the ABOUT column wraps
    table_and_label = records[0]["eventSourceARN"].split(":table/")[1]
    assert f"stream {table_and_label}" in about
    assert "shard shardId-00000001541626099285-f35f62ef" in about
    first, last = records[0]["dynamodb"]["SequenceNumber"], records[-1]["dynamodb"]["SequenceNumber"]
    assert f"records {first}..{last} ({len(records)})" in about
    assert "RetryAttemptsExhausted after 11 invocations" in about
    assert "arrived 2026-11-28 11:20:00Z..2026-11-28 11:42:53Z" in about


def test_dlq_redrive_sends_the_named_records_to_the_history_function(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    failed_payroll_job(harness)
    records = job_stream_records()
    assert len(records) >= 3  # created, dispatched, stopped
    put_letter(harness, on_failure_body(records))
    harness.sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody="{}")
    assert observed() == 0

    result = harness.run("dlq", "redrive", "--queue", "history", "--yes")

    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert f"history: moved 1 to {harness.history_function}" in result.stdout
    [(name, event, invocation_type)] = history_function.calls
    assert (name, invocation_type) == (harness.history_function, "RequestResponse")
    assert event == {"Records": records}  # the whole range, shaped as Lambda delivers it
    assert observed() == 1  # the stopped attempt, folded
    assert history_letters(harness) == []
    assert len(harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"]) == 1


def test_dlq_redrive_reads_only_the_named_range(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    failed_payroll_job(harness)
    records = job_stream_records()
    named = records[1:-1]
    put_letter(harness, on_failure_body(named))
    assert harness.run("dlq", "redrive", "--queue", "history", "--yes").exit_code == 0
    [(_, event, _)] = history_function.calls
    assert event == {"Records": named}
    assert observed() == 0  # the stopping write was not in the range


def test_dlq_redrive_keeps_what_the_function_reported_failed(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    failed_payroll_job(harness)
    # An item that is no job: the history function reports its record and every later one failed.
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.put_item(TableName=harness.stack.settings.table_name, Item={"job_id": {"S": "not-a-job"}})
    records = job_stream_records()
    unreadable = records[-1]
    original = put_letter(harness, on_failure_body(records))

    first = harness.run("dlq", "redrive", "--queue", "history", "--yes")

    assert first.exit_code == 1
    assert observed() == 1  # the records before the unreadable one were folded
    [letter] = history_letters(harness)
    # The folded records are no longer named, so that a later redrive does not count them again.
    assert letter["message_id"] != original
    assert letter["summary"]["start_sequence_number"] == unreadable["dynamodb"]["SequenceNumber"]
    assert letter["summary"]["end_sequence_number"] == unreadable["dynamodb"]["SequenceNumber"]
    assert letter["summary"]["batch_size"] == 1
    assert letter["attributes"]["batchgate-redriven-from"] == original
    output = " ".join(first.stdout.split())
    assert f"failed {original}:" in output and f"kept as message {letter['message_id']}" in output

    second = harness.run("dlq", "redrive", "--queue", "history", "--yes")

    assert second.exit_code == 1
    assert "the function failed (Unhandled" in " ".join(second.stdout.split())
    assert [kept["message_id"] for kept in history_letters(harness)] == [letter["message_id"]]
    assert observed() == 1
    assert [event["Records"] for _, event, _ in history_function.calls] == [records, [unreadable]]


def test_dlq_redrive_keeps_a_message_whose_records_have_left_the_stream(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    failed_payroll_job(harness)
    records = job_stream_records()
    body = json.loads(on_failure_body(records))
    end = int(records[-1]["dynamodb"]["SequenceNumber"])
    body["DDBStreamBatchInfo"]["startSequenceNumber"] = str(end + 100)
    body["DDBStreamBatchInfo"]["endSequenceNumber"] = str(end + 102)
    message_id = put_letter(harness, json.dumps(body))

    document = harness.json("dlq", "redrive", "--queue", "history", "--yes", exit_code=1)

    [result] = document["results"]
    assert result["moved"] == 0 and result["records_gone"] == [message_id]
    [failure] = result["failed"]
    assert failure["message_id"] == message_id
    assert "have left the stream (nothing found for the range" in failure["error"]
    assert "the history misses the attempts they finished, the job items are unaffected" in failure["error"]
    assert history_function.calls == []
    assert [letter["message_id"] for letter in history_letters(harness)] == [message_id]
    human = " ".join(harness.run("dlq", "redrive", "--queue", "history", "--yes").stdout.split())
    assert "1 message(s) name records that have left the job table's stream" in human
    assert "the messages stay in the queue" in human


def test_dlq_redrive_all_includes_the_history_queue(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    failed_payroll_job(harness)
    put_letter(harness, on_failure_body(job_stream_records()))
    result = harness.run("dlq", "redrive", "--yes")
    assert result.exit_code == 0, result.stderr
    assert f"history: moved 1 to {harness.history_function}" in result.stdout
    assert observed() == 1


def test_dlq_redrive_all_moves_nothing_while_the_history_function_is_unknown(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    failed_payroll_job(harness)
    put_letter(harness, on_failure_body(job_stream_records()))
    submit = json.dumps({"schema_version": 1, "batch": "report-export", "arguments": ["headcount"]})
    harness.sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody=submit)
    target = without_option(harness.target_args(), "--history-function")
    result = harness.run(*target, "dlq", "redrive", "--yes", target=False)
    assert result.exit_code == 2 and "history function" in result.stderr
    assert len(harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"]) == 1
    assert len(history_letters(harness)) == 1 and history_function.calls == []


def test_a_message_that_names_no_records_is_kept(
    harness: CliHarness, history_function: HistoryFunction
) -> None:
    message_id = put_letter(harness, json.dumps({"version": "1.0", "requestContext": {}}))
    [letter] = history_letters(harness)
    assert letter["summary"]["note"] == "names no stream records (no DDBStreamBatchInfo)"
    result = harness.run("dlq", "redrive", "--queue", "history", "--yes")
    assert result.exit_code == 1 and f"failed {message_id}: names no stream records" in result.stdout
    assert history_function.calls == []
    assert len(history_letters(harness)) == 1


# --- reading a range from a stand-in for DynamoDB Streams ------------------------------------------------


BATCH = StreamBatch(
    stream_arn=f"arn:aws:dynamodb:{REGION}:123456789012:table/jobs/stream/2026-11-28T00:00:00.000",
    shard_id="shardId-00000001541626099285-f35f62ef",
    start_sequence_number="900000000000000000009",
    end_sequence_number="1000000000000000000011",
    batch_size=2,
)


def stream_record(sequence: str) -> dict[str, Any]:
    return {"eventID": sequence, "eventName": "MODIFY", "dynamodb": {"SequenceNumber": sequence}}


def stubbed_streams() -> tuple[Any, Stubber]:
    client = boto3.client("dynamodbstreams", region_name=REGION)
    return client, Stubber(client)


def test_a_range_is_read_to_its_end_comparing_sequence_numbers_as_numbers() -> None:
    client, stubber = stubbed_streams()
    stubber.add_response(
        "get_shard_iterator",
        {"ShardIterator": "i-1"},
        {
            "StreamArn": BATCH.stream_arn,
            "ShardId": BATCH.shard_id,
            "ShardIteratorType": "AT_SEQUENCE_NUMBER",
            "SequenceNumber": BATCH.start_sequence_number,
        },
    )
    # As text "1000..." sorts before "9000...": the range would look ended at its first record.
    stubber.add_response(
        "get_records",
        {"Records": [stream_record("900000000000000000009")], "NextShardIterator": "i-2"},
    )
    stubber.add_response("get_records", {"Records": [], "NextShardIterator": "i-3"})
    stubber.add_response(
        "get_records",
        {
            "Records": [stream_record("1000000000000000000011"), stream_record("1000000000000000000012")],
            "NextShardIterator": "i-4",
        },
    )
    with stubber:
        read = DeadLetters(boto3.client("sqs", region_name=REGION), streams=client).read(BATCH)
    assert [record["dynamodb"]["SequenceNumber"] for record in read] == [
        "900000000000000000009",
        "1000000000000000000011",
    ]


@pytest.mark.parametrize(
    ("operation", "code"),
    [("get_shard_iterator", "TrimmedDataAccessException"), ("get_records", "ExpiredIteratorException")],
)
def test_records_trimmed_from_the_stream_are_gone(operation: str, code: str) -> None:
    client, stubber = stubbed_streams()
    if operation == "get_records":
        stubber.add_response("get_shard_iterator", {"ShardIterator": "i-1"})
    stubber.add_client_error(operation, service_error_code=code)
    with stubber, pytest.raises(RecordsGone) as raised:
        DeadLetters(boto3.client("sqs", region_name=REGION), streams=client).read(BATCH)
    assert f"have left the stream ({code};" in str(raised.value)


def test_the_local_stacks_on_failure_record_is_read_as_lambdas() -> None:
    from batchgate.ops.local.resources import StreamEventSource
    from batchgate.ops.local.stream_poller import RETRIES_EXHAUSTED, on_failure_record

    source = StreamEventSource("HistoryFunction", BATCH.stream_arn, "TRIM_HORIZON")
    shaped = [
        {"dynamodb": {"SequenceNumber": sequence, "ApproximateCreationDateTime": int(NOW.timestamp())}}
        for sequence in ("5", "7")
    ]
    body = on_failure_record(
        source,
        "shardId-1",
        shaped,
        condition=RETRIES_EXHAUSTED,
        invocations=3,
        function_arn=FUNCTION_ARN,
        function_error=True,
        now=NOW.timestamp(),
    )
    batch, error = stream_batch_of(json.dumps(body))
    assert batch == StreamBatch(
        BATCH.stream_arn, "shardId-1", "5", "7", 2, "2026-11-28T12:00:00Z", "2026-11-28T12:00:00Z"
    )
    assert error == {
        "condition": RETRIES_EXHAUSTED,
        "approximateInvokeCount": 3,
        "functionError": "Unhandled",
    }
