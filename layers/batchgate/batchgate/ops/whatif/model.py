"""The models of a what-if replay: start latency per strategy, billing, capacity and prices, each one a
documented setting with a default, overridable by name (`batchgate whatif --set name=value`).

Prices and the launch engine's own thresholds are the engine's `StrategySettings` (one price table for
`plan_launch`, `batchgate stats` and this replay): `--set` reaches them by their names too
(`ec2_instance_hour_usd`, `spot_discount`, `region`, `short_run_seconds`, ...). Defaults follow the
figures measured on a test batch: ~10-20 s on a dedicated server, ~90 s on Fargate of which ~50 s to
start, ~60 s on ECS on EC2 of which ~15 s to start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from batchgate.domain.catalog import (
    ARCHITECTURES,
    FARGATE_MEMORY_BY_CPU,
    MAX_POOL_RUN_SECONDS,
    MAX_POOL_SLOTS,
    POOL_CAPACITY_PROVIDERS,
    RUN_MODES,
    PoolSpec,
    PoolWindow,
)
from batchgate.domain.strategy_settings import (
    DEFAULT_STRATEGY_SETTINGS,
    EC2,
    FARGATE,
    FARGATE_SPOT,
    StrategySettings,
)
from batchgate.ops.whatif.warm_pool import DailyTime

# The batch server of the "dedicated" policy: not an ECS strategy, its jobs run as processes.
DEDICATED = "DEDICATED"
STRATEGIES = (DEDICATED, EC2, FARGATE, FARGATE_SPOT)
# The name of the pool built from the warm_* settings.
WHATIF_POOL = "whatif-pool"


@dataclass(frozen=True)
class WhatIfSettings:
    # Start latency (submit accepted by a free slot -> the batch's process or container running), the
    # p50 of each strategy; replaced by the measured p50 when the input has start times for it.
    start_dedicated_seconds: float = 1.5
    start_ec2_seconds: float = 15.0
    start_fargate_seconds: float = 50.0
    start_spot_seconds: float = 55.0
    # Each job's start latency is the p50 scaled by a seeded draw within +/- this fraction.
    start_spread: float = 0.2
    # Extra run time of a batch in a fresh container compared with a warm batch server (runtime and
    # application boot): 90 s on Fargate = 50 s start + ~15 s of work + ~25 s. Use 0 when the input's run
    # times were measured in containers (the job table's are: `whatif --since` defaults it to 0).
    container_overhead_seconds: float = 25.0
    # Fargate bills from image pull start: this much of its start latency (capacity, network interface)
    # comes before the pull and is not billed.
    fargate_provisioning_seconds: float = 10.0
    # Share of Fargate Spot tasks interrupted, at a seeded point of their run; the job is run again.
    spot_interruption_rate: float = 0.05
    # The dedicated batch server: one machine, paid around the clock (default m5.2xlarge on-demand
    # us-east-1), running at most `dedicated_max_jobs` batches at once within its vCPUs and memory.
    dedicated_hour_usd: float = 0.384
    dedicated_vcpus: float = 8.0
    dedicated_memory_gb: float = 32.0
    dedicated_max_jobs: int = 8
    # EC2 instances (type, price and size: the engine's ec2_instance_*): the fixed fleet's size, the
    # adaptive policy's warm fleet, and the cap on concurrent tasks per instance (awsvpc tasks take an
    # ENI each: an m5.large has 3, one for itself).
    ec2_fleet_instances: int = 2
    adaptive_ec2_instances: int = 1
    tasks_per_instance: int = 2
    # The "adaptive-warm" policy: plan_launch with a warm pool (docs/warm-lane.md) and no EC2 instance.
    # Its pool, when the catalog declares none for a batch: docs/warm-lane.md's example pool (1 vCPU,
    # 2 GB, 2 slots, Fargate Spot on ARM64, 2 tasks in business hours, max run 90 s) with the sample
    # trace's business hours (07:00-19:00 UTC on weekdays) as its window.
    warm_pool_tasks: int = 2
    warm_min_tasks: int = 0
    warm_slots: int = 2
    warm_cpu: int = 1024
    warm_memory: int = 2048
    warm_capacity_provider: str = "FARGATE_SPOT"
    warm_architecture: str = "ARM64"
    warm_max_run_seconds: int = 90
    warm_timezone: str = "UTC"
    warm_window_start: str = "cron(0 7 ? * MON-FRI *)"
    warm_window_end: str = "cron(0 19 ? * MON-FRI *)"
    # Fargate spreads a service's tasks over its subnets' AZs (template parameter Subnets: two or more).
    warm_availability_zones: int = 2
    # Which trace batches the pool takes: "short" (a batch whose catalog entry names a pool, plus every
    # other batch whose p95 run time in the trace is below warm_max_run_seconds), "catalog" (only
    # batches whose catalog entry names a pool), or a comma-separated list of batch names (plus those).
    warm_batches: str = "short"
    # Run mode of the batches placed on the pool by warm_batches ("command", the catalog's default, or
    # "preload").
    warm_run_mode: str = "command"
    # Submit -> dispatch planning the job: the dispatch function's SQS batching window (template: 1 s;
    # bench/results.md measured the way in at 1.28 s on the local stack, of which ~1 s the window).
    warm_dispatch_seconds: float = 1.0
    # Offer -> a worker's claim, the job running: the pool queue's hop and the conditional write
    # (measured ~0.3 s on the local stack, domain/strategy_settings.py default_start_warm_seconds note).
    warm_start_seconds: float = 0.3
    # The application's boot (runtime and imports of the batch's module) in a warm container, as on the
    # batch server (start_dedicated_seconds): per job in command mode, per task start in preload mode.
    warm_app_boot_seconds: float = 1.5
    # Spot interruptions of a pool task per task-hour on FARGATE_SPOT (AWS publishes no Fargate Spot
    # frequency): the 5% of spot_interruption_rate read per hour, pessimistic for hours-long tasks.
    warm_spot_interruptions_per_task_hour: float = 0.05
    # An interrupted (SIGTERM) pool task lets its running jobs finish within its stop timeout (120 s,
    # Fargate's maximum, catalog POOL_STOP_TIMEOUT_SECONDS); a job that cannot is stopped at its end and
    # retried on ECS (WarmTaskStopped). 0: every job running on an interrupted task is retried.
    warm_stop_grace_seconds: float = 120.0
    adaptive_warm_ec2_instances: int = 0
    # Launch class of a trace batch that is not in the catalog (the adaptive policy plans it with it).
    default_launch_class: str = "standard"
    # Batches whose trace run time is at most this are "short" (their own columns in the report).
    short_batch_seconds: float = 30.0
    # Costs are also given per month of this many days, scaled from the trace's window.
    month_days: float = 30.0
    # Seed of every random draw (start spread, Spot interruptions): the same seed, the same replay.
    seed: int = 7
    engine: StrategySettings = field(default=DEFAULT_STRATEGY_SETTINGS)

    def start_seconds(self, strategy: str) -> float:
        return {
            DEDICATED: self.start_dedicated_seconds,
            EC2: self.start_ec2_seconds,
            FARGATE: self.start_fargate_seconds,
            FARGATE_SPOT: self.start_spot_seconds,
        }[strategy]

    def with_measured_starts(self, measured: Mapping[str, float], keep: frozenset[str]) -> WhatIfSettings:
        """The measured p50 start latency per strategy in place of the defaults, except for the settings
        named in `keep` (set explicitly)."""
        names = {
            EC2: "start_ec2_seconds",
            FARGATE: "start_fargate_seconds",
            FARGATE_SPOT: "start_spot_seconds",
        }
        changes: dict[str, Any] = {
            names[strategy]: float(seconds)
            for strategy, seconds in measured.items()
            if strategy in names and names[strategy] not in keep
        }
        return replace(self, **changes)

    def with_overrides(self, overrides: Mapping[str, str]) -> WhatIfSettings:
        """These settings with `name=value` overrides, a name of this class or of the engine's
        StrategySettings. ValueError names an unknown setting or a bad value."""
        own = {spec.name for spec in fields(self) if spec.name != "engine"}
        engine_names = set(self.engine._fields)
        mine: dict[str, Any] = {}
        theirs: dict[str, Any] = {}
        for name, raw in overrides.items():
            if name in own:
                mine[name] = _typed(name, raw, getattr(self, name))
            elif name in engine_names:
                theirs[name] = _typed(name, raw, getattr(self.engine, name))
            else:
                raise ValueError(f"unknown setting {name!r} (known: {', '.join(sorted(own | engine_names))})")
        updated = replace(self, **mine, engine=self.engine._replace(**theirs))
        updated.check()
        return updated

    def check(self) -> None:
        counts = {
            "ec2_fleet_instances": self.ec2_fleet_instances,
            "adaptive_ec2_instances": self.adaptive_ec2_instances,
            "adaptive_warm_ec2_instances": self.adaptive_warm_ec2_instances,
            "warm_min_tasks": self.warm_min_tasks,
        }
        for name, value in counts.items():
            if value < 0:
                raise ValueError(f"{name} must be at least 0, got {value}")
        if self.tasks_per_instance < 1 or self.dedicated_max_jobs < 1:
            raise ValueError("tasks_per_instance and dedicated_max_jobs must be at least 1")
        if not 0.0 <= self.spot_interruption_rate <= 1.0:
            raise ValueError(
                f"spot_interruption_rate must be within [0, 1], got {self.spot_interruption_rate}"
            )
        if not 0.0 <= self.start_spread < 1.0:
            raise ValueError(f"start_spread must be within [0, 1), got {self.start_spread}")
        if self.month_days <= 0:
            raise ValueError(f"month_days must be positive, got {self.month_days}")
        self._check_warm_pool()

    def _check_warm_pool(self) -> None:
        """The what-if pool's settings, checked as the catalog checks a pool."""
        if not 1 <= self.warm_slots <= MAX_POOL_SLOTS:
            raise ValueError(f"warm_slots must be from 1 to {MAX_POOL_SLOTS}, got {self.warm_slots}")
        if not max(self.warm_min_tasks, 1) <= self.warm_pool_tasks <= 100:
            raise ValueError(
                f"warm_pool_tasks must be from max(warm_min_tasks, 1) to 100, got {self.warm_pool_tasks}"
            )
        if self.warm_memory not in FARGATE_MEMORY_BY_CPU.get(self.warm_cpu, frozenset()):
            raise ValueError(
                f"warm_cpu {self.warm_cpu} with warm_memory {self.warm_memory} "
                "is not a valid Fargate task size"
            )
        choices = {
            "warm_capacity_provider": (self.warm_capacity_provider, POOL_CAPACITY_PROVIDERS),
            "warm_architecture": (self.warm_architecture, ARCHITECTURES),
            "warm_run_mode": (self.warm_run_mode, frozenset(RUN_MODES)),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")
        if not 1 <= self.warm_max_run_seconds <= MAX_POOL_RUN_SECONDS:
            raise ValueError(
                f"warm_max_run_seconds must be from 1 to {MAX_POOL_RUN_SECONDS}, "
                f"got {self.warm_max_run_seconds}"
            )
        self._check_warm_schedule()

    def _check_warm_schedule(self) -> None:
        """The what-if pool's time zone, windows, delays and rates."""
        try:
            ZoneInfo(self.warm_timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"warm_timezone {self.warm_timezone!r} is not an IANA time zone") from error
        for name in ("warm_window_start", "warm_window_end"):
            try:
                DailyTime.parse(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from error
        seconds = {
            "warm_dispatch_seconds": self.warm_dispatch_seconds,
            "warm_start_seconds": self.warm_start_seconds,
            "warm_app_boot_seconds": self.warm_app_boot_seconds,
            "warm_spot_interruptions_per_task_hour": self.warm_spot_interruptions_per_task_hour,
            "warm_stop_grace_seconds": self.warm_stop_grace_seconds,
        }
        for name, value in seconds.items():
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if self.warm_availability_zones < 1:
            raise ValueError(
                f"warm_availability_zones must be at least 1, got {self.warm_availability_zones}"
            )
        if not self.warm_batches.strip():
            raise ValueError("warm_batches must be short, catalog or a list of batch names")

    def warm_pool_spec(self) -> PoolSpec:
        """The what-if pool, as a catalog pool declaration."""
        return PoolSpec(
            name=WHATIF_POOL,
            task_definition="whatif",
            container="whatif",
            cpu=self.warm_cpu,
            memory=self.warm_memory,
            slots=self.warm_slots,
            capacity_provider=self.warm_capacity_provider,
            min_tasks=self.warm_min_tasks,
            max_tasks=max(self.warm_pool_tasks, self.warm_min_tasks),
            architecture=self.warm_architecture,
            max_run_seconds=self.warm_max_run_seconds,
            timezone=self.warm_timezone,
            windows=(PoolWindow(self.warm_window_start, self.warm_window_end, self.warm_pool_tasks),),
        )

    def to_dict(self) -> dict[str, Any]:
        """Every setting the replay read: its own and the engine's prices and thresholds it uses."""
        document: dict[str, Any] = {
            spec.name: getattr(self, spec.name) for spec in fields(self) if spec.name != "engine"
        }
        for name in ENGINE_SETTINGS_SHOWN:
            document[name] = getattr(self.engine, name)
        return document


# The engine settings that shape a replay's costs and the adaptive policy's choices, shown in reports.
ENGINE_SETTINGS_SHOWN = (
    "region",
    "spot_discount",
    "ec2_instance_hour_usd",
    "ec2_instance_vcpus",
    "ec2_instance_memory_gb",
    "short_run_seconds",
    "ec2_max_run_seconds",
    "min_samples",
)


def _typed(name: str, raw: str, current: Any) -> Any:
    kind = type(current)
    try:
        return kind(raw)
    except ValueError as error:
        raise ValueError(f"setting {name}={raw!r}: expected {kind.__name__}") from error


DEFAULT_WHATIF_SETTINGS = WhatIfSettings()
