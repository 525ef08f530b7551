"""The local stand-in for EventBridge Scheduler: the catalog's schedules fired from the same declaration,
each slot's message the one Scheduler sends (`ScheduleSpec.message` with the slot's time), to the local
jobs queue.

`speed` makes the schedules' clock run that many times faster than the wall clock from the moment the
scheduler starts (`batchgate local up --schedule-speed 3600`: an hourly schedule fires every second), so
that a demo sees a month-end run within seconds. Its slots then lie ahead of the wall clock; the sweep
reads the wall clock, so it never takes them for missed runs. A schedule named in `paused` is never
fired: Scheduler unable to deliver, which the sweep reports as missed runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.catalog import Catalog
from batchgate.domain.jobs import utc_now
from batchgate.domain.schedules import scheduled_time_text

TICK_SECONDS = 0.2


@dataclass(frozen=True)
class FiredSlot:
    schedule: str
    scheduled_time: str
    job_id: str


@dataclass
class LocalScheduler:
    catalog: Catalog
    queue: JobsQueue
    speed: float = 1.0
    paused: Collection[str] = ()
    clock: Callable[[], datetime] = utc_now
    fired: list[FiredSlot] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _started_at: datetime | None = None
    _fired_through: datetime | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def schedule_now(self) -> datetime:
        """The schedules' clock: the wall clock, sped up from the start."""
        now = self.clock()
        if self._started_at is None:
            return now
        return self._started_at + (now - self._started_at) * self.speed

    def start(self) -> None:
        self._started_at = self._fired_through = self.clock()
        self._thread = threading.Thread(target=self._run, name="local-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def fire_due(self) -> list[FiredSlot]:
        """Send every slot from the last call (or the start) up to the schedules' clock."""
        if self._fired_through is None:
            self._started_at = self._fired_through = self.clock()
        now = self.schedule_now()
        start = self._fired_through + timedelta(microseconds=1)
        fired = []
        for name in sorted(self.catalog.schedules):
            if name in self.paused:
                continue
            schedule = self.catalog.schedules[name]
            for slot in schedule.slots(start, now + timedelta(microseconds=1)):
                body = json.dumps(schedule.message(scheduled_time_text(slot)), separators=(",", ":"))
                self.queue.send_submit(body)
                fired.append(FiredSlot(name, scheduled_time_text(slot), schedule.job_id(slot)))
        self._fired_through = now
        self.fired.extend(fired)
        return fired

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.fire_due()
            except Exception as error:  # the endpoint going away at stop: the next tick tries again
                self.errors.append(str(error))
            self._stopping.wait(TICK_SECONDS)  # a stop ends the wait at once
