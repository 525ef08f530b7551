"""The deterministic discrete-event replay of one trace under one policy.

Events in time order: a job's submission, a task's end and a Spot interruption (at the same moment, an
end frees its slot before a submission takes one). A launch runs on the first strategy of the policy's
chain that has room: a machine of the policy's pool with free cpu, memory and task slots, or Fargate /
Fargate Spot (unlimited). A job that finds the pool full waits in a first-come, first-served queue when
the policy waits for capacity. Random draws (start spread, Spot interruptions) are seeded per job and
attempt, so the same seed replays the same month, and a job draws the same start spread under every
policy.

Times of one job: submitted -> launched (queueing delay) -> started (start latency of the strategy) ->
stopped (run time: the trace's, plus `container_overhead_seconds` in a container). A Spot task
interrupted mid-run stops there and the job is launched again at once (the policy's chain for a job
whose previous attempt was lost to Spot). Fargate bills each task from its image pull start to its stop
(`batchgate.domain.pricing.billed_duration`), at the engine's price for its size; machines are paid for the
whole window.

WARM (the adaptive-warm policy's pool, batchgate.ops.whatif.warm_pool): a launch whose plan puts WARM
first takes a free slot of a serving pool task; the job starts after `warm_dispatch_seconds` (submit ->
dispatch) and `warm_start_seconds` (offer -> claim, spread as the other starts) and runs its own run time
(a warm container: no container overhead), plus `warm_app_boot_seconds` in command mode. When no slot is
free the launch walks to the plan's next strategy at once. A job running on a pool task that is
interrupted (Spot) and cannot finish within `warm_stop_grace_seconds` is stopped then and launched again
with stop code WarmTaskStopped (plan_launch never plans WARM after it: ECS). The pool's tasks are paid as
the pool's own line (`WarmPoolRun.cost_usd`), the jobs on it cost nothing more.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from batchgate.adapters.ec2_capacity import CapacitySnapshot
from batchgate.domain.latency_sketch import (
    SPOT_INTERRUPTION,
    AttemptObservation,
    HistorySummary,
    StrategyHistory,
)
from batchgate.domain.pools import WarmSlots
from batchgate.domain.pricing import billed_duration
from batchgate.domain.strategy_settings import FARGATE, FARGATE_SPOT, WARM
from batchgate.domain.warm import POOL_TASK_STOPPED
from batchgate.ops.whatif.model import DEDICATED, WhatIfSettings
from batchgate.ops.whatif.policies import LaunchRequest, Policy, Pool
from batchgate.ops.whatif.trace import Trace, TraceJob
from batchgate.ops.whatif.warm_pool import PoolTaskLife, WarmPoolRun, pool_figures

# Event kinds; the value orders events of the same moment.
_END, _INTERRUPTED, _SUBMITTED = 0, 1, 2
SERVERLESS = frozenset({FARGATE, FARGATE_SPOT})


@dataclass
class Machine:
    cpu: int
    memory: int
    max_tasks: int
    used_cpu: int = 0
    used_memory: int = 0
    tasks: int = 0

    def fits(self, job: TraceJob) -> bool:
        return (
            self.tasks < self.max_tasks
            and self.used_cpu + job.cpu <= self.cpu
            and self.used_memory + job.memory <= self.memory
        )

    def could_fit(self, job: TraceJob) -> bool:
        return job.cpu <= self.cpu and job.memory <= self.memory

    def take(self, job: TraceJob) -> None:
        self.used_cpu += job.cpu
        self.used_memory += job.memory
        self.tasks += 1

    def release(self, job: TraceJob) -> None:
        self.used_cpu -= job.cpu
        self.used_memory -= job.memory
        self.tasks -= 1

    def free(self) -> tuple[int, int]:
        """Free (cpu, memory) as ECS would report it; none once the task cap is reached."""
        if self.tasks >= self.max_tasks:
            return 0, 0
        return self.cpu - self.used_cpu, self.memory - self.used_memory


@dataclass(frozen=True)
class AttemptRun:
    strategy: str
    launched_at: float
    started_at: float
    stopped_at: float
    cost_usd: float
    interrupted: bool


@dataclass(frozen=True)
class JobRun:
    """One job of the trace as the policy ran it (`attempts` empty: it fits none of the policy's
    machines and never ran)."""

    index: int
    job: TraceJob
    attempts: tuple[AttemptRun, ...] = ()

    @property
    def ran(self) -> bool:
        return bool(self.attempts)

    @property
    def queueing_delay(self) -> float:
        return self.attempts[0].launched_at - self.job.submitted_at

    @property
    def start_latency(self) -> float:
        """Submitted -> the container (or process) of the attempt that ran to the end started."""
        return self.attempts[-1].started_at - self.job.submitted_at

    @property
    def turnaround(self) -> float:
        return self.attempts[-1].stopped_at - self.job.submitted_at

    @property
    def cost_usd(self) -> float:
        return sum(attempt.cost_usd for attempt in self.attempts)

    @property
    def strategy(self) -> str:
        return self.attempts[-1].strategy


@dataclass
class _Running:
    index: int
    strategy: str
    machine: int | None
    launched_at: float
    started_at: float
    stopped_at: float
    cost_usd: float
    interrupted: bool
    stop_code: str | None = None
    warm_task: PoolTaskLife | None = None


@dataclass
class Replay:
    trace: Trace
    policy: Policy
    settings: WhatIfSettings
    pool: Pool | None = None
    machines: list[Machine] = field(default_factory=list)
    _events: list[tuple[float, int, int, int]] = field(default_factory=list)
    _sequence: int = 0
    _waiting: deque[int] = field(default_factory=deque)
    _running: dict[int, _Running] = field(default_factory=dict)
    _attempts: dict[int, list[AttemptRun]] = field(default_factory=dict)
    _history: dict[tuple[str, str], StrategyHistory] = field(default_factory=dict)
    # The policy's warm pools, by name, as they run over the trace's window.
    warm: dict[str, WarmPoolRun] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool = self.policy.pool(self.settings)
        if self.pool is not None:
            self.machines = [
                Machine(self.pool.cpu, self.pool.memory, self.pool.max_tasks)
                for _ in range(self.pool.instances)
            ]
        settings = self.settings
        for name, spec in self.policy.warm_pools().items():
            figures = pool_figures(
                spec,
                start_seconds={
                    FARGATE: settings.start_fargate_seconds,
                    FARGATE_SPOT: settings.start_spot_seconds,
                },
                container_seconds=settings.container_overhead_seconds,
                boot_seconds=settings.warm_app_boot_seconds,
                preload=self.policy.preloads(name),
                interruptions_per_hour=settings.warm_spot_interruptions_per_task_hour,
                provisioning_seconds=settings.fargate_provisioning_seconds,
                availability_zones=settings.warm_availability_zones,
                engine=settings.engine,
                seed=settings.seed,
            )
            self.warm[name] = WarmPoolRun.scheduled(
                spec, figures, self.trace.window_start, self.trace.window_end
            )

    def run(self) -> list[JobRun]:
        for index, job in enumerate(self.trace.jobs):
            self._push(job.submitted_at, _SUBMITTED, index)
        while self._events:
            now, kind, _, index = heapq.heappop(self._events)
            if kind == _SUBMITTED:
                self._launch(index, now, previous_stop_code=None)
            else:
                self._stopped(index, now, interrupted=kind == _INTERRUPTED)
        return [
            JobRun(index, job, tuple(self._attempts.get(index, ())))
            for index, job in enumerate(self.trace.jobs)
        ]

    # --- events -----------------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, index: int) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (at, kind, self._sequence, index))

    def _launch(self, index: int, now: float, previous_stop_code: str | None) -> None:
        job = self.trace.jobs[index]
        request = LaunchRequest(
            job=job,
            now=now,
            previous_stop_code=previous_stop_code,
            capacity=self._capacity(),
            history=lambda: self._summaries(job.batch, now),
            warm=lambda name: self._warm_slots(name, now),
        )
        chain = self.policy.chain(request, self.settings)
        pool = self.pool
        on_pool = pool is not None and pool.strategy in chain
        if on_pool and self.policy.waits_for_capacity and not any(m.could_fit(job) for m in self.machines):
            return  # fits none of the machines: never runs under this policy
        for strategy in chain:
            if pool is not None and strategy == pool.strategy:
                if self.policy.waits_for_capacity and self._waiting:
                    break  # first come, first served: behind the jobs already waiting
                machine = self._free_machine(job)
                if machine is not None:
                    self._start(index, strategy, now, machine)
                    return
            elif strategy in SERVERLESS:
                self._start(index, strategy, now, None)
                return
            elif strategy == WARM:
                name = self.policy.pool_of(job)
                task = self.warm[name].take(now) if name in self.warm else None
                if task is not None:
                    self._start(index, strategy, now, None, warm_task=task)
                    return
                # Full or closed: the plan's next strategy at once, never a wait.
        if on_pool and self.policy.waits_for_capacity:
            self._waiting.append(index)
            return
        # Nothing in the chain had room: on-demand Fargate, as the dispatcher's last fallback.
        self._start(index, FARGATE, now, None)

    def _stopped(self, index: int, now: float, interrupted: bool) -> None:
        running = self._running.pop(index)
        job = self.trace.jobs[index]
        self._attempts.setdefault(index, []).append(
            AttemptRun(
                strategy=running.strategy,
                launched_at=running.launched_at,
                started_at=running.started_at,
                stopped_at=now,
                cost_usd=running.cost_usd,
                interrupted=interrupted,
            )
        )
        self._observe(job, running, now, interrupted)
        if running.machine is not None:
            self.machines[running.machine].release(job)
            self._drain(now)
        if running.warm_task is not None:
            running.warm_task.busy -= 1
        if interrupted:
            self._launch(index, now, previous_stop_code=running.stop_code or SPOT_INTERRUPTION)

    def _drain(self, now: float) -> None:
        while self._waiting and self.pool is not None:
            head = self.trace.jobs[self._waiting[0]]
            machine = self._free_machine(head)
            if machine is None:
                return
            self._start(self._waiting.popleft(), self.pool.strategy, now, machine)

    # --- one attempt -------------------------------------------------------------------------------------

    def _start(
        self,
        index: int,
        strategy: str,
        now: float,
        machine: int | None,
        warm_task: PoolTaskLife | None = None,
    ) -> None:
        job = self.trace.jobs[index]
        attempt = len(self._attempts.get(index, ())) + 1
        settings = self.settings
        spread = settings.start_spread * (2 * self._draw(index, 1, "start") - 1)
        if warm_task is not None:
            self._start_warm(index, now, spread, warm_task)
            return
        start = settings.start_seconds(strategy) * (1 + spread)
        run = job.run_seconds + (0.0 if strategy == DEDICATED else settings.container_overhead_seconds)
        started = now + start
        stopped = started + run
        interrupted = False
        if strategy == FARGATE_SPOT and self._draw(index, attempt, "spot") < settings.spot_interruption_rate:
            interrupted = True
            stopped = started + run * self._draw(index, attempt, "spot-at")
        cost = 0.0
        if strategy in SERVERLESS:
            hourly = settings.engine.hourly_usd(strategy, job.cpu, job.memory) or 0.0
            pull_started = now + min(settings.fargate_provisioning_seconds, start)
            cost = hourly * billed_duration(stopped - pull_started) / 3600
        if machine is not None:
            self.machines[machine].take(job)
        self._running[index] = _Running(index, strategy, machine, now, started, stopped, cost, interrupted)
        self._push(stopped, _INTERRUPTED if interrupted else _END, index)

    def _start_warm(self, index: int, now: float, spread: float, task: PoolTaskLife) -> None:
        """One WARM attempt on a slot of `task` (taken): started after the dispatch path and the claim,
        run as in a warm container, cut when its task is interrupted and it cannot finish in time."""
        job = self.trace.jobs[index]
        settings = self.settings
        started = now + settings.warm_dispatch_seconds + settings.warm_start_seconds * (1 + spread)
        boot = settings.warm_app_boot_seconds if self.policy.run_mode(job) == "command" else 0.0
        stopped = started + job.run_seconds + boot
        interrupted = False
        if task.interrupted:
            deadline = task.stops_at + settings.warm_stop_grace_seconds
            if stopped > deadline:
                interrupted, stopped = True, max(deadline, started)
        self._running[index] = _Running(
            index,
            WARM,
            None,
            now,
            started,
            stopped,
            0.0,
            interrupted,
            stop_code=POOL_TASK_STOPPED if interrupted else None,
            warm_task=task,
        )
        self._push(stopped, _INTERRUPTED if interrupted else _END, index)

    def _warm_slots(self, pool: str, now: float) -> WarmSlots:
        run = self.warm.get(pool)
        return run.slots(now) if run is not None else WarmSlots(pool, 0, 0, 0.0)

    def _draw(self, index: int, attempt: int, purpose: str) -> float:
        # A string seed is hashed with SHA-512: the same draw on every run and every Python.
        return random.Random(f"{self.settings.seed}:{index}:{attempt}:{purpose}").random()

    def _free_machine(self, job: TraceJob) -> int | None:
        return next((number for number, machine in enumerate(self.machines) if machine.fits(job)), None)

    def _capacity(self) -> CapacitySnapshot | None:
        if self.pool is None or self.pool.strategy == DEDICATED:
            return None
        return CapacitySnapshot(
            provider="whatif", instances=tuple(machine.free() for machine in self.machines)
        )

    # --- history, as the track Lambda records it ---------------------------------------------------------

    def _observe(self, job: TraceJob, running: _Running, now: float, interrupted: bool) -> None:
        if running.strategy == DEDICATED:
            return
        key = (job.batch, running.strategy)
        history = self._history.get(key) or StrategyHistory(batch=job.batch, strategy=running.strategy)
        observation = AttemptObservation(
            strategy=running.strategy,
            succeeded=job.exit_code == 0 and not interrupted,
            interrupted=interrupted,
            start_seconds=running.started_at - running.launched_at,
            run_seconds=now - running.started_at,
        )
        self._history[key] = history.observe(observation, now)

    def _summaries(self, batch: str, now: float) -> Mapping[str, HistorySummary]:
        return {
            strategy: history.decayed_to(now).summary()
            for (name, strategy), history in self._history.items()
            if name == batch
        }


def replay(trace: Trace, policy: Policy, settings: WhatIfSettings) -> list[JobRun]:
    return Replay(trace, policy, settings).run()


def replay_with_pools(
    trace: Trace, policy: Policy, settings: WhatIfSettings
) -> tuple[list[JobRun], list[WarmPoolRun]]:
    """The runs, and the policy's warm pools as they ran (their tasks, interruptions and bill)."""
    replaying = Replay(trace, policy, settings)
    runs = replaying.run()
    return runs, list(replaying.warm.values())
