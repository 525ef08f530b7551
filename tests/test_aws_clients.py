"""batchgate.adapters.aws_clients: one client per service and container, shared by the adapters; clients only
rare paths use are made on their first use."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import batchgate
import boto3
import pytest
from batchgate.adapters.aws_clients import OnFirstUse, dynamodb_client, ecs_client, sqs_client
from batchgate.adapters.ecs import EcsTasks
from batchgate.domain.jobs import Attempt, JobStatus, parse_iso
from batchgate.domain.relaunch import Relaunch
from botocore.stub import Stubber

from tests.conftest import Stack, create_history_table
from tests.test_jobs import make_job

FUNCTIONS = ("dispatch", "track", "sweep")
T0 = "2026-11-28T10:00:00.000Z"


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


def test_a_throttled_launch_put_back_makes_its_sqs_client_on_first_use(
    made: list[str], load_handler: Callable[[str], ModuleType], stack: Stack
) -> None:
    app = load_handler("dispatch")
    made.clear()
    deferral = app.dispatcher.deferral
    assert deferral is not None
    attempt = Attempt(number=1, strategy="FARGATE", capacity_provider="FARGATE", dispatched_at=T0)
    job = stack.table.create(make_job(status=JobStatus.DISPATCHING, attempts=(attempt,)))
    assert job is not None
    for deferrals in (0, 1):
        sent = deferral.defer(stack.table, Relaunch(job.job_id, attempt=1), deferrals, parse_iso(T0))
        assert sent is not None and sent.sent
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


@pytest.mark.parametrize(("concurrency", "pool"), [(8, 10), (32, 32)])
def test_dispatchs_clients_have_a_connection_per_dispatch_thread(
    concurrency: int,
    pool: int,
    made: list[str],
    load_handler: Callable[[str], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPATCH_CONCURRENCY", str(concurrency))
    dispatcher = load_handler("dispatch").dispatcher
    table_config = dispatcher.table._client.meta.config
    ecs_config = dispatcher.ecs._client.meta.config
    assert table_config.max_pool_connections == ecs_config.max_pool_connections == pool
    # The ECS client keeps its own timeouts and retries (max_attempts 3: three retries, four attempts).
    retries = {"mode": "standard", "total_max_attempts": 4}
    assert (ecs_config.read_timeout, ecs_config.retries) == (20, retries)


class SlowDynamoDB(BaseHTTPRequestHandler):
    """Answers every request after a while, so that concurrent requests each hold a connection."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.5)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def connections_thrown_away(
    make_client: Callable[[], Any], threads: int, caplog: pytest.LogCaptureFixture
) -> int:
    """How many connections the client opens and discards when `threads` threads use it at once,
    against a slow endpoint on this machine (urllib3 says so for each)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowDynamoDB)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
            client = make_client()
        start = threading.Barrier(threads)

        def call() -> None:
            start.wait()
            client.describe_limits()

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            workers = [threading.Thread(target=call) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        return sum("Connection pool is full" in record.getMessage() for record in caplog.records)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stand_in_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.mark.usefixtures("stand_in_credentials")
def test_a_client_made_for_16_threads_keeps_every_connection(caplog: pytest.LogCaptureFixture) -> None:
    assert connections_thrown_away(lambda: dynamodb_client(16), 16, caplog) == 0


@pytest.mark.usefixtures("stand_in_credentials")
def test_botocores_default_pool_throws_away_the_connections_beyond_ten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What sizing the pool prevents: 16 threads on a client with botocore's default pool of 10.
    assert connections_thrown_away(lambda: boto3.client("dynamodb"), 16, caplog) == 6


@pytest.mark.parametrize("make", [dynamodb_client, ecs_client, sqs_client, lambda: dynamodb_client(32)])
def test_every_client_retries_in_standard_mode_with_short_timeouts(make: Callable[[], Any]) -> None:
    config = make().meta.config
    assert config.retries["mode"] == "standard"
    assert config.connect_timeout == 5
    assert 0 < config.read_timeout <= 30


# Hand-written paging: a request's continuation token set from the last response.
HAND_PAGED = re.compile(
    r"""\[["'](nextToken|NextToken|ExclusiveStartKey|Marker)["']\]\s*=(?!=)|\b(nextToken|NextToken|ExclusiveStartKey)=\w"""
)
# Not loops over every page: JobTable.page hands one page and its cursor to the caller (the CLI's
# --next-token); GetLogEvents has no paginator (the stream's end is its forward token coming back).
# ops/cli.py and ops/dead_letters.py are changed elsewhere.
PAGED_BY_THE_CALLER = {"adapters/job_table.py", "ops/logs.py", "ops/cli.py", "ops/dead_letters.py"}


def test_the_runtime_and_ops_page_with_boto3_paginators() -> None:
    root = Path(batchgate.__file__).parent
    hand_paged = sorted(
        relative
        for path in root.rglob("*.py")
        if (relative := path.relative_to(root).as_posix()) not in PAGED_BY_THE_CALLER
        and HAND_PAGED.search(path.read_text(encoding="utf-8"))
    )
    assert hand_paged == []


def test_tasks_started_by_reads_every_page() -> None:
    client = boto3.client("ecs", region_name="us-east-1")
    stubber = Stubber(client)
    for status, pages in (("RUNNING", [["a", "b"], ["c"]]), ("STOPPED", [["b", "d"]])):
        for index, arns in enumerate(pages):
            request = {"cluster": "c", "startedBy": "bg-x", "desiredStatus": status}
            if index:
                request["nextToken"] = f"{status}-{index}"
            response: dict[str, Any] = {"taskArns": arns}
            if index + 1 < len(pages):
                response["nextToken"] = f"{status}-{index + 1}"
            stubber.add_response("list_tasks", response, request)
    stubber.add_response(
        "describe_tasks",
        {"tasks": [{"taskArn": arn} for arn in "abcd"]},
        {"cluster": "c", "tasks": list("abcd")},
    )
    with stubber:
        described = EcsTasks("c", client).tasks_started_by("bg-x")
    assert [task["taskArn"] for task in described] == list("abcd")
    stubber.assert_no_pending_responses()
