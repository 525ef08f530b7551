"""The worker: its parts wired together, the receive loop run until SIGTERM, then the drain.

On SIGTERM (a Spot interruption, AZ rebalancing, a forced stop, the scale-in of an unprotected task)
the worker stops receiving, heartbeats `stopping`, and lets the running jobs finish within the task's
stop timeout less a margin (`WorkerTiming.drain_seconds`); what cannot finish is stopped and ends
`WarmTaskStopped`, which the default retry policy retries (on ECS: plan_launch never plans WARM after a
WARM stop code). Then it deletes its heartbeat item, clears its scale-in protection and exits 0.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from batchgate.adapters.ecs_agent import TaskIdentity, TaskProtection
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.log_streams import LogStreamWriter
from batchgate.adapters.pool_metrics import PoolMetrics, PutsMetricData
from batchgate.adapters.pool_table import PoolTable
from batchgate.adapters.pool_work_queue import PoolWorkQueue
from batchgate.adapters.task_definitions import TaskDefinitionImages
from batchgate.domain.catalog import Catalog, PoolSpec
from batchgate.domain.jobs import utc_now
from batchgate.worker.child_process import ChildLauncher, ChildStopper, Zygote
from batchgate.worker.claims import Claimed, Claimer
from batchgate.worker.heartbeat import Heartbeat
from batchgate.worker.job_run import JobRun, RunServices, StopKind
from batchgate.worker.protection import ScaleInProtection
from batchgate.worker.served_batches import ServedBatches
from batchgate.worker.settings import WorkerSettings
from batchgate.worker.slot_loop import SlotLoop
from batchgate.worker.slots import Slots

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("batchgate.worker")

MIB = 1024 * 1024


@dataclass(frozen=True)
class WorkerClients:
    dynamodb: DynamoDBClient
    sqs: SQSClient
    logs: CloudWatchLogsClient
    ecs: ECSClient
    cloudwatch: PutsMetricData | None


def memory_limit_bytes(pool: PoolSpec) -> int:
    """Each slot's share of the pool task's memory: what one child may use."""
    return pool.memory * MIB // pool.slots


def preload_modules(catalog: Catalog, pool: str) -> tuple[str, ...]:
    """The modules the pool's preload parent imports: the union over its preload batches, in order."""
    modules: dict[str, None] = {}
    for spec in catalog.batches_of(pool):
        if spec.run_mode == "preload":
            modules.update(dict.fromkeys(spec.preload))
    return tuple(modules)


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        catalog: Catalog,
        identity: TaskIdentity,
        clients: WorkerClients,
        *,
        zygote: Zygote | None = None,
        environment: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        pool = catalog.pools.get(settings.pool)
        if pool is None:
            raise RuntimeError(f"BATCHGATE_POOL {settings.pool!r} is not a pool of the catalog")
        timing = settings.timing
        self.settings = settings
        self.identity = identity
        self.zygote = zygote
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._stop_at: float | None = None
        self._stop_why = "stopping"
        table = JobTable(settings.job_table_name, clients.dynamodb)
        self.protection = ScaleInProtection(
            TaskProtection(settings.agent_uri), timing.protection_minutes, monotonic
        )
        self.served = ServedBatches(
            catalog.batches_of(pool.name),
            identity.image,
            identity.image_digest,
            TaskDefinitionImages(clients.ecs),
            check_seconds=timing.image_check_seconds,
            monotonic=monotonic,
        )
        self.slots: Slots[JobRun] = Slots(pool.slots, on_change=self._slot_changed)
        self.heartbeat = Heartbeat(
            pool=pool.name,
            identity=identity,
            slots=self.slots,
            pool_table=PoolTable(settings.pool_table_name, clients.dynamodb),
            job_table=table,
            metrics=PoolMetrics(pool.name, clients.cloudwatch) if clients.cloudwatch is not None else None,
            served=self.served,
            protection=self.protection,
            period_seconds=timing.heartbeat_seconds,
            clock=clock,
        )
        self.services = RunServices(
            task_arn=identity.task_arn,
            table=table,
            jobs_queue=JobsQueue(settings.jobs_queue_url, clients.sqs) if settings.jobs_queue_url else None,
            launcher=ChildLauncher(memory_limit_bytes(pool), zygote),
            stopper=ChildStopper(timing.kill_grace_seconds, monotonic=monotonic),
            log_writer=LogStreamWriter(clients.logs),
            log_group=settings.log_group,
            worker_environment=dict(os.environ if environment is None else environment),
            timing=timing,
            clock=clock,
            monotonic=monotonic,
        )
        claimer = Claimer(
            table=table,
            catalog=catalog,
            pool=pool.name,
            task_arn=identity.task_arn,
            image_digest=identity.image_digest,
            log_group=settings.log_group,
            serves=self.served.serves,
            clock=clock,
        )
        self.loop = SlotLoop(
            PoolWorkQueue(settings.pool_queue_url, clients.sqs),
            self.slots,
            claimer,
            self._start_run,
            timing.receive_wait_seconds,
        )

    def run(self) -> int:
        """Serve until `request_stop`, drain, clean up; the exit status (0)."""
        log.info(
            "worker started",
            extra={"pool": self.settings.pool, "task_arn": self.identity.task_arn, "slots": self.slots.count},
        )
        self.heartbeat.start()
        try:
            self.loop.run(self._stopping)
        finally:
            self.request_stop("the receive loop ended")
            self._drain()
            self.heartbeat.close()
            self.protection.update(busy=False)
            if self.zygote is not None:
                self.zygote.close()
        log.info("worker stopped", extra={"task_arn": self.identity.task_arn})
        return 0

    def request_stop(self, why: str = "SIGTERM") -> None:
        """Stop receiving and drain (safe from a signal handler: it sets flags and wakes waiters, with
        locks held only for that, and serve_until_stopped's main thread holds none of them)."""
        with self._stop_lock:
            if self._stop_at is not None:
                return
            self._stop_at = self._monotonic()
            self._stop_why = why
        self.heartbeat.stopping = True
        self._stopping.set()
        # A receive loop waiting for a free slot leaves at once (an SQS long poll cannot be cut short).
        self.slots.wake()
        self.heartbeat.poke()

    def _drain(self) -> None:
        timing = self.settings.timing
        stop_at = self._stop_at if self._stop_at is not None else self._monotonic()
        remaining = timing.drain_seconds - (self._monotonic() - stop_at)
        if self.slots.busy:
            log.info("draining running jobs", extra={"running": self.slots.busy, "seconds": remaining})
        if self.slots.wait_until_idle(max(0.0, remaining)):
            return
        reason = (
            f"batchgate: pool task stopping ({self._stop_why}): the job did not finish within "
            f"{timing.drain_seconds:.0f} s"
        )
        for run in self.slots.runs():
            run.request_stop(StopKind.TASK_STOPPING, reason)
        if not self.slots.wait_until_idle(timing.kill_grace_seconds + timing.stop_margin_seconds):
            log.error("jobs still running at exit", extra={"running": self.slots.busy})

    def _start_run(self, claimed: Claimed, slot: int) -> None:
        attempt = claimed.job.attempt
        assert attempt is not None  # a claimed job has its claimed attempt
        run = JobRun(self.services, claimed.job, claimed.spec, attempt.number, slot, on_end=self._run_ended)
        self.slots.assign(slot, run)
        run.start()

    def _run_ended(self, run: JobRun) -> None:
        self.slots.release(run.slot)

    def _slot_changed(self, busy: int) -> None:
        self.protection.update(busy > 0)
        self.heartbeat.poke()
