"""The job: one submitted batch command, its attempts and where it is now.

Pure data and pure transitions; the table adapter persists it and the dispatch and track code decide
which transition to apply. The records are NamedTuples, immutable (`_replace` makes a changed copy):
every function imports this module, and a NamedTuple class costs its cold start no generated methods
(docs/contracts-internal.md, Cold start).
"""

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

JOB_ID_PREFIX = "bg-"
# Batch names are short so that "<job id>-<attempt>" fits RunTask's 64-character clientToken.
BATCH_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
REJECTED_BATCH = "rejected"


class JobStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    DISPATCHING = "DISPATCHING"
    DISPATCHED = "DISPATCHED"
    PROVISIONING = "PROVISIONING"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    # The attempt failed and the retry policy gave the job another one, sent to the jobs queue with a
    # back-off delay; the next attempt starts again at DISPATCHING.
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def rank(self) -> int:
        """Position in the lifecycle: a job's status never moves to a lower rank."""
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


_RANK = {status: index for index, status in enumerate(JobStatus)}
for _terminal in ("SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "REJECTED"):
    _RANK[JobStatus(_terminal)] = len(JobStatus)
TERMINAL_STATUSES = frozenset(status for status in JobStatus if _RANK[status] == len(JobStatus))


def job_id_for(batch: str, key: str) -> str:
    """A deterministic job id: the same batch and idempotency key (or SQS message id) give the same job.

    Readable in the console (it names the batch) and at most 56 characters, so that `startedBy`
    (128) and `clientToken` (64, "<job id>-<attempt>") both fit.
    """
    name = batch if BATCH_NAME_PATTERN.match(batch) else REJECTED_BATCH
    digest = hashlib.sha256(f"{batch}\x00{key}".encode()).hexdigest()[:20]
    return f"{JOB_ID_PREFIX}{name}-{digest}"


def is_job_id(value: str | None) -> bool:
    return bool(value) and str(value).startswith(JOB_ID_PREFIX)


def client_token(job_id: str, attempt: int, launch_try: int = 0) -> str:
    """RunTask's idempotency token: "<job id>-<attempt>" for the plan's first choice, then
    "<job id>-<attempt>.<try>" for each fallback of the same attempt (at most 56 + 6 characters)."""
    return f"{job_id}-{attempt}" if launch_try == 0 else f"{job_id}-{attempt}.{launch_try}"


# The most characters of a text from AWS (a stop reason, a RunTask failure, an error message) that a job
# stores: one long reason must not push a job item towards DynamoDB's 400 KB limit.
MAX_STORED_TEXT = 1024
TRUNCATION_MARK = "…"


def stored_text(text: str, limit: int = MAX_STORED_TEXT) -> str:
    """`text` as stored on a job: at most `limit` characters, a cut one ending in "…"."""
    return text if len(text) <= limit else text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds: sorts as text, which the table's indexes rely on."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso_of_epoch_millis(value: str | None) -> str | None:
    """An SQS SentTimestamp (epoch milliseconds, as text) in the jobs' ISO form; None when absent or
    unreadable: the send time is shown and measured, never needed to run a job."""
    if not value:
        return None
    try:
        return iso(datetime.fromtimestamp(int(value) / 1000, UTC))
    except (ValueError, OverflowError, OSError):
        return None


class LaunchPlan(NamedTuple):
    """Where a job's task runs and why: the output of `plan_launch`."""

    strategy: str
    capacity_provider: str
    reason: str
    fallbacks: tuple[str, ...] = ()
    inputs: Mapping[str, Any] = MappingProxyType({})
    # Task size sent as RunTask overrides (0: the catalog's, for plans stored before sizes were kept).
    cpu: int = 0
    memory: int = 0

    @property
    def chain(self) -> tuple[str, ...]:
        """Every strategy to try, in order: the choice, then the fallbacks."""
        return (self.strategy, *self.fallbacks)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "strategy": self.strategy,
            "capacity_provider": self.capacity_provider,
            "reason": self.reason,
            "fallbacks": list(self.fallbacks),
            "inputs": dict(self.inputs),
        }
        if self.cpu or self.memory:
            item.update(cpu=self.cpu, memory=self.memory)
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "LaunchPlan":
        return cls(
            strategy=item["strategy"],
            capacity_provider=item["capacity_provider"],
            reason=item["reason"],
            fallbacks=tuple(item.get("fallbacks", ())),
            inputs=dict(item.get("inputs", {})),
            cpu=int(item.get("cpu", 0)),
            memory=int(item.get("memory", 0)),
        )


