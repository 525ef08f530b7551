"""A batch's `timeout_seconds`: when an attempt may still be timed out, and what the job becomes then.

Two writers enforce it with the same rule: the sweep (an ECS task, or any attempt whose end was never
reported) and a warm pool's worker (the child it runs in a slot). Both stop the attempt first and then
write `time_out_attempt` through `JobTable.apply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchgate.domain.jobs import Job, JobStatus
from batchgate.domain.relaunch import with_retry_due
from batchgate.domain.retry_policy import TIMEOUT_REASON_PREFIX, Retry, decide

if TYPE_CHECKING:
    from batchgate.domain.catalog import BatchSpec

# The statuses of a job whose attempt has a task (or a pool slot) that reports its state.
TRACKED_STATUSES = frozenset(
    {JobStatus.DISPATCHED, JobStatus.PROVISIONING, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.STOPPING}
)


def timeout_reason(timeout_seconds: int) -> str:
    """The stop reason of a timed-out attempt (the retry policy recognises its prefix)."""
    return f"{TIMEOUT_REASON_PREFIX} of {timeout_seconds} s"


def may_time_out(job: Job, number: int) -> bool:
    """Attempt `number` may still be timed out: it is the job's latest, the job is tracked, and the
    attempt's container has not stopped (then its STOPPED decides how the job ends, even late)."""
    latest = job.attempt
    return (
        latest is not None
        and latest.number == number
        and job.status in TRACKED_STATUSES
        and "execution_stopped" not in latest.timeline
    )


def time_out_attempt(job: Job, number: int, reason: str, at: str, spec: BatchSpec) -> Job | None:
    """The job once attempt `number` exceeded its timeout (`reason` says by how much): TIMED_OUT, or
    RETRYING when the batch's retry policy retries timeouts, with `reason` as the attempt's note.
    None when the attempt may no longer be timed out (its container stopped, the job ended or moved
    on to another attempt)."""
    latest = job.attempt
    if latest is None or not may_time_out(job, number):
        return None
    decision = decide(latest, spec, job_id=job.job_id, failure=reason, timed_out=True)
    status = JobStatus.RETRYING if isinstance(decision, Retry) else JobStatus.TIMED_OUT
    timed_out = job.with_attempt(latest._replace(note=reason))
    if isinstance(decision, Retry):
        timed_out = with_retry_due(timed_out, at, decision.delay_seconds)
    return timed_out.moved_to(status, at, decision.reason)
