"""Internal relaunch messages: a job's next attempt (or a lost launch) sent back to the jobs queue.

They travel on the same queue as the application's submit messages, told apart by the message attribute
`batchgate-kind=retry` (a submit message never has it; `warm-check` marks dispatch's check of a warm
offer, batchgate.domain.warm), and carry only the job id and the attempt number they are for (and, for
ops reading the queue, the deferral they were sent for). The back-off travels as the SQS message delay.

Anyone who may send to the jobs queue can write such a message, so nothing in it is trusted beyond
naming the job: dispatch acts on one only while the job still waits for exactly that attempt AND its
next launch is due (`relaunch_due_at` on the job's latest attempt, written before the message is
sent: the next attempt's back-off when a retry is scheduled, the deferral's back-off when a launch is
put back on the queue). A duplicate, a late one or a forged one does nothing; one that arrives early
is ignored (logged, metric `RelaunchesEarly`), and the genuine one arrives when it is due. The count of
deferrals, which makes the back-off grow, lives on the attempt too (`deferrals`), never in the message.
"""

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeGuard

from batchgate.domain.backoff import retry_delay_seconds
from batchgate.domain.jobs import Job, JobStatus, is_job_id, iso, parse_iso
from batchgate.domain.retry_policy import RetryPolicy

KIND_ATTRIBUTE = "batchgate-kind"
RETRY_KIND = "retry"
# Dispatch's delayed check of a warm offer (batchgate.domain.warm): body WorkOffer.body().
WARM_CHECK_KIND = "warm-check"
MAX_BODY_BYTES = 1024
# Far more than any throttling lasts at a back-off capped at minutes; bounds what a body may claim.
MAX_DEFERRALS = 10_000
# A relaunch is acted on from this long before its due time: the clocks of ECS, SQS and Lambda differ
# by milliseconds, and a message delay is whole seconds. Also all a forged message can gain.
EARLY_TOLERANCE_SECONDS = 2.0


class InvalidRelaunchMessage(ValueError):
    """A message marked batchgate-kind=retry that is not one batchgate wrote."""


class Relaunch(NamedTuple):
    """A message that resumes one attempt of one job (a retry, or a put-back launch)."""

    job_id: str
    attempt: int
    # Which deferral of this attempt the message was sent for (batchgate.services.launch_deferral): for
    # logs and ops only; dispatch reads the count from the attempt.
    deferrals: int = 0

    def body(self) -> str:
        document: dict[str, Any] = {"job_id": self.job_id, "attempt": self.attempt}
        if self.deferrals:
            document["deferrals"] = self.deferrals
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def parse(cls, body: str) -> "Relaunch":
        if len(body.encode("utf-8", "replace")) > MAX_BODY_BYTES:
            raise InvalidRelaunchMessage("relaunch message too large")
        document, job_id, attempt = read_attempt_message(body, "relaunch message", InvalidRelaunchMessage)
        deferrals = document.get("deferrals", 0)
        if not _is_int_within(deferrals, 0, MAX_DEFERRALS):
            raise InvalidRelaunchMessage("relaunch message has an invalid deferral count")
        return cls(job_id=job_id, attempt=attempt, deferrals=deferrals)


def read_attempt_message(body: str, what: str, invalid: type[ValueError]) -> tuple[dict[str, Any], str, int]:
    """The JSON object of a message batchgate writes about one attempt of one job (a relaunch, a warm
    offer or its check), with its job id and attempt number; `invalid`, naming `what`, otherwise."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise invalid(f"{what} is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise invalid(f"{what} is not a JSON object")
    job_id, attempt = document.get("job_id"), document.get("attempt")
    if not isinstance(job_id, str) or not is_job_id(job_id) or len(job_id) > 128:
        raise invalid(f"{what} has no valid job_id")
    if not _is_int_within(attempt, 1, 100):
        raise invalid(f"{what} has no valid attempt number")
    return document, job_id, attempt


def _is_int_within(value: object, low: int, high: int) -> TypeGuard[int]:
    # JSON true/false are ints to Python; a count is never one.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def message_kind(attributes: Mapping[str, Any] | None) -> str | None:
    """The batchgate-kind of an SQS record's message attributes (Lambda event or ReceiveMessage shape)."""
    if not attributes:
        return None
    value = attributes.get(KIND_ATTRIBUTE)
    if not isinstance(value, Mapping):
        return None
    kind = value.get("stringValue", value.get("StringValue"))
    return str(kind) if kind is not None else None


