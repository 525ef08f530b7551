"""What ops see of a job: its phases with durations, how it ended in plain words, and where its logs are.

Pure functions of a `Job` (and, for running jobs, the current time): the CLI renders them, the tests
check them with hand-computed numbers. No AWS calls here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from batchgate.domain.batch_slots import is_waiting_note
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso, parse_iso
from batchgate.domain.latency_sketch import start_seconds_of
from batchgate.domain.masking import masked_environment, masked_message
from batchgate.domain.pools import HEARTBEAT_SECONDS, PoolTask
from batchgate.domain.retry_policy import DEFAULT_POLICY, RETRY, RetryPolicy, deciding_rule, was_timed_out
from batchgate.domain.warm import NOT_PICKED_UP, OFFERED, POOL_TASK_STOPPED, WARM

# Timeline phases in lifecycle order: (key, label, what the time since the previous phase was spent on).
# "submitted" (the submit message's send, when known), "queued" (its receipt by dispatch, shown as
# "received"; the key stays for --json readers) and "dispatched" come from the job and the attempt; the
# rest from the task's own timestamps (task_events.TIMELINE_FIELDS). A WARM attempt has "offered" (sent
# to the pool's work queue), then the worker's claim as "started" and its report of the end as "stopped".
PHASES: tuple[tuple[str, str, str], ...] = (
    ("submitted", "submitted", "sending the submit message"),
    ("queued", "received", "waiting in the jobs queue"),
    ("dispatched", "dispatched", "waiting for dispatch"),
    (OFFERED, "offered", "sending the offer to the pool's work queue"),
    ("created", "task created", "RunTask"),
    ("pull_started", "image pull started", "provisioning (capacity, network interface)"),
    ("pull_stopped", "image pulled", "pulling the container image"),
    ("started", "started", "starting the container"),
    ("stopping", "stopping", "running"),
    ("stopped", "stopped", "running and stopping"),
)
# What the time before a WARM attempt's phase was spent on, where it differs from a task's.
WARM_SPENT_ON: dict[str, str] = {
    "started": "waiting for a warm worker to claim the offer",
    "stopped": "running",
}

STOP_CODES: dict[str, str] = {
    "TaskFailedToStart": "ECS could not start the task; the batch's command never ran.",
    "EssentialContainerExited": "The batch's container exited, so ECS stopped the task.",
    "UserInitiated": "The task was stopped on request (StopTask: `batchgate cancel`, a timeout or a person).",
    "ServiceSchedulerInitiated": "An ECS service scheduler stopped the task (unexpected for a job).",
    "SpotInterruption": (
        "Fargate Spot took the capacity back (2-minute warning); the job did not fail by itself. "
        "Retrying, or running it on FARGATE, usually succeeds."
    ),
    "TerminationNotice": "The capacity under the task was being retired (maintenance or termination).",
    NOT_PICKED_UP: (
        "No warm worker claimed the offer within the pool's offer_seconds (the pool was full, closed, or "
        "its heartbeats were out of date), so nothing ran on the pool; the next attempt went to ECS at "
        "once. An attempt that never ran does not count against the batch's max_attempts."
    ),
    POOL_TASK_STOPPED: (
        "The warm pool task running the job stopped (Spot interruption, scale-in, a deployment, a crash) "
        "or stopped answering (its heartbeat went stale or no longer listed the job) before the job "
        "ended; the job did not fail by itself, and the retry policy runs it again on ECS."
    ),
}
# A WARM attempt's UserInitiated stop is the worker's, not a StopTask: the pool task keeps running.
WARM_USER_INITIATED = (
    "The warm worker stopped the job's process on request (`batchgate cancel`, a timeout); its pool task "
    "kept running."
)

# Substrings of stoppedReason / container reason / dispatch error, in order of precedence.
REASON_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "CannotPullContainerError",
        "The container image could not be pulled: wrong image or tag, image deleted, no network path to "
        "the registry (private subnet without NAT gateway or VPC endpoints, or no public IP), or the "
        "task execution role lacks ECR permissions.",
    ),
    (
        "ResourceInitializationError",
        "ECS could not prepare the task before starting the container: typically a secret or SSM "
        "parameter it could not read, a log group it could not use, or no network path to AWS APIs.",
    ),
    (
        "OutOfMemory",
        "The container used more memory than the task allows and was killed. Raise the batch's memory "
        "in the catalog or make the command use less.",
    ),
    (
        "CannotStartContainerError",
        "The container runtime could not start the container: check the image's entrypoint and the "
        "command and arguments.",
    ),
    (
        "CannotCreateContainerError",
        "The container runtime could not create the container (often a bad task definition setting).",
    ),
    ("ContainerRuntimeError", "The container runtime failed; usually transient, a retry often succeeds."),
    (
        "Timeout waiting for network interface provisioning",
        "The task's network interface could not be set up in time (subnet out of IP addresses, or an "
        "ENI quota); usually transient.",
    ),
    (
        "RESOURCE:",
        "ECS had no capacity for the task's CPU or memory at dispatch time.",
    ),
    (
        "Capacity is unavailable",
        "The capacity provider had no capacity at dispatch time (common for Fargate Spot).",
    ),
    (
        "is not authorized to perform",
        "An IAM role lacks a permission; the full message names the role and the action.",
    ),
    ("AccessDenied", "An IAM role lacks a permission; the full message names the role and the action."),
    (
        "Your Spot Task was interrupted",
        "Fargate Spot took the capacity back; the job did not fail by itself.",
    ),
)

EXIT_CODES: dict[int, str] = {
    0: "The command finished successfully.",
    1: "The batch's command failed (exit code 1): its logs say why.",
    2: "The batch's command refused its arguments (exit code 2, usually a usage error): check the arguments.",
    126: "The command could not be executed (exit code 126: not executable or permission denied).",
    127: "The command was not found in the image (exit code 127): check the catalog's command.",
    134: "The command aborted (exit code 134, SIGABRT).",
    137: (
        "The container was killed (exit code 137, SIGKILL): most often it ran out of memory; after a stop "
        "request it means the command did not exit within the stop timeout after SIGTERM."
    ),
    139: "The command crashed (exit code 139, segmentation fault).",
    143: "The command exited on SIGTERM (exit code 143): the task was asked to stop.",
}

STATUS_MEANINGS: dict[JobStatus, str] = {
    JobStatus.SUBMITTED: "Received; waiting for dispatch to launch it.",
    JobStatus.DISPATCHING: "Dispatch is launching its task (RunTask not yet confirmed).",
    JobStatus.DISPATCHED: "RunTask accepted; waiting for the task's first state change.",
    JobStatus.PROVISIONING: "ECS is finding capacity and setting up the network.",
    JobStatus.PENDING: "ECS is pulling the image and preparing the container.",
    JobStatus.RUNNING: "The batch's command is running.",
    JobStatus.STOPPING: "The task is stopping.",
    JobStatus.RETRYING: "An attempt failed and the retry policy gave the job another one; it is queued.",
    JobStatus.RETRYING: "The attempt failed; the retry policy gave it another attempt, due after a back-off.",
    JobStatus.SUCCEEDED: "The batch's command exited 0.",
    JobStatus.FAILED: "The job ended without success.",
    JobStatus.TIMED_OUT: "The job ran longer than its batch allows and was stopped.",
    JobStatus.CANCELLED: "The job was cancelled.",
    JobStatus.REJECTED: "The submit message was refused; no task was started.",
}


def status_meaning(status: JobStatus) -> str:
    return STATUS_MEANINGS.get(status, f"The job is {status.value}.")


@dataclass(frozen=True)
class Phase:
    """One point of an attempt's timeline; `duration` is the time since the previous phase shown."""

    key: str
    label: str
    at: str
    duration: float | None
    spent_on: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.key,
            "label": self.label,
            "at": self.at,
            "seconds_since_previous": self.duration,
            "spent_on": self.spent_on,
        }


