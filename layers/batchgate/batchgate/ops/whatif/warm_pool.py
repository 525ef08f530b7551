"""A warm pool as a what-if replay runs it: its tasks over the trace's window, their slots, their Spot
interruptions and their bill.

A pool keeps, within each window of its schedule (cron start and end, read in the schedule's time zone),
the window's `tasks`, and `min_tasks` outside every window (docs/warm-lane.md); scaling on the busy-slot
ratio is not modelled, so the pool runs exactly that many tasks. Each task is one life: launched when
the schedule asks for it, ready to take jobs after its start latency and its container's start
(`container_overhead_seconds`), plus the application's boot when one of its batches runs in preload
mode (the parent imports once per task start); it stops when the window closes. On FARGATE_SPOT a task
is interrupted at seeded times (`warm_spot_interruptions_per_task_hour`); the service launches a
replacement at once, ready after the same start. Each task is billed from its image pull start to its
stop at its capacity provider's and architecture's price, one-minute minimum.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from batchgate.domain.catalog import PoolSpec
from batchgate.domain.pools import WarmSlots
from batchgate.domain.pricing import billed_duration
from batchgate.domain.strategy_settings import FARGATE, FARGATE_SPOT, StrategySettings

DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
# Application Auto Scaling's cron numbers days 1 (SUN) to 7 (SAT).
_CRON_DAY_NUMBERS = {"1": "SUN", "2": "MON", "3": "TUE", "4": "WED", "5": "THU", "6": "FRI", "7": "SAT"}
_CRON = re.compile(r"^cron\((?P<minute>\d{1,2}) (?P<hour>\d{1,2}) (?P<dom>[*?]) \* (?P<dow>\S+) \*\)$")


class ScheduleError(ValueError):
    """A schedule the replay cannot read; the message names the expression."""


@dataclass(frozen=True)
class DailyTime:
    """A cron expression of the form the replay reads: a minute and an hour on some days of the week."""

    minute: int
    hour: int
    days: frozenset[str]  # MON..SUN

    @classmethod
    def parse(cls, expression: str) -> DailyTime:
        found = _CRON.fullmatch(expression.strip())
        if found is None:
            raise ScheduleError(
                f"{expression!r}: the replay reads cron(M H ? * DAYS *) (e.g. cron(0 9 ? * MON-FRI *)), "
                "with a fixed minute and hour"
            )
        minute, hour = int(found["minute"]), int(found["hour"])
        if minute > 59 or hour > 23:
            raise ScheduleError(f"{expression!r}: minute 0-59 and hour 0-23")
        return cls(minute=minute, hour=hour, days=_days(found["dow"], expression))

    def moments(self, zone: ZoneInfo, start: float, end: float) -> list[float]:
        """Epoch seconds of every firing from `start` to `end`, in `zone`'s local time."""
        first = datetime.fromtimestamp(start, tz=zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, tz=zone).date() + timedelta(days=1)
        found: list[float] = []
        day = first
        while day <= last:
            if DAY_NAMES[day.weekday()] in self.days:
                local = datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=zone)
                moment = local.timestamp()
                if start <= moment <= end:
                    found.append(moment)
            day += timedelta(days=1)
        return found


def _days(field_text: str, expression: str) -> frozenset[str]:
    if field_text in ("*", "?"):
        return frozenset(DAY_NAMES)
    days: set[str] = set()
    for part in field_text.upper().split(","):
        bounds = [_CRON_DAY_NUMBERS.get(bound, bound) for bound in part.split("-")]
        if not all(bound in DAY_NAMES for bound in bounds) or len(bounds) > 2:
            raise ScheduleError(f"{expression!r}: day-of-week {part!r} is not MON-SUN, 1-7 or a range")
        first, last = DAY_NAMES.index(bounds[0]), DAY_NAMES.index(bounds[-1])
        span = range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
        days.update(DAY_NAMES[index] for index in span)
    return frozenset(days)


def task_counts(pool: PoolSpec, start: float, end: float) -> list[tuple[float, float, int]]:
    """The tasks the schedule asks for, as (from, to, tasks) segments covering `start` to `end` (epoch
    seconds): each window's `tasks` from its start to the first end after it, `min_tasks` elsewhere."""
    zone = ZoneInfo(pool.timezone)
    openings: list[tuple[float, float, int]] = []
    for window in pool.windows:
        ends = DailyTime.parse(window.end).moments(zone, start - 7 * 86400, end + 7 * 86400)
        for opened in DailyTime.parse(window.start).moments(zone, start - 7 * 86400, end):
            closed = next((moment for moment in ends if moment > opened), end)
            if closed > start:
                openings.append((max(opened, start), min(closed, end), window.tasks))
    cuts = sorted({start, end, *(moment for opening in openings for moment in opening[:2])})
    segments: list[tuple[float, float, int]] = []
    for begin, finish in itertools.pairwise(cuts):
        inside = [tasks for opened, closed, tasks in openings if opened <= begin and finish <= closed]
        tasks = max([pool.min_tasks, *inside])
        if segments and segments[-1][2] == tasks and segments[-1][1] == begin:
            segments[-1] = (segments[-1][0], finish, tasks)
        else:
            segments.append((begin, finish, tasks))
    return segments


@dataclass(frozen=True)
class PoolFigures:
    """What the replay needs of the models to run a pool's tasks."""

    start_seconds: float  # launch -> the container running (the capacity provider's start p50)
    container_seconds: float  # the fresh container's own start (runtime, the worker)
    boot_seconds: float  # the application's boot, paid here when a batch of the pool preloads
    preload: bool
    interruptions_per_hour: float  # FARGATE_SPOT only
    provisioning_seconds: float  # the part of the start before the image pull, not billed
    hourly_usd: float
    availability_zones: int
    seed: int

    @property
    def ready_after(self) -> float:
        return self.start_seconds + self.container_seconds + (self.boot_seconds if self.preload else 0.0)


