"""The warm lane's attempts: what a job may become when a pool's warm worker runs it.

A WARM attempt is offered, then claimed or expired, exactly once:
- dispatch begins attempt N as WARM (its capacity_provider is the pool's name), sends the job to the
  pool's work queue and records the offer (`offer_warm`: DISPATCHED);
- the worker that receives it claims it (`claim_warm`), or the delayed check that dispatch sent itself
  expires it (`expire_warm_offer`). Both are conditional writes on attempt N, so the first one wins: a
  late worker finds the attempt decided and runs nothing; an expired attempt ends "not picked up" and
  the next attempt goes to an ECS strategy at once (plan_launch never plans WARM after a WARM stop code);
- from the claim on, the worker reports the attempt's life as task state changes of its pool task
  (`warm_change`), applied by `apply_task_event`: the same rule that applies ECS's own events decides
  what the job becomes (ordering by version, statuses only forward, the retry policy).
"""

import json
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from batchgate.adapters.ecs import LogPointer
from batchgate.domain.jobs import WARM_NOT_PICKED_UP, Attempt, Job, JobStatus, parse_iso
from batchgate.domain.pools import HEARTBEAT_SECONDS, PoolTask
from batchgate.domain.relaunch import read_attempt_message

if TYPE_CHECKING:
    from batchgate.domain.catalog import BatchSpec
    from batchgate.domain.task_events import TaskStateChange

# Task events (batchgate.domain.task_events) are imported by the functions that apply them: the worker's
# claim and reports, a lost pool task. Dispatch, which only offers and expires warm attempts, does not
# load them at its cold start.

WARM = "WARM"
# Stop codes of WARM attempts that ended before the batch ran to its own end. plan_launch plans the
# next attempt on ECS after either; the retry policy retries a stopped pool task (infrastructure).
NOT_PICKED_UP = WARM_NOT_PICKED_UP
POOL_TASK_STOPPED = "WarmTaskStopped"
WARM_STOP_CODES = frozenset({NOT_PICKED_UP, POOL_TASK_STOPPED})
# Timeline phase of the offer (dispatch sent the job to the pool's queue).
OFFERED = "offered"
# Versions of a warm attempt's changes: the claim is RUNNING at 1, the worker's later reports count up.
CLAIM_VERSION = 1


class InvalidWorkOffer(ValueError):
    """A pool work message that batchgate did not write."""


class WorkOffer(NamedTuple):
    """The pool work queue's message, and the dispatch check message's body: which attempt of which
    job. The worker reads everything else from the job item."""

    job_id: str
    attempt: int

    def body(self) -> str:
        return json.dumps({"job_id": self.job_id, "attempt": self.attempt}, separators=(",", ":"))

    @classmethod
    def parse(cls, body: str) -> "WorkOffer":
        _, job_id, attempt = read_attempt_message(body, "work message", InvalidWorkOffer)
        return cls(job_id=job_id, attempt=attempt)


class WorkerClaim(NamedTuple):
    """Who claims an attempt: the pool task, its slot and image, where the attempt's output goes."""

    task_arn: str
    slot: int
    image_digest: str | None
    log_group: str
    log_stream: str
    at: str


def is_warm(job: Job, number: int | None = None) -> bool:
    attempt = job.attempt if number is None else job.attempt_by_number(number)
    return attempt is not None and attempt.strategy == WARM


def offer_warm(job: Job, number: int, at: str) -> Job | None:
    """Attempt N, just begun as WARM, was sent to the pool's queue: DISPATCHED, offer time recorded."""
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.strategy != WARM or attempt.last_status is not None:
        return None
    offered = job.with_attempt(attempt._replace(timeline={**attempt.timeline, OFFERED: at}))
    return offered.moved_to(JobStatus.DISPATCHED, at)


def claim_warm(job: Job, number: int, claim: WorkerClaim) -> Job | None:
    """The worker's claim of attempt N: only while N is the job's current attempt, WARM, not claimed
    and not decided, and the job has not ended (a cancelled or superseded attempt runs nothing).
    Returns None when the claim is refused."""
    attempt = job.attempt
    if job.status.is_terminal or attempt is None or attempt.number != number:
        return None
    if attempt.strategy != WARM or attempt.task_arn is not None or attempt.last_status is not None:
        return None
    from batchgate.domain.task_events import apply_task_event

    claimed = job.with_attempt(attempt._replace(slot=claim.slot, image_digest=claim.image_digest))
    change = warm_change(
        claim.task_arn,
        job.job_id,
        number,
        version=CLAIM_VERSION,
        last_status="RUNNING",
        at=claim.at,
        timestamps={"started": claim.at},
    )
    return apply_task_event(claimed, change, None, _pointer(claim))


