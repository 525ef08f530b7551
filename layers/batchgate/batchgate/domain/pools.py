"""A warm pool's tasks as their heartbeats describe them, and what dispatch may conclude from them.

Each pool task keeps one heartbeat item (the pool table: hash `pool`, range `task_arn`), written when a
slot is taken or freed and every `HEARTBEAT_SECONDS` in between. It lists the jobs running in its
slots (which also makes it the heartbeat of each of those attempts), its image and digest, and the
batches whose task definition runs that image. A heartbeat older than `STALE_AFTER_SECONDS` is a task
that stopped answering. Heartbeats are advice: dispatch offers a job only when a fresh one advertises a
free slot for its batch, and the offer still expires if no worker claims it (batchgate.domain.warm).
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from batchgate.domain.catalog import PoolSpec
from batchgate.domain.jobs import parse_iso

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 15.0
# A heartbeat item outlives its task by this much, then expires (TTL), so a pool table stays small.
HEARTBEAT_RETENTION_SECONDS = 3600


class SlotJob(NamedTuple):
    """A job running in one slot of a pool task."""

    job_id: str
    attempt: int
    slot: int
    started_at: str

    def to_item(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "slot": self.slot,
            "started_at": self.started_at,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "SlotJob":
        return cls(
            job_id=str(item["job_id"]),
            attempt=int(item["attempt"]),
            slot=int(item["slot"]),
            started_at=str(item["started_at"]),
        )


class PoolTask(NamedTuple):
    """One pool task's heartbeat item."""

    pool: str
    task_arn: str
    slots: int
    running: tuple[SlotJob, ...]
    heartbeat_at: str
    expires_at: int
    # The batches whose task definition runs this task's image: a batch missing here has a newer image
    # than the pool (its jobs go to ECS until the pool is redeployed).
    batches: tuple[str, ...] = ()
    image: str | None = None
    image_digest: str | None = None
    availability_zone: str | None = None
    # SIGTERM received: finishing its running jobs, taking no new one.
    stopping: bool = False

    @property
    def free_slots(self) -> int:
        return 0 if self.stopping else max(0, self.slots - len(self.running))

    def is_fresh(self, now: datetime, stale_after: float = STALE_AFTER_SECONDS) -> bool:
        return (now - parse_iso(self.heartbeat_at)).total_seconds() <= stale_after

    def runs(self, job_id: str, attempt: int) -> bool:
        return any(job.job_id == job_id and job.attempt == attempt for job in self.running)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pool": self.pool,
            "task_arn": self.task_arn,
            "slots": self.slots,
            "running": [job.to_item() for job in self.running],
            "heartbeat_at": self.heartbeat_at,
            "expires_at": self.expires_at,
            "batches": list(self.batches),
            "stopping": self.stopping,
        }
        optional = {
            "image": self.image,
            "image_digest": self.image_digest,
            "availability_zone": self.availability_zone,
        }
        item.update({key: value for key, value in optional.items() if value is not None})
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "PoolTask":
        return cls(
            pool=str(item["pool"]),
            task_arn=str(item["task_arn"]),
            slots=int(item["slots"]),
            running=tuple(SlotJob.from_item(job) for job in item.get("running", ())),
            heartbeat_at=str(item["heartbeat_at"]),
            expires_at=int(item["expires_at"]),
            batches=tuple(str(batch) for batch in item.get("batches", ())),
            image=item.get("image"),
            image_digest=item.get("image_digest"),
            availability_zone=item.get("availability_zone"),
            stopping=bool(item.get("stopping", False)),
        )


class WarmSlots(NamedTuple):
    """What plan_launch reads of a pool for one batch: its free slots in fresh tasks that run the
    batch's image, and the longest run it takes."""

    pool: str
    free_slots: int
    tasks: int
    max_run_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Integers only, as the other plan inputs, so that a plan's inputs can be stored in its job item
        (DynamoDB takes no float); the catalog declares max_run_seconds in whole seconds."""
        return {
            "pool": self.pool,
            "free_slots": self.free_slots,
            "tasks": self.tasks,
            "max_run_seconds": round(self.max_run_seconds),
        }


def warm_slots(
    pool: PoolSpec,
    tasks: Iterable[PoolTask],
    batch: str,
    now: datetime,
    stale_after: float = STALE_AFTER_SECONDS,
) -> WarmSlots:
    """The pool's free slots for `batch`: fresh, not stopping, running the batch's image."""
    serving = [
        task
        for task in tasks
        if task.is_fresh(now, stale_after) and not task.stopping and batch in task.batches
    ]
    return WarmSlots(
        pool=pool.name,
        free_slots=sum(task.free_slots for task in serving),
        tasks=len(serving),
        max_run_seconds=float(pool.max_run_seconds),
    )