@dataclass
class PoolTaskLife:
    """One pool task from its launch to its stop; `busy` slots while the replay runs."""

    pool: str
    number: int
    zone: int
    slots: int
    launched_at: float
    ready_at: float
    stops_at: float
    interrupted: bool = False
    busy: int = 0

    def serves(self, now: float) -> bool:
        return self.ready_at <= now < self.stops_at

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.busy)


@dataclass
class WarmPoolRun:
    """One pool's tasks over the replay's window, and the slots they offer as the replay goes."""

    spec: PoolSpec
    figures: PoolFigures
    lives: list[PoolTaskLife] = field(default_factory=list)
    # The schedule's (from, to, tasks) segments over the window.
    counts: list[tuple[float, float, int]] = field(default_factory=list)

    @classmethod
    def scheduled(cls, spec: PoolSpec, figures: PoolFigures, start: float, end: float) -> WarmPoolRun:
        counts = task_counts(spec, start, end)
        run = cls(spec, figures, counts=counts)
        seats = max((tasks for _, _, tasks in counts), default=0)
        for seat in range(seats):
            up_from: float | None = None
            for begin, _finish, tasks in [*counts, (end, end, 0)]:
                if tasks > seat and up_from is None:
                    up_from = begin
                elif tasks <= seat and up_from is not None:
                    run._launch(seat, up_from, begin)
                    up_from = None
        run.lives.sort(key=lambda life: (life.launched_at, life.number))
        return run

    def _launch(self, seat: int, launched_at: float, stops_at: float) -> None:
        """A task on `seat` from `launched_at` to `stops_at`, and the replacements of its interruptions."""
        figures = self.figures
        draw = random.Random(f"{figures.seed}:pool:{self.spec.name}:{seat}:{launched_at}")
        while launched_at < stops_at:
            interrupted_at = stops_at
            if self.spec.capacity_provider == FARGATE_SPOT and figures.interruptions_per_hour > 0:
                interrupted_at = launched_at + draw.expovariate(figures.interruptions_per_hour) * 3600
            self.lives.append(
                PoolTaskLife(
                    pool=self.spec.name,
                    number=len(self.lives),
                    # Fargate spreads a service's tasks over its subnets' AZs: seat by seat, in turn.
                    zone=seat % max(figures.availability_zones, 1),
                    slots=self.spec.slots,
                    launched_at=launched_at,
                    ready_at=launched_at + figures.ready_after,
                    stops_at=min(interrupted_at, stops_at),
                    interrupted=interrupted_at < stops_at,
                )
            )
            launched_at = interrupted_at  # the service replaces an interrupted task at once

    def slots(self, now: float) -> WarmSlots:
        """What the pool's heartbeats would advertise now (plan_launch's `warm`)."""
        serving = [life for life in self.lives if life.serves(now)]
        return WarmSlots(
            pool=self.spec.name,
            free_slots=sum(life.free_slots for life in serving),
            tasks=len(serving),
            max_run_seconds=float(self.spec.max_run_seconds),
        )

    def take(self, now: float) -> PoolTaskLife | None:
        """A free slot now, on the serving task with the most free slots (the first to receive)."""
        serving = [life for life in self.lives if life.serves(now) and life.free_slots > 0]
        if not serving:
            return None
        life = max(serving, key=lambda candidate: (candidate.free_slots, -candidate.number))
        life.busy += 1
        return life

    def cost_usd(self) -> float:
        hourly = self.figures.hourly_usd
        provisioning = min(self.figures.provisioning_seconds, self.figures.start_seconds)
        return sum(
            hourly * billed_duration(life.stops_at - life.launched_at - provisioning) / 3600
            for life in self.lives
        )

    def interruptions(self) -> int:
        return sum(1 for life in self.lives if life.interrupted)

    def open_tasks(self) -> tuple[int, int]:
        """The fewest tasks and AZs the pool runs while it is open at all (0, 0: never open)."""
        counts = [tasks for _, _, tasks in self.counts if tasks > 0]
        fewest = min(counts, default=0)
        return fewest, min(fewest, self.figures.availability_zones)


def pool_figures(
    spec: PoolSpec,
    *,
    start_seconds: Mapping[str, float],
    container_seconds: float,
    boot_seconds: float,
    preload: bool,
    interruptions_per_hour: float,
    provisioning_seconds: float,
    availability_zones: int,
    engine: StrategySettings,
    seed: int,
) -> PoolFigures:
    hourly = engine.hourly_usd(spec.capacity_provider, spec.cpu, spec.memory, spec.architecture) or 0.0
    return PoolFigures(
        start_seconds=start_seconds.get(spec.capacity_provider, start_seconds[FARGATE]),
        container_seconds=container_seconds,
        boot_seconds=boot_seconds,
        preload=preload,
        interruptions_per_hour=interruptions_per_hour,
        provisioning_seconds=provisioning_seconds,
        hourly_usd=hourly,
        availability_zones=availability_zones,
        seed=seed,
    )


def fewest_open(pools: Iterable[WarmPoolRun]) -> tuple[int, int]:
    """Over every pool that opens: the fewest tasks and AZs one of them runs while open."""
    found = [pool.open_tasks() for pool in pools]
    opened = [figures for figures in found if figures[0] > 0]
    if not opened:
        return 0, 0
    return min(tasks for tasks, _ in opened), min(zones for _, zones in opened)
