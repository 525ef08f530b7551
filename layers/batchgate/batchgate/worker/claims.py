"""Whether this pool task may run an offered attempt, and whether a running one is still its own.

The claim itself is `claim_warm` (batchgate.domain.warm), one conditional write through
`JobTable.apply`; this module says why a refused claim was refused, and why a running job must stop
(cancelled, timed out by the sweep, or otherwise no longer this task's attempt), for the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from batchgate.adapters.job_table import JobTable
from batchgate.domain.catalog import BatchSpec, Catalog
from batchgate.domain.jobs import Job, iso, utc_now
from batchgate.domain.warm import WARM, WorkerClaim, WorkOffer, claim_warm

log = logging.getLogger("batchgate.worker")


def refusal_reason(job: Job, number: int, task_arn: str) -> str:
    """Why attempt `number` of `job` (as stored after a refused claim) cannot be claimed."""
    attempt = job.attempt_by_number(number)
    current = job.attempt
    if job.status.is_terminal:
        return f"the job is {job.status.value}" + (f" ({job.reason})" if job.reason else "")
    if attempt is None or current is None:
        return f"the job has no attempt {number}"
    if current.number != number:
        return f"attempt {number} was superseded by attempt {current.number}"
    if attempt.strategy != WARM:
        return f"attempt {number} is not a WARM attempt ({attempt.strategy})"
    if attempt.task_arn == task_arn:
        return f"attempt {number} is already claimed by this task (a duplicate message)"
    if attempt.task_arn is not None:
        return f"attempt {number} is already claimed by {attempt.task_arn} (a duplicate message)"
    if attempt.last_status is not None:
        return f"attempt {number} was decided before the claim ({attempt.stop_code or attempt.last_status})"
    return f"attempt {number} cannot be claimed"


def stop_reason(job: Job | None, number: int, task_arn: str) -> str | None:
    """Why the child running attempt `number` on this task must stop, or None while it is still this
    task's attempt to run."""
    if job is None:
        return "the job's item is gone"
    if job.status.is_terminal:
        return job.reason or f"the job is {job.status.value}"
    current = job.attempt
    attempt = job.attempt_by_number(number)
    if attempt is None or current is None or current.number != number:
        return f"attempt {number} is no longer the job's attempt"
    if attempt.task_arn != task_arn:
        return f"attempt {number} belongs to {attempt.task_arn}"
    if attempt.last_status in ("STOPPED", "DELETED"):
        return f"attempt {number} was ended elsewhere ({attempt.stop_code or 'stopped'})"
    return None


@dataclass(frozen=True)
class Claimed:
    job: Job
    spec: BatchSpec


@dataclass(frozen=True)
class Refused:
    reason: str
    # A message the worker cannot act on at all stays on the queue, for its DLQ (ops look there).
    keep_message: bool = False


@dataclass(frozen=True)
class Claimer:
    table: JobTable
    catalog: Catalog
    pool: str
    task_arn: str
    image_digest: str | None
    log_group: str
    # The batches this task may run now (its image is theirs: batchgate.worker.served_batches).
    serves: Callable[[str], bool]
    clock: Callable[[], datetime] = utc_now

    def claim(self, offer: WorkOffer, slot: int) -> Claimed | Refused:
        """Claim `offer` for `slot`. AWS errors are raised: the message is then left for a redelivery."""
        job = self.table.get(offer.job_id)
        if job is None:
            return Refused(f"no job {offer.job_id}", keep_message=True)
        spec = self.catalog.get(job.batch)
        if spec is None or spec.pool != self.pool:
            return Refused(f"batch {job.batch} is not a batch of pool {self.pool}")
        if not self.serves(spec.name):
            return Refused(f"this task does not run batch {spec.name}'s current image")
        claim = WorkerClaim(
            task_arn=self.task_arn,
            slot=slot,
            image_digest=self.image_digest,
            log_group=self.log_group,
            log_stream=log_stream_name(job.batch, job.job_id, offer.attempt),
            at=iso(self.clock()),
        )
        write = self.table.apply(
            job.job_id, lambda current: claim_warm(current, offer.attempt, claim), read=job
        )
        if write is None:
            return Refused(f"no job {offer.job_id}", keep_message=True)
        claimed = write.after.attempt_by_number(offer.attempt)
        if write.written and claimed is not None and claimed.task_arn == self.task_arn:
            return Claimed(write.after, spec)
        return Refused(refusal_reason(write.after, offer.attempt, self.task_arn))


def log_stream_name(batch: str, job_id: str, attempt: int) -> str:
    """An attempt's own stream in the pool's log group."""
    return f"{batch}/{job_id}/{attempt}"
