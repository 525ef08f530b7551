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

from batchgate.domain.strategy_settings import (
    DEFAULT_STRATEGY_SETTINGS,
    EC2,
    FARGATE,
    FARGATE_SPOT,
    StrategySettings,
)

# The batch server of the "dedicated" policy: not an ECS strategy, its jobs run as processes.
DEDICATED = "DEDICATED"
STRATEGIES = (DEDICATED, EC2, FARGATE, FARGATE_SPOT)


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
        engine_names = {spec.name for spec in fields(self.engine)}
        mine: dict[str, Any] = {}
        theirs: dict[str, Any] = {}
        for name, raw in overrides.items():
            if name in own:
                mine[name] = _typed(name, raw, getattr(self, name))
            elif name in engine_names:
                theirs[name] = _typed(name, raw, getattr(self.engine, name))
            else:
                raise ValueError(f"unknown setting {name!r} (known: {', '.join(sorted(own | engine_names))})")
        updated = replace(self, **mine, engine=replace(self.engine, **theirs))
        updated.check()
        return updated

    def check(self) -> None:
        counts = {
            "ec2_fleet_instances": self.ec2_fleet_instances,
            "adaptive_ec2_instances": self.adaptive_ec2_instances,
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
