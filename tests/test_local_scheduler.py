"""The local scheduler (batchgate.ops.local.scheduler): the catalog's schedules fired from the same
declaration, the message Scheduler would send, its clock sped up for demos, a paused schedule never."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from batchgate.domain.catalog import load_catalog
from batchgate.ops.local.scheduler import LocalScheduler

CATALOG = load_catalog()  # acme-headcount-nightly: 02:00 London; payroll-month-close: month end 22:00 Tokyo


@dataclass
class RecordingQueue:
    bodies: list[str] = field(default_factory=list)

    def send_submit(self, body: str) -> str:
        self.bodies.append(body)
        return f"m-{len(self.bodies)}"


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_it_sends_each_slot_as_scheduler_would_once() -> None:
    clock = Clock(datetime(2026, 11, 28, 1, 59, tzinfo=UTC))
    queue = RecordingQueue()
    scheduler = LocalScheduler(CATALOG, queue, clock=clock)  # type: ignore[arg-type]
    assert scheduler.fire_due() == []
    clock.now += timedelta(minutes=2)
    [fired] = scheduler.fire_due()
    assert fired.scheduled_time == "2026-11-28T02:00:00Z"
    assert json.loads(queue.bodies[0]) == CATALOG.schedules["acme-headcount-nightly"].message(
        "2026-11-28T02:00:00Z"
    )
    assert fired.job_id == CATALOG.schedules["acme-headcount-nightly"].job_id(
        datetime(2026, 11, 28, 2, tzinfo=UTC)
    )
    clock.now += timedelta(minutes=1)
    assert scheduler.fire_due() == []  # never the same slot twice


def test_a_speed_up_brings_the_month_end_within_seconds_and_a_paused_schedule_never_fires() -> None:
    clock = Clock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))  # the month's last day, 21:00 in Tokyo
    queue = RecordingQueue()
    scheduler = LocalScheduler(
        CATALOG,
        queue,  # type: ignore[arg-type]
        speed=3600,
        paused={"acme-headcount-nightly"},
        clock=clock,
    )
    scheduler.fire_due()
    clock.now += timedelta(seconds=15)  # 15 hours on the schedules' clock: 02:00 London passes too
    fired = scheduler.fire_due()
    assert [(slot.schedule, slot.scheduled_time) for slot in fired] == [
        ("payroll-month-close", "2026-11-30T13:00:00Z")
    ]
    assert json.loads(queue.bodies[0])["arguments"] == ["{scheduled_time:%Y-%m}"]  # resolved by dispatch
