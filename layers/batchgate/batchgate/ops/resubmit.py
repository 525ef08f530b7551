"""Resubmitting a finished job by hand (`batchgate retry`): the same work again as a new, linked job.

The new job gets the original's batch, arguments, environment, priority, strategy preference and
tenant, and an idempotency key that names the original (`retry-of:<job id>:<n>`), so the link is
visible in the job table and repeating the same resubmission before it is dispatched still gives one
job. This is ops' manual retry; the automatic retry of a failed attempt is
`batchgate.domain.retry_policy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import Job, JobStatus, job_id_for

RETRY_KEY_PREFIX = "retry-of"
MAX_RETRY_NUMBER = 99


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id} in the job table")
        self.job_id = job_id


class Refused(Exception):
    """The job's state does not allow the action; the message says why and what to do instead."""


def retry_key(job_id: str, number: int) -> str:
    return f"{RETRY_KEY_PREFIX}:{job_id}:{number}"


@dataclass(frozen=True)
class RetryPlan:
    """The new job: its idempotency key, its id, and the submit parameters."""

    original: Job
    idempotency_key: str
    job_id: str

    def submit_arguments(self) -> dict[str, Any]:
        job = self.original
        return {
            "batch": job.batch,
            "arguments": tuple(job.arguments),
            "environment": dict(job.environment) or None,
            "idempotency_key": self.idempotency_key,
            "priority": job.priority,
            "strategy": job.strategy_preference,
            "tenant": job.tenant,
        }


def plan_retry(table: JobTable, job_id: str, *, force: bool = False) -> RetryPlan:
    """The resubmission of a job that has ended: the first `retry-of:<job id>:<n>` key that names no job
    yet (a resubmission not yet dispatched has no job either, so repeating it resends the same key, and
    dispatch treats both messages as one job). Raises JobNotFound, or Refused for a job that has not
    ended or was rejected, and for one that SUCCEEDED unless `force` (running a payroll twice is not
    undone by a retry)."""
    job = table.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    if job.status is JobStatus.SUCCEEDED and not force:
        raise Refused(
            f"job {job_id} SUCCEEDED: retrying it runs the batch again with the same arguments; "
            "give --force to do so"
        )
    if not job.status.is_terminal:
        raise Refused(
            f"job {job_id} is {job.status.value}: only a job that has ended can be retried "
            f"(wait for it, or cancel it first with `batchgate cancel {job_id}`)"
        )
    if job.status is JobStatus.REJECTED:
        raise Refused(
            f"job {job_id} was REJECTED ({job.reason or 'invalid message'}): fix the message and submit "
            "it again (`batchgate show` prints the message as received)"
        )
    for number in range(1, MAX_RETRY_NUMBER + 1):
        key = retry_key(job_id, number)
        new_id = job_id_for(job.batch, key)
        if table.get(new_id) is None:
            return RetryPlan(original=job, idempotency_key=key, job_id=new_id)
    raise Refused(f"job {job_id} has been retried {MAX_RETRY_NUMBER} times already")
