"""A batch's `max_running` (catalog): at most that many of its jobs hold a slot at once, the way AWS
Batch's `maxvCpus` caps a compute environment.

The slots of a batch are one item: the jobs holding one, each with the attempt it holds it for,
and a version every write is conditional on (batchgate.adapters.batch_slots). An attempt takes a slot
before it is launched (RunTask or a warm offer), so two dispatchers can never both take the last one:
one of their writes fails its condition, reads again and finds the batch full. Slots are never given
back by the writers that end jobs (track, the sweep, cancel, a warm worker): when the batch is full, the
taker reads the holders' jobs and frees, in the same conditional write, the slots of those no longer
running that attempt (`holds_slot`). So a slot cannot leak, and no job runs past the limit.

A job over the limit waits: its launch is put back on the queue as a relaunch with a growing delay
(batchgate.services.launch_deferral), so it is never dead-lettered and never blocks other batches'
messages, and its attempt shows why ("waiting: 5/5 running").
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from batchgate.domain.jobs import Job, JobStatus


class BatchSlots(NamedTuple):
    """A batch's running slots (max_running), as last read: who holds them, at which version."""

    batch: str
    # Job id -> the attempt number holding its slot.
    holders: Mapping[str, int] = MappingProxyType({})
    # 0: no item yet.
    version: int = 0

    def taken_by(self, job_id: str, attempt: int, limit: int) -> "BatchSlots | None":
        """The slots once attempt `attempt` of `job_id` holds one: the same when it does already, None
        when all `limit` are held by others."""
        if self.holders.get(job_id) == attempt:
            return self
        if job_id not in self.holders and len(self.holders) >= limit:
            return None
        return BatchSlots(self.batch, {**self.holders, job_id: attempt}, self.version)

    def freed(self, jobs: Mapping[str, Job | None]) -> "BatchSlots":
        """The slots without the holders whose job (as read, None: gone) no longer runs that attempt."""
        kept = {
            job_id: attempt
            for job_id, attempt in self.holders.items()
            if holds_slot(jobs.get(job_id), attempt)
        }
        return BatchSlots(self.batch, kept, self.version)


def holds_slot(job: Job | None, attempt: int) -> bool:
    """Attempt `attempt` of `job` may still run: the job has not ended, that attempt is its latest,
    and the job does not wait for its next attempt (RETRYING: that one takes a slot again)."""
    return (
        job is not None
        and not job.status.is_terminal
        and job.status is not JobStatus.RETRYING
        and job.attempt is not None
        and job.attempt.number == attempt
    )


WAITING_PREFIX = "waiting: "


def waiting_note(running: int, limit: int) -> str:
    return f"{WAITING_PREFIX}{running}/{limit} running"


def is_waiting_note(note: str) -> bool:
    return note.startswith(WAITING_PREFIX)
