"""ECS "Task State Change" events and what they do to a job.

Events arrive at least once and in any order. Each carries `detail.version`, which grows with every
change of the task, and the task's timestamps so far; so applying only events newer than the attempt's
last applied version, and never moving a status back, gives the same job whatever the order.
"""

from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, NamedTuple

from batchgate.adapters.ecs import LogPointer
from batchgate.domain.jobs import Attempt, Job, JobStatus, is_job_id, iso, parse_iso, stored_text
from batchgate.domain.relaunch import with_retry_due
from batchgate.domain.retry_policy import Retry, attempts_never_run, decide

if TYPE_CHECKING:
    from batchgate.domain.catalog import BatchSpec

TASK_STATE_CHANGE = "ECS Task State Change"

# Task timestamps, event field -> timeline phase.
TIMELINE_FIELDS = {
    "createdAt": "created",
    "connectivityAt": "connectivity",
    "pullStartedAt": "pull_started",
    "pullStoppedAt": "pull_stopped",
    "startedAt": "started",
    "stoppingAt": "stopping",
    "executionStoppedAt": "execution_stopped",
    "stoppedAt": "stopped",
}

LAST_STATUS_TO_JOB = {
    "PROVISIONING": JobStatus.PROVISIONING,
    "PENDING": JobStatus.PENDING,
    "ACTIVATING": JobStatus.PENDING,
    "RUNNING": JobStatus.RUNNING,
    "DEACTIVATING": JobStatus.STOPPING,
    "STOPPING": JobStatus.STOPPING,
    "DEPROVISIONING": JobStatus.STOPPING,
}


class InvalidTaskEvent(ValueError):
    """Not an ECS task state change we can read."""


class ContainerState(NamedTuple):
    """A container of a task, as a task state change event reports it."""

    name: str
    last_status: str | None
    exit_code: int | None
    reason: str | None


class TaskStateChange(NamedTuple):
    """An ECS Task State Change event, read and checked."""

    task_arn: str
    cluster_arn: str
    started_by: str | None
    last_status: str
    version: int
    time: str
    task_definition_arn: str | None
    capacity_provider: str | None
    launch_type: str | None
    attempt: int | None
    timestamps: dict[str, str]
    containers: tuple[ContainerState, ...]
    stop_code: str | None
    stopped_reason: str | None
    # The task's group: "service:<name>" for a service's task (a warm pool's), "family:..." otherwise.
    group: str | None = None

    @property
    def job_id(self) -> str | None:
        """The job that started this task, or None for a task batchgate did not start."""
        return self.started_by if is_job_id(self.started_by) else None

    @property
    def is_stopped(self) -> bool:
        return self.last_status in ("STOPPED", "DELETED")

    @property
    def strategy(self) -> str:
        return self.capacity_provider or self.launch_type or "UNKNOWN"

    def container(self, name: str | None) -> ContainerState | None:
        """The batch's container by name; else the first one that reported an exit code."""
        by_name = next((c for c in self.containers if c.name == name), None)
        return by_name or next((c for c in self.containers if c.exit_code is not None), None)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> "TaskStateChange":
        """Read an EventBridge event; unknown fields are ignored, missing essentials are an error, and so
        is a known field of the wrong type or a time that is not ISO 8601: refused here, before anything
        is written, instead of stored and failing a later reader (the history feed reads the timeline)."""
        if event.get("detail-type") != TASK_STATE_CHANGE or event.get("source") != "aws.ecs":
            raise InvalidTaskEvent(
                f"expected source aws.ecs / {TASK_STATE_CHANGE}, "
                f"got {event.get('source')!r} / {event.get('detail-type')!r}"
            )
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise InvalidTaskEvent("event has no detail object")
        missing = [name for name in ("taskArn", "lastStatus", "version") if detail.get(name) is None]
        if missing:
            raise InvalidTaskEvent(f"task event lacks taskArn, lastStatus or version: {', '.join(missing)}")
        try:
            return cls._read(event, detail)
        except (TypeError, ValueError, AttributeError, OverflowError) as error:
            # A field of the wrong shape: refused like a missing one, never a crash of the handler.
            raise InvalidTaskEvent(f"task event has a malformed field: {error}") from error

    @classmethod
    def _read(cls, event: Mapping[str, Any], detail: Mapping[str, Any]) -> "TaskStateChange":
        task_arn = _required_string(detail, "taskArn")
        last_status = _required_string(detail, "lastStatus")
        version = _integer(detail, "version")
        if version is None:
            raise TypeError("version is missing")
        containers = detail.get("containers")
        if containers is not None and not isinstance(containers, list):
            raise TypeError("containers is not a list")
        timestamps = {}
        for field, phase in TIMELINE_FIELDS.items():
            moment = _time(detail, field)
            if moment:
                timestamps[phase] = moment
        return cls(
            task_arn=task_arn,
            cluster_arn=_optional_string(detail, "clusterArn") or "",
            started_by=_optional_string(detail, "startedBy"),
            last_status=last_status,
            version=version,
            time=_time(event, "time") or _time(detail, "updatedAt") or "",
            task_definition_arn=_optional_string(detail, "taskDefinitionArn"),
            capacity_provider=_optional_string(detail, "capacityProviderName"),
            launch_type=_optional_string(detail, "launchType"),
            attempt=_attempt_from_overrides(detail.get("overrides")),
            timestamps=timestamps,
            containers=tuple(_container(container) for container in containers or ()),
            stop_code=_optional_string(detail, "stopCode"),
            stopped_reason=_stored_reason(_optional_string(detail, "stoppedReason")),
            group=_optional_string(detail, "group"),
        )


