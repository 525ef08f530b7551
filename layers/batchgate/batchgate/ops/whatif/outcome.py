"""The figures of one policy over one replayed trace, and the comparison of every policy.

Start latency is what the submitter waits: submitted -> the batch running (queueing delay included; for
a job lost to Spot, until its last attempt started). Queueing delay is submitted -> launched: time spent
waiting for a free machine. Cost is over the trace's window, and per month scaled to `month_days`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchgate.domain.catalog import Catalog
from batchgate.ops.stats import percentile
from batchgate.ops.whatif.model import WhatIfSettings
from batchgate.ops.whatif.policies import Policy, all_policies
from batchgate.ops.whatif.replay import JobRun, replay_with_pools
from batchgate.ops.whatif.trace import DAY, Trace
from batchgate.ops.whatif.warm_pool import WarmPoolRun


@dataclass(frozen=True)
class PolicyOutcome:
    name: str
    label: str
    jobs: int
    not_run: int  # jobs that fit none of the policy's machines
    fixed_usd: float  # machines, over the window
    task_usd: float  # Fargate and Spot tasks, over the window
    month_factor: float
    start_p50: float
    start_p95: float
    queueing_p95: float
    waited: int  # jobs whose queueing delay was above zero
    short_jobs: int
    short_start_p50: float | None
    short_turnaround_p50: float | None
    interruptions: int
    single_points_of_failure: int
    failure_note: str
    runs: dict[str, int]  # jobs by the strategy of their last attempt
    start_latencies: tuple[float, ...]
    warm_usd: float = 0.0  # warm pool tasks, over the window
    warm_task_interruptions: int = 0  # Spot interruptions of pool tasks

    @property
    def window_usd(self) -> float:
        return self.fixed_usd + self.task_usd + self.warm_usd

    @property
    def month_usd(self) -> float:
        return self.window_usd * self.month_factor

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "label": self.label,
            "jobs": self.jobs,
            "not_run": self.not_run,
            "cost_window_usd": round(self.window_usd, 4),
            "cost_month_usd": round(self.month_usd, 2),
            "fixed_window_usd": round(self.fixed_usd, 4),
            "tasks_window_usd": round(self.task_usd, 4),
            "warm_pool_window_usd": round(self.warm_usd, 4),
            "warm_pool_task_interruptions": self.warm_task_interruptions,
            "start_p50_seconds": round(self.start_p50, 1),
            "start_p95_seconds": round(self.start_p95, 1),
            "queueing_p95_seconds": round(self.queueing_p95, 1),
            "jobs_waited": self.waited,
            "short_jobs": self.short_jobs,
            "short_start_p50_seconds": _rounded(self.short_start_p50),
            "short_turnaround_p50_seconds": _rounded(self.short_turnaround_p50),
            "spot_interruptions": self.interruptions,
            "single_points_of_failure": self.single_points_of_failure,
            "failure_note": self.failure_note,
            "runs_by_strategy": dict(sorted(self.runs.items())),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(
    policy: Policy,
    runs: Sequence[JobRun],
    trace: Trace,
    settings: WhatIfSettings,
    pools: Sequence[WarmPoolRun] = (),
) -> PolicyOutcome:
    ran = [run for run in runs if run.ran]
    pool = policy.pool(settings)
    hours = trace.window_seconds / 3600
    fixed = pool.instances * pool.hourly_usd * hours if pool is not None else 0.0
    short = [run for run in ran if run.job.run_seconds <= settings.short_batch_seconds]
    starts = tuple(run.start_latency for run in ran)
    spof, note = policy.single_points_of_failure(settings)
    return PolicyOutcome(
        name=policy.name,
        label=policy.label,
        jobs=len(ran),
        not_run=len(runs) - len(ran),
        fixed_usd=fixed,
        task_usd=sum(run.cost_usd for run in ran),
        month_factor=settings.month_days * DAY / trace.window_seconds,
        start_p50=percentile(starts, 0.50) or 0.0,
        start_p95=percentile(starts, 0.95) or 0.0,
        queueing_p95=percentile((run.queueing_delay for run in ran), 0.95) or 0.0,
        waited=sum(1 for run in ran if run.queueing_delay > 0),
        short_jobs=len(short),
        short_start_p50=percentile((run.start_latency for run in short), 0.50),
        short_turnaround_p50=percentile((run.turnaround for run in short), 0.50),
        interruptions=sum(1 for run in ran for attempt in run.attempts if attempt.interrupted),
        single_points_of_failure=spof,
        failure_note=note,
        runs=dict(Counter(run.strategy for run in ran)),
        start_latencies=starts,
        warm_usd=sum(pool.cost_usd() for pool in pools),
        warm_task_interruptions=sum(pool.interruptions() for pool in pools),
    )


def compare(trace: Trace, catalog: Catalog, settings: WhatIfSettings) -> list[PolicyOutcome]:
    """Every policy replayed on the same trace, in the order of `all_policies`."""
    outcomes = []
    for policy in all_policies(catalog, settings, trace.jobs):
        runs, pools = replay_with_pools(trace, policy, settings)
        outcomes.append(summarize(policy, runs, trace, settings, pools))
    return outcomes
