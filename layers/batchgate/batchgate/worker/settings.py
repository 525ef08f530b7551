"""What the warm pool worker reads from its environment (the pool's task definition sets it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from batchgate.domain.catalog import POOL_STOP_TIMEOUT_SECONDS
from batchgate.domain.pools import HEARTBEAT_SECONDS

# The worker's own settings: a job's child never inherits them (it is not the worker).
WORKER_VARIABLES = (
    "BATCHGATE_POOL",
    "JOB_TABLE_NAME",
    "POOL_TABLE_NAME",
    "POOL_QUEUE_URL",
    "JOBS_QUEUE_URL",
    "POOL_LOG_GROUP",
    "BATCHGATE_CATALOG",
    "BATCHGATE_WORKER_TASK_ARN",
    # Task scale-in protection is the worker's: a job turning it off would expose its neighbours.
    "ECS_AGENT_URI",
)


@dataclass(frozen=True)
class WorkerTiming:
    """The worker's periods and grace times (tests shrink them)."""

    heartbeat_seconds: float = HEARTBEAT_SECONDS
    # SQS long polling wait: a SIGTERM is noticed within it (the receive returns at once on a message).
    receive_wait_seconds: int = 2
    # How often a running job's child is looked at (its end, its timeout, a stop request).
    tick_seconds: float = 0.2
    # SIGTERM to a child's process group, SIGKILL after this.
    kill_grace_seconds: float = 5.0
    # The task's stopTimeout (SIGKILL of the whole task after the SIGTERM), and what the worker keeps
    # of it to stop the children that could not finish and report them.
    stop_timeout_seconds: float = POOL_STOP_TIMEOUT_SECONDS
    stop_margin_seconds: float = 15.0
    # How often each batch's task definition image is compared with the task's own.
    image_check_seconds: float = 300.0
    # A child's output reaches its log stream at least this often.
    flush_seconds: float = 1.0
    # Scale-in protection lapses after this if the worker stops renewing it (it renews while busy).
    protection_minutes: int = 60

    @property
    def drain_seconds(self) -> float:
        """How long running jobs may go on after SIGTERM before they are stopped."""
        return max(0.0, self.stop_timeout_seconds - self.stop_margin_seconds)


@dataclass(frozen=True)
class WorkerSettings:
    pool: str
    job_table_name: str
    pool_table_name: str
    pool_queue_url: str
    log_group: str
    jobs_queue_url: str | None = None
    catalog_path: str | None = None
    metadata_uri: str | None = None
    agent_uri: str | None = None
    # The local stack's stand-in for the task ARN when there is no metadata endpoint.
    task_arn: str | None = None
    timing: WorkerTiming = WorkerTiming()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        required = ("BATCHGATE_POOL", "JOB_TABLE_NAME", "POOL_TABLE_NAME", "POOL_QUEUE_URL", "POOL_LOG_GROUP")
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        if not env.get("ECS_CONTAINER_METADATA_URI_V4") and not env.get("BATCHGATE_WORKER_TASK_ARN"):
            raise RuntimeError(
                "no ECS_CONTAINER_METADATA_URI_V4 (not an ECS task) and no BATCHGATE_WORKER_TASK_ARN: "
                "the worker cannot name its task"
            )
        return cls(
            pool=env["BATCHGATE_POOL"],
            job_table_name=env["JOB_TABLE_NAME"],
            pool_table_name=env["POOL_TABLE_NAME"],
            pool_queue_url=env["POOL_QUEUE_URL"],
            log_group=env["POOL_LOG_GROUP"],
            jobs_queue_url=env.get("JOBS_QUEUE_URL") or None,
            catalog_path=env.get("BATCHGATE_CATALOG") or None,
            metadata_uri=env.get("ECS_CONTAINER_METADATA_URI_V4") or None,
            agent_uri=env.get("ECS_AGENT_URI") or None,
            task_arn=env.get("BATCHGATE_WORKER_TASK_ARN") or None,
        )


def child_environment(worker_environment: Mapping[str, str], attempt: Mapping[str, str]) -> dict[str, str]:
    """A job's environment in a slot: the task's own (as a batch's container has on ECS: region, the
    task role's credentials endpoint, the metadata endpoint), without the worker's settings, then the
    attempt's (batchgate.domain.jobs.attempt_environment), which wins."""
    inherited = {name: value for name, value in worker_environment.items() if name not in WORKER_VARIABLES}
    return {**inherited, **attempt}
