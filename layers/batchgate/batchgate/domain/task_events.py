"""ECS "Task State Change" events and what they do to a job.

Events arrive at least once and in any order. Each carries `detail.version`, which grows with every
change of the task, and the task's timestamps so far; so applying only events newer than the attempt's
last applied version, and never moving a status back, gives the same job whatever the order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TYPE_CHECKING, Any

from batchgate.adapters.ecs import LogPointer
from batchgate.domain.jobs import Attempt, Job, JobStatus, is_job_id, iso, parse_iso
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


@dataclass(frozen=True)
class ContainerState:
    name: str
    last_status: str | None
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class TaskStateChange:
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
    def from_event(cls, event: Mapping[str, Any]) -> TaskStateChange:
        """Read an EventBridge event; unknown fields are ignored, missing essentials are an error."""
        if event.get("detail-type") != TASK_STATE_CHANGE or event.get("source") != "aws.ecs":
            raise InvalidTaskEvent(
                f"expected source aws.ecs / {TASK_STATE_CHANGE}, "
                f"got {event.get('source')!r} / {event.get('detail-type')!r}"
            )
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise InvalidTaskEvent("event has no detail object")
        try:
            task_arn = str(detail["taskArn"])
            last_status = str(detail["lastStatus"])
            version = int(detail["version"])
        except (KeyError, TypeError, ValueError, OverflowError) as error:  # int(inf): OverflowError
            raise InvalidTaskEvent(f"task event lacks taskArn, lastStatus or version: {error}") from error
        if not isinstance(detail["taskArn"], str) or not isinstance(detail["lastStatus"], str):
            raise InvalidTaskEvent("task event's taskArn and lastStatus must be strings")
        try:
            return cls._read(event, detail, task_arn, last_status, version)
        except (TypeError, ValueError, AttributeError, OverflowError) as error:
            # A field of the wrong shape: refused like a missing one, never a crash of the handler.
            raise InvalidTaskEvent(f"task event has a malformed field: {error}") from error

    @classmethod
    def _read(
        cls,
        event: Mapping[str, Any],
        detail: Mapping[str, Any],
        task_arn: str,
        last_status: str,
        version: int,
    ) -> TaskStateChange:
        started_by = detail.get("startedBy")
        if started_by is not None and not isinstance(started_by, str):
            raise TypeError("startedBy is not a string")
        containers = tuple(
            ContainerState(
                name=str(container.get("name", "")),
                last_status=container.get("lastStatus"),
                exit_code=int(container["exitCode"]) if container.get("exitCode") is not None else None,
                reason=container.get("reason"),
            )
            for container in detail.get("containers", [])
            if isinstance(container, Mapping)
        )
        return cls(
            task_arn=task_arn,
            cluster_arn=str(detail.get("clusterArn", "")),
            started_by=started_by,
            last_status=last_status,
            version=version,
            time=str(event.get("time") or detail.get("updatedAt") or ""),
            task_definition_arn=detail.get("taskDefinitionArn"),
            capacity_provider=detail.get("capacityProviderName"),
            launch_type=detail.get("launchType"),
            attempt=_attempt_from_overrides(detail.get("overrides")),
            timestamps={
                phase: str(detail[field]) for field, phase in TIMELINE_FIELDS.items() if detail.get(field)
            },
            containers=containers,
            stop_code=detail.get("stopCode"),
            stopped_reason=detail.get("stoppedReason"),
            group=_optional_string(detail, "group"),
        )


def _optional_string(detail: Mapping[str, Any], name: str) -> str | None:
    value = detail.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
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
    """The attempt this task belongs to: by the attempt number in its overrides, else by task ARN,
    else the current attempt if it has no task yet (an event that beat dispatch's own write)."""
    if change.attempt is not None:
        return job.attempt_by_number(change.attempt)
    by_task = next((a for a in job.attempts if a.task_arn == change.task_arn), None)
    if by_task is not None:
        return by_task
    current = job.attempt
    return current if current is not None and current.task_arn is None else None


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
    return ": ".join(parts) if parts else "task stopped without an exit code"


def apply_task_event(
    job: Job,
    change: TaskStateChange,
    container_name: str | None,
    log_pointer: LogPointer | None = None,
    spec: BatchSpec | None = None,
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
    updated = replace(
        attempt,
        task_arn=change.task_arn,
        last_status=change.last_status,
        event_version=change.version,
        timeline={**attempt.timeline, **change.timestamps},
        note=None,
    )
    if log_pointer is not None and updated.log_group is None:
        updated = replace(updated, log_group=log_pointer.group, log_stream=log_pointer.stream)
    status = LAST_STATUS_TO_JOB.get(change.last_status)
    reason: str | None = None
    if change.is_stopped:
        status, reason = stopped_status(change, container)
        updated = replace(
            updated,
            exit_code=container.exit_code if container else None,
            container_reason=container.reason if container else None,
            stop_code=change.stop_code,
            stopped_reason=change.stopped_reason,
        )
    job = replace(job.with_attempt(updated), updated_at=latest_moment(change) or job.updated_at)
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
    return job.moved_to(status, job.updated_at, reason)
