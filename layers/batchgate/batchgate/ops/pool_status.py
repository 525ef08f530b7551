"""What `batchgate pools` says of each warm pool: its tasks as their heartbeats describe them, its slots,
the jobs in them, the image each task runs, and its work queue's backlog.

`pool_view` is a pure function of the catalog's pool, its heartbeat items (batchgate.domain.pools) and the
queue's backlog; `QueueBacklogs` reads a work queue's depth from SQS and the age of its oldest message
from CloudWatch (the AWS/SQS metric ApproximateAgeOfOldestMessage, when there is a datapoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.catalog import PoolSpec
from batchgate.domain.jobs import Job, parse_iso
from batchgate.domain.pools import PoolTask
from batchgate.domain.warm import WARM

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from batchgate.ops.stack_outputs import AwsSession

# What a pool is, from its heartbeats.
OPEN = "open"
CLOSED = "closed (no task)"
STALE = "stale heartbeats"
# CloudWatch publishes the SQS metrics every minute: the newest datapoint of the last few minutes.
AGE_METRIC_WINDOW = timedelta(minutes=5)


class MetricsClient(Protocol):
    """The CloudWatch call made here (boto3's "cloudwatch" client)."""

    def get_metric_statistics(self, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class QueueBacklog:
    """A work queue's depth: offers waiting, offers received and not yet deleted, and the age of the
    oldest (None: CloudWatch has no recent datapoint)."""

    url: str
    waiting: int
    in_flight: int
    oldest_age_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "waiting": self.waiting,
            "in_flight": self.in_flight,
            "oldest_age_seconds": self.oldest_age_seconds,
        }


class QueueBacklogs:
    """Reads work queues' backlogs: SQS attributes, and CloudWatch for the oldest message's age."""

    def __init__(
        self, sqs: SQSClient, cloudwatch: MetricsClient | None, clock: Callable[[], datetime]
    ) -> None:
        self._sqs = sqs
        self._cloudwatch = cloudwatch
        self._clock = clock

    def backlog(self, url: str) -> QueueBacklog:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        return QueueBacklog(
            url=url,
            waiting=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            oldest_age_seconds=self.oldest_age(url),
        )

    def oldest_age(self, url: str) -> float | None:
        """The newest datapoint of ApproximateAgeOfOldestMessage (Maximum); None without one, or when
        CloudWatch cannot be read (the depth still says what waits)."""
        if self._cloudwatch is None:
            return None
        now = self._clock()
        try:
            response = self._cloudwatch.get_metric_statistics(
                Namespace="AWS/SQS",
                MetricName="ApproximateAgeOfOldestMessage",
                Dimensions=[{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}],
                StartTime=now - AGE_METRIC_WINDOW,
                EndTime=now,
                Period=60,
                Statistics=["Maximum"],
            )
        except (ClientError, BotoCoreError):
            return None
        points = [point for point in response.get("Datapoints", []) if "Maximum" in point]
        if not points:
            return None
        newest = max(points, key=lambda point: point["Timestamp"])
        return float(newest["Maximum"])


@dataclass(frozen=True)
class SlotView:
    """A job in one slot of a pool task."""

    job_id: str
    attempt: int
    slot: int
    started_at: str
    running_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "slot": self.slot,
            "started_at": self.started_at,
            "running_seconds": self.running_seconds,
        }


@dataclass(frozen=True)
class TaskView:
    """One pool task from its heartbeat item: fresh or stale, its slots and jobs, its image and which of
    the pool's batches it serves (a batch it does not list has a newer image than the task's)."""

    task: PoolTask
    heartbeat_age_seconds: float
    fresh: bool
    jobs: tuple[SlotView, ...]
    serves: Mapping[str, bool]

    @property
    def busy(self) -> int:
        return len(self.task.running)

    @property
    def free(self) -> int:
        return self.task.free_slots

    def to_dict(self) -> dict[str, Any]:
        task = self.task
        return {
            "task_arn": task.task_arn,
            "availability_zone": task.availability_zone,
            "heartbeat_at": task.heartbeat_at,
            "heartbeat_age_seconds": self.heartbeat_age_seconds,
            "fresh": self.fresh,
            "stopping": task.stopping,
            "slots": task.slots,
            "busy": self.busy,
            "free": self.free,
            "image": task.image,
            "image_digest": task.image_digest,
            "serves": dict(self.serves),
            "jobs": [job.to_dict() for job in self.jobs],
        }


