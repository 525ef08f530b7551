"""Where each replayed policy runs a job.

A policy owns at most one pool of machines it pays for around the clock (the dedicated server, the EC2
fleet) and answers, for each launch, the strategies to try in order: the replay runs the job on the
first one that has room now. A policy that `waits_for_capacity` queues the job (first come, first
served) when its machines are full; the others never wait.

The adaptive policy is batchgate's own: every launch is planned by
`batchgate.domain.strategy.plan_launch`, the function the dispatcher calls, with the batch's catalog
entry, the free capacity of the policy's EC2 fleet at that moment and the history the replay has learned
so far (the track Lambda's own `StrategyHistory`), and the job runs where the plan's chain says.

The adaptive-warm policy plans the same way with the batch's warm pool (`plan_launch(..., warm=...)`): the
free slots the replay's pool tasks offer at that moment (batchgate.ops.whatif.warm_pool). A batch goes to
a pool when its catalog entry names one, or by the `warm_batches` rule onto the pool of the warm_*
settings; the pool replaces the adaptive policy's warm EC2 instance (`adaptive_warm_ec2_instances`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from batchgate.adapters.ec2_capacity import CapacitySnapshot
from batchgate.domain import strategy as launch_strategy
from batchgate.domain.catalog import ArgumentRules, BatchSpec, Catalog, PoolSpec
from batchgate.domain.latency_sketch import SPOT_INTERRUPTION, HistorySummary
from batchgate.domain.pools import WarmSlots
from batchgate.domain.strategy_settings import EC2, FARGATE, FARGATE_SPOT
from batchgate.ops.stats import percentile
from batchgate.ops.whatif.model import DEDICATED, WHATIF_POOL, WhatIfSettings
from batchgate.ops.whatif.trace import TraceJob

# The capacity provider name the adaptive policy's fleet goes by in its plans.
ADAPTIVE_PROVIDER = "whatif-ec2"
MIB_PER_GB = 1024
UNITS_PER_VCPU = 1024


@dataclass(frozen=True)
class Pool:
    """Identical machines a policy pays for around the clock, whether they run anything or not."""

    strategy: str  # DEDICATED or EC2: what a job placed on them runs as
    instances: int
    cpu: int  # units per machine
    memory: int  # MiB per machine
    max_tasks: int  # concurrent jobs per machine
    hourly_usd: float  # per machine


@dataclass(frozen=True)
class LaunchRequest:
    """What a policy may read to place one launch of one job."""

    job: TraceJob
    now: float
    previous_stop_code: str | None
    # Free capacity of the policy's EC2 pool now (None: the policy has no EC2 pool).
    capacity: CapacitySnapshot | None
    # The batch's history per strategy, learned by the replay up to `now`.
    history: Callable[[], Mapping[str, HistorySummary]]
    # A pool's free slots now, as its heartbeats would advertise them (by pool name).
    warm: Callable[[str], WarmSlots] = field(default=lambda pool: WarmSlots(pool, 0, 0, 0.0))


class Policy(ABC):
    name: str
    label: str
    waits_for_capacity: bool = False

    def pool(self, settings: WhatIfSettings) -> Pool | None:
        return None

    def warm_pools(self) -> Mapping[str, PoolSpec]:
        """The warm pools the policy runs, by name (none but for adaptive-warm)."""
        return {}

    def pool_of(self, job: TraceJob) -> str | None:
        """The warm pool a job of this batch may run on."""
        return None

    def preloads(self, pool: str) -> bool:
        """Whether a batch of this pool runs in preload mode (the pool's tasks boot the app once)."""
        return False

    def run_mode(self, job: TraceJob) -> str:
        return "command"

    @abstractmethod
    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        """The strategies to try for this launch, in order."""

    @abstractmethod
    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        """How many parts whose failure stops every job, and which."""


def ec2_pool(settings: WhatIfSettings, instances: int) -> Pool | None:
    engine = settings.engine
    if instances <= 0:
        return None
    return Pool(
        strategy=EC2,
        instances=instances,
        cpu=round(engine.ec2_instance_vcpus * UNITS_PER_VCPU),
        memory=round(engine.ec2_instance_memory_gb * MIB_PER_GB),
        max_tasks=settings.tasks_per_instance,
        hourly_usd=engine.ec2_instance_hour_usd,
    )


class DedicatedServer(Policy):
    name = "dedicated"
    label = "dedicated server"
    waits_for_capacity = True

    def pool(self, settings: WhatIfSettings) -> Pool | None:
        return Pool(
            strategy=DEDICATED,
            instances=1,
            cpu=round(settings.dedicated_vcpus * UNITS_PER_VCPU),
            memory=round(settings.dedicated_memory_gb * MIB_PER_GB),
            max_tasks=settings.dedicated_max_jobs,
            hourly_usd=settings.dedicated_hour_usd,
        )

    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        return (DEDICATED,)

    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        return 1, "the one server (no redundancy)"


class FixedEc2Fleet(Policy):
    name = "ec2-fleet"
    waits_for_capacity = True

    def __init__(self, settings: WhatIfSettings) -> None:
        self.label = f"EC2 fleet of {settings.ec2_fleet_instances}"

    def pool(self, settings: WhatIfSettings) -> Pool | None:
        return ec2_pool(settings, max(settings.ec2_fleet_instances, 1))

    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        return (EC2,)

    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        if settings.ec2_fleet_instances <= 1:
            return 1, "the one instance"
        return 0, "-"


class AllFargate(Policy):
    name = "fargate"
    label = "all Fargate"

    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        return (FARGATE,)

    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        return 0, "-"


class AllFargateSpot(Policy):
    """Every job on Spot; a job whose task is interrupted runs again on on-demand Fargate."""

    name = "fargate-spot"
    label = "all Fargate Spot"

    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        if request.previous_stop_code == SPOT_INTERRUPTION:
            return (FARGATE,)
        return (FARGATE_SPOT,)

    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        return 0, "-"


class Adaptive(Policy):
    """A warm EC2 fleet of `adaptive_ec2_instances` plus Fargate and Fargate Spot, as plan_launch decides."""

    name = "adaptive"

    def __init__(self, catalog: Catalog, settings: WhatIfSettings) -> None:
        launch_class = catalog.launch_classes.get(settings.default_launch_class)
        if launch_class is None:
            known = ", ".join(sorted(catalog.launch_classes))
            raise ValueError(
                f"default_launch_class {settings.default_launch_class!r} is not in the catalog ({known})"
            )
        self.catalog = catalog
        self.label = f"adaptive ({settings.adaptive_ec2_instances} EC2 + Fargate)"
        self._default_class = launch_class
        self._specs: dict[tuple[str, int, int], BatchSpec] = {}

    def pool(self, settings: WhatIfSettings) -> Pool | None:
        return ec2_pool(settings, settings.adaptive_ec2_instances)

    def spec_for(self, job: TraceJob) -> BatchSpec:
        """The batch's catalog entry at the size the trace says it ran with; for a batch the catalog does
        not list, an entry of the default launch class (no run time estimate: the class objective's)."""
        key = (job.batch, job.cpu, job.memory)
        spec = self._specs.get(key)
        if spec is None:
            listed = self.catalog.get(job.batch)
            if listed is None:
                spec = BatchSpec(
                    name=job.batch,
                    description="trace batch not in the catalog",
                    task_definition="whatif",
                    container="whatif",
                    cpu=job.cpu,
                    memory=job.memory,
                    command=("whatif",),
                    arguments=ArgumentRules(min_count=0, max_count=0, max_length=1, pattern=".*"),
                    environment=frozenset(),
                    timeout_seconds=86400,
                    max_attempts=1,
                    launch_class=self._default_class,
                )
            else:
                spec = listed._replace(cpu=job.cpu, memory=job.memory)
            self._specs[key] = spec
        return spec

    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        # Through the module attribute: the very function dispatch calls (and a test can watch it).
        plan = launch_strategy.plan_launch(
            self.spec_for(request.job),
            ec2_capacity_provider=ADAPTIVE_PROVIDER if request.capacity is not None else None,
            priority=request.job.priority,
            history=request.history(),
            capacity=request.capacity,
            previous_stop_code=request.previous_stop_code,
            settings=settings.engine,
        )
        return plan.chain

    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        return 0, "- (EC2 full or down: Fargate)"


class AdaptiveWarm(Adaptive):
    """plan_launch with a warm pool for the short batches, Fargate and Fargate Spot behind it, and
    `adaptive_warm_ec2_instances` EC2 instances (none by default: the pool replaces the warm instance)."""

    name = "adaptive-warm"

    def __init__(self, catalog: Catalog, settings: WhatIfSettings, jobs: Sequence[TraceJob] = ()) -> None:
        super().__init__(catalog, settings)
        self._settings = settings
        self._assigned = warm_assignments(catalog, settings, jobs)
        used = set(self._assigned.values())
        declared = {name: spec for name, spec in catalog.pools.items() if name in used}
        if WHATIF_POOL in used:
            declared[WHATIF_POOL] = settings.warm_pool_spec()
        self._pools = declared
        ec2 = f" + {settings.adaptive_warm_ec2_instances} EC2" if settings.adaptive_warm_ec2_instances else ""
        self.label = f"adaptive + warm pool{ec2}"

    def pool(self, settings: WhatIfSettings) -> Pool | None:
        return ec2_pool(settings, settings.adaptive_warm_ec2_instances)

    def warm_pools(self) -> Mapping[str, PoolSpec]:
        return self._pools

    def pool_of(self, job: TraceJob) -> str | None:
        return self._assigned.get(job.batch)

    def run_mode(self, job: TraceJob) -> str:
        return self.spec_for(job).run_mode

    def preloads(self, pool: str) -> bool:
        return any(
            self.run_mode_of(batch) == "preload" for batch, named in self._assigned.items() if named == pool
        )

    def run_mode_of(self, batch: str) -> str:
        listed = self.catalog.get(batch)
        if listed is not None and listed.pool is not None:
            return listed.run_mode
        return self._settings.warm_run_mode

    def spec_for(self, job: TraceJob) -> BatchSpec:
        spec = super().spec_for(job)
        pool = self._assigned.get(job.batch)
        if pool is None or spec.pool == pool:
            return spec
        # What if the batch's catalog entry named the pool: the run mode of the warm_run_mode setting.
        return spec._replace(pool=pool, run_mode=self.run_mode_of(job.batch))

    def chain(self, request: LaunchRequest, settings: WhatIfSettings) -> tuple[str, ...]:
        spec = self.spec_for(request.job)
        plan = launch_strategy.plan_launch(
            spec,
            ec2_capacity_provider=ADAPTIVE_PROVIDER if request.capacity is not None else None,
            priority=request.job.priority,
            history=request.history(),
            capacity=request.capacity,
            previous_stop_code=request.previous_stop_code,
            settings=settings.engine,
            warm=request.warm(spec.pool) if spec.pool is not None else None,
        )
        return plan.chain

    def single_points_of_failure(self, settings: WhatIfSettings) -> tuple[int, str]:
        tasks, zones = open_pool_tasks(self._pools.values(), settings.warm_availability_zones)
        if tasks and (tasks < 2 or zones < 2):
            return 1, f"the warm pool's {tasks} task(s) in {zones} AZ(s) when open (overflow: ECS)"
        return 0, "- (pool full, closed or down: ECS)"


def open_pool_tasks(pools: Iterable[PoolSpec], zones: int) -> tuple[int, int]:
    """The fewest tasks any pool runs while open (a window's tasks, or min_tasks when above 0), and the
    AZs those spread over (Fargate spreads a service's tasks over its subnets' AZs)."""
    counts = [
        count
        for pool in pools
        for count in (*(window.tasks for window in pool.windows), pool.min_tasks)
        if count > 0
    ]
    fewest = min(counts, default=0)
    return fewest, min(fewest, zones)


def warm_assignments(catalog: Catalog, settings: WhatIfSettings, jobs: Sequence[TraceJob]) -> dict[str, str]:
    """Batch -> the warm pool it runs on: its catalog entry's pool; then, by `warm_batches`, the what-if
    pool for "short" batches (p95 run time in the trace below warm_max_run_seconds) or the named ones."""
    batches = sorted({job.batch for job in jobs})
    assigned: dict[str, str] = {}
    for batch in batches:
        listed = catalog.get(batch)
        if listed is not None and listed.pool is not None:
            assigned[batch] = listed.pool
    rule = settings.warm_batches.strip()
    if rule == "catalog":
        return assigned
    if rule == "short":
        runs: dict[str, list[float]] = {}
        for job in jobs:
            runs.setdefault(job.batch, []).append(job.run_seconds)
        chosen = [
            batch
            for batch in batches
            if (p95 := percentile(runs[batch], 0.95)) is not None and p95 < settings.warm_max_run_seconds
        ]
    else:
        chosen = [name.strip() for name in rule.split(",") if name.strip()]
    for batch in chosen:
        assigned.setdefault(batch, WHATIF_POOL)
    return assigned


def all_policies(catalog: Catalog, settings: WhatIfSettings, jobs: Sequence[TraceJob] = ()) -> list[Policy]:
    """Every policy; `jobs` (the trace's) let adaptive-warm choose the batches of its pool."""
    return [
        DedicatedServer(),
        FixedEc2Fleet(settings),
        AllFargate(),
        AllFargateSpot(),
        Adaptive(catalog, settings),
        AdaptiveWarm(catalog, settings, jobs),
    ]


POLICY_NAMES = ("dedicated", "ec2-fleet", "fargate", "fargate-spot", "adaptive", "adaptive-warm")