def expire_warm_offer(job: Job, number: int, at: str, reason: str) -> Job | None:
    """The dispatch check: attempt N still unclaimed ends "not picked up" (`reason` says by which pool
    within how long) and the job is RETRYING, for dispatch to begin attempt N+1 on ECS at once.
    Returns None when the worker claimed it first, or the job moved on."""
    attempt = job.attempt
    if job.status.is_terminal or attempt is None or attempt.number != number:
        return None
    if attempt.strategy != WARM or attempt.task_arn is not None or attempt.last_status is not None:
        return None
    expired = attempt._replace(
        last_status="STOPPED",
        event_version=CLAIM_VERSION,
        stop_code=NOT_PICKED_UP,
        stopped_reason=reason,
        timeline={**attempt.timeline, "stopped": at},
    )
    return job.with_attempt(expired).moved_to(JobStatus.RETRYING, at, reason)


def pool_task_lost(
    job: Job, number: int, task_arn: str, *, reason: str, at: str, spec: "BatchSpec | None"
) -> Job | None:
    """Attempt N ran on pool task `task_arn`, which stopped (its STOPPED event) or stopped answering
    (its heartbeat stale, missing or no longer listing the job): the attempt ends `WarmTaskStopped`
    with `reason`, through `apply_task_event`, so the retry policy decides (it retries this stop code).
    Only while attempt N is WARM, ran on that very task and has not stopped: never another attempt,
    never an attempt the worker already reported ended. None when there is nothing to change."""
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.strategy != WARM or attempt.task_arn != task_arn:
        return None
    if attempt.last_status in ("STOPPED", "DELETED"):
        return None
    from batchgate.domain.task_events import apply_task_event

    change = warm_change(
        task_arn,
        job.job_id,
        number,
        # After every report of the worker on this attempt, whatever it reported last.
        version=attempt.event_version + 1,
        last_status="STOPPED",
        at=at,
        timestamps={"stopped": at},
        stop_code=POOL_TASK_STOPPED,
        stopped_reason=reason,
    )
    return apply_task_event(job, change, None, None, spec)


def heartbeat_loss(heartbeat: PoolTask | None, job_id: str, attempt: Attempt, now: datetime) -> str | None:
    """Why a claimed WARM attempt's pool task no longer answers for it, from the task's heartbeat item
    (None: it does). A job missing from a fresh heartbeat counts only once a heartbeat written well
    after the claim leaves it out (the worker lists a job after claiming it, and reports a job's end
    before freeing its slot)."""
    if heartbeat is None:
        return f"worker heartbeat missing: pool task {attempt.task_arn} has no heartbeat item"
    if not heartbeat.is_fresh(now):
        return f"worker heartbeat stale since {heartbeat.heartbeat_at}"
    if heartbeat.runs(job_id, attempt.number):
        return None
    claimed = attempt.timeline.get("started", attempt.dispatched_at)
    if (parse_iso(heartbeat.heartbeat_at) - parse_iso(claimed)).total_seconds() <= HEARTBEAT_SECONDS:
        return None
    return f"worker heartbeat at {heartbeat.heartbeat_at} no longer lists the job"


def warm_change(
    task_arn: str,
    job_id: str,
    number: int,
    *,
    version: int,
    last_status: str,
    at: str,
    timestamps: dict[str, str] | None = None,
    container: str | None = None,
    exit_code: int | None = None,
    stop_code: str | None = None,
    stopped_reason: str | None = None,
) -> "TaskStateChange":
    """A worker's report on attempt N as the task state change `apply_task_event` reads: its pool task
    is the task, the attempt is named by number (never found by task ARN: one pool task runs many)."""
    from batchgate.domain.task_events import ContainerState, TaskStateChange

    containers = (
        (ContainerState(name=container or "", last_status=last_status, exit_code=exit_code, reason=None),)
        if exit_code is not None
        else ()
    )
    return TaskStateChange(
        task_arn=task_arn,
        cluster_arn="",
        started_by=job_id,
        last_status=last_status,
        version=version,
        time=at,
        task_definition_arn=None,
        capacity_provider=None,
        launch_type=None,
        attempt=number,
        timestamps=dict(timestamps or {}),
        containers=containers,
        stop_code=stop_code,
        stopped_reason=stopped_reason,
    )


def _pointer(claim: WorkerClaim) -> LogPointer:
    return LogPointer(group=claim.log_group, stream=claim.log_stream)
