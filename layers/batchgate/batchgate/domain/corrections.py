"""A corrected message: a valid message whose idempotency key names a REJECTED job makes the job anew.

Rejection is about a message, not about the work its key names: once the sender fixes the message, the
job runs. The job keeps its id (the id the application computes), starts again as SUBMITTED with the
valid message's content, and keeps each rejection in `rejections` for ops. A message already seen on
the job (a redelivery of the rejected one, or of a valid message rejected at its deadline) is the same
message, and a job that is not REJECTED is the job: both stay duplicates.
"""

from __future__ import annotations

from batchgate.domain.jobs import Job, JobStatus, Rejection
from batchgate.domain.masking import masked_message

# Enough to tell a pattern of mistakes; the job item stays small whatever a sender keeps getting wrong.
MAX_REJECTIONS_KEPT = 10


def is_message_of(job: Job, message_id: str) -> bool:
    """`message_id` made the job, or was one of its rejected messages."""
    return message_id == job.message_id or any(r.message_id == message_id for r in job.rejections)


def replaces_rejection(job: Job, message_id: str) -> bool:
    """Whether the valid message `message_id`, with the job's idempotency key, makes `job` anew."""
    return job.status is JobStatus.REJECTED and not is_message_of(job, message_id)


def corrected(job: Job, submitted: Job) -> Job | None:
    """`submitted` (the job as the valid message makes it) in place of the REJECTED `job`, whose
    rejection it keeps; None when `job` is no longer REJECTED (another correction made it anew first),
    so that a conditional write of it is the only one that succeeds."""
    if not replaces_rejection(job, submitted.message_id):
        return None
    rejection = Rejection(
        message_id=job.message_id,
        received_at=job.created_at,
        rejected_at=job.updated_at,
        reason=job.reason,
        # Stored masked by dispatch; an item stored before it masked may not be.
        raw_message=masked_message(job.raw_message) if job.raw_message is not None else None,
    )
    return submitted._replace(
        job_id=job.job_id,
        # Kept, so that a later attempt never reuses an earlier one's number or RunTask token (a
        # rejected job has none today: rejection happens before any launch).
        attempts=job.attempts,
        revision=job.revision,
        rejections=(*job.rejections, rejection)[-MAX_REJECTIONS_KEPT:],
    )
