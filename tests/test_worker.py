"""The warm pool worker (batchgate.worker) against moto (DynamoDB, SQS, CloudWatch Logs and metrics,
ECS task definitions) with real child processes: small Python one-liners."""

from __future__ import annotations

import copy
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from batchgate.adapters.ecs_agent import TaskIdentity, TaskProtection, read_task_identity
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.log_streams import (
    MAX_BYTES_PER_CALL,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_CALL,
    LogLine,
    put_log_events_batches,
    within_event_limit,
)
from batchgate.adapters.pool_table import PoolTable
from batchgate.adapters.pool_work_queue import PoolWorkQueue, WorkMessage
from batchgate.adapters.task_definitions import TaskDefinitionImages
from batchgate.domain.catalog import Catalog, parse_catalog
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso, utc_now
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.retry_policy import TIMEOUT_REASON_PREFIX
from batchgate.domain.timeouts import time_out_attempt
from batchgate.domain.warm import (
    NOT_PICKED_UP,
    POOL_TASK_STOPPED,
    WARM,
    WorkOffer,
    expire_warm_offer,
    offer_warm,
)
from batchgate.ops.logs import LogLocation, TaskLogs
from batchgate.worker.__main__ import serve_until_stopped
from batchgate.worker.child_process import ChildLauncher, ChildProcess, ChildStopper
from batchgate.worker.claims import Claimed, Refused
from batchgate.worker.protection import ScaleInProtection
from batchgate.worker.served_batches import ServedBatches
from batchgate.worker.settings import WorkerSettings, WorkerTiming, child_environment
from batchgate.worker.slot_loop import SlotLoop
from batchgate.worker.slots import Slots
from batchgate.worker.worker import Worker, WorkerClients, memory_limit_bytes, preload_modules

from tests.conftest import create_pool_table, template_table

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
POOL = "attendance"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/pools/0123456789abcdef"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/attendance:7"
DIGEST = "sha256:" + "a" * 64
LOG_GROUP = "/batchgate/pools/attendance"
PYTHON = sys.executable
MIB = 1024 * 1024
FAST = WorkerTiming(
    heartbeat_seconds=0.3,
    receive_wait_seconds=1,
    tick_seconds=0.05,
    kill_grace_seconds=0.2,
    stop_timeout_seconds=6.0,
    stop_margin_seconds=1.0,
    flush_seconds=0.2,
)
# The job's child: prints what it is told (argument 1: lines separated by "|"), then exits with
# argument 2 after sleeping argument 3 seconds; appends its pid to $RUN_MARKS when set.
SCRIPT = (
    "import os, sys, time\n"
    "marks = os.environ.get('RUN_MARKS')\n"
    "if marks:\n"
    "    open(marks, 'a').write(f'{os.getpid()}\\n')\n"
    "for line in sys.argv[1].split('|'):\n"
    "    print(line, flush=True)\n"
    "time.sleep(float(sys.argv[3]))\n"
    "sys.exit(int(sys.argv[2]))\n"
)
ARGUMENTS = {"min_count": 0, "max_count": 5, "max_length": 256, "pattern": ".*"}


def batch(command: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "description": "a warm batch",
        "task_definition": "batchgate-attendance",
        "container": "attendance",
        "cpu": 512,
        "memory": 1024,
        "command": command,
        "arguments": ARGUMENTS,
        "timeout_seconds": 60,
        "max_attempts": 3,
        "launch_class": "standard",
        "pool": POOL,
        "environment": ["RUN_MARKS"],
        # A retry's relaunch is delayed by its back-off: one second here.
        "retry": {"base_delay_seconds": 1, "max_delay_seconds": 1},
        **fields,
    }


def waiting_batch(go: Path) -> dict[str, Any]:
    """A batch whose child waits for the file `go`, then prints `done` and exits 0."""
    return batch(
        [
            PYTHON,
            "-c",
            f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\nprint('done')",
        ]
    )


def warm_catalog(**batches: dict[str, Any]) -> Catalog:
    document = json.loads((ROOT / "layers/batchgate/batchgate/catalog.json").read_text())
    document = copy.deepcopy(document)
    document["pools"] = {
        POOL: {
            "task_definition": "batchgate-attendance",
            "container": "attendance",
            "cpu": 1024,
            "memory": 2048,
            "slots": 2,
            "capacity_provider": "FARGATE_SPOT",
            "min_tasks": 0,
            "max_tasks": 4,
        }
    }
    document["batches"] = {
        "warm-echo": batch([PYTHON, "-c", SCRIPT]),
        "warm-short": batch([PYTHON, "-c", SCRIPT], timeout_seconds=1),
        "warm-raw": batch(
            [PYTHON, "-c", "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe bad\\nnext\\n')"]
        ),
        "warm-env": batch(
            [PYTHON, "-c", "import os; [print(k, '=', v) for k, v in sorted(os.environ.items())]"]
        ),
        # Its run is marked once its SIGTERM handler is installed.
        "warm-stubborn": batch(
            [
                PYTHON,
                "-c",
                "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "open(os.environ['RUN_MARKS'], 'a').write(f'{os.getpid()}\\n'); "
                "print('ignoring', flush=True); time.sleep(30)",
            ]
        ),
        **batches,
    }
    document.pop("schedules", None)  # the packaged schedules name batches this catalog replaces
    return parse_catalog(document)