@dataclass(frozen=True)
class Outcome:
    """How an attempt (or a job without attempts) ended, in plain words."""

    headline: str
    explanations: tuple[str, ...]
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "headline": self.headline,
            "explanations": list(self.explanations),
            "exit_code": self.exit_code,
            "stop_code": self.stop_code,
            "stopped_reason": self.stopped_reason,
        }


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (parse_iso(end) - parse_iso(start)).total_seconds()


def phases(job: Job, attempt: Attempt) -> list[Phase]:
    """The attempt's timeline in lifecycle order, each with the time since the previous known phase.

    The first attempt starts at "submitted" (the send of the submit message, when known), then "queued"
    (its receipt: the job's creation); a later attempt at its own dispatch. Missing phases are skipped (a
    task that failed to start has no "started"); a negative duration (clock skew between SQS, dispatch
    and ECS) is shown as 0.
    """
    times: dict[str, str] = {"dispatched": attempt.dispatched_at, **attempt.timeline}
    if attempt.number == 1 or len(job.attempts) <= 1:
        times["queued"] = job.created_at
        if job.submitted_at:
            times["submitted"] = job.submitted_at
    result: list[Phase] = []
    previous: str | None = None
    warm = attempt.strategy == WARM
    for key, label, task_spent_on in PHASES:
        at = times.get(key)
        if not at:
            continue
        spent_on = WARM_SPENT_ON.get(key, task_spent_on) if warm else task_spent_on
        duration = seconds_between(previous, at)
        result.append(
            Phase(
                key=key,
                label=label,
                at=at,
                duration=None if duration is None else max(duration, 0.0),
                spent_on=spent_on if previous is not None else None,
            )
        )
        previous = at
    return result


