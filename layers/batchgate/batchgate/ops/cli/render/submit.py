"""`batchgate submit`, `cancel` and `retry`: what each did, as a job id with a few words, or as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from batchgate.domain.jobs import Job
from batchgate.domain.pools import HEARTBEAT_SECONDS
from batchgate.domain.warm import is_warm
from batchgate.ops.cli.render.text import plain, status_text


@dataclass(frozen=True)
class Submitted:
    job_id: str
    message_id: str
    batch: str
    idempotency_key: str | None
    derived: bool  # the job id comes from the SQS message id (no idempotency key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "message_id": self.message_id,
            "batch": self.batch,
            "idempotency_key": self.idempotency_key,
            "job_id_from": "message_id" if self.derived else "idempotency_key",
        }


@dataclass(frozen=True)
class Cancelled:
    job: Job
    again: bool  # the job was CANCELLED already: the stop request was repeated

    @property
    def task_arn(self) -> str | None:
        attempt = self.job.attempt
        return attempt.task_arn if attempt is not None else None

    @property
    def stopped_by(self) -> str | None:
        """Who stops what runs: ECS (StopTask of the job's task) or, for a WARM attempt, the pool's
        worker (the job's process only: the pool task runs other jobs); None when nothing runs."""
        if self.task_arn is None:
            return None
        return "worker" if is_warm(self.job) else "ecs"

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job.job_id,
            "status": self.job.status.value,
            "reason": self.job.reason,
            "task_arn": self.task_arn,
            "stopped_by": self.stopped_by,
            "was_already_cancelled": self.again,
        }


@dataclass(frozen=True)
class Retried:
    job_id: str
    retry_of: str
    idempotency_key: str
    message_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "retry_of": self.retry_of,
            "idempotency_key": self.idempotency_key,
            "message_id": self.message_id,
        }


def render_submitted(console: Console, submitted: Submitted, follow_command: str) -> None:
    """`follow_command`: the `batchgate show` of the job, with the target options the submit was given."""
    console.print(Text(submitted.job_id, style="bold"))
    console.print(plain(f"submitted {submitted.batch} (SQS message {submitted.message_id})"), style="dim")
    if submitted.derived:
        console.print(
            plain(
                "no --idempotency-key: the job id is derived from the SQS message id, so submitting "
                "again creates another job"
            ),
            style="dim",
        )
    console.print(plain(f"follow it with: {follow_command}"), style="dim", soft_wrap=True)


def render_cancelled(console: Console, cancelled: Cancelled) -> None:
    job = cancelled.job
    console.print(Text(job.job_id, style="bold") + Text(" ") + status_text(job.status))
    console.print(plain(job.reason), style="dim")
    task = cancelled.task_arn
    if cancelled.stopped_by == "worker":
        console.print(
            plain(
                f"the worker on pool task {task} stops the job's process at its next heartbeat (within "
                f"{HEARTBEAT_SECONDS:g}s); the pool task keeps running its other jobs"
            ),
            style="dim",
            soft_wrap=True,
        )
    elif job.attempt is not None and is_warm(job):
        console.print(
            plain(f"offered to pool {job.attempt.capacity_provider}, not claimed: no worker will run it"),
            style="dim",
        )
    elif task:
        verb = "asked ECS again to stop" if cancelled.again else "asked ECS to stop"
        console.print(plain(f"{verb} task {task}"), style="dim", soft_wrap=True)
    elif job.attempt is None:
        console.print(plain("no task had started: dispatch will not launch it"), style="dim")


def render_retried(console: Console, retried: Retried) -> None:
    console.print(Text(retried.job_id, style="bold"))
    console.print(
        plain(f"retry of {retried.retry_of} (idempotency key {retried.idempotency_key})"), style="dim"
    )
