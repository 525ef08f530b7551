"""The warm lane against the moto stack: a catalog whose attendance-import batch names a pool, the
pool table, recorded queues, heartbeats, and the worker's claim and report as the worker writes them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.job_table import JobWrite
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.pool_queues import PoolQueues
from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.catalog import Catalog, parse_catalog
from batchgate.domain.jobs import Job, iso, job_id_for
from batchgate.domain.pools import HEARTBEAT_RETENTION_SECONDS, PoolTask, SlotJob
from batchgate.domain.relaunch import KIND_ATTRIBUTE, WARM_CHECK_KIND, message_kind
from batchgate.domain.task_events import apply_task_event
from batchgate.domain.warm import WorkerClaim, WorkOffer, claim_warm, warm_change
from batchgate.services.dispatch import Dispatcher
from batchgate.services.warm_advice import WarmAdvice

from tests.conftest import RecordingSqs, Stack
from tests.conftest import create_pool_table as create_table

ROOT = Path(__file__).resolve().parent.parent
POOL = "attendance"
BATCH = "attendance-import"
POOL_TABLE = "batchgate-test-pools"
POOL_QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/batchgate-test-pool-attendance"
JOBS_QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/batchgate-test-jobs"
POOL_LOG_GROUP = "/batchgate/pool/attendance"
NOW = datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)
POOL_DECLARATION: dict[str, Any] = {
    "task_definition": "batchgate-attendance",
    "container": "attendance",
    "cpu": 1024,
    "memory": 2048,
    "slots": 2,
    "capacity_provider": "FARGATE_SPOT",
    "min_tasks": 0,
    "max_tasks": 4,
    "offer_seconds": 2,
}


def warm_catalog_document(**batch: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (ROOT / "layers/batchgate/batchgate/catalog.json").read_text(encoding="utf-8")
    )
    document["pools"] = {POOL: copy.deepcopy(POOL_DECLARATION)}
    document["batches"][BATCH].update({"pool": POOL, **batch})
    return document


def warm_catalog(**batch: Any) -> Catalog:
    return parse_catalog(warm_catalog_document(**batch))


def create_pool_table(name: str = POOL_TABLE) -> PoolTable:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, name)
    return PoolTable(name, client)


def pool_task_arn(name: str) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/{name}"


def heartbeat(
    name: str,
    *,
    at: datetime = NOW,
    slots: int = 2,
    running: tuple[SlotJob, ...] = (),
    batches: tuple[str, ...] = (BATCH,),
    stopping: bool = False,
) -> PoolTask:
    return PoolTask(
        pool=POOL,
        task_arn=pool_task_arn(name),
        slots=slots,
        running=running,
        heartbeat_at=iso(at),
        expires_at=int(at.timestamp()) + HEARTBEAT_RETENTION_SECONDS,
        batches=batches,
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/batchgate-attendance:latest",
        image_digest="sha256:0123",
        stopping=stopping,
    )


def submit(key: str) -> tuple[str, str]:
    """A submit message of the pooled batch and the id of its job."""
    body = json.dumps(
        {"schema_version": 1, "batch": BATCH, "arguments": [f"uploads/{key}.csv"], "idempotency_key": key}
    )
    return body, job_id_for(BATCH, key)


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Monotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


class RunTaskRecorder(EcsTasks):
    """The real adapter; every RunTask request recorded (moto starts the task)."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.settings.cluster, stack.ecs_client)
        self.requests: list[dict[str, Any]] = []
        self.stopped: list[str] = []
        self.described: list[str] = []
        self.listed: list[str] = []

    def run_task(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        return super().run_task(request)

    def stop_task(self, task_arn: str, reason: str) -> None:
        self.stopped.append(task_arn)
        super().stop_task(task_arn, reason)

    def describe_tasks(self, task_arns: list[str]) -> list[dict[str, Any]]:
        self.described.extend(task_arns)
        return super().describe_tasks(task_arns)

    def tasks_started_by(self, started_by: str) -> list[dict[str, Any]]:
        self.listed.append(started_by)
        return super().tasks_started_by(started_by)


@dataclass
class WarmStack:
    """The moto stack with the warm lane: recorded jobs and pool queues, a pool table, a clock."""

    stack: Stack
    catalog: Catalog
    pools: PoolTable
    clock: Clock = field(default_factory=Clock)
    monotonic: Monotonic = field(default_factory=Monotonic)
    jobs_sqs: RecordingSqs = field(default_factory=RecordingSqs)
    pool_sqs: RecordingSqs = field(default_factory=RecordingSqs)

    def __post_init__(self) -> None:
        self.ecs = RunTaskRecorder(self.stack)
        self.advice = WarmAdvice(self.pools, monotonic=self.monotonic)

    def dispatcher(self, advice: WarmAdvice | None = None) -> Dispatcher:
        return Dispatcher(
            catalog=self.catalog,
            table=self.stack.table,
            ecs=self.ecs,
            settings=self.stack.settings,
            clock=self.clock,
            warm_advice=advice or self.advice,
            pool_queues=PoolQueues({POOL: POOL_QUEUE_URL}, self.pool_sqs),  # type: ignore[arg-type]
            jobs_queue=JobsQueue(JOBS_QUEUE_URL, self.jobs_sqs),  # type: ignore[arg-type]
        )

    def offers(self) -> list[WorkOffer]:
        return [WorkOffer.parse(message["MessageBody"]) for message in self.pool_sqs.sent]

    def checks(self) -> list[tuple[WorkOffer, int]]:
        return [
            (WorkOffer.parse(message["MessageBody"]), int(message["DelaySeconds"]))
            for message in self.jobs_sqs.sent
            if message_kind(message.get("MessageAttributes")) == WARM_CHECK_KIND
        ]

    def job(self, job_id: str) -> Job:
        job = self.stack.table.get(job_id)
        assert job is not None
        return job


def warm_stack(stack: Stack, **batch: Any) -> WarmStack:
    catalog = warm_catalog(**batch)
    return WarmStack(stack=replace(stack, catalog=catalog), catalog=catalog, pools=create_pool_table())


def check_kind() -> dict[str, Any]:
    return {KIND_ATTRIBUTE: {"DataType": "String", "StringValue": WARM_CHECK_KIND}}


def claim(ws: WarmStack, job_id: str, attempt: int, task: str, slot: int = 0) -> JobWrite | None:
    """The worker's claim of an offered attempt, as the worker writes it."""
    at = iso(ws.clock())
    worker = WorkerClaim(
        task_arn=pool_task_arn(task),
        slot=slot,
        image_digest="sha256:0123",
        log_group=POOL_LOG_GROUP,
        log_stream=f"{BATCH}/{job_id}/{attempt}",
        at=at,
    )
    return ws.stack.table.apply(job_id, lambda job: claim_warm(job, attempt, worker))


def report_exit(ws: WarmStack, job_id: str, attempt: int, task: str, exit_code: int, version: int = 2) -> Job:
    """The worker's report of the child's exit."""
    spec = ws.catalog.get(BATCH)
    at = iso(ws.clock())
    change = warm_change(
        pool_task_arn(task),
        job_id,
        attempt,
        version=version,
        last_status="STOPPED",
        at=at,
        timestamps={"stopped": at},
        container="attendance",
        exit_code=exit_code,
    )
    stored = ws.stack.table.mutate(
        job_id, lambda job: apply_task_event(job, change, "attendance", None, spec)
    )
    assert stored is not None
    return stored
