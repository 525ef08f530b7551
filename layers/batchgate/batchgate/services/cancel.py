"""Cancel: a job ends CANCELLED, its task is stopped, and nothing ever launches or retries it again.

CANCELLED is terminal, so every later writer leaves it: a STOPPED event of its task records the exit on
the attempt only, the retry policy is never consulted, dispatch launches only SUBMITTED, RETRYING or
unfinished DISPATCHING jobs, and a relaunch message finds no attempt awaited. The job is marked first
and the task stopped second: if StopTask fails, cancelling again stops it (the call is idempotent).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.described_tasks import task_attempt
from batchgate.domain.jobs import Job, JobStatus, iso, utc_now
from batchgate.domain.retry_policy import CANCEL_REASON_PREFIX
from batchgate.domain.warm import WARM


class CancelError(Exception):
    """The job cannot be cancelled: there is no such job, or it ended before."""


def cancel_job(
    table: JobTable,
    ecs: EcsTasks,
    job_id: str,
    requested_by: str,
    *,
    reason: str | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Job:
    """Cancel `job_id` on behalf of `requested_by` (an ops user name); returns the job as stored.

    Cancelling a CANCELLED job again only repeats the StopTask. Raises CancelError when the job does not
    exist or already ended otherwise (SUCCEEDED, FAILED, TIMED_OUT, REJECTED)."""
    at = iso(clock())
    why = f"{CANCEL_REASON_PREFIX} by {requested_by}" + (f": {reason}" if reason else "")

    def change(job: Job) -> Job | None:
        if job.status.is_terminal:
            return None
        return job.moved_to(JobStatus.CANCELLED, at, why)

    write = table.apply(job_id, change)
    if write is None:
        raise CancelError(f"no job {job_id}")
    job = write.after
    if job.status is not JobStatus.CANCELLED:
        raise CancelError(f"job {job_id} already ended {job.status.value}; nothing to cancel")
    # Counted by the call that wrote it: a concurrent cancel of the same job only repeats the StopTask.
    if write.written:
        count("JobsCancelled")
        logger.info("job cancelled", extra={"job_id": job_id, "requested_by": requested_by})
    for task_arn in _tasks_to_stop(ecs, job):
        ecs.stop_task(task_arn, job.reason or why)
    return job


def stop_cancelled_task(ecs: EcsTasks, job: Job, task_arn: str) -> None:
    """Stop a task that started while its job was being cancelled (dispatch's RunTask raced the cancel)."""
    try:
        ecs.stop_task(task_arn, job.reason or CANCEL_REASON_PREFIX)
        logger.info("stopped the task of a cancelled job", extra={"task_arn": task_arn})
    except (ClientError, BotoCoreError) as error:
        # The sweep does not look at CANCELLED jobs: say so loudly; `batchgate cancel` stops it again.
        logger.error(
            "could not stop the task of a cancelled job", extra={"task_arn": task_arn, "error": str(error)}
        )


def _tasks_to_stop(ecs: EcsTasks, job: Job) -> list[str]:
    attempt = job.attempt
    if attempt is None or attempt.strategy == WARM:
        # A WARM attempt's task is a pool task running other jobs: the worker sees the job CANCELLED at
        # its next heartbeat and stops the job's own process.
        return []
    if attempt.task_arn is not None:
        return [] if attempt.last_status in ("STOPPED", "DELETED") else [attempt.task_arn]
    # Cancelled while its launch was in flight: the task may exist without being recorded.
    return [
        task["taskArn"]
        for task in ecs.tasks_started_by(job.job_id)
        if task_attempt(task) == attempt.number and task.get("lastStatus") != "STOPPED"
    ]