def _container(container: Any) -> ContainerState:
    if not isinstance(container, Mapping):
        raise TypeError(f"a container is a {type(container).__name__}, not an object")
    return ContainerState(
        name=_optional_string(container, "name") or "",
        last_status=_optional_string(container, "lastStatus"),
        exit_code=_integer(container, "exitCode"),
        reason=_stored_reason(_optional_string(container, "reason")),
    )


def _stored_reason(reason: str | None) -> str | None:
    return stored_text(reason) if reason is not None else None


def _required_string(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} is not a non-empty string")
    return value


def _optional_string(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


def _integer(fields: Mapping[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{name} is not an integer")
    return value


def _time(fields: Mapping[str, Any], name: str) -> str | None:
    """An ISO 8601 time as the event wrote it (None when absent or empty)."""
    value = _optional_string(fields, name)
    if not value:
        return None
    try:
        parse_iso(value)
    except ValueError as error:
        raise ValueError(f"{name} ({value[:64]!r}) is not an ISO 8601 time") from error
    return value


def _attempt_from_overrides(overrides: Any) -> int | None:
    """The attempt number dispatch put in the container environment (BATCHGATE_ATTEMPT)."""
    if not isinstance(overrides, Mapping):
        return None
    for container in overrides.get("containerOverrides", []) or []:
        for variable in container.get("environment", []) or []:
            if variable.get("name") == "BATCHGATE_ATTEMPT":
                try:
                    return int(variable.get("value"))
                except (TypeError, ValueError, OverflowError):
                    return None
    return None


def latest_moment(change: TaskStateChange) -> str | None:
    """When this change happened, in milliseconds like every other time of a job: the latest of the
    event's time (whole seconds in EventBridge) and the task's own timestamps (milliseconds), so a
    job is never shown updated before it stopped."""
    moments = []
    for text in (change.time, *change.timestamps.values()):
        try:
            moment = parse_iso(text)
        except (TypeError, ValueError):
            continue  # a time the event got wrong does not decide when the job changed
        moments.append(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
    return iso(max(moments)) if moments else None


def attempt_for(job: Job, change: TaskStateChange) -> Attempt | None:
    """The attempt this task belongs to: the attempt that recorded this task, found by the attempt
    number in the task's overrides (BATCHGATE_ATTEMPT) or else by task ARN. A task no attempt recorded
    is taken over only by the attempt its overrides name while the job waits for that attempt's task
    (`awaits_task`): an event that beat dispatch's own write of the task ARN, or a warm claim. Any
    other unknown task (a stray one, one of a job that failed or ended at dispatch) changes nothing."""
    if change.attempt is not None:
        attempt = job.attempt_by_number(change.attempt)
        if attempt is None:
            return None
        if attempt.task_arn == change.task_arn or (attempt.task_arn is None and awaits_task(job, attempt)):
            return attempt
        return None
    return next((a for a in job.attempts if a.task_arn is not None and a.task_arn == change.task_arn), None)


def awaits_task(job: Job, attempt: Attempt) -> bool:
    """Whether `attempt` may still record its first task: it is the job's current attempt, has none
    yet, and the job is still being dispatched (DISPATCHING; DISPATCHED for a warm offer, which has no
    task until a worker claims it)."""
    current = job.attempt
    return (
        current is not None
        and current.number == attempt.number
        and attempt.task_arn is None
        and job.status in (JobStatus.DISPATCHING, JobStatus.DISPATCHED)
    )


def stopped_status(change: TaskStateChange, container: ContainerState | None) -> tuple[JobStatus, str | None]:
    """SUCCEEDED only when the batch's container exited 0 on its own: a task stopped by a Spot
    interruption or by a user may exit 0 after handling SIGTERM without having finished its work."""
    finished_by_itself = change.stop_code in (None, "EssentialContainerExited")
    if finished_by_itself and container is not None and container.exit_code == 0:
        return JobStatus.SUCCEEDED, None
    return JobStatus.FAILED, failure_reason(change, container)


def failure_reason(change: TaskStateChange, container: ContainerState | None) -> str:
    parts = []
    if container is not None and container.exit_code is not None:
        parts.append(f"exit code {container.exit_code}")
    if change.stop_code:
        parts.append(change.stop_code)
    if change.stopped_reason:
        parts.append(change.stopped_reason)
    if container is not None and container.reason and container.reason not in parts:
        parts.append(container.reason)
    return stored_text(": ".join(parts)) if parts else "task stopped without an exit code"


def apply_task_event(
    job: Job,
    change: TaskStateChange,
    container_name: str | None,
    log_pointer: LogPointer | None = None,
    spec: "BatchSpec | None" = None,
) -> Job | None:
    """The job after this event, or None when the event changes nothing (duplicate, stale, or for an
    attempt the job does not know).

    With the batch's `spec`, a failed attempt goes through its retry policy
    (batchgate.domain.retry_policy): the job becomes RETRYING instead of FAILED when another attempt
    is due (the caller sends the retry message).
    """
    attempt = attempt_for(job, change)
    if attempt is None or change.version <= attempt.event_version:
        return None
    if attempt.task_arn is not None and attempt.task_arn != change.task_arn:
        return None  # another task claims this attempt: never let it overwrite the recorded one
    container = change.container(container_name)
    updated = attempt._replace(
        task_arn=change.task_arn,
        last_status=change.last_status,
        event_version=change.version,
        timeline={**attempt.timeline, **change.timestamps},
        note=None,
    )
    if log_pointer is not None and updated.log_group is None:
        updated = updated._replace(log_group=log_pointer.group, log_stream=log_pointer.stream)
    status = LAST_STATUS_TO_JOB.get(change.last_status)
    reason: str | None = None
    if change.is_stopped:
        status, reason = stopped_status(change, container)
        updated = updated._replace(
            exit_code=container.exit_code if container else None,
            container_reason=container.reason if container else None,
            stop_code=change.stop_code,
            stopped_reason=change.stopped_reason,
        )
    job = job.with_attempt(updated)._replace(updated_at=latest_moment(change) or job.updated_at)
    current = job.attempt
    if status is None or current is None or current.number != attempt.number:
        return job  # an older attempt's late event: recorded on that attempt only
    if status is JobStatus.FAILED and spec is not None:
        decision = decide(
            current,
            spec,
            job_id=job.job_id,
            failure=reason or "task failed",
            never_run=attempts_never_run(job.attempts),
        )
        reason = decision.reason
        if isinstance(decision, Retry):
            status = JobStatus.RETRYING
            job = with_retry_due(job, job.updated_at, decision.delay_seconds)
    return job.moved_to(status, job.updated_at, reason)