@dataclass(frozen=True)
class PoolView:
    """A pool: its state, its tasks (fresh first), slots busy and free in its fresh tasks, its backlog."""

    pool: PoolSpec
    batches: tuple[str, ...]
    state: str
    tasks: tuple[TaskView, ...]
    backlog: QueueBacklog | None

    @property
    def fresh_tasks(self) -> tuple[TaskView, ...]:
        return tuple(task for task in self.tasks if task.fresh)

    @property
    def busy(self) -> int:
        return sum(task.busy for task in self.fresh_tasks)

    @property
    def free(self) -> int:
        return sum(task.free for task in self.fresh_tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool.name,
            "state": self.state,
            "batches": list(self.batches),
            "slots_per_task": self.pool.slots,
            "tasks_fresh": len(self.fresh_tasks),
            "slots_busy": self.busy,
            "slots_free": self.free,
            "tasks": [task.to_dict() for task in self.tasks],
            "queue": self.backlog.to_dict() if self.backlog is not None else None,
        }


def pool_view(
    pool: PoolSpec,
    batches: Iterable[str],
    heartbeats: Iterable[PoolTask],
    backlog: QueueBacklog | None,
    now: datetime,
) -> PoolView:
    """The pool as its heartbeats describe it at `now`. No heartbeat item: closed (no task); items but
    none fresh: stale heartbeats (tasks that stopped answering, or a worker that could not write)."""
    names = tuple(batches)
    tasks = sorted(
        (_task_view(task, names, now) for task in heartbeats),
        key=lambda view: (not view.fresh, view.task.task_arn),
    )
    if not tasks:
        state = CLOSED
    elif not any(task.fresh for task in tasks):
        state = STALE
    else:
        state = OPEN
    return PoolView(pool=pool, batches=names, state=state, tasks=tuple(tasks), backlog=backlog)


def _task_view(task: PoolTask, batches: tuple[str, ...], now: datetime) -> TaskView:
    jobs = tuple(
        SlotView(
            job_id=job.job_id,
            attempt=job.attempt,
            slot=job.slot,
            started_at=job.started_at,
            running_seconds=_seconds_since(job.started_at, now),
        )
        for job in sorted(task.running, key=lambda job: job.slot)
    )
    return TaskView(
        task=task,
        heartbeat_age_seconds=_seconds_since(task.heartbeat_at, now),
        fresh=task.is_fresh(now),
        jobs=jobs,
        serves={batch: batch in task.batches for batch in batches},
    )


def _seconds_since(at: str, now: datetime) -> float:
    return (now - parse_iso(at)).total_seconds()


def warm_heartbeats(session: AwsSession, job: Job) -> dict[str, PoolTask | None]:
    """The heartbeat items of the pool tasks running the job's claimed WARM attempts that have not
    stopped, by task ARN (None: the task has no item). Nothing is read for a job without one, or when
    the stack names no pool table."""
    running = {
        (attempt.capacity_provider, attempt.task_arn)
        for attempt in job.attempts
        if attempt.strategy == WARM
        and attempt.task_arn
        and attempt.capacity_provider
        and attempt.last_status not in ("STOPPED", "DELETED")
    }
    if not running:
        return {}
    table_name = session.optional_resource("pool_table_name")
    if table_name is None:
        return {}
    table = PoolTable(table_name, session.client("dynamodb"))
    return {task_arn: table.get(pool, task_arn) for pool, task_arn in sorted(running)}
