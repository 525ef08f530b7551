"""Per batch and strategy: how many jobs, how many succeeded, how fast they started, how long they ran, and
roughly what they cost.

Pure functions over jobs already read from the table. The cost is an estimate, by
batchgate.domain.pricing: Fargate bills each task per second from the start of its image pull until it
stops. EC2 capacity is billed per instance and cannot be attributed to a task, so it gets no estimate. A
WARM attempt is charged its share of the pool task that ran it: the task's price (the pool's size,
capacity provider and architecture) x the attempt's run seconds / the task's slots; the pool's idle time
is charged to no job."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchgate.domain.catalog import PoolSpec
from batchgate.domain.jobs import Attempt, Job, JobStatus, parse_iso
from batchgate.domain.pricing import TaskSize, billed_duration, hourly_price, price_for
from batchgate.domain.strategy_settings import WARM
from batchgate.ops.job_views import run_time, start_latency

if TYPE_CHECKING:
    from batchgate.domain.catalog import Catalog

NO_STRATEGY = "-"
# With SUCCEEDED, the jobs that ran to an end (FAILED, TIMED_OUT): the success rate's denominator.
# REJECTED and CANCELLED jobs are counted, each in its own column, but are neither successes nor failures
# of the batch.
UNSUCCESSFUL = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})


def billed_seconds(attempt: Attempt) -> int | None:
    """Seconds Fargate bills for a stopped task: from image pull start (or container start, if the pull
    time is missing) to the task's stop, rounded up to a whole second, at least one minute. None when the
    task never pulled its image or has not stopped."""
    begin = attempt.timeline.get("pull_started") or attempt.timeline.get("started")
    end = attempt.timeline.get("stopped") or attempt.timeline.get("execution_stopped")
    if not begin or not end:
        return None
    return billed_duration((parse_iso(end) - parse_iso(begin)).total_seconds())


def attempt_cost(
    attempt: Attempt, size: TaskSize | None, region: str, pools: Mapping[str, PoolSpec] | None = None
) -> float | None:
    """Estimated USD of one attempt; None when it cannot be estimated, 0.0 when nothing was billed
    (the task never pulled its image, a WARM offer no worker claimed). A WARM attempt: its share of its
    pool task (`pools` by name, the catalog's), see `warm_attempt_cost`."""
    if attempt.strategy == WARM:
        return warm_attempt_cost(attempt, (pools or {}).get(attempt.capacity_provider), region)
    price = price_for(region, attempt.strategy)
    if size is None or price is None:
        return None
    billed = billed_seconds(attempt)
    if billed is None:
        return 0.0 if attempt.last_status in ("STOPPED", "DELETED") or not attempt.task_arn else None
    hourly = size.vcpus * price.vcpu_hour + size.gigabytes * price.gb_hour
    return hourly * billed / 3600


def warm_attempt_cost(attempt: Attempt, pool: PoolSpec | None, region: str) -> float | None:
    """A WARM attempt's share of its pool task: the task's price per hour x the attempt's run seconds /
    the task's slots (a slot is 1/slots of the task while the job runs). 0.0 for an offer no worker
    claimed (it never ran); None for an unknown pool or an attempt still running."""
    if not attempt.timeline.get("started"):
        return 0.0 if attempt.last_status in ("STOPPED", "DELETED") else None
    ran = run_time(attempt)
    if pool is None or ran is None:
        return None
    price = price_for(region, pool.capacity_provider, pool.architecture)
    if price is None:
        return None
    task_hourly = hourly_price(price, TaskSize(cpu=pool.cpu, memory=pool.memory))
    return task_hourly * ran / 3600 / pool.slots


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, statistics' "inclusive"):
    p50 of [1, 2, 3, 4] is 2.5; p95 of 1..20 is 19.05."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass
class StatsRow:
    """One (batch, strategy) line of `batchgate stats`. A job counts under the strategy of its last
    attempt; its cost is the sum over all its attempts, each at its own strategy's price."""

    batch: str
    strategy: str
    jobs: int = 0
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    rejected: int = 0
    in_progress: int = 0
    start_latencies: list[float] = field(default_factory=list)
    run_times: list[float] = field(default_factory=list)
    cost: float = 0.0
    cost_complete: bool = True

    @property
    def success_rate(self) -> float | None:
        """Succeeded / (succeeded + failed + timed out); None when no job finished."""
        finished = self.succeeded + self.failed + self.timed_out
        return self.succeeded / finished if finished else None

    def add(
        self, job: Job, size: TaskSize | None, region: str, pools: Mapping[str, PoolSpec] | None = None
    ) -> None:
        self.jobs += 1
        self.attempts += len(job.attempts)
        if job.status is JobStatus.SUCCEEDED:
            self.succeeded += 1
        elif job.status is JobStatus.FAILED:
            self.failed += 1
        elif job.status is JobStatus.TIMED_OUT:
            self.timed_out += 1
        elif job.status is JobStatus.CANCELLED:
            self.cancelled += 1
        elif job.status is JobStatus.REJECTED:
            self.rejected += 1
        else:
            self.in_progress += 1
        last = job.attempt
        latency = start_latency(last, job.submitted_at)
        if latency is not None:
            self.start_latencies.append(latency)
        ran = run_time(last)
        if ran is not None:
            self.run_times.append(ran)
        for attempt in job.attempts:
            cost = attempt_cost(attempt, size, region, pools)
            if cost is None:
                self.cost_complete = False
            else:
                self.cost += cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "strategy": self.strategy,
            "jobs": self.jobs,
            "attempts": self.attempts,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "in_progress": self.in_progress,
            "success_rate": self.success_rate,
            "start_latency_p50_seconds": percentile(self.start_latencies, 0.50),
            "start_latency_p95_seconds": percentile(self.start_latencies, 0.95),
            "run_time_p50_seconds": percentile(self.run_times, 0.50),
            "run_time_p95_seconds": percentile(self.run_times, 0.95),
            "estimated_cost_usd": round(self.cost, 6),
            "cost_complete": self.cost_complete,
        }


def catalog_sizes(catalog: Catalog) -> dict[str, TaskSize]:
    """Each batch's task size, as the catalog declares it."""
    return {name: TaskSize(cpu=spec.cpu, memory=spec.memory) for name, spec in catalog.batches.items()}


def size_of(job: Job, sizes: Mapping[str, TaskSize]) -> TaskSize | None:
    """The size the job's tasks ran with: its launch plan's (what RunTask was given), else the catalog's
    size for its batch (plans stored before sizes were recorded)."""
    plan = job.plan
    if plan is not None and plan.cpu and plan.memory:
        return TaskSize(cpu=plan.cpu, memory=plan.memory)
    return sizes.get(job.batch)


def summarize(
    jobs: Iterable[Job],
    sizes: Mapping[str, TaskSize],
    region: str,
    pools: Mapping[str, PoolSpec] | None = None,
) -> list[StatsRow]:
    """Rows per (batch, strategy of the last attempt), sorted by batch then strategy. `sizes` are the
    catalog's task sizes by batch, used for jobs whose plan does not record its own; `pools` the
    catalog's warm pools by name, to charge WARM attempts their share of a pool task."""
    rows: dict[tuple[str, str], StatsRow] = {}
    for job in jobs:
        last = job.attempt
        strategy = last.strategy if last else NO_STRATEGY
        key = (job.batch, strategy)
        row = rows.get(key)
        if row is None:
            row = rows[key] = StatsRow(batch=job.batch, strategy=strategy)
        row.add(job, size_of(job, sizes), region, pools)
    return [rows[key] for key in sorted(rows)]