def start_latency(attempt: Attempt | None, submitted_at: str | None = None) -> float | None:
    """An attempt's start latency as the history counts it (`start_seconds_of`): for the job's first
    attempt, the submit message's send (`submitted_at`, when known) -> container started; otherwise
    task created -> container started (ECS's share, the StartLatency metric's measure), or for a WARM
    attempt offered -> claimed."""
    if attempt is None:
        return None
    return start_seconds_of(attempt, submitted_at)


def queue_wait(job: Job) -> float | None:
    """Submit message sent -> received by dispatch (the job's creation), never negative (SQS's clock
    against the function's); None when the send time is not known."""
    waited = seconds_between(job.submitted_at, job.created_at)
    return None if waited is None else max(waited, 0.0)


def time_to_start(job: Job, attempt: Attempt | None) -> float | None:
    """Sent (received, for a job stored without its send time; or, for a later attempt, dispatched) ->
    container started: what the submitter waited."""
    if attempt is None:
        return None
    begin = (job.submitted_at or job.created_at) if attempt.number == 1 else attempt.dispatched_at
    return seconds_between(begin, attempt.timeline.get("started"))


def run_time(attempt: Attempt | None, now: datetime | None = None) -> float | None:
    """Container started -> task stopped; for a task still running, started -> `now` if given."""
    if attempt is None or not attempt.timeline.get("started"):
        return None
    end = attempt.timeline.get("stopped") or attempt.timeline.get("execution_stopped")
    if end is None:
        if now is None or attempt.last_status in ("STOPPED", "DELETED"):
            return None
        end = iso(now)
    return seconds_between(attempt.timeline["started"], end)


def explain_reason(text: str | None) -> list[str]:
    """Plain explanations of the known causes mentioned in a stop reason or error text."""
    if not text:
        return []
    found: list[str] = []
    for marker, meaning in REASON_PATTERNS:
        if marker.lower() in text.lower() and meaning not in found:
            found.append(meaning)
    return found


def explain_exit_code(exit_code: int | None, stop_code: str | None = None) -> str | None:
    if exit_code is None:
        return None
    if exit_code == 137 and stop_code in ("UserInitiated", "SpotInterruption", "TerminationNotice"):
        return (
            "The container was killed (exit code 137, SIGKILL) after not exiting within the stop "
            "timeout that followed the stop request."
        )
    known = EXIT_CODES.get(exit_code)
    if known is not None:
        return known
    if exit_code > 128:
        return f"The command was killed by signal {exit_code - 128} (exit code {exit_code})."
    return f"The batch's command failed (exit code {exit_code}): its logs say why."


def explain_stop_code(attempt: Attempt) -> str | None:
    if attempt.stop_code == "UserInitiated" and attempt.strategy == WARM:
        return WARM_USER_INITIATED
    if attempt.stop_code:
        return STOP_CODES.get(attempt.stop_code, f"ECS stop code {attempt.stop_code}.")
    return None


