"""The local endpoint's moto server over real HTTP: what batchgate adds to moto holds under concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import boto3
import pytest
from batchgate.ops.local.endpoint import FAKE_CREDENTIALS, HOST, free_port
from batchgate.ops.local.processes import stop_process

# The server with a tiny GIL switch interval: its request threads interleave at nearly every bytecode,
# so a check-then-act that is not atomic shows up within a few hundred requests instead of rarely.
CONTENDED_SERVER = (
    "import sys; sys.setswitchinterval(1e-6); "
    "sys.argv = ['moto_server', '-H', sys.argv[1], '-p', sys.argv[2]]; "
    "from batchgate.ops.local.moto_server import main; main()"
)
WRITERS = 8
ROUNDS = 25


@pytest.fixture(scope="module")
def contended_endpoint() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", CONTENDED_SERVER, HOST, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        stop_process(server, 5)


def test_concurrent_writes_each_make_one_stream_record_and_one_conditional_winner(
    contended_endpoint: str,
) -> None:
    """Every write is one stream record with its own sequence number (a reader resuming after a record
    never reads one again), and of concurrent conditional puts of one new key exactly one wins."""
    session = boto3.Session(region_name="us-east-1", **FAKE_CREDENTIALS)  # type: ignore[arg-type]
    dynamodb = session.client("dynamodb", endpoint_url=contended_endpoint)
    dynamodb.create_table(
        TableName="writes",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    winners: Counter[int] = Counter()

    def write(writer: int) -> None:
        for round_ in range(ROUNDS):
            dynamodb.put_item(TableName="writes", Item={"k": {"S": f"{writer}-{round_}"}})
            try:
                dynamodb.put_item(
                    TableName="writes",
                    Item={"k": {"S": f"shared-{round_}"}},
                    ConditionExpression="attribute_not_exists(k)",
                )
                winners[round_] += 1
            except dynamodb.exceptions.ConditionalCheckFailedException:
                pass

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    streams = session.client("dynamodbstreams", endpoint_url=contended_endpoint)
    stream_arn = dynamodb.describe_table(TableName="writes")["Table"]["LatestStreamArn"]
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    sequence_numbers: list[str] = []
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            # Small pages: each resumes after the last sequence number read, as a stream reader does.
            records = streams.get_records(ShardIterator=iterator, Limit=7)
            if not records["Records"]:
                break
            sequence_numbers += [record["dynamodb"]["SequenceNumber"] for record in records["Records"]]
            iterator = records["NextShardIterator"]

    assert dict(winners) == dict.fromkeys(range(ROUNDS), 1)
    assert len(sequence_numbers) == WRITERS * ROUNDS + ROUNDS
    assert len(set(sequence_numbers)) == len(sequence_numbers)