# The stop code of a warm offer no worker claimed (batchgate.domain.warm), defined here with the job model
# so that the modules that only ask whether an attempt ran need not load the warm lane's.
WARM_NOT_PICKED_UP = "WarmNotPickedUp"
# Stop codes of attempts that never ran the batch: they do not use up the batch's max_attempts
# (batchgate.domain.retry_policy), and the history does not measure them.
NEVER_RAN_STOP_CODES = frozenset({WARM_NOT_PICKED_UP})


class Attempt(NamedTuple):
    """One RunTask of a job: its task, where it ran, its timeline and how it ended."""

    number: int
    strategy: str
    capacity_provider: str
    dispatched_at: str
    task_arn: str | None = None
    last_status: str | None = None
    event_version: int = 0
    timeline: Mapping[str, str] = MappingProxyType({})
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    container_reason: str | None = None
    log_group: str | None = None
    log_stream: str | None = None
    launch_failures: tuple[dict[str, str], ...] = ()
    error: str | None = None
    # What the sweep saw when this attempt stopped moving (e.g. "PENDING for 6 min: image pull not
    # finished"), for ops.
    note: str | None = None
    # The position in the plan's chain being launched (0: the plan's choice), and every RunTask try of
    # this attempt: strategy, capacity provider, client token, failures or error.
    launch_try: int = 0
    tries: tuple[dict[str, Any], ...] = ()
    # A WARM attempt (batchgate.domain.warm): the pool task's slot that ran it and the image digest
    # that task runs; its task_arn is the pool task's, its capacity_provider the pool's name.
    slot: int | None = None
    image_digest: str | None = None
    # When the job's next launch is due (batchgate.domain.relaunch): set when a retry of this attempt is
    # scheduled (the next attempt's back-off) or when a launch of this attempt is put back on the queue
    # (a deferral, counted in `deferrals`). A relaunch message that arrives before it does nothing.
    relaunch_due_at: str | None = None
    deferrals: int = 0

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "number": self.number,
            "strategy": self.strategy,
            "capacity_provider": self.capacity_provider,
            "dispatched_at": self.dispatched_at,
            "event_version": self.event_version,
            "timeline": dict(self.timeline),
            "launch_failures": [dict(failure) for failure in self.launch_failures],
        }
        if self.launch_try or self.tries:
            item.update(launch_try=self.launch_try, tries=[dict(entry) for entry in self.tries])
        if self.deferrals:
            item["deferrals"] = self.deferrals
        optional = {
            "task_arn": self.task_arn,
            "last_status": self.last_status,
            "exit_code": self.exit_code,
            "stop_code": self.stop_code,
            "stopped_reason": self.stopped_reason,
            "container_reason": self.container_reason,
            "log_group": self.log_group,
            "log_stream": self.log_stream,
            "error": self.error,
            "note": self.note,
            "slot": self.slot,
            "image_digest": self.image_digest,
            "relaunch_due_at": self.relaunch_due_at,
        }
        item.update({key: value for key, value in optional.items() if value is not None})
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Attempt":
        exit_code = item.get("exit_code")
        return cls(
            number=int(item["number"]),
            strategy=item["strategy"],
            capacity_provider=item["capacity_provider"],
            dispatched_at=item["dispatched_at"],
            task_arn=item.get("task_arn"),
            last_status=item.get("last_status"),
            event_version=int(item.get("event_version", 0)),
            timeline=dict(item.get("timeline", {})),
            exit_code=None if exit_code is None else int(exit_code),
            stop_code=item.get("stop_code"),
            stopped_reason=item.get("stopped_reason"),
            container_reason=item.get("container_reason"),
            log_group=item.get("log_group"),
            log_stream=item.get("log_stream"),
            launch_failures=tuple(dict(failure) for failure in item.get("launch_failures", ())),
            error=item.get("error"),
            note=item.get("note"),
            launch_try=int(item.get("launch_try", 0)),
            tries=tuple(dict(entry) for entry in item.get("tries", ())),
            slot=None if item.get("slot") is None else int(item["slot"]),
            image_digest=item.get("image_digest"),
            relaunch_due_at=item.get("relaunch_due_at"),
            deferrals=int(item.get("deferrals", 0)),
        )