def awaited_attempt(job: Job) -> int | None:
    """The attempt a job waits to launch: the next one while SUBMITTED or RETRYING, the current one
    while DISPATCHING without a task; None when it waits for nothing (running, ended, cancelled)."""
    if job.status in (JobStatus.SUBMITTED, JobStatus.RETRYING):
        return job.attempt_number + 1
    attempt = job.attempt
    if job.status is JobStatus.DISPATCHING and attempt is not None and attempt.task_arn is None:
        return attempt.number
    return None


def next_attempt_relaunch(job: Job, policy: RetryPolicy) -> tuple[Relaunch, int] | None:
    """The relaunch of a RETRYING job's next attempt and its delay (the policy's back-off after the
    attempt that failed); None for a job that waits for no retry."""
    failed = job.attempt
    if job.status is not JobStatus.RETRYING or failed is None:
        return None
    return Relaunch(job.job_id, failed.number + 1), retry_delay_seconds(
        policy.base_delay_seconds, policy.max_delay_seconds, job.job_id, failed.number
    )


def pending_relaunch_due(job: Job) -> datetime | None:
    """When the launch a job waits for is due (`relaunch_due_at` of its latest attempt); None when it
    waits for no launch, or none was scheduled with a due time (the first attempt, items written before
    due times were kept)."""
    attempt = job.attempt
    if awaited_attempt(job) is None or attempt is None or attempt.relaunch_due_at is None:
        return None
    try:
        return parse_iso(attempt.relaunch_due_at)
    except ValueError:
        return None


def early_relaunch_due(job: Job, now: datetime) -> datetime | None:
    """The due time of the launch `job` waits for, when a relaunch handled at `now` comes before it
    (beyond the clocks' tolerance); None when a relaunch may act now."""
    due = pending_relaunch_due(job)
    if due is not None and now < due - timedelta(seconds=EARLY_TOLERANCE_SECONDS):
        return due
    return None


def due_after(at: str, seconds: float) -> str:
    return iso(parse_iso(at) + timedelta(seconds=seconds))


def with_retry_due(job: Job, at: str, delay_seconds: int) -> Job:
    """The job whose latest (failed) attempt says its retry is due `delay_seconds` after `at`."""
    attempt = job.attempt
    if attempt is None:
        return job
    return job.with_attempt(attempt._replace(relaunch_due_at=due_after(at, delay_seconds)))


def record_deferral(
    job: Job, number: int, seen_deferrals: int, *, at: str, delay_seconds: int, note: str | None = None
) -> Job | None:
    """Attempt `number`, DISPATCHING without a task, put back on the queue once more: its deferral
    count goes up by one, its launch is due `delay_seconds` after `at`, and `updated_at` moves (the
    sweep measures a lost launch from it). `note` says why, for ops ("waiting: 5/5 running").

    Only while the attempt still has the count `seen_deferrals` its launch was decided on: of two
    deliveries deferring the same launch at once, one writes and sends the relaunch, so two chains of
    relaunch messages never grow from one attempt. None when there is nothing to write."""
    attempt = job.attempt
    if (
        job.status is not JobStatus.DISPATCHING
        or attempt is None
        or attempt.number != number
        or attempt.task_arn is not None
        or attempt.deferrals != seen_deferrals
    ):
        return None
    deferred = attempt._replace(
        deferrals=seen_deferrals + 1, relaunch_due_at=due_after(at, delay_seconds), note=note
    )
    return job.with_attempt(deferred).moved_to(JobStatus.DISPATCHING, at)
