"""A stand-in for the sweep's timeout enforcement while the template schedules no sweep: StopTask for
every RUNNING job whose task has run longer than its batch's `timeout_seconds`.

It goes through the sweep's doors (the job table's status index, then StopTask), so the job ends the way
a stopped task ends in ECS: stop code UserInitiated with the reason given here. Unlike the sweep it does
not mark the job TIMED_OUT: the job ends FAILED with that stop code and reason.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.job_table import JobTable
from batchgate.domain.catalog import Catalog
from batchgate.domain.jobs import JobStatus, parse_iso, utc_now
from batchgate.ops.terminal import terminal_text

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

STOP_REASON_LIMIT = 255


def timeout_reason(timeout_seconds: int) -> str:
    return f"batchgate local watchdog: ran longer than its batch's timeout of {timeout_seconds} s"


class TimeoutWatchdog:
    def __init__(
        self,
        table: JobTable,
        catalog: Catalog,
        ecs: ECSClient,
        cluster: str,
        *,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table
        self._catalog = catalog
        self._ecs = ecs
        self._cluster = cluster
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._stopped: set[str] = set()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timeout-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=10)

    def check_once(self) -> list[str]:
        """Stop the overdue tasks; returns their ARNs."""
        now = self._clock()
        overdue = []
        for job in self._table.iterate(status=JobStatus.RUNNING.value):
            spec = self._catalog.get(job.batch)
            attempt = job.attempt
            if spec is None or attempt is None or not attempt.task_arn or attempt.task_arn in self._stopped:
                continue
            started = attempt.timeline.get("started")
            if started and (now - parse_iso(started)).total_seconds() > spec.timeout_seconds:
                self._ecs.stop_task(
                    cluster=self._cluster,
                    task=attempt.task_arn,
                    reason=timeout_reason(spec.timeout_seconds)[:STOP_REASON_LIMIT],
                )
                self._stopped.add(attempt.task_arn)
                overdue.append(attempt.task_arn)
        return overdue

    def _loop(self) -> None:
        while not self._halt.wait(self._poll_seconds):
            try:
                self.check_once()
            except (ClientError, BotoCoreError) as error:
                print(terminal_text(f"batchgate local: watchdog: {error}"), file=sys.stderr)
