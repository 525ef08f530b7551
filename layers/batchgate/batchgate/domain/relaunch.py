"""Internal relaunch messages: a job's next attempt (or a lost launch) sent back to the jobs queue.

They travel on the same queue as the application's submit messages, told apart by the message attribute
`batchgate-kind=retry` (a submit message never has it; `warm-check` marks dispatch's check of a warm
offer, batchgate.domain.warm), and carry only the job id and the attempt
number they are for, plus how many times a throttled launch of that attempt was put back already (its
back-off grows with that count). Dispatch acts on one only while the job still waits for exactly that
attempt, so a duplicate, a late one or a forged one does nothing. The back-off travels as the SQS
message delay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from batchgate.domain.backoff import retry_delay_seconds
from batchgate.domain.jobs import Job, JobStatus, is_job_id
from batchgate.domain.retry_policy import RetryPolicy

KIND_ATTRIBUTE = "batchgate-kind"
RETRY_KIND = "retry"
# Dispatch's delayed check of a warm offer (batchgate.domain.warm): body WorkOffer.body().
WARM_CHECK_KIND = "warm-check"
MAX_BODY_BYTES = 1024
# Far more than any throttling lasts at a back-off capped at minutes; bounds what a body may claim.
MAX_DEFERRALS = 10_000


class InvalidRelaunchMessage(ValueError):
    """A message marked batchgate-kind=retry that is not one batchgate wrote."""


@dataclass(frozen=True)
class Relaunch:
    job_id: str
    attempt: int
    # Times a throttled launch of this attempt was put back on the queue (batchgate.services.launch_deferral).
    deferrals: int = 0

    def body(self) -> str:
        document: dict[str, Any] = {"job_id": self.job_id, "attempt": self.attempt}
        if self.deferrals:
            document["deferrals"] = self.deferrals
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def parse(cls, body: str) -> Relaunch:
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