def outcome(job: Job, attempt: Attempt | None = None) -> Outcome:
    """How the job (or one of its attempts) ended, or where it is now, in plain words."""
    current = job.attempt
    attempt = attempt if attempt is not None else current
    if attempt is None:  # rejected, cancelled or still waiting before any attempt
        lines = [status_meaning(job.status)]
        if job.reason:
            lines.append(f"Reason: {job.reason}")
        return Outcome(headline=_headline(job.status.value, job.reason), explanations=tuple(lines))

    is_current = current is not None and attempt.number == current.number
    explanations: list[str] = []
    if not is_current:
        explanations.append(f"Attempt {attempt.number} was followed by attempt {attempt.number + 1}.")
    elif not job.status.is_terminal or job.status in (JobStatus.TIMED_OUT, JobStatus.CANCELLED):
        explanations.append(status_meaning(job.status))
        if job.reason and (job.status.is_terminal or job.status is JobStatus.RETRYING):
            explanations.append(f"Reason: {job.reason}")
    stop_meaning = explain_stop_code(attempt)
    if stop_meaning:
        explanations.append(stop_meaning)
    exit_meaning = explain_exit_code(attempt.exit_code, attempt.stop_code)
    if exit_meaning and attempt.stop_code != "TaskFailedToStart":
        explanations.append(exit_meaning)
    for text in (attempt.stopped_reason, attempt.container_reason, attempt.error):
        for meaning in explain_reason(text):
            if meaning not in explanations:
                explanations.append(meaning)
    if attempt.error and not explain_reason(attempt.error):
        explanations.append(f"Dispatch error: {attempt.error}")
    if attempt.note:
        explanations.append(_note_meaning(attempt.note))
    label = job.status.value if is_current else f"attempt {attempt.number}"
    return Outcome(
        headline=_headline(label, _attempt_summary(attempt)),
        explanations=tuple(explanations),
        exit_code=attempt.exit_code,
        stop_code=attempt.stop_code,
        stopped_reason=attempt.stopped_reason,
    )


def retry_cause(job: Job, attempt: Attempt, policy: RetryPolicy) -> str | None:
    """Why `attempt` was followed by another, by `policy` (the batch's, from today's catalog): the retry
    rule that matched and what of the attempt it matched on; None for the last attempt, or when no RETRY
    rule matches (a lost launch sent again, an offer no warm worker claimed)."""
    if attempt.number >= len(job.attempts):
        return None
    seen = (
        f"exit code {'-' if attempt.exit_code is None else attempt.exit_code}, "
        f"stop code {attempt.stop_code or '-'}"
    )
    if was_timed_out(attempt):
        return (
            f"timed out, and the batch's retry policy has retry_timeouts ({seen})"
            if policy.retry_timeouts
            else None
        )
    found = deciding_rule(attempt, policy)
    if found is None or found.rule.action != RETRY:
        return None
    return f"{found.source} rule {found.rule.describe()} ({seen})"


def _note_meaning(note: str) -> str:
    if is_waiting_note(note):
        return f"The batch runs its max_running jobs already: this launch waits ({note})."
    return f"Sweep: {note}"


def _headline(label: str, detail: str | None) -> str:
    return f"{label}: {detail}" if detail else label


def _attempt_summary(attempt: Attempt) -> str | None:
    parts: list[str] = []
    if attempt.exit_code is not None:
        parts.append(f"exit code {attempt.exit_code}")
    if attempt.stop_code:
        parts.append(attempt.stop_code)
    if attempt.stopped_reason:
        parts.append(attempt.stopped_reason)
    elif attempt.container_reason:
        parts.append(attempt.container_reason)
    elif attempt.error and not attempt.task_arn:
        parts.append(attempt.error)
    elif attempt.note and not attempt.task_arn and is_waiting_note(attempt.note):
        parts.append(attempt.note)
    return "; ".join(parts) if parts else None


def log_console_url(region: str, group: str, stream: str) -> str:
    """The CloudWatch console page of one log stream.

    The console's fragment needs each name URL-encoded and then its '%' written as '$25'
    ('/' becomes '$252F').
    """

    def escape(value: str) -> str:
        return quote(value, safe="").replace("%", "$25")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{escape(group)}/log-events/{escape(stream)}"
    )


def task_console_url(region: str, task_arn: str) -> str | None:
    """The ECS console page of a task (arn:aws:ecs:<region>:<account>:task/<cluster>/<id>)."""
    resource = task_arn.split(":", 5)[-1]
    parts = resource.split("/")
    if len(parts) != 3:
        return None
    _, cluster, task_id = parts
    return (
        f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{quote(cluster, safe='')}"
        f"/tasks/{quote(task_id, safe='')}/configuration?region={region}"
    )