class Rejection(NamedTuple):
    """A message of the job that was rejected, kept when a valid message with the same idempotency key
    made the job anew (batchgate.domain.corrections): when it came, why it was refused, and what ops
    may see of it (environment values masked)."""

    message_id: str
    received_at: str
    rejected_at: str
    reason: str | None = None
    raw_message: str | None = None

    def to_item(self) -> dict[str, Any]:
        item = {
            "message_id": self.message_id,
            "received_at": self.received_at,
            "rejected_at": self.rejected_at,
            "reason": self.reason,
            "raw_message": self.raw_message,
        }
        return {key: value for key, value in item.items() if value is not None}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Rejection":
        return cls(
            message_id=item["message_id"],
            received_at=item["received_at"],
            rejected_at=item["rejected_at"],
            reason=item.get("reason"),
            raw_message=item.get("raw_message"),
        )


class Job(NamedTuple):
    """One item of the job table.

    `revision` is the optimistic-concurrency token: every write is conditional on it, so dispatch and
    track never overwrite each other's changes.
    """

    job_id: str
    batch: str
    status: JobStatus
    created_at: str
    updated_at: str
    expires_at: int
    message_id: str
    arguments: tuple[str, ...] = ()
    environment: Mapping[str, str] = MappingProxyType({})
    idempotency_key: str | None = None
    priority: int = 0
    deadline: str | None = None
    strategy_preference: str | None = None
    reason: str | None = None
    raw_message: str | None = None
    plan: LaunchPlan | None = None
    attempts: tuple[Attempt, ...] = ()
    revision: int = 0
    # When the application sent the submit message (its SQS SentTimestamp), before `created_at`, when
    # dispatch received it; None for items stored before it was kept.
    submitted_at: str | None = None
    # The application's customer the job is for (the submit message's `tenant`); None without one, and
    # then the item has no `tenant` attribute, so it stays out of the sparse jobs-by-tenant index.
    tenant: str | None = None
    # The job's earlier messages that were rejected, oldest first, before a valid one made it anew.
    rejections: tuple[Rejection, ...] = ()
    # A schedule's slot (docs/schedules.md): the schedule and the slot's time.
    schedule: str | None = None
    scheduled_time: str | None = None

    @property
    def attempt(self) -> Attempt | None:
        """The current (latest) attempt."""
        return self.attempts[-1] if self.attempts else None

    @property
    def attempt_number(self) -> int:
        return len(self.attempts)

    def attempt_by_number(self, number: int) -> Attempt | None:
        return next((attempt for attempt in self.attempts if attempt.number == number), None)

    def with_attempt(self, attempt: Attempt) -> "Job":
        attempts = tuple(attempt if a.number == attempt.number else a for a in self.attempts)
        return self._replace(attempts=attempts)

    def moved_to(
        self, status: JobStatus, at: str, reason: str | None = None, *, attempt: int | None = None
    ) -> "Job":
        """The job in `status`. Ordering is per attempt: (attempt number, rank) never moves back, so a
        new attempt (`attempt` above the current one) may start again at DISPATCHING, while within an
        attempt a status never moves back. A terminal status is final (a task stopping after its job
        was cancelled leaves the job CANCELLED); a REJECTED job is only ever made anew, by a corrected
        message (batchgate.domain.corrections), never moved."""
        number = self.attempt_number if attempt is None else attempt
        if self.status.is_terminal or (number, status.rank) < (self.attempt_number, self.status.rank):
            return self
        return self._replace(
            status=status, updated_at=at, reason=stored_text(reason) if reason else self.reason
        )

    def to_item(self) -> dict[str, Any]:
        """The stored item. The current attempt's essentials are copied to the top level so that ops
        reading the table in the console see them without opening the attempts list."""
        item: dict[str, Any] = {
            "job_id": self.job_id,
            "batch": self.batch,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "message_id": self.message_id,
            "arguments": list(self.arguments),
            "environment": dict(self.environment),
            "priority": self.priority,
            "attempt": self.attempt_number,
            "attempts": [attempt.to_item() for attempt in self.attempts],
            "revision": self.revision,
        }
        optional: dict[str, Any] = {
            "idempotency_key": self.idempotency_key,
            "deadline": self.deadline,
            "strategy_preference": self.strategy_preference,
            "reason": self.reason,
            "raw_message": self.raw_message,
            "plan": self.plan.to_item() if self.plan else None,
            "submitted_at": self.submitted_at,
            "tenant": self.tenant,
            "rejections": [rejection.to_item() for rejection in self.rejections] or None,
            "schedule": self.schedule,
            "scheduled_time": self.scheduled_time,
        }
        current = self.attempt
        if current is not None:
            optional.update(
                strategy=current.strategy,
                strategy_reason=self.plan.reason if self.plan else None,
                task_arn=current.task_arn,
                timeline=dict(current.timeline) or None,
                exit_code=current.exit_code,
                stop_code=current.stop_code,
                stopped_reason=current.stopped_reason,
                log_group=current.log_group,
                log_stream=current.log_stream,
                note=current.note,
            )
        item.update({key: value for key, value in optional.items() if value is not None})
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Job":
        plan = item.get("plan")
        return cls(
            job_id=item["job_id"],
            batch=item["batch"],
            status=JobStatus(item["status"]),
            created_at=item["created_at"],
            updated_at=item["updated_at"],
            expires_at=int(item["expires_at"]),
            message_id=item["message_id"],
            arguments=tuple(item.get("arguments", ())),
            environment=dict(item.get("environment", {})),
            idempotency_key=item.get("idempotency_key"),
            priority=int(item.get("priority", 0)),
            deadline=item.get("deadline"),
            strategy_preference=item.get("strategy_preference"),
            reason=item.get("reason"),
            raw_message=item.get("raw_message"),
            plan=LaunchPlan.from_item(plan) if plan else None,
            attempts=tuple(Attempt.from_item(attempt) for attempt in item.get("attempts", ())),
            revision=int(item.get("revision", 0)),
            submitted_at=item.get("submitted_at"),
            tenant=item.get("tenant"),
            rejections=tuple(Rejection.from_item(rejection) for rejection in item.get("rejections", ())),
            schedule=item.get("schedule"),
            scheduled_time=item.get("scheduled_time"),
        )


def attempt_environment(job: Job, number: int) -> dict[str, str]:
    """The environment batchgate gives attempt `number` of a job, wherever it runs (a RunTask's
    container overrides, a warm pool's child): which job and attempt it is, then the message's allowed
    variables (the catalog refuses BATCHGATE_* names there, so they never override these)."""
    return {
        "BATCHGATE_JOB_ID": job.job_id,
        "BATCHGATE_ATTEMPT": str(number),
        "BATCHGATE_BATCH": job.batch,
        **dict(sorted(job.environment.items())),
    }
