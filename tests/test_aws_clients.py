"""batchgate.aws_clients: one client per service and container, shared by the adapters; clients only
rare paths use are made on their first use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchgate.aws_clients import OnFirstUse
from batchgate.requeue import Relaunch

from tests.conftest import Stack, create_history_table, sqs_event

FUNCTIONS = ("dispatch", "track", "sweep")


@pytest.fixture
def made(
    stack: Stack, load_handler: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The services of the clients boto3 makes from here on, in order; with every optional adapter of
    the functions configured (history table, EC2 capacity provider, jobs queue). After load_handler,
    which sets the stack's own environment."""
    create_history_table(boto3.client("dynamodb"), "batchgate-history")
    queue_url = boto3.client("sqs").create_queue(QueueName="batchgate-jobs")["QueueUrl"]
    monkeypatch.setenv("HISTORY_TABLE_NAME", "batchgate-history")
    monkeypatch.setenv("EC2_CAPACITY_PROVIDER", "batchgate-ec2")
    monkeypatch.setenv("JOBS_QUEUE_URL", queue_url)
    services: list[str] = []
    real_client = boto3.client

    def counting_client(service: str, *args: Any, **kwargs: Any) -> Any:
        services.append(service)
        return real_client(service, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(boto3, "client", counting_client)
    return services


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_makes_one_dynamodb_and_one_ecs_client(
    function: str, made: list[str], load_handler: Callable[[str], ModuleType]
) -> None:
    load_handler(function)
    # The job table and the history share the DynamoDB client, RunTask and the capacity reads the ECS
    # one; SQS (relaunch messages, back-off of throttled records) waits for its first use.
    assert made == ["dynamodb", "ecs"]


def test_dispatch_shares_its_clients_between_the_adapters(
    made: list[str], load_handler: Callable[[str], ModuleType]
) -> None:
    dispatcher = load_handler("dispatch").dispatcher
    assert dispatcher.history is not None and dispatcher.capacity is not None
    assert dispatcher.table._client is dispatcher.history._client
    assert dispatcher.ecs._client is dispatcher.capacity._client


def test_the_throttled_records_back_off_makes_its_sqs_client_on_first_use(
    made: list[str], load_handler: Callable[[str], ModuleType], stack: Stack
) -> None:
    app = load_handler("dispatch")
    made.clear()
    queue_arn = sqs_event("{}")["Records"][0]["eventSourceARN"]
    app.backoff.delay(queue_arn, "receipt", receive_count=1)
    app.backoff.delay(queue_arn, "receipt", receive_count=2)
    assert made == ["sqs"]


def test_a_relaunch_message_makes_the_sqs_client_once(
    made: list[str], load_handler: Callable[[str], ModuleType]
) -> None:
    tracker = load_handler("track").tracker
    made.clear()
    assert tracker.jobs_queue is not None
    for attempt in (2, 3):
        tracker.jobs_queue.send_relaunch(Relaunch(job_id="job-1", attempt=attempt))
    assert made == ["sqs"]


def test_on_first_use_makes_one_client_however_many_threads_ask_at_once() -> None:
    calls: list[int] = []

    def slow_make() -> object:
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the first one makes it
        return object()

    client = OnFirstUse(slow_make)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(calls) == 1
    assert len(seen) == 8 and all(one is seen[0] for one in seen)


def test_on_first_use_given_a_client_never_makes_one() -> None:
    given = object()
    client = OnFirstUse.given(given, make=lambda: pytest.fail("made a client although one was given"))
    assert client() is given
