"""The history function under failures: the job table's stream delivered in batches as Lambda delivers
them, with DynamoDB errors injected into the history table's client at random. Lambda resumes a shard
at the first record the handler reports failed (or retries the whole batch when the invocation fails);
whatever fails and however often, every finished attempt ends in the history exactly once."""

from __future__ import annotations

import copy
import importlib.util
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from batchgate.adapters.history_table import HistoryTable
from batchgate.services.history_feed import HistoryFeed
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import MOTO, ROOT, LambdaContextStub, create_history_table, event_fixture
from tests.reliability.conftest import TALLY
from tests.reliability.test_faults import _RandomFaults

HISTORY_TABLE = "batchgate-reliability-history"
# Enough invocations for any example to get through (a batch fails with probability < 1).
MAX_INVOCATIONS = 500


@pytest.fixture(scope="module")
def history_app() -> Iterator[ModuleType]:
    """functions/history/app.py, imported once; each example gives it its own feed."""
    variables = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "JOB_TABLE_NAME": "jobs",
        "ECS_CLUSTER": "batchgate",
        "HISTORY_TABLE_NAME": HISTORY_TABLE,
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        spec = importlib.util.spec_from_file_location(
            "batchgate_function_history_reliability", ROOT / "functions" / "history" / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def history_client() -> Iterator[Any]:
    """One moto account and client for every example: each example makes its own history table."""
    with MOTO.mocked():
        yield boto3.client("dynamodb", region_name="us-east-1")


@contextmanager
def history_table(client: Any) -> Iterator[None]:
    """The history table, empty, for one example; deleted after it (however it ends)."""
    create_history_table(client, HISTORY_TABLE)
    try:
        yield
    finally:
        client.delete_table(TableName=HISTORY_TABLE)


def job_stream(jobs: int, rng: random.Random) -> list[dict[str, Any]]:
    """Two writes per job as the stream carries them (RUNNING, then STOPPED: the sample's records),
    the jobs' writes interleaved at random, a job's own in order."""
    running, stopped = event_fixture("job-stream-attempt-stopped.json")["Records"]
    pending = {number: [running, stopped] for number in range(jobs)}
    records: list[dict[str, Any]] = []
    while pending:
        number = rng.choice(sorted(pending))
        record = copy.deepcopy(pending[number].pop(0))
        if not pending[number]:
            del pending[number]
        job_id = {"S": f"bg-payroll-calculation-{number:020x}"}
        stream = record["dynamodb"]
        stream["Keys"]["job_id"] = stream["NewImage"]["job_id"] = stream["OldImage"]["job_id"] = job_id
        stream["SequenceNumber"] = str(1000 + len(records))
        records.append(record)
    return records


def deliver(app: ModuleType, records: list[dict[str, Any]], batch_size: int) -> tuple[int, int]:
    """Lambda's shard loop: a batch from the position, then past it, or back to its first failed record
    (the whole batch again when the invocation fails). The invocations and failed invocations made."""
    position = invocations = failures = 0
    while position < len(records):
        invocations += 1
        assert invocations <= MAX_INVOCATIONS, "the stream never got through"
        batch = records[position : position + batch_size]
        try:
            response = app.handler({"Records": batch}, LambdaContextStub())
        except BatchProcessingError:
            failures += 1
            continue
        failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        if not failed:
            position += len(batch)
            continue
        failures += 1
        first = min(index for index, number in enumerate(sequence_numbers) if number in failed)
        # Every record after the first failed one is reported too: a retry starts there and folds
        # nothing that was already folded.
        assert failed == set(sequence_numbers[first:])
        position += first
    return invocations, failures


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    jobs=st.integers(1, 12),
    batch_size=st.integers(1, 10),
    rate=st.sampled_from([0.1, 0.3, 0.5]),
)
def test_every_finished_attempt_is_folded_once_whatever_fails(
    history_app: ModuleType, history_client: Any, seed: int, jobs: int, batch_size: int, rate: float
) -> None:
    rng = random.Random(seed)
    records = job_stream(jobs, rng)
    client = history_client
    with history_table(client):
        faulty = _RandomFaults(client, rng, rate, ("get_item", "put_item"))
        history = HistoryTable(HISTORY_TABLE, faulty, pause=lambda _lost: None)  # type: ignore[arg-type]
        history_app.feed = HistoryFeed(history)  # type: ignore[attr-defined]

        invocations, failures = deliver(history_app, records, batch_size)

        stored, version = HistoryTable(HISTORY_TABLE, client).get("payroll-calculation", "FARGATE")
    TALLY.add("history: stream records", len(records))
    TALLY.add("history: invocations", invocations)
    TALLY.add("history: failed invocations", failures)
    TALLY.add("fault: history table", faulty.injected)
    folded_once = stored.observed == jobs and version == jobs
    TALLY.check("folded once", folded_once)
    assert folded_once, (stored.observed, version, jobs)