def format_duration(seconds: float | None) -> str:
    """12.3s, 5m 12s, 2h 03m, 3d 04h; "-" when unknown."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def job_row(job: Job, now: datetime | None = None) -> dict[str, Any]:
    """One line of `batchgate jobs`."""
    attempt = job.attempt
    return {
        "job_id": job.job_id,
        "batch": job.batch,
        "tenant": job.tenant,
        "status": job.status.value,
        "strategy": attempt.strategy if attempt else (job.plan.strategy if job.plan else None),
        "queued": job.created_at,
        "attempts": len(job.attempts),
        "start_latency_seconds": start_latency(attempt, job.submitted_at),
        "run_time_seconds": run_time(attempt, now),
        "exit_code": attempt.exit_code if attempt else None,
        "reason": waiting if (waiting := _waiting(job)) else job.reason,
    }


def _waiting(job: Job) -> str | None:
    """The note "waiting: 5/5 running" while the job's launch waits for a slot of its batch's max_running."""
    attempt = job.attempt
    if job.status is JobStatus.DISPATCHING and attempt is not None and attempt.task_arn is None:
        return attempt.note if attempt.note and is_waiting_note(attempt.note) else None
    return None


def warm_document(
    job: Job, attempt: Attempt, heartbeats: Mapping[str, PoolTask | None], now: datetime | None
) -> dict[str, Any] | None:
    """A WARM attempt's pool, worker task, slot, image digest, offer and claim, and its task's heartbeat
    (`heartbeats` by task ARN, as read for the attempt: None when the pool table has no item for the
    task; a task missing from the mapping was not read). None for another strategy."""
    if attempt.strategy != WARM:
        return None
    return {
        "pool": attempt.capacity_provider,
        "task_arn": attempt.task_arn,
        "slot": attempt.slot,
        "image_digest": attempt.image_digest,
        "offered_at": attempt.timeline.get(OFFERED),
        "claimed_at": attempt.timeline.get("started") if attempt.task_arn else None,
        "heartbeat": heartbeat_document(job, attempt, heartbeats, now),
    }


def heartbeat_document(
    job: Job, attempt: Attempt, heartbeats: Mapping[str, PoolTask | None], now: datetime | None
) -> dict[str, Any] | None:
    """The attempt's pool task heartbeat: `state` fresh, stale or missing, its time and age, whether it
    lists this attempt and whether the task is stopping. None when it was not read."""
    if attempt.task_arn is None or attempt.task_arn not in heartbeats:
        return None
    heartbeat = heartbeats[attempt.task_arn]
    if heartbeat is None:
        return {"state": "missing", "at": None, "age_seconds": None, "lists_job": False, "stopping": False}
    fresh = now is not None and heartbeat.is_fresh(now)
    return {
        "state": "fresh" if fresh else "stale",
        "at": heartbeat.heartbeat_at,
        "age_seconds": seconds_between(heartbeat.heartbeat_at, iso(now)) if now is not None else None,
        "lists_job": heartbeat.runs(job.job_id, attempt.number),
        "stopping": heartbeat.stopping,
    }


def heartbeat_words(heartbeat: Mapping[str, Any]) -> str:
    """`fresh, 2.0s ago, lists the job`: a heartbeat document in words."""
    if heartbeat["state"] == "missing":
        return "missing: the pool table has no item for this task (it stopped, or never wrote one)"
    age = format_duration(heartbeat["age_seconds"])
    words = [f"{heartbeat['state']}, {age} ago (at {heartbeat['at']}, every {HEARTBEAT_SECONDS:g}s)"]
    words.append("lists the job" if heartbeat["lists_job"] else "does not list the job")
    if heartbeat["stopping"]:
        words.append("task stopping")
    return ", ".join(words)


def attempt_document(
    job: Job,
    attempt: Attempt,
    region: str,
    now: datetime | None = None,
    heartbeats: Mapping[str, PoolTask | None] | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "number": attempt.number,
        "strategy": attempt.strategy,
        "capacity_provider": attempt.capacity_provider,
        "task_arn": attempt.task_arn,
        "last_status": attempt.last_status,
        "dispatched_at": attempt.dispatched_at,
        "phases": [phase.to_dict() for phase in phases(job, attempt)],
        "start_latency_seconds": start_latency(attempt, job.submitted_at),
        "time_to_start_seconds": time_to_start(job, attempt),
        "run_time_seconds": run_time(attempt, now),
        "outcome": outcome(job, attempt).to_dict(),
        "retried_by": retry_cause(job, attempt, policy),
        "launch_failures": [dict(failure) for failure in attempt.launch_failures],
        "launch_tries": [dict(entry) for entry in attempt.tries],
        "error": attempt.error,
        "note": attempt.note,
        "log_group": attempt.log_group,
        "log_stream": attempt.log_stream,
        "log_console_url": (
            log_console_url(region, attempt.log_group, attempt.log_stream)
            if attempt.log_group and attempt.log_stream
            else None
        ),
        "task_console_url": task_console_url(region, attempt.task_arn) if attempt.task_arn else None,
        "warm": warm_document(job, attempt, heartbeats or {}, now),
    }
    return document


def job_document(
    job: Job,
    region: str,
    now: datetime | None = None,
    heartbeats: Mapping[str, PoolTask | None] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    reveal_environment: bool = False,
) -> dict[str, Any]:
    """Everything `batchgate show` says about a job, as plain data (its `--json` output); `heartbeats`:
    the pool tasks' heartbeat items read for its running WARM attempts, by task ARN. Environment
    values are masked, in the raw messages too, unless `reveal_environment`."""
    plan = job.plan
    reveal = reveal_environment
    return {
        "job_id": job.job_id,
        "batch": job.batch,
        "tenant": job.tenant,
        "status": job.status.value,
        "status_meaning": status_meaning(job.status),
        "reason": job.reason,
        "submitted_at": job.submitted_at,
        "created_at": job.created_at,
        "queue_wait_seconds": queue_wait(job),
        "updated_at": job.updated_at,
        "message_id": job.message_id,
        "idempotency_key": job.idempotency_key,
        "arguments": list(job.arguments),
        "environment": shown_environment(job, reveal_environment=reveal),
        "priority": job.priority,
        "deadline": job.deadline,
        "strategy_preference": job.strategy_preference,
        "strategy": plan.strategy if plan else None,
        "strategy_reason": plan.reason if plan else None,
        "fallbacks": list(plan.fallbacks) if plan else [],
        "cpu": plan.cpu if plan and plan.cpu else None,
        "memory": plan.memory if plan and plan.memory else None,
        "outcome": outcome(job).to_dict(),
        "attempts": [
            attempt_document(job, attempt, region, now, heartbeats, policy=policy) for attempt in job.attempts
        ],
        "raw_message": shown_message(job.raw_message, reveal_environment=reveal),
        "rejections": [
            {
                "message_id": rejection.message_id,
                "received_at": rejection.received_at,
                "rejected_at": rejection.rejected_at,
                "reason": rejection.reason,
                "raw_message": shown_message(rejection.raw_message, reveal_environment=reveal),
            }
            for rejection in job.rejections
        ],
    }


def shown_message(raw_message: str | None, *, reveal_environment: bool = False) -> str | None:
    """A stored raw message as shown: without environment values unless `reveal_environment` (dispatch
    stores them masked; an item stored before it did may still hold them)."""
    if raw_message is None or reveal_environment:
        return raw_message
    return masked_message(raw_message)


def shown_environment(job: Job, *, reveal_environment: bool = False) -> dict[str, str]:
    return dict(job.environment) if reveal_environment else masked_environment(job.environment)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def is_duration(text: str) -> bool:
    """ "30m", "6h", "7d": a duration as parse_moment takes it (not a date)."""
    return _RELATIVE.match(text.strip().lower()) is not None


def parse_moment(text: str, now: datetime, *, ahead: bool = False) -> datetime:
    """A point in time from "2h", "30m", "7d", "1w" (ago, or from now when `ahead`), "now", or an ISO
    8601 date or date-time (without an offset it is UTC). Raises ValueError with a readable message."""
    try:
        return _moment(text, now, ahead=ahead)
    except OverflowError:  # a duration, or an offset, that leaves the calendar datetime knows
        raise ValueError(f"{text!r} reaches beyond the years 1 to 9999") from None


def _moment(text: str, now: datetime, *, ahead: bool) -> datetime:
    value = text.strip()
    if value.lower() == "now":
        return now
    match = _RELATIVE.match(value.lower())
    if match:
        span = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        return now + span if ahead else now - span
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use a duration such as 30m, 2h, 7d, 1w, or an ISO 8601 date or "
            "date-time such as 2026-11-27 or 2026-11-27T02:00:00Z"
        ) from None
    moment = moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)  # every caller works in UTC
