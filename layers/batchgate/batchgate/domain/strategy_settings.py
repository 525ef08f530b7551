"""The launch strategy engine's thresholds, defaults and prices: documented, with defaults, and each one
overridable from the environment as `BATCHGATE_STRATEGY_<FIELD>` (e.g.
`BATCHGATE_STRATEGY_SHORT_RUN_SECONDS=90`). See docs/strategy.md for what each one does.

Fargate prices come from `batchgate.domain.pricing` (one price table for the engine, `batchgate stats`
and whatif).
"""

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from batchgate.domain.pricing import (
    DEFAULT_PRICE_REGION,
    SPOT_DISCOUNT,
    X86_64,
    TaskSize,
    hourly_price,
    price_for,
)

ENV_PREFIX = "BATCHGATE_STRATEGY_"

EC2 = "EC2"
FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"
# A warm pool's slot (batchgate.domain.warm): planned only for a batch that names a pool.
WARM = "WARM"

# What a launch class optimises (catalog field `objective`).
LATENCY = "latency"
BALANCED = "balanced"
COST = "cost"
OBJECTIVES = frozenset({LATENCY, BALANCED, COST})


class StrategySettings(NamedTuple):
    """The launch strategy engine's thresholds, limits and prices. A NamedTuple: immutable, and its class
    costs a cold start no generated methods (docs/contracts-internal.md, Cold start)."""

    # A batch whose p95 run time is above this never runs on EC2: long batches must not hold instances.
    ec2_max_run_seconds: float = 900.0
    # "balanced" classes use EC2 only for batches whose p95 run time is below this.
    short_run_seconds: float = 120.0
    # "cost" classes use Fargate Spot only for batches whose p95 run time is at least this (0: always).
    spot_min_run_seconds: float = 0.0
    # Above this decayed share of Spot interruptions, Spot becomes a fallback instead of the first choice.
    spot_max_interruption_rate: float = 0.2
    # History with fewer (decayed) attempts than this is not trusted: cold-start defaults are used.
    min_samples: float = 3.0
    # Priority at or above which a job is planned for start latency whatever its class.
    high_priority: int = 8
    # Cold-start defaults: start latency (created -> started) per strategy, and run time per objective
    # (unless the catalog gives the batch an `expected_run_seconds`).
    default_start_ec2_seconds: float = 10.0
    default_start_fargate_seconds: float = 50.0
    default_start_spot_seconds: float = 55.0
    # Submit to RUNNING on a warm slot: the offer's two queue hops and the claim (measured ~0.3 s on
    # the local stack; AWS adds network time).
    default_start_warm_seconds: float = 1.0
    default_run_latency_seconds: float = 60.0
    default_run_balanced_seconds: float = 300.0
    default_run_cost_seconds: float = 1800.0
    # Prices: region for the Fargate price table; the EC2 instance type's hourly price and size (default
    # m5.large on-demand, us-east-1) to estimate the share of an instance a task takes.
    region: str = DEFAULT_PRICE_REGION
    spot_discount: float = SPOT_DISCOUNT
    ec2_instance_hour_usd: float = 0.096
    ec2_instance_vcpus: float = 2.0
    ec2_instance_memory_gb: float = 8.0
    # Caches in front of AWS.
    capacity_cache_seconds: float = 10.0
    history_cache_seconds: float = 60.0
    # ECS launch limits for the whole account and region, shared by all dispatch containers.
    fargate_launch_burst: float = 100.0
    fargate_launch_per_second: float = 20.0
    run_task_calls_per_second: float = 20.0
    # ECS's other actions batchgate calls (ListTasks, DescribeTasks, StopTask), shared by the dispatch
    # containers and the sweep.
    ecs_api_calls_per_second: float = 20.0
    # How long a dispatch thread may wait for a launch token before the record goes back to the queue.
    governor_max_wait_seconds: float = 2.0
    # Back-off of a throttled record: base * 2**(receive count - 1), capped, with full jitter.
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    # The longest delay of a launch waiting for its batch's `max_running` slot (same growth as above).
    max_running_wait_seconds: float = 60.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "StrategySettings":
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for name in cls._fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            kind = type(getattr(DEFAULT_STRATEGY_SETTINGS, name))
            try:
                changes[name] = kind(raw)
            except ValueError as error:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {error}") from error
        if "region" not in changes and env.get("AWS_REGION"):
            changes["region"] = env["AWS_REGION"]
        return DEFAULT_STRATEGY_SETTINGS._replace(**changes)

    def default_start_seconds(self, strategy: str) -> float:
        return {
            EC2: self.default_start_ec2_seconds,
            FARGATE: self.default_start_fargate_seconds,
            FARGATE_SPOT: self.default_start_spot_seconds,
            WARM: self.default_start_warm_seconds,
        }.get(strategy, self.default_start_fargate_seconds)

    def default_run_seconds(self, objective: str) -> float:
        return {
            LATENCY: self.default_run_latency_seconds,
            COST: self.default_run_cost_seconds,
        }.get(objective, self.default_run_balanced_seconds)

    def hourly_usd(self, strategy: str, cpu: int, memory: int, architecture: str = X86_64) -> float | None:
        """Estimated USD per hour of one task of this size on this strategy (Fargate: on this CPU
        architecture, X86_64 or ARM64). EC2: the share of an instance the task reserves (the larger of
        its CPU and memory share)."""
        size = TaskSize(cpu=cpu, memory=memory)
        if strategy == EC2:
            share = max(size.vcpus / self.ec2_instance_vcpus, size.gigabytes / self.ec2_instance_memory_gb)
            return self.ec2_instance_hour_usd * share
        price = price_for(self.region, FARGATE, architecture)
        if price is None:
            return None
        hourly = hourly_price(price, size)
        if strategy == FARGATE_SPOT:
            return hourly * (1 - self.spot_discount)
        return hourly if strategy == FARGATE else None


DEFAULT_STRATEGY_SETTINGS = StrategySettings()
