"""One claimed attempt in one slot: its child started, watched, stopped when it must, its end reported.

The end is reported as its pool task's STOPPED (`warm_change`, version 2) through `apply_task_event`,
the rule that applies ECS's own events; a job that becomes RETRYING gets its next attempt's relaunch
as track sends it (`next_attempt_relaunch`, `JobsQueue.send_relaunch`). How the child ended decides the
stop code:
- it exited by itself: EssentialContainerExited with its exit code (SUCCEEDED only on 0);
- it ran past the batch's timeout: stopped, the job TIMED_OUT first (`time_out_attempt`, the sweep's
  rule), then the stop recorded (UserInitiated, the timeout reason);
- the job was decided elsewhere (cancelled, timed out by the sweep, superseded): stopped, UserInitiated
  with that reason; the job stays as it was decided;
- the task is stopping (SIGTERM) and the job could not finish in time: stopped, WarmTaskStopped
  (retried on ECS by the default retry policy).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.job_table import JobTable, JobWrite
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.log_streams import LogStreamWriter
from batchgate.domain.catalog import BatchSpec
from batchgate.domain.jobs import Job, JobStatus, attempt_environment, iso, utc_now
from batchgate.domain.pools import SlotJob
from batchgate.domain.relaunch import next_attempt_relaunch
from batchgate.domain.task_events import apply_task_event
from batchgate.domain.timeouts import time_out_attempt, timeout_reason
from batchgate.domain.warm import CLAIM_VERSION, POOL_TASK_STOPPED, warm_change
from batchgate.worker.child_process import (
    ChildLauncher,
    ChildProcess,
    ChildStartError,
    ChildStopper,
    exit_code_of,
)
from batchgate.worker.claims import log_stream_name
from batchgate.worker.output_shipper import OutputShipper
from batchgate.worker.settings import WorkerTiming, child_environment

log = logging.getLogger("batchgate.worker")

STOPPED_VERSION = CLAIM_VERSION + 1
EXITED_BY_ITSELF = "EssentialContainerExited"
STOPPED_ON_PURPOSE = "UserInitiated"
# A write of the job's end that fails (DynamoDB throttling, an outage) is tried this many times.
REPORT_TRIES = 4


class StopKind(Enum):
    TIMEOUT = "timeout"
    DECIDED_ELSEWHERE = "decided elsewhere"
    TASK_STOPPING = "task stopping"


@dataclass(frozen=True)
class RunServices:
    """What every run of a task shares."""

    task_arn: str
    table: JobTable
    jobs_queue: JobsQueue | None
    launcher: ChildLauncher
    stopper: ChildStopper
    log_writer: LogStreamWriter
    log_group: str
    worker_environment: Mapping[str, str]
    timing: WorkerTiming
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class JobRun:
    def __init__(
        self,
        services: RunServices,
        job: Job,
        spec: BatchSpec,
        number: int,
        slot: int,
        *,
        on_end: Callable[[JobRun], None],
    ) -> None:
        self.services = services
        self.job = job
        self.spec = spec
        self.number = number
        self.slot = slot
        attempt = job.attempt_by_number(number)
        started = attempt.timeline.get("started") if attempt else None
        self.slot_job = SlotJob(job.job_id, number, slot, started or iso(services.clock()))
        self._on_end = on_end
        self._stop_lock = threading.Lock()
        self._stop: tuple[StopKind, str] | None = None
        self._stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job {job.job_id}/{number}", daemon=True)
        self.final: Job | None = None

    @property
    def job_id(self) -> str:
        return self.job.job_id

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def request_stop(self, kind: StopKind, reason: str) -> None:
        """Stop the child; the first request decides how the end is reported."""
        with self._stop_lock:
            if self._stop is None:
                self._stop = (kind, reason)
                self._stop_requested.set()

    def _run(self) -> None:
        try:
            self._run_child()
        except Exception:  # the slot must be freed whatever happened
            log.exception("job run failed", extra={"job_id": self.job_id, "attempt": self.number})
        finally:
            self._on_end(self)

    def _run_child(self) -> None:
        services = self.services
        read_fd, write_fd = os.pipe()
        stream = log_stream_name(self.job.batch, self.job_id, self.number)
        shipper = OutputShipper(
            services.log_writer,
            services.log_group,
            stream,
            read_fd,
            flush_seconds=services.timing.flush_seconds,
        )
        environment = child_environment(
            services.worker_environment, attempt_environment(self.job, self.number)
        )
        try:
            child = services.launcher.start(self.spec, self.job.arguments, environment, write_fd)
        except ChildStartError as error:
            os.close(write_fd)
            os.close(read_fd)
            log.error("cannot start the job", extra={"job_id": self.job_id, "error": str(error)})
            self._report(None, EXITED_BY_ITSELF, f"CannotStartContainerError: {error}")
            return
        os.close(write_fd)  # the child has its own copy: the pipe ends when the child's output does
        shipper.start()
        log.info("job started", extra={"job_id": self.job_id, "attempt": self.number, "pid": child.pid})
        returncode, stop = self._watch(child)
        shipper.finish(timeout=services.timing.flush_seconds)
        self._finish(returncode, stop)

    def _watch(self, child: ChildProcess) -> tuple[int, tuple[StopKind, str] | None]:
        services = self.services
        deadline = services.monotonic() + self.spec.timeout_seconds
        while (returncode := child.poll()) is None:
            if services.monotonic() >= deadline:
                self.request_stop(StopKind.TIMEOUT, timeout_reason(self.spec.timeout_seconds))
            if self._stop_requested.is_set():
                with self._stop_lock:
                    stop = self._stop
                log.warning(
                    "stopping the job's child",
                    extra={"job_id": self.job_id, "why": stop[1] if stop else None},
                )
                return services.stopper.stop(child), stop
            self._stop_requested.wait(services.timing.tick_seconds)
        services.stopper.clean_up(child)
        return returncode, None

    def _finish(self, returncode: int, stop: tuple[StopKind, str] | None) -> None:
        exit_code = exit_code_of(returncode)
        if stop is None:
            self._report(exit_code, EXITED_BY_ITSELF, None)
            return
        kind, reason = stop
        if kind is StopKind.TIMEOUT:
            at = iso(self.services.clock())
            self._write(lambda job: time_out_attempt(job, self.number, reason, at, self.spec))
            self._report(exit_code, STOPPED_ON_PURPOSE, reason)
        elif kind is StopKind.TASK_STOPPING:
            self._report(exit_code, POOL_TASK_STOPPED, reason)
        else:
            self._report(exit_code, STOPPED_ON_PURPOSE, reason)

    def _report(self, exit_code: int | None, stop_code: str, reason: str | None) -> None:
        at = iso(self.services.clock())
        change = warm_change(
            self.services.task_arn,
            self.job_id,
            self.number,
            version=STOPPED_VERSION,
            last_status="STOPPED",
            at=at,
            timestamps={"execution_stopped": at, "stopped": at},
            container=self.spec.container,
            exit_code=exit_code,
            stop_code=stop_code,
            stopped_reason=reason,
        )
        self._write(lambda job: apply_task_event(job, change, self.spec.container, spec=self.spec))
        log.info(
            "job ended",
            extra={
                "job_id": self.job_id,
                "attempt": self.number,
                "exit_code": exit_code,
                "stop_code": stop_code,
                "status": self.final.status.value if self.final else None,
            },
        )

    def _write(self, change: Callable[[Job], Job | None]) -> None:
        """Write through JobTable.apply; a write that made the job RETRYING sends its relaunch."""
        write: JobWrite | None = None
        for attempt in range(REPORT_TRIES):
            try:
                write = self.services.table.apply(self.job_id, change)
                break
            except (ClientError, BotoCoreError) as error:
                log.warning("cannot write the job's end; trying again", extra={"error": str(error)})
                self.services.sleep(min(8.0, 0.5 * 2**attempt))
        else:
            log.error("the job's end was not recorded: the sweep will find it", extra={"job_id": self.job_id})
            return
        if write is None:
            return
        self.final = write.after
        newly_retrying = write.written and write.before.status is not JobStatus.RETRYING
        if newly_retrying:
            self._send_relaunch(write.after)

    def _send_relaunch(self, job: Job) -> None:
        retry = next_attempt_relaunch(job, self.spec.retry_policy)
        if retry is None or retry[0].attempt != self.number + 1:
            return
        if self.services.jobs_queue is None:
            log.warning(
                "no jobs queue configured: the sweep will send the retry", extra={"job_id": self.job_id}
            )
            return
        relaunch, delay = retry
        try:
            self.services.jobs_queue.send_relaunch(relaunch, delay)
        except (ClientError, BotoCoreError) as error:
            # The sweep sends a relaunch for a job RETRYING long past its back-off.
            log.error("relaunch not sent: the sweep will send it", extra={"error": str(error)})
            return
        log.info("attempt failed; next attempt queued", extra={"job_id": self.job_id, "delay": delay})
