"""The benchmarks' hooks on boto3 clients: the call counter, the latency injector, write units."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from bench._aws_calls import (
    ApiCall,
    CallCounter,
    LatencyInjector,
    SecondaryIndex,
    TableKeys,
    index_write_units,
    item_size,
    write_units,
)


def test_counter_sees_stubbed_calls_with_their_parameters() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    counter = CallCounter(client)
    with Stubber(client) as stubber:
        stubber.add_response("put_item", {})
        stubber.add_response("get_item", {})
        client.put_item(TableName="jobs", Item={"job_id": {"S": "bg-1"}})
        client.get_item(TableName="jobs", Key={"job_id": {"S": "bg-1"}})
    assert counter.counts() == {"dynamodb:PutItem": 1, "dynamodb:GetItem": 1}
    assert [call.table for call in counter.writes()] == ["jobs"]
    counter.clear()
    assert counter.calls == []


def test_session_hooks_reach_the_clients_it_creates_later() -> None:
    session = boto3.Session(region_name="us-east-1")
    counter = CallCounter(session)
    slept: list[float] = []
    latency = LatencyInjector(0.05, sleep=slept.append)
    latency.attach(session)
    client = session.client("ecs")
    with Stubber(client) as stubber:
        stubber.add_response("list_tasks", {"taskArns": []})
        client.list_tasks(cluster="c")
    assert counter.counts() == {"ecs:ListTasks": 1}
    # A Stubber answers before anything is sent: no request, no sleep.
    assert latency.requests == 0 and slept == []


def test_latency_injector_sleeps_once_per_request_sent() -> None:
    slept: list[float] = []
    latency = LatencyInjector(0.05, sleep=slept.append)
    for _ in range(3):
        latency._delay(request=None)
    assert latency.requests == 3 and slept == [0.05] * 3
    quiet = LatencyInjector(0.0, sleep=slept.append)
    quiet._delay(request=None)
    assert quiet.requests == 1 and len(slept) == 3


def test_item_size_follows_dynamodbs_rules() -> None:
    # name bytes + value bytes; a number: 1 byte per 2 significant digits + 1.
    assert item_size({"id": {"S": "abc"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"n": {"N": "1000"}}) == 1 + 2
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    # Lists and maps: 3 bytes, plus 1 per element.
    assert item_size({"l": {"L": [{"S": "ab"}, {"S": "c"}]}}) == 1 + 3 + 3 + 2
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1


def test_write_units_round_each_item_up_to_a_kilobyte() -> None:
    small = ApiCall("dynamodb", "PutItem", {"TableName": "t", "Item": {"k": {"S": "x"}}})
    large = ApiCall("dynamodb", "PutItem", {"TableName": "t", "Item": {"k": {"S": "x" * 1500}}})
    assert (write_units(small), write_units(large)) == (1, 2)
    assert write_units(ApiCall("dynamodb", "UpdateItem", {"TableName": "t"})) == 1
    transaction = ApiCall(
        "dynamodb",
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "t", "Item": {"k": {"S": "x"}}}}, {"Delete": {}}]},
    )
    assert write_units(transaction) == 4
    with pytest.raises(ValueError, match="not a DynamoDB write"):
        write_units(ApiCall("dynamodb", "GetItem", {}))


JOBS = TableKeys(
    key=("job_id",),
    indexes=(
        SecondaryIndex(("status", "created_at"), projected=None),
        SecondaryIndex(("batch", "created_at"), projected=frozenset()),  # KEYS_ONLY
    ),
)


def put(item: dict[str, dict[str, str]], table: str = "jobs") -> ApiCall:
    return ApiCall("dynamodb", "PutItem", {"TableName": table, "Item": item})


def job(status: str, padding: int = 0) -> dict[str, dict[str, str]]:
    item = {"job_id": {"S": "bg-1"}, "status": {"S": status}, "batch": {"S": "payroll"}}
    item["created_at"] = {"S": "2026-12-01T00:00:00Z"}
    if padding:
        item["log"] = {"S": "x" * padding}
    return item


def test_index_writes_follow_dynamodbs_rules_for_entering_staying_and_moving() -> None:
    calls = [
        put(job("SUBMITTED")),  # enters both indexes: 1 + 1
        put(job("SUBMITTED", padding=10)),  # stays, same keys: 1 (ALL: changed) + 0 (KEYS_ONLY: same)
        put(job("RUNNING", padding=2000)),  # by-status key changes: delete 1 KB + put 3 KB; by-batch 0
        put({"job_id": {"S": "bg-1"}, "batch": {"S": "payroll"}}),  # leaves both (no status, no created_at)
        put({"job_id": {"S": "bg-1"}}),  # in neither before nor after
    ]
    # The second write changes nothing the KEYS_ONLY index holds: it costs that index nothing.
    assert index_write_units(calls, {"jobs": JOBS}) == [2, 1, 1 + 3, 3 + 1, 0]


def test_a_write_that_changes_nothing_an_index_holds_costs_it_nothing() -> None:
    lean = TableKeys(
        key=("job_id",),
        indexes=(SecondaryIndex(("status", "created_at"), projected=frozenset({"attempt"})),),
    )
    first = {**job("RUNNING"), "attempt": {"N": "1"}, "revision": {"N": "1"}}
    calls = [
        put(first),  # enters: 1
        put({**first, "revision": {"N": "2"}, "log": {"S": "x" * 3000}}),  # nothing projected changed
        put({**first, "attempt": {"N": "1.0"}}),  # the same number written otherwise
        put({**first, "attempt": {"N": "2"}}),  # a projected attribute changed: 1
        put({**first, "attempt": {"N": "2"}, "status": {"S": "SUCCEEDED"}}),  # key moved: 2
    ]
    assert index_write_units(calls, {"jobs": lean}) == [1, 0, 0, 1, 2]


def test_index_writes_are_counted_per_item_and_only_where_there_are_indexes() -> None:
    other = {**job("SUBMITTED"), "job_id": {"S": "bg-2"}}
    calls = [
        put(job("SUBMITTED")),
        put(other),  # another key: enters the indexes, whatever bg-1 did
        put(job("SUBMITTED"), table="history"),  # a table without indexes
        ApiCall("dynamodb", "GetItem", {"TableName": "jobs", "Key": {"job_id": {"S": "bg-1"}}}),
    ]
    tables = {"jobs": JOBS, "history": TableKeys(key=("job_id",))}
    assert index_write_units(calls, tables) == [2, 2, 0, 0]


def test_index_writes_of_an_update_are_not_guessed() -> None:
    update = ApiCall("dynamodb", "UpdateItem", {"TableName": "jobs", "Key": {"job_id": {"S": "bg-1"}}})
    with pytest.raises(ValueError, match="UpdateItem on jobs"):
        index_write_units([update], {"jobs": JOBS})


def test_table_keys_from_describe_table() -> None:
    described = {
        "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by-status",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "by-batch",
                "KeySchema": [{"AttributeName": "batch", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status"]},
            },
        ],
    }
    assert TableKeys.described(described) == TableKeys(
        key=("job_id",),
        indexes=(
            SecondaryIndex(("status", "created_at"), None),
            SecondaryIndex(("batch",), frozenset({"status"})),
        ),
    )
