"""The sweep at its caps: 8,000 active jobs (1,000 per active status, `max_jobs_per_status`) in one run,
timeouts first, within the run's budget; and the same code forced serial, in the same run.

The sweep (batchgate.services.sweep.Sweeper, the code the SweepFunction handler runs) gets real boto3
clients, made with the functions' client configuration, whose every request is answered in this
process by an in-memory DynamoDB job table and ECS cluster after a latency drawn between
`LATENCY_SECONDS` (botocore's `before-send`, where moto answers too): botocore's own work per request
(signing, serialising, parsing) is in the figures, moto's is not (an in-memory table answers in
microseconds where moto's query scans every item). Nothing leaves the process.

The jobs, all old enough for the sweep to read them:
- RUNNING: past payroll's timeout, their task still running: StopTask, then TIMED_OUT;
- STOPPING: quiet for 400 s, their STOPPED event missed: ECS says stopped (exit 0), SUCCEEDED;
- PENDING, PROVISIONING, DISPATCHED: quiet for 400 s, ECS says still starting: explained (a note);
- SUBMITTED, DISPATCHING, RETRYING: waiting in the queue (changed a minute ago): read, nothing to do.

Modes, each on a fresh table: the small world (100 jobs per status) swept serial (one thread) and
concurrent (`SweepSettings().concurrency` threads), both to the end: their ratio. Then the caps
(1,000 per status) concurrent and serial, each with the budget the handler gives a run: the function's
timeout (template.yaml SweepFunction Timeout) as the invocation's remaining time, less the margin, at
most `run_seconds`.

Run with `python -m bench` (all benchmarks) or `python -m bench.sweep_scale`.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import io
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from batchgate.adapters.aws_clients import DYNAMODB_CLIENT_CONFIG, ECS_CLIENT_CONFIG
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.job_table import JobTable, to_attributes
from batchgate.adapters.telemetry import logger
from batchgate.domain.catalog import Catalog, load_catalog
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso, job_id_for, parse_iso
from batchgate.ops.template import load_template
from batchgate.services.sweep import ACTIVE_STATUSES, Sweeper, SweepReport, SweepSettings
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config

from bench._figures import Figure, at_most, figures_table
from bench._in_process import ROOT, quiet_functions, sample_event

LATENCY_SECONDS = (0.020, 0.040)
SMALL_PER_STATUS = 100
LARGE_PER_STATUS = SweepSettings().max_jobs_per_status
THREADS = SweepSettings().concurrency
TARGET_RATIO = 0.25
TABLE = "batchgate-bench-jobs"
CLUSTER = "batchgate-bench"
REGION = "us-east-1"
BATCH = "payroll-calculation"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTION_TIMEOUT = int(TEMPLATE["Resources"]["SweepFunction"]["Properties"]["Timeout"])
FUNCTION_MEMORY_MB = int(
    TEMPLATE["Resources"]["SweepFunction"]["Properties"].get("MemorySize")
    or TEMPLATE["Globals"]["Function"]["MemorySize"]
)
FULL_VCPU_MB = 1769  # Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB
# The sample event each status's task is described with (events/), and the version it has.
DESCRIBED_AS = {
    JobStatus.RUNNING: "task-running.json",
    JobStatus.STOPPING: "task-stopped-exit-0.json",
    JobStatus.PENDING: "task-pending.json",
    JobStatus.PROVISIONING: "task-provisioning.json",
    JobStatus.DISPATCHED: "task-provisioning.json",
}
TIMEOUT_STEP = "timeout"  # StopTask, or a job written TIMED_OUT
OTHER_STEP = "other"  # any other write


class _Body(io.BytesIO):
    """An HTTP response body as botocore reads it (urllib3's `stream`)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(65536):
            yield chunk


class InMemoryAws:
    """The job table and the cluster's tasks, answering the JSON requests of real boto3 clients after
    an injected latency; thread-safe. Records when each timeout and each other write happened."""

    def __init__(self, latency: tuple[float, float], seed: int = 7) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._by_status: dict[str, list[tuple[str, str]]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.steps: list[tuple[float, str]] = []
        self._latency = latency
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register_first("before-send", self._answer)

    def put_job(self, job: Job) -> None:
        self._store(to_attributes(job.to_item()))

    def _store(self, item: dict[str, Any]) -> None:
        job_id, created = item["job_id"]["S"], item["created_at"]["S"]
        previous = self.items.get(job_id)
        if previous is not None:
            self._by_status[previous["status"]["S"]].remove((created, job_id))
        self.items[job_id] = item
        bisect.insort(self._by_status.setdefault(item["status"]["S"], []), (created, job_id))

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        body = json.loads(request.body or b"{}")
        with self._lock:
            delay = self._random.uniform(*self._latency)
        time.sleep(delay)
        with self._lock:
            self.calls[operation] += 1
            status, answer = getattr(self, f"_{operation}")(body)
        headers = HTTPHeaders()
        headers["content-type"] = "application/x-amz-json-1.1"
        return AWSResponse(request.url, status, headers, _Body(answer))

    # DynamoDB.

    def _Query(self, body: dict[str, Any]) -> tuple[int, bytes]:
        values = body["ExpressionAttributeValues"]
        until = values[":until"]["S"] if ":until" in values else "~"
        keys = [key for key in self._by_status.get(values[":h"]["S"], []) if key[0] <= until]
        if not body.get("ScanIndexForward", True):
            keys.reverse()
        start = body.get("ExclusiveStartKey")
        if start:
            keys = keys[keys.index((start["created_at"]["S"], start["job_id"]["S"])) + 1 :]
        page = keys[: body["Limit"]]
        items = [
            {"job_id": {"S": job_id}, "created_at": {"S": created}, "status": {"S": values[":h"]["S"]}}
            for created, job_id in page
        ]
        answer: dict[str, Any] = {"Items": items, "Count": len(items)}
        if len(keys) > len(page):
            answer["LastEvaluatedKey"] = items[-1]
        return 200, json.dumps(answer).encode()

    def _BatchGetItem(self, body: dict[str, Any]) -> tuple[int, bytes]:
        (table, request), *_ = body["RequestItems"].items()
        found = [
            self.items[key["job_id"]["S"]] for key in request["Keys"] if key["job_id"]["S"] in self.items
        ]
        return 200, json.dumps({"Responses": {table: found}, "UnprocessedKeys": {}}).encode()

    def _GetItem(self, body: dict[str, Any]) -> tuple[int, bytes]:
        item = self.items.get(body["Key"]["job_id"]["S"])
        return 200, json.dumps({"Item": item} if item else {}).encode()

    def _PutItem(self, body: dict[str, Any]) -> tuple[int, bytes]:
        item = body["Item"]
        current = self.items.get(item["job_id"]["S"])
        condition = body.get("ConditionExpression", "")
        expected = body.get("ExpressionAttributeValues", {}).get(":revision", {}).get("N")
        if ("attribute_not_exists" in condition and current is not None) or (
            expected is not None and (current is None or current["revision"]["N"] != expected)
        ):
            failure = {
                "__type": "ConditionalCheckFailedException",
                "message": "The conditional request failed",
            }
            return 400, json.dumps(failure).encode()
        self._store(item)
        self.steps.append(
            (time.perf_counter(), TIMEOUT_STEP if item["status"]["S"] == "TIMED_OUT" else OTHER_STEP)
        )
        return 200, b"{}"

    # ECS.

    def _DescribeTasks(self, body: dict[str, Any]) -> tuple[int, bytes]:
        tasks = [self.tasks[arn] for arn in body["tasks"] if arn in self.tasks]
        return 200, json.dumps({"tasks": tasks, "failures": []}).encode()

    def _StopTask(self, body: dict[str, Any]) -> tuple[int, bytes]:
        self.steps.append((time.perf_counter(), TIMEOUT_STEP))
        task = dict(self.tasks.get(body["task"], {"taskArn": body["task"]}))
        task.update(desiredStatus="STOPPED", stoppedReason=body.get("reason", ""))
        self.tasks[body["task"]] = task
        return 200, json.dumps({"task": task}).encode()


def described(status: JobStatus, task_arn: str, job_id: str) -> dict[str, Any]:
    """The sample event's task, as DescribeTasks returns it for this job's task."""
    task: dict[str, Any] = copy.deepcopy(sample_event(DESCRIBED_AS[status])["detail"])
    task.update(taskArn=task_arn, startedBy=job_id)
    for container in task.get("containers", []):
        container["taskArn"] = task_arn
    # DescribeTasks answers with epoch seconds where events have ISO strings.
    for name, value in list(task.items()):
        if name.endswith("At") and isinstance(value, str):
            task[name] = parse_iso(value).timestamp()
    for override in task["overrides"]["containerOverrides"]:
        for variable in override["environment"]:
            if variable["name"] == "BATCHGATE_ATTEMPT":
                variable["value"] = "1"
            if variable["name"] == "BATCHGATE_JOB_ID":
                variable["value"] = job_id
    return task


def seed(aws: InMemoryAws, catalog: Catalog, per_status: int) -> None:
    timeout = catalog.batches[BATCH].timeout_seconds
    for status in ACTIVE_STATUSES:
        for number in range(per_status):
            job_id = job_id_for(BATCH, f"{status.value.lower()}-{number}")
            aws.put_job(_job(aws, status, job_id, number, timeout))


def _job(aws: InMemoryAws, status: JobStatus, job_id: str, number: int, timeout: int) -> Job:
    def ago(seconds: float) -> str:
        return iso(NOW - timedelta(seconds=seconds))

    # Oldest first within a status: job 0 the oldest.
    created = ago(timeout + 3600 - number)
    job = Job(
        job_id=job_id,
        batch=BATCH,
        status=status,
        created_at=created,
        updated_at=ago(60),
        expires_at=1_900_000_000,
        message_id=f"m-{job_id}",
        arguments=("2026-11",),
        revision=1,
    )
    if status in (JobStatus.SUBMITTED, JobStatus.DISPATCHING, JobStatus.RETRYING):
        if status is JobStatus.SUBMITTED:
            return job
        attempt = Attempt(number=1, strategy="FARGATE", capacity_provider="FARGATE", dispatched_at=ago(120))
        return job._replace(attempts=(attempt,))
    task_arn = f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{status.value.lower()}-{number}"
    task = described(status, task_arn, job_id)
    started = ago(timeout + 600) if status is JobStatus.RUNNING else ago(600)
    timeline = {"created": started, **({"started": started} if status is JobStatus.RUNNING else {})}
    attempt = Attempt(
        number=1,
        strategy="FARGATE",
        capacity_provider="FARGATE",
        dispatched_at=started,
        task_arn=task_arn,
        last_status=str(task["lastStatus"]) if status is not JobStatus.STOPPING else "RUNNING",
        # Up to date with what ECS says, except the STOPPING jobs: their STOPPED event (version 5) was missed.
        event_version=int(task["version"]) if status is not JobStatus.STOPPING else 4,
        timeline=timeline,
    )
    aws.tasks[task_arn] = task
    quiet = 30 if status is JobStatus.RUNNING else 400
    return job._replace(updated_at=ago(quiet), attempts=(attempt,))


@dataclass
class Run:
    name: str
    jobs: int
    threads: int
    seconds: float
    cpu_seconds: float
    requests: int
    report: SweepReport
    timeouts_done_at: float | None  # seconds after the run started, when the last timeout was written
    first_other_at: float | None  # seconds after the run started, the first other write
    timeouts_expected: int

    @property
    def timeouts_first(self) -> bool:
        return (
            self.timeouts_done_at is None
            or self.first_other_at is None
            or self.timeouts_done_at <= self.first_other_at
        )


def _clients(aws: InMemoryAws, threads: int) -> tuple[Any, Any]:
    session = boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
    pool = Config(max_pool_connections=max(10, threads))
    dynamodb = session.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG.merge(pool))
    ecs = session.client("ecs", config=ECS_CLIENT_CONFIG.merge(pool))
    aws.attach(dynamodb)
    aws.attach(ecs)
    return dynamodb, ecs


def sweep_once(
    name: str,
    *,
    catalog: Catalog,
    per_status: int,
    threads: int,
    remaining_seconds: float | None,
    run_seconds: float,
    latency: tuple[float, float] = LATENCY_SECONDS,
) -> Run:
    aws = InMemoryAws(latency)
    seed(aws, catalog, per_status)
    dynamodb, ecs = _clients(aws, threads)
    sweeper = Sweeper(
        catalog=catalog,
        table=JobTable(TABLE, dynamodb),
        ecs=EcsTasks(CLUSTER, ecs),
        jobs_queue=None,
        settings=SweepSettings(concurrency=threads, run_seconds=run_seconds),
        clock=lambda: NOW,
    )
    cpu, started = time.process_time(), time.perf_counter()
    report = sweeper.sweep(remaining_seconds=remaining_seconds)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    timeouts = [at - started for at, kind in aws.steps if kind == TIMEOUT_STEP]
    others = [at - started for at, kind in aws.steps if kind == OTHER_STEP]
    return Run(
        name,
        per_status * len(ACTIVE_STATUSES),
        threads,
        seconds,
        cpu_seconds,
        sum(aws.calls.values()),
        report,
        max(timeouts) if timeouts else None,
        min(others) if others else None,
        per_status,
    )


def measure() -> list[Run]:
    catalog = load_catalog()
    to_the_end = {
        "catalog": catalog,
        "per_status": SMALL_PER_STATUS,
        "remaining_seconds": None,
        "run_seconds": 3600.0,
    }
    # As the handler runs it: the invocation's remaining time at its start is the function's timeout.
    budgeted = {
        "catalog": catalog,
        "per_status": LARGE_PER_STATUS,
        "remaining_seconds": FUNCTION_TIMEOUT,
        "run_seconds": SweepSettings().run_seconds,
    }
    with quiet_functions(), quiet_sweep():
        return [
            sweep_once("serial (1 thread), to the end", threads=1, **to_the_end),  # type: ignore[arg-type]
            sweep_once(f"concurrent ({THREADS} threads), to the end", threads=THREADS, **to_the_end),  # type: ignore[arg-type]
            sweep_once(f"concurrent ({THREADS} threads), the handler's budget", threads=THREADS, **budgeted),  # type: ignore[arg-type]
            sweep_once("serial (1 thread), the handler's budget", threads=1, **budgeted),  # type: ignore[arg-type]
        ]


@contextlib.contextmanager
def quiet_sweep() -> Iterator[None]:
    """The sweep's per-job warnings (a stuck job explained, a job timed out) off while measuring: in
    Lambda they go to CloudWatch; here thousands of them would only cost the terminal's time."""
    level = logger.log_level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _at(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def report(runs: list[Run]) -> str:
    serial, concurrent, large, large_serial = runs
    budget = SweepSettings().run_seconds
    ratio = concurrent.seconds / serial.seconds
    fits = large.report.deferred == 0 and large.seconds <= budget
    share = min(1.0, FUNCTION_MEMORY_MB / FULL_VCPU_MB)
    cpu_bound = large.cpu_seconds / share
    figures: list[Figure] = [
        at_most(
            f"sweep: {serial.jobs:,} active jobs, concurrent ({THREADS} threads) / serial, same code",
            ratio,
            TARGET_RATIO,
            f"≤ {TARGET_RATIO}x",
            f"{ratio:.3f}x ({concurrent.seconds:.1f} s vs {serial.seconds:.1f} s)",
        ),
        Figure(
            f"sweep: {large.jobs:,} active jobs (the caps) in one run, within the run's budget",
            f"≤ {budget:.0f} s, nothing deferred (function timeout {FUNCTION_TIMEOUT} s)",
            f"{large.seconds:.1f} s, {large.report.deferred} deferred",
            large.seconds / budget,
            fits,
        ),
        Figure(
            f"sweep: {large.jobs:,} active jobs, every timeout enforced before anything is reconciled",
            "yes",
            f"{large.report.timed_out:,} timeouts by {_at(large.timeouts_done_at)}, first other write at "
            f"{_at(large.first_other_at)}",
            None,
            large.timeouts_first and large.report.timed_out == large.timeouts_expected,
        ),
        at_most(
            f"sweep: {large.jobs:,} active jobs, the run's CPU time on the SweepFunction's share of a vCPU "
            f"({FUNCTION_MEMORY_MB} MB)",
            cpu_bound,
            budget,
            f"≤ {budget:.0f} s",
            f"{cpu_bound:.1f} s ({large.cpu_seconds:.1f} s CPU here / {share:.2f} vCPU)",
        ),
        Figure(
            f"sweep: {large_serial.jobs:,} active jobs forced serial, the same budget",
            "-",
            f"{large_serial.report.timed_out:,} of {large_serial.timeouts_expected:,} timeouts enforced "
            f"first, {large_serial.report.deferred:,} jobs left for the next run",
        ),
    ]
    lines = [
        "## The sweep at its caps (`bench/sweep_scale.py`)",
        "",
        f"One sweep run (batchgate.services.sweep, as the handler runs it) over active jobs of every "
        f"status, all old enough to be read: RUNNING past payroll's timeout (StopTask, TIMED_OUT), "
        "STOPPING whose STOPPED event was missed (SUCCEEDED from DescribeTasks), PENDING, PROVISIONING "
        "and DISPATCHED still starting (a note explains each), SUBMITTED, DISPATCHING and RETRYING "
        "waiting in the queue (read, nothing to do). Real boto3 clients (the functions' configuration) "
        "whose every request an in-memory job table and cluster answer after "
        f"{LATENCY_SECONDS[0] * 1000:.0f}-{LATENCY_SECONDS[1] * 1000:.0f} ms (botocore's work per request "
        "included, moto's not). Ratio: the same code with one thread and with the default concurrency, "
        f"{SMALL_PER_STATUS} jobs per status, both to the end. The caps ({LARGE_PER_STATUS:,} per status) "
        f"with the handler's budget: the function's timeout ({FUNCTION_TIMEOUT} s) less the margin, at "
        f"most run_seconds ({budget:.0f} s). One run each, fresh table each.",
        "",
        figures_table(figures),
        "",
        "| mode | jobs | time | CPU | AWS requests | timed out | reconciled | stuck explained | deferred "
        "| timeouts done at | first other write at |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.name} | {run.jobs:,} | {run.seconds:.1f} s | {run.cpu_seconds:.1f} s | "
            f"{run.requests:,} | "
            f"{run.report.timed_out:,} | {run.report.reconciled:,} | {run.report.stuck:,} | "
            f"{run.report.deferred:,} | {_at(run.timeouts_done_at)} | {_at(run.first_other_at)} |"
        )
    lines += [
        "",
        "- CPU is this process's over the run (the sweep, botocore and the in-memory answers, which cost "
        "little): about 2.5 ms per AWS request, most of it botocore parsing responses. A Lambda function "
        f"gets CPU in proportion to its memory (a full vCPU at {FULL_VCPU_MB:,} MB): at its caps the sweep "
        "is CPU-bound below that, hence the SweepFunction's MemorySize.",
        "- Times are wall-clock on a shared machine: the CPU the other processes take is in them.",
        "- A run starts work only before its deadline; what it does not reach is counted (SweepDeferred) "
        "and is the next run's, timeouts first again.",
        "",
    ]
    return "\n".join(lines)


def run() -> str:
    return report(measure())


if __name__ == "__main__":
    print(run())
