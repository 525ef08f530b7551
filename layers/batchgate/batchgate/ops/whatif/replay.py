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
from batchgate.domain.pricing import billed_duration
from batchgate.domain.strategy_settings import FARGATE, FARGATE_SPOT
from batchgate.ops.whatif.model import DEDICATED, WhatIfSettings
from batchgate.ops.whatif.policies import LaunchRequest, Policy, Pool
from batchgate.ops.whatif.trace import Trace, TraceJob

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

    def __post_init__(self) -> None:
        self.pool = self.policy.pool(self.settings)
        if self.pool is not None:
            self.machines = [
                Machine(self.pool.cpu, self.pool.memory, self.pool.max_tasks)
                for _ in range(self.pool.instances)
            ]

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
        if interrupted:
            self._launch(index, now, previous_stop_code=SPOT_INTERRUPTION)

    def _drain(self, now: float) -> None:
        while self._waiting and self.pool is not None:
            head = self.trace.jobs[self._waiting[0]]
            machine = self._free_machine(head)
            if machine is None:
                return
            self._start(self._waiting.popleft(), self.pool.strategy, now, machine)

    # --- one attempt -------------------------------------------------------------------------------------

    def _start(self, index: int, strategy: str, now: float, machine: int | None) -> None:
        job = self.trace.jobs[index]
        attempt = len(self._attempts.get(index, ())) + 1
        settings = self.settings
        spread = settings.start_spread * (2 * self._draw(index, 1, "start") - 1)
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
