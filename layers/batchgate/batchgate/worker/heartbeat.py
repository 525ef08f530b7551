"""The pool task's heartbeat: its item in the pool table and its metrics, written every
`heartbeat_seconds` and whenever a slot is taken or freed; and, each time, a look at the items of the
jobs it runs, to stop a child whose job was decided elsewhere (cancelled, timed out by the sweep,
superseded)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.ecs_agent import TaskIdentity
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.pool_metrics import PoolMetrics
from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.jobs import iso, utc_now
from batchgate.domain.pools import HEARTBEAT_RETENTION_SECONDS, PoolTask
from batchgate.worker.claims import stop_reason
from batchgate.worker.job_run import JobRun, StopKind
from batchgate.worker.protection import ScaleInProtection
from batchgate.worker.served_batches import ServedBatches
from batchgate.worker.slots import Slots

log = logging.getLogger("batchgate.worker")


@dataclass
class Heartbeat:
    pool: str
    identity: TaskIdentity
    slots: Slots[JobRun]
    pool_table: PoolTable
    job_table: JobTable
    metrics: PoolMetrics | None
    served: ServedBatches
    protection: ScaleInProtection
    period_seconds: float
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        self.stopping = False
        self._poked = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def poke(self) -> None:
        """Beat now (a slot was taken or freed, the task is stopping)."""
        self._poked.set()

    def close(self) -> None:
        """Stop beating and delete the task's item: a stopped task advertises nothing."""
        self._done.set()
        self._poked.set()
        self._thread.join()
        try:
            self.pool_table.delete(self.pool, self.identity.task_arn)
        except (ClientError, BotoCoreError) as error:
            log.error("heartbeat item not deleted: it goes stale", extra={"error": str(error)})

    def _run(self) -> None:
        while not self._done.is_set():
            self._poked.wait(self.period_seconds)
            self._poked.clear()
            if self._done.is_set():
                return
            self.beat()

    def beat(self) -> None:
        """One heartbeat; an error is logged and the next beat tries again (the task goes stale in
        dispatch's eyes meanwhile, which only sends its jobs to ECS)."""
        try:
            self._beat()
        except Exception:
            log.exception("heartbeat failed")

    def _beat(self) -> None:
        now = self.clock()
        runs = self.slots.runs()
        self.protection.update(self.slots.busy > 0)
        batches = self.served.current()
        self.pool_table.put(
            PoolTask(
                pool=self.pool,
                task_arn=self.identity.task_arn,
                slots=self.slots.count,
                running=tuple(sorted((run.slot_job for run in runs), key=lambda job: job.slot)),
                heartbeat_at=iso(now),
                expires_at=int(now.timestamp()) + HEARTBEAT_RETENTION_SECONDS,
                batches=batches,
                image=self.identity.image,
                image_digest=self.identity.image_digest,
                availability_zone=self.identity.availability_zone,
                stopping=self.stopping,
            )
        )
        if self.metrics is not None:
            try:
                self.metrics.heartbeat(len(runs) / self.slots.count, self.served.stale)
            except (ClientError, BotoCoreError) as error:
                log.warning("pool metrics not put", extra={"error": str(error)})
        for run in runs:
            self._check(run)

    def _check(self, run: JobRun) -> None:
        job = self.job_table.get(run.job_id)
        why = stop_reason(job, run.number, self.identity.task_arn)
        if why is not None:
            log.warning("job decided elsewhere: stopping its child", extra={"job_id": run.job_id, "why": why})
            run.request_stop(StopKind.DECIDED_ELSEWHERE, why)