@dataclass
class Pool:
    """The moto account of one pool: tables, queues, log group; and the worker under test."""

    catalog: Catalog
    table: JobTable
    pool_table: PoolTable
    queue_url: str
    jobs_queue_url: str
    sqs: Any
    logs: Any
    clients: WorkerClients
    tmp: Path

    def submit(self, batch: str, arguments: Sequence[str] = (), *, marks: bool = True) -> Job:
        """A job dispatch offered to the pool (attempt 1, WARM, DISPATCHED), its offer on the queue."""
        job = self.offered_job(batch, arguments, marks=marks)
        self.send(job.job_id, 1)
        return job

    def offered_job(self, batch: str, arguments: Sequence[str] = (), *, marks: bool = True) -> Job:
        now = iso(utc_now())
        number = len(list(self.tmp.glob("job-*"))) + 1
        (self.tmp / f"job-{number}").touch()
        job_id = f"bg-{batch}-{number:020d}"
        environment = {"RUN_MARKS": str(self.marks(job_id))} if marks else {}
        job = Job(
            job_id=job_id,
            batch=batch,
            status=JobStatus.DISPATCHING,
            created_at=now,
            updated_at=now,
            expires_at=2_000_000_000,
            message_id=f"m-{number}",
            arguments=tuple(arguments),
            environment=environment,
            attempts=(Attempt(number=1, strategy=WARM, capacity_provider=POOL, dispatched_at=now),),
        )
        offered = offer_warm(job, 1, now)
        assert offered is not None
        created = self.table.create(offered)
        assert created is not None
        return created

    def send(self, job_id: str, attempt: int) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=WorkOffer(job_id, attempt).body())

    def marks(self, job_id: str) -> Path:
        return self.tmp / f"{job_id}.runs"

    def runs_of(self, job_id: str) -> list[int]:
        path = self.marks(job_id)
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def job(self, job_id: str) -> Job:
        job = self.table.get(job_id)
        assert job is not None
        return job

    def wait_for(self, job_id: str, done: Callable[[Job], bool], timeout: float = 15.0) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if done(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"{job_id} did not get there: {self.job(job_id)}")

    def wait_until_ended(self, job_id: str) -> Job:
        return self.wait_for(job_id, lambda job: job.status.is_terminal or job.status is JobStatus.RETRYING)

    def lines(self, job: Job) -> list[str]:
        attempt = job.attempt
        assert attempt is not None and attempt.log_group and attempt.log_stream
        return [
            event.message
            for event in TaskLogs(self.logs).read(LogLocation(attempt.log_group, attempt.log_stream))
        ]

    def queue_depth(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def relaunches(self, wait_seconds: float = 0) -> list[Relaunch]:
        """The relaunches on the jobs queue, waiting up to `wait_seconds` for the first (a retry's
        shows once its back-off has passed; moto's long poll would only notice it a second later)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.jobs_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if messages or time.monotonic() >= deadline:
                return [Relaunch.parse(message["Body"]) for message in messages]
            time.sleep(0.05)

    def settings(self, timing: WorkerTiming = FAST) -> WorkerSettings:
        return WorkerSettings(
            pool=POOL,
            job_table_name=self.table.table_name,
            pool_table_name=self.pool_table.table_name,
            pool_queue_url=self.queue_url,
            log_group=LOG_GROUP,
            jobs_queue_url=self.jobs_queue_url,
            task_arn=TASK_ARN,
            timing=timing,
        )

    def worker(
        self,
        timing: WorkerTiming = FAST,
        identity: TaskIdentity | None = None,
        environment: Mapping[str, str] | None = None,
        queue: Callable[[Worker], PoolWorkQueue] | None = None,
        **options: Any,
    ) -> RunningWorker:
        """A worker serving; it reads the pool's queue through `queue(worker)`, a PromptQueue unless
        given."""
        worker = Worker(
            self.settings(timing),
            self.catalog,
            identity or TaskIdentity(TASK_ARN, "us-east-1a", IMAGE, DIGEST),
            self.clients,
            environment=environment if environment is not None else {"PATH": os.environ.get("PATH", "")},
            **options,
        )
        worker.loop.queue = (queue or self.prompt_queue)(worker)
        return RunningWorker(worker)

    def prompt_queue(self, worker: Worker) -> PoolWorkQueue:
        return PromptQueue(self.queue_url, self.sqs, worker._stopping)


class PromptQueue(PoolWorkQueue):
    """The pool's work queue, its long poll ended early when the worker stops. SQS's (and moto's) long
    poll cannot be cut short: an idle worker exits at the end of the one in flight, and every test
    would wait one out when it stops its worker."""

    POLL_SECONDS = 0.2

    def __init__(self, queue_url: str, client: Any, stopping: threading.Event) -> None:
        super().__init__(queue_url, client)
        self.stopping = stopping

    def receive(self, max_messages: int, wait_seconds: int) -> list[WorkMessage]:
        deadline = time.monotonic() + wait_seconds
        while True:
            messages = super().receive(max_messages, 0)
            if messages or self.stopping.is_set() or time.monotonic() >= deadline:
                return messages
            self.stopping.wait(self.POLL_SECONDS)


class RunningWorker:
    """A worker serving in a thread until stopped (as on SIGTERM)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.exit_status: int | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.exit_status = self.worker.run()

    def stop(self, timeout: float = 20.0) -> int | None:
        self.worker.request_stop("SIGTERM")
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the worker did not exit"
        return self.exit_status

    def __enter__(self) -> RunningWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()


@functools.cache
def account_clients() -> WorkerClients:
    """The clients of the moto account, made once per process (first inside a test's moto): each
    test's account starts empty but answers the same clients, and making a client costs milliseconds."""
    return WorkerClients(
        dynamodb=boto3.client("dynamodb", region_name=REGION),
        sqs=boto3.client("sqs", region_name=REGION),
        logs=boto3.client("logs", region_name=REGION),
        ecs=boto3.client("ecs", region_name=REGION),
        cloudwatch=boto3.client("cloudwatch", region_name=REGION),
    )


def create_account(tmp: Path, catalog: Catalog) -> Pool:
    clients = account_clients()
    dynamodb, sqs, logs, ecs = clients.dynamodb, clients.sqs, clients.logs, clients.ecs
    dynamodb.create_table(TableName="jobs", **template_table())
    create_pool_table(dynamodb, "pools")
    queue_url = sqs.create_queue(QueueName="pool-attendance")["QueueUrl"]
    jobs_queue_url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    logs.create_log_group(logGroupName=LOG_GROUP)
    ecs.register_task_definition(
        family="batchgate-attendance",
        containerDefinitions=[{"name": "attendance", "image": IMAGE, "memory": 2048}],
    )
    return Pool(
        catalog=catalog,
        table=JobTable("jobs", dynamodb),
        pool_table=PoolTable("pools", dynamodb),
        queue_url=queue_url,
        jobs_queue_url=jobs_queue_url,
        sqs=sqs,
        logs=logs,
        clients=clients,
        tmp=tmp,
    )


@pytest.fixture
def pool(aws: None, tmp_path: Path) -> Pool:
    return create_account(tmp_path, warm_catalog())


def cancel(pool: Pool, job_id: str) -> None:
    pool.table.apply(
        job_id, lambda job: job.moved_to(JobStatus.CANCELLED, iso(utc_now()), "batchgate: cancelled by ops")
    )


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for this purpose.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


# A job's life in a slot.


def test_a_job_runs_and_ends_succeeded_with_its_output_in_its_own_stream(pool: Pool) -> None:
    job = pool.submit("warm-echo", ["hello|from the job|", "0", "0"])
    with pool.worker():
        ended = pool.wait_until_ended(job.job_id)
    assert ended.status is JobStatus.SUCCEEDED
    attempt = ended.attempt
    assert attempt is not None
    assert (attempt.task_arn, attempt.slot, attempt.image_digest, attempt.exit_code) == (
        TASK_ARN,
        0,
        DIGEST,
        0,
    )
    assert (attempt.log_group, attempt.log_stream) == (LOG_GROUP, f"warm-echo/{job.job_id}/1")
    assert attempt.stop_code == "EssentialContainerExited"
    assert {"started", "stopped"} <= set(attempt.timeline)
    assert pool.lines(ended) == ["hello", "from the job"]  # the empty line is left out, as awslogs does
    assert pool.queue_depth() == 0
    assert len(pool.runs_of(job.job_id)) == 1


def test_a_non_zero_exit_ends_failed_with_the_exit_code(pool: Pool) -> None:
    job = pool.submit("warm-echo", ["failing", "3", "0"])
    with pool.worker():
        ended = pool.wait_until_ended(job.job_id)
    assert ended.status is JobStatus.FAILED
    assert ended.attempt is not None and ended.attempt.exit_code == 3
    assert ended.reason is not None and "exit code 3" in ended.reason
    assert pool.relaunches() == []  # an application's own exit code is not retried


def test_the_child_gets_the_attempt_environment_and_not_the_worker_settings(pool: Pool) -> None:
    job = pool.submit("warm-env", marks=False)
    worker_environment = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "JOB_TABLE_NAME": "jobs",
        "POOL_QUEUE_URL": pool.queue_url,
        "ECS_AGENT_URI": "http://169.254.170.2/api/x",
        "BATCHGATE_JOB_ID": "the worker's own, never the job's",
    }
    with pool.worker(environment=worker_environment):
        ended = pool.wait_until_ended(job.job_id)
    lines = pool.lines(ended)
    assert f"BATCHGATE_JOB_ID = {job.job_id}" in lines
    assert "BATCHGATE_ATTEMPT = 1" in lines
    assert "BATCHGATE_BATCH = warm-env" in lines
    assert "AWS_REGION = us-east-1" in lines
    assert not [
        line for line in lines if line.startswith(("JOB_TABLE_NAME", "POOL_QUEUE_URL", "ECS_AGENT_URI"))
    ]


def test_output_with_invalid_utf8_is_shipped_with_replacement_characters(pool: Pool) -> None:
    job = pool.submit("warm-raw", marks=False)
    with pool.worker():
        ended = pool.wait_until_ended(job.job_id)
    assert ended.status is JobStatus.SUCCEEDED
    assert pool.lines(ended) == ["ok \ufffd\ufffd bad", "next"]


def test_a_command_that_cannot_start_ends_the_attempt_and_is_retried(aws: None, tmp_path: Path) -> None:
    pool = create_account(tmp_path, warm_catalog(**{"warm-missing": batch(["/nonexistent/batch"])}))
    job = pool.submit("warm-missing", marks=False)
    with pool.worker():
        ended = pool.wait_until_ended(job.job_id)
    assert ended.status is JobStatus.RETRYING
    assert ended.attempt is not None and ended.attempt.stopped_reason is not None
    assert ended.attempt.stopped_reason.startswith(
        "CannotStartContainerError: cannot start /nonexistent/batch"
    )
    assert pool.relaunches(wait_seconds=3) == [Relaunch(job.job_id, 2)]


# Messages that must run nothing.


def test_a_duplicate_work_message_runs_the_job_once(pool: Pool) -> None:
    job = pool.submit("warm-echo", ["once", "0", "0.5"])
    pool.send(job.job_id, 1)
    with pool.worker():
        ended = pool.wait_until_ended(job.job_id)
        deadline = time.monotonic() + 10
        while pool.queue_depth() and time.monotonic() < deadline:
            time.sleep(0.05)  # the duplicate is received and refused meanwhile
    assert ended.status is JobStatus.SUCCEEDED
    assert len(pool.runs_of(job.job_id)) == 1
    assert pool.queue_depth() == 0  # both deleted once decided


def test_a_message_for_a_cancelled_or_superseded_attempt_runs_nothing(pool: Pool) -> None:
    cancelled = pool.submit("warm-echo", ["x", "0", "0"])
    cancel(pool, cancelled.job_id)
    superseded = pool.offered_job("warm-echo", ["x", "0", "0"])

    def second_attempt(job: Job) -> Job:
        at = iso(utc_now())
        return job._replace(
            attempts=(
                *job.attempts,
                Attempt(number=2, strategy="FARGATE", capacity_provider="FARGATE", dispatched_at=at),
            ),
        )

    pool.table.apply(superseded.job_id, second_attempt)
    pool.send(superseded.job_id, 1)
    with pool.worker() as worker:
        deadline = time.monotonic() + 10
        while pool.queue_depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.stop()
    assert pool.queue_depth() == 0
    assert pool.runs_of(cancelled.job_id) == pool.runs_of(superseded.job_id) == []
    assert pool.job(cancelled.job_id).status is JobStatus.CANCELLED
    assert pool.job(superseded.job_id).attempt_by_number(1).task_arn is None  # type: ignore[union-attr]


def test_a_claim_losing_to_the_offer_check_runs_nothing(pool: Pool) -> None:
    job = pool.submit("warm-echo", ["x", "0", "0"])
    pool.table.apply(
        job.job_id,
        lambda current: expire_warm_offer(current, 1, iso(utc_now()), "not picked up by attendance in 2 s"),
    )
    with pool.worker() as worker:
        deadline = time.monotonic() + 10
        while pool.queue_depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.stop()
    after = pool.job(job.job_id)
    assert pool.runs_of(job.job_id) == []
    assert after.status is JobStatus.RETRYING
    assert after.attempt is not None and after.attempt.stop_code == NOT_PICKED_UP
    assert after.attempt.task_arn is None


def test_an_unreadable_work_message_is_left_for_the_dlq(pool: Pool, caplog: pytest.LogCaptureFixture) -> None:
    pool.sqs.send_message(QueueUrl=pool.queue_url, MessageBody="not an offer")
    with pool.worker() as worker:
        deadline = time.monotonic() + 10
        while not any(record.message.startswith("unreadable work message") for record in caplog.records):
            assert time.monotonic() < deadline, "the worker never read the message"
            time.sleep(0.05)
        worker.stop()
    assert pool.queue_depth() == 1  # received, never deleted: the redrive policy moves it to the DLQ


# Stopping a running child.


def test_a_cancel_while_running_stops_the_child_and_the_job_stays_cancelled(pool: Pool) -> None:
    job = pool.submit("warm-echo", ["working", "0", "30"])
    with pool.worker():
        pool.wait_for(job.job_id, lambda current: current.status is JobStatus.RUNNING)
        pid = wait_for_run(pool, job.job_id)
        cancel(pool, job.job_id)
        stopped = pool.wait_for(job.job_id, lambda current: current.attempt.last_status == "STOPPED")  # type: ignore[union-attr]
    assert stopped.status is JobStatus.CANCELLED
    assert stopped.attempt is not None
    assert stopped.attempt.stop_code == "UserInitiated"
    assert stopped.attempt.exit_code == 128 + signal.SIGTERM
    assert not is_alive(pid)
    assert pool.relaunches() == []


def test_a_child_ignoring_sigterm_is_killed(pool: Pool) -> None:
    job = pool.submit("warm-stubborn")
    with pool.worker():
        pid = wait_for_run(pool, job.job_id)  # its SIGTERM handler is installed
        cancel(pool, job.job_id)
        stopped = pool.wait_for(job.job_id, lambda current: current.attempt.last_status == "STOPPED")  # type: ignore[union-attr]
    assert stopped.attempt is not None and stopped.attempt.exit_code == 128 + signal.SIGKILL
    assert not is_alive(pid)


def test_a_cancel_racing_the_end_leaves_the_job_cancelled_with_the_exit_recorded(
    pool: Pool, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    pool.catalog = warm_catalog(**{"warm-wait": waiting_batch(go)})
    job = pool.submit("warm-wait", marks=False)
    # Heartbeats far apart: the child's own end, not a heartbeat, meets the cancel.
    with pool.worker(replace(FAST, heartbeat_seconds=60)):
        pool.wait_for(job.job_id, lambda current: current.status is JobStatus.RUNNING)
        # The claim pokes one heartbeat, which reads the running job's item: let it list the job and
        # finish that read (one in-process GetItem) before the cancel, or it, not the child's own end,
        # would meet the cancel.
        deadline = time.monotonic() + 10
        while not any(task.runs(job.job_id, 1) for task in pool.pool_table.tasks(POOL)):
            assert time.monotonic() < deadline, "the worker's heartbeat never listed the job"
            time.sleep(0.02)
        time.sleep(0.5)
        cancel(pool, job.job_id)
        go.touch()
        ended = pool.wait_for(job.job_id, lambda current: current.attempt.last_status == "STOPPED")  # type: ignore[union-attr]
    assert ended.status is JobStatus.CANCELLED
    assert ended.attempt is not None
    assert (ended.attempt.exit_code, ended.attempt.stop_code) == (0, "EssentialContainerExited")
    assert pool.relaunches() == []


def test_a_job_past_its_timeout_is_stopped_and_ends_timed_out(pool: Pool) -> None:
    job = pool.submit("warm-short", ["slow", "0", "30"])
    started = time.monotonic()
    with pool.worker():
        pid = wait_for_run(pool, job.job_id)
        ended = pool.wait_for(job.job_id, lambda current: current.attempt.last_status == "STOPPED")  # type: ignore[union-attr]
    assert time.monotonic() - started < 10
    assert ended.status is JobStatus.TIMED_OUT
    assert ended.reason is not None and ended.reason.startswith(TIMEOUT_REASON_PREFIX)
    assert ended.attempt is not None
    assert (ended.attempt.stop_code, ended.attempt.stopped_reason) == (
        "UserInitiated",
        "batchgate: exceeded timeout of 1 s",
    )
    assert not is_alive(pid)
    assert pool.lines(pool.job(job.job_id)) == ["slow"]


def wait_for_run(pool: Pool, job_id: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = pool.runs_of(job_id)
        if runs:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"{job_id} never ran")


# SIGTERM.


def test_sigterm_lets_a_running_job_finish_within_the_stop_timeout(pool: Pool, tmp_path: Path) -> None:
    go = tmp_path / "go"
    pool.catalog = warm_catalog(**{"warm-wait": waiting_batch(go)})
    job = pool.submit("warm-wait", marks=False)
    running = pool.worker()
    pool.wait_for(job.job_id, lambda current: current.status is JobStatus.RUNNING)
    running.worker.request_stop("SIGTERM")
    deadline = time.monotonic() + 5
    heartbeat = pool.pool_table.get(POOL, TASK_ARN)
    while (heartbeat is None or not heartbeat.stopping) and time.monotonic() < deadline:
        time.sleep(0.05)
        heartbeat = pool.pool_table.get(POOL, TASK_ARN)
    assert heartbeat is not None and heartbeat.stopping and heartbeat.free_slots == 0
    go.touch()  # the job ends during the drain
    assert running.stop() == 0
    assert pool.job(job.job_id).status is JobStatus.SUCCEEDED
    assert pool.pool_table.get(POOL, TASK_ARN) is None


def test_sigterm_stops_a_job_that_cannot_finish_as_warm_task_stopped_and_relaunches_it(pool: Pool) -> None:
    job = pool.submit("warm-echo", ["long", "0", "30"])
    running = pool.worker(replace(FAST, stop_timeout_seconds=1.1, stop_margin_seconds=1.0))
    pool.wait_for(job.job_id, lambda current: current.status is JobStatus.RUNNING)
    assert running.stop() == 0
    ended = pool.job(job.job_id)
    assert ended.status is JobStatus.RETRYING
    assert ended.attempt is not None and ended.attempt.stop_code == POOL_TASK_STOPPED
    assert ended.attempt.stopped_reason is not None and "SIGTERM" in ended.attempt.stopped_reason
    assert pool.relaunches(wait_seconds=3) == [Relaunch(job.job_id, 2)]
    assert pool.pool_table.get(POOL, TASK_ARN) is None


def test_a_message_received_while_stopping_is_handed_back(pool: Pool) -> None:
    job = pool.offered_job("warm-echo", ["x", "0", "0"])

    class StoppingQueue(PoolWorkQueue):
        """The SIGTERM arrives while this receive is in flight."""

        def __init__(self, worker: Worker) -> None:
            super().__init__(pool.queue_url, pool.sqs)
            self.worker = worker

        def receive(self, max_messages: int, wait_seconds: int) -> list[WorkMessage]:
            received = super().receive(max_messages, wait_seconds)
            if received:
                self.worker.request_stop("SIGTERM")
            return received

    running = pool.worker(queue=StoppingQueue)
    pool.send(job.job_id, 1)
    running._thread.join(10)
    assert pool.runs_of(job.job_id) == []
    assert pool.queue_depth() == 1  # visible again at once, for another task


# Heartbeats, slots, protection, images.


def test_heartbeat_items_list_the_running_jobs_and_are_deleted_on_exit(pool: Pool) -> None:
    first = pool.submit("warm-echo", ["a", "0", "30"])
    second = pool.submit("warm-echo", ["b", "0", "30"])
    with pool.worker() as worker:
        for job in (first, second):
            pool.wait_for(job.job_id, lambda current: current.status is JobStatus.RUNNING)
        deadline = time.monotonic() + 10
        heartbeat = pool.pool_table.get(POOL, TASK_ARN)
        while (heartbeat is None or len(heartbeat.running) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
            heartbeat = pool.pool_table.get(POOL, TASK_ARN)
        worker.worker.settings = replace(
            worker.worker.settings, timing=replace(FAST, stop_timeout_seconds=1.2)
        )
        worker.stop()
    assert heartbeat is not None
    assert sorted((job.job_id, job.attempt) for job in heartbeat.running) == sorted(
        [(first.job_id, 1), (second.job_id, 1)]
    )
    assert sorted(job.slot for job in heartbeat.running) == [0, 1]
    assert (heartbeat.slots, heartbeat.free_slots, heartbeat.image, heartbeat.image_digest) == (
        2,
        0,
        IMAGE,
        DIGEST,
    )
    assert heartbeat.availability_zone == "us-east-1a"
    assert "warm-echo" in heartbeat.batches
    assert pool.pool_table.get(POOL, TASK_ARN) is None
    metrics = boto3.client("cloudwatch", region_name=REGION).list_metrics(Namespace="Batchgate")["Metrics"]
    assert {"PoolBusyRatio", "PoolHeartbeats", "PoolImageStale"} <= {
        metric["MetricName"] for metric in metrics
    }


class RecordingQueue:
    def __init__(self, slots: Slots[Any], bodies: list[str]) -> None:
        self.slots = slots
        self.bodies = bodies
        self.asked: list[tuple[int, int]] = []

    def receive(self, max_messages: int, wait_seconds: int) -> list[WorkMessage]:
        self.asked.append((max_messages, self.slots.free))
        taken, self.bodies = self.bodies[:max_messages], self.bodies[max_messages:]
        return [WorkMessage(body, f"r-{body}", 1) for body in taken]

    def delete(self, message: WorkMessage) -> None:
        pass


def test_the_loop_never_receives_more_messages_than_free_slots() -> None:
    slots: Slots[str] = Slots(3)
    queue = RecordingQueue(slots, [WorkOffer(f"bg-warm-echo-{n}", 1).body() for n in range(7)])
    stopping = threading.Event()

    class Claims:
        def claim(self, offer: WorkOffer, slot: int) -> Claimed | Refused:
            return Claimed(job=offer, spec=None)  # type: ignore[arg-type]

    def start_run(claimed: Claimed, slot: int) -> None:
        slots.assign(slot, "running")
        if not queue.bodies:
            stopping.set()
        elif slots.free == 0:  # one job ends: one slot free again
            threading.Timer(0.05, slots.release, [slot]).start()

    loop = SlotLoop(queue, slots, Claims(), start_run, receive_wait_seconds=1)  # type: ignore[arg-type]
    loop.run(stopping)
    assert queue.asked[0] == (3, 3)
    assert all(asked <= free for asked, free in queue.asked)
    assert queue.bodies == []


class WatchedSlots(Slots[str]):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.waiting = threading.Event()

    def wait_for_free(self, timeout: float, stopping: threading.Event | None = None) -> bool:
        self.waiting.set()
        return super().wait_for_free(timeout, stopping)


def test_a_full_task_leaves_its_wait_for_a_free_slot_at_once_when_stopping() -> None:
    slots = WatchedSlots(1)
    slots.assign(0, "running")
    queue = RecordingQueue(slots, [])
    stopping = threading.Event()
    loop = SlotLoop(queue, slots, None, lambda claimed, slot: None, receive_wait_seconds=20)  # type: ignore[arg-type]
    serving = threading.Thread(target=loop.run, args=(stopping,), daemon=True)
    serving.start()
    assert slots.waiting.wait(5)  # the loop waits for a free slot
    stopped = time.monotonic()
    stopping.set()
    slots.wake()
    serving.join(5)
    assert not serving.is_alive()
    assert time.monotonic() - stopped < 1  # not the 20 s wait
    assert queue.asked == []  # it never received: no slot was free


def test_a_stale_image_is_not_advertised_and_its_offers_are_refused(pool: Pool) -> None:
    ecs = pool.clients.ecs
    ecs.register_task_definition(
        family="batchgate-attendance",
        containerDefinitions=[{"name": "attendance", "image": IMAGE.replace(":7", ":8"), "memory": 2048}],
    )
    job = pool.submit("warm-echo", ["x", "0", "0"])
    with pool.worker() as worker:
        deadline = time.monotonic() + 10
        while pool.queue_depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        heartbeat = pool.pool_table.get(POOL, TASK_ARN)
        worker.stop()
    assert heartbeat is not None and heartbeat.batches == ()
    assert pool.runs_of(job.job_id) == []
    assert pool.job(job.job_id).attempt.task_arn is None  # type: ignore[union-attr]


def test_served_batches_follow_the_task_definition_image(aws: None) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.register_task_definition(
        family="batchgate-attendance",
        containerDefinitions=[{"name": "attendance", "image": f"repo@{DIGEST}", "memory": 512}],
    )
    specs = warm_catalog().batches_of(POOL)
    now = [0.0]
    served = ServedBatches(
        specs, IMAGE, DIGEST, TaskDefinitionImages(ecs), check_seconds=300, monotonic=lambda: now[0]
    )
    assert served.current() == tuple(spec.name for spec in specs)  # pinned to this task's digest
    assert not served.stale
    ecs.register_task_definition(
        family="batchgate-attendance",
        containerDefinitions=[{"name": "attendance", "image": "repo:9", "memory": 512}],
    )
    assert served.current() != ()  # not looked up again before check_seconds
    now[0] = 301.0
    assert served.current() == ()
    assert served.stale
    unknown = ServedBatches(specs, None, None, TaskDefinitionImages(ecs), check_seconds=300)
    assert unknown.current() == tuple(spec.name for spec in specs)


class AgentStandIn(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        AgentStandIn.requests.append({"path": self.path, **json.loads(body)})
        answer = json.dumps({"protection": {"ProtectionEnabled": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[str]:
    AgentStandIn.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AgentStandIn)
    # shutdown() waits for serve_forever's next look at it (every 0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/agent"
    server.shutdown()


def test_the_task_is_protected_from_scale_in_while_a_slot_is_busy(pool: Pool, agent: str) -> None:
    job = pool.submit("warm-echo", ["x", "0", "0.3"])
    running = Worker(
        replace(pool.settings(), agent_uri=agent),
        pool.catalog,
        TaskIdentity(TASK_ARN, None, IMAGE, DIGEST),
        pool.clients,
        environment={"PATH": os.environ.get("PATH", "")},
    )
    running.loop.queue = pool.prompt_queue(running)
    with RunningWorker(running) as worker:
        pool.wait_until_ended(job.job_id)
        deadline = time.monotonic() + 10
        while len(AgentStandIn.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the slot's release drops the protection
        worker.stop()
    states = [request["ProtectionEnabled"] for request in AgentStandIn.requests]
    assert states == [True, False]
    assert AgentStandIn.requests[0] == {
        "path": "/api/agent/task-protection/v1/state",
        "ProtectionEnabled": True,
        "ExpiresInMinutes": 60,
    }


def test_protection_is_a_no_op_without_an_agent() -> None:
    protection = ScaleInProtection(TaskProtection(None), 60)
    protection.update(True)
    assert protection.enabled


# Preload mode, through a stand-in with the zygote's interface.


class ZygoteStandIn:
    """Forks nothing: runs the module in a fresh interpreter, in its own session, as the zygote's
    child would."""

    def __init__(self, preload: Sequence[str], path: Path) -> None:
        self.preload = tuple(preload)
        self.path = path
        self.spawned: list[tuple[str, tuple[str, ...], int | None]] = []
        self.closed = False

    def spawn(
        self,
        module: str,
        arguments: Sequence[str],
        environment: Mapping[str, str],
        output_fd: int,
        memory_limit_bytes: int | None,
    ) -> ChildProcess:
        self.spawned.append((module, tuple(arguments), memory_limit_bytes))
        return subprocess.Popen(
            [PYTHON, "-m", module, *arguments],
            stdout=output_fd,
            stderr=output_fd,
            env={**environment, "PYTHONPATH": str(self.path)},
            start_new_session=True,
        )

    def close(self) -> None:
        self.closed = True


def test_a_preload_batch_runs_through_the_zygote_with_its_memory_share(aws: None, tmp_path: Path) -> None:
    (tmp_path / "greeter.py").write_text("import sys\nprint('hello', *sys.argv[1:])\n")
    catalog = warm_catalog(**{"warm-greet": batch(["python", "-m", "greeter"], run_mode="preload")})
    pool = create_account(tmp_path, catalog)
    assert preload_modules(catalog, POOL) == ("greeter",)
    zygote = ZygoteStandIn(preload_modules(catalog, POOL), tmp_path)
    job = pool.submit("warm-greet", ["world"], marks=False)
    with pool.worker(zygote=zygote):
        ended = pool.wait_until_ended(job.job_id)
    assert ended.status is JobStatus.SUCCEEDED
    assert pool.lines(ended) == ["hello world"]
    assert zygote.spawned == [("greeter", ("world",), 1024 * 1024 * 1024)]
    assert zygote.closed


# Units.


def test_a_child_ignoring_sigterm_is_sigkilled_after_the_grace() -> None:
    child = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    assert ChildStopper(grace_seconds=0.3).stop(child) == -signal.SIGKILL
    assert 0.3 <= time.monotonic() - started < 3


def test_a_command_child_gets_its_memory_share_as_rlimit_data(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    spec = warm_catalog(
        **{
            "warm-limit": batch(
                [
                    PYTHON,
                    "-c",
                    # The limit is set from outside once the child has started: it waits for it
                    # (ten seconds at most), then prints what it has.
                    "import resource, time\n"
                    "deadline = time.monotonic() + 10\n"
                    f"while resource.getrlimit(resource.RLIMIT_DATA)[0] != {512 * MIB}:\n"
                    "    if time.monotonic() > deadline: break\n"
                    "    time.sleep(0.01)\n"
                    "print(resource.getrlimit(resource.RLIMIT_DATA)[0])",
                ]
            )
        }
    ).get("warm-limit")
    assert spec is not None
    child = ChildLauncher(memory_limit_bytes=512 * MIB).start(
        spec, (), {"PATH": os.environ["PATH"]}, write_fd
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as output:
        assert output.read().strip() == str(512 * MIB)
    assert child.poll() is not None or subprocess.Popen.wait(child) == 0  # type: ignore[arg-type]


def test_memory_share_and_child_environment() -> None:
    pool = warm_catalog().pools[POOL]
    assert memory_limit_bytes(pool) == 2048 * 1024 * 1024 // 2
    assert child_environment(
        {"PATH": "/bin", "POOL_LOG_GROUP": "g", "BATCHGATE_POOL": "p", "AWS_REGION": "r"},
        {"BATCHGATE_JOB_ID": "j"},
    ) == {"PATH": "/bin", "AWS_REGION": "r", "BATCHGATE_JOB_ID": "j"}


def test_log_events_are_batched_within_put_log_events_limits() -> None:
    big = "é" * (MAX_EVENT_BYTES // 2 + 10)  # two bytes a character: over one event
    pieces = within_event_limit(big)
    assert len(pieces) == 2 and "".join(pieces) == big
    assert all(len(piece.encode()) <= MAX_EVENT_BYTES for piece in pieces)
    many = [LogLine(1, "x")] * (MAX_EVENTS_PER_CALL + 1)
    assert [len(call) for call in put_log_events_batches(many)] == [MAX_EVENTS_PER_CALL, 1]
    heavy = [LogLine(1, piece) for piece in within_event_limit("y" * (3 * MAX_EVENT_BYTES))] * 2
    calls = list(put_log_events_batches(heavy))
    assert all(sum(line.size for line in call) <= MAX_BYTES_PER_CALL for call in calls)
    assert sum(len(call) for call in calls) == len(heavy)


def test_the_timeout_rule_ends_the_attempt_once() -> None:
    spec = warm_catalog().get("warm-echo")
    assert spec is not None
    at = iso(datetime(2026, 12, 1, tzinfo=UTC))
    job = Job(
        job_id="bg-warm-echo-1",
        batch="warm-echo",
        status=JobStatus.RUNNING,
        created_at=at,
        updated_at=at,
        expires_at=0,
        message_id="m",
        attempts=(Attempt(1, WARM, POOL, at, task_arn=TASK_ARN, last_status="RUNNING"),),
    )
    timed_out = time_out_attempt(job, 1, "batchgate: exceeded timeout of 60 s", at, spec)
    assert timed_out is not None and timed_out.status is JobStatus.TIMED_OUT
    assert time_out_attempt(timed_out, 1, "again", at, spec) is None
    assert time_out_attempt(job, 2, "another attempt", at, spec) is None


def test_the_worker_never_loads_powertools() -> None:
    # One interpreter: `python -m batchgate.worker --help` (run as -m runs it), then what it loaded.
    code = (
        "import runpy, sys\n"
        "sys.argv = ['-m', '--help']\n"
        "try:\n"
        "    runpy.run_module('batchgate.worker', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "import batchgate.worker.worker\n"
        "print(sorted(m for m in sys.modules if m.startswith('aws_lambda_powertools')))"
    )
    completed = subprocess.run(
        [PYTHON, "-c", code],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "layers" / "batchgate")},
        capture_output=True,
        text=True,
        check=True,
    )
    *help_text, loaded = completed.stdout.strip().splitlines()
    assert loaded == "[]"
    assert "BATCHGATE_POOL" in "\n".join(help_text)


class StopWaiter:
    """Serves until asked to stop, as Worker does; the SIGTERM arrives while it serves."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.why: str | None = None

    def run(self) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        assert self.stopped.wait(10)
        return 0

    def request_stop(self, why: str = "SIGTERM") -> None:
        self.why = why
        self.stopped.set()


def test_sigterm_to_the_process_asks_the_worker_to_drain() -> None:
    waiter = StopWaiter()
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert serve_until_stopped(waiter) == 0  # type: ignore[arg-type]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert waiter.why == "SIGTERM"


def test_settings_come_from_the_environment() -> None:
    environment = {
        "BATCHGATE_POOL": POOL,
        "JOB_TABLE_NAME": "jobs",
        "POOL_TABLE_NAME": "pools",
        "POOL_QUEUE_URL": "https://sqs/pool",
        "JOBS_QUEUE_URL": "https://sqs/jobs",
        "POOL_LOG_GROUP": LOG_GROUP,
        "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/abc",
        "ECS_AGENT_URI": "http://169.254.170.2/api/abc",
    }
    settings = WorkerSettings.from_environment(environment)
    assert (settings.pool, settings.jobs_queue_url, settings.metadata_uri, settings.task_arn) == (
        POOL,
        "https://sqs/jobs",
        "http://169.254.170.2/v4/abc",
        None,
    )
    assert settings.timing.drain_seconds == 105
    with pytest.raises(RuntimeError, match="POOL_LOG_GROUP"):
        WorkerSettings.from_environment({**environment, "POOL_LOG_GROUP": ""})
    with pytest.raises(RuntimeError, match="cannot name its task"):
        WorkerSettings.from_environment({**environment, "ECS_CONTAINER_METADATA_URI_V4": ""})


class MetadataStandIn(http.server.BaseHTTPRequestHandler):
    """The task metadata endpoint v4: the container's own metadata, and the task's at /task."""

    def do_GET(self) -> None:
        if self.path.endswith("/task"):
            document = {"TaskARN": TASK_ARN, "AvailabilityZone": "us-east-1b", "Containers": []}
        else:
            document = {"Name": "attendance", "Image": IMAGE, "ImageID": DIGEST}
        answer = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_task_names_itself_from_the_metadata_endpoint() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MetadataStandIn)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        identity = read_task_identity(f"http://127.0.0.1:{server.server_address[1]}/v4/abc")
    finally:
        server.shutdown()
    assert identity == TaskIdentity(TASK_ARN, "us-east-1b", IMAGE, DIGEST)
