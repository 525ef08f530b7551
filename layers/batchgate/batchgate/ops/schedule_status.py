"""`batchgate schedules`: each schedule's next slot and its last slots' jobs ("did last night's payroll
run?"), and a slot run by hand with the slot's own key (so never a second job for it).

A slot's job is read by the id its key gives (the job id formula: batchgate.domain.jobs.job_id_for),
one BatchGetItem for every schedule's last slots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.catalog import Catalog
from batchgate.domain.jobs import Job, iso
from batchgate.domain.messages import parse_submit_message
from batchgate.domain.schedule_delivery import MISSED_AFTER_SECONDS
from batchgate.domain.scheduled_runs import started_at
from batchgate.domain.schedules import ScheduleSpec, scheduled_time_text

# A slot without a job: not yet delivered (Scheduler retries for a while), or missed.
DUE = "DUE"
MISSED = "MISSED"


class SlotRefused(ValueError):
    """The time given is not a slot of the schedule, or not one that may be run now."""


@dataclass(frozen=True)
class SlotView:
    slot: datetime
    job_id: str
    job: Job | None
    state: str  # the job's status, else DUE or MISSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheduled_time": scheduled_time_text(self.slot),
            "job_id": self.job_id,
            "state": self.state,
            "started_at": started_at(self.job) if self.job else None,
            "reason": self.job.reason if self.job else None,
        }


@dataclass(frozen=True)
class ScheduleView:
    schedule: ScheduleSpec
    next_slot: datetime | None
    recent: tuple[SlotView, ...]  # newest first

    def to_dict(self) -> dict[str, Any]:
        schedule = self.schedule
        return {
            "name": schedule.name,
            "batch": schedule.batch,
            "expression": schedule.expression.text,
            "timezone": schedule.timezone,
            "tenant": schedule.tenant,
            "arguments": list(schedule.arguments),
            "start_tolerance_seconds": schedule.start_tolerance_seconds,
            "next_slot": scheduled_time_text(self.next_slot) if self.next_slot else None,
            "recent": [slot.to_dict() for slot in self.recent],
        }


def schedule_views(
    catalog: Catalog,
    table: JobTable | None,
    now: datetime,
    *,
    last: int = 3,
    names: list[str] | None = None,
    missed_after_seconds: int = MISSED_AFTER_SECONDS,
) -> list[ScheduleView]:
    chosen = [catalog.schedules[name] for name in (names if names is not None else sorted(catalog.schedules))]
    recent = {schedule.name: schedule.recent_slots(now, last) for schedule in chosen}
    ids = [schedule.job_id(slot) for schedule in chosen for slot in recent[schedule.name]]
    jobs = {job.job_id: job for job in table.get_many(ids)} if ids and table is not None else {}
    views = []
    for schedule in chosen:
        slots = []
        for slot in recent[schedule.name]:
            job_id = schedule.job_id(slot)
            job = jobs.get(job_id)
            if job is not None:
                state = job.status.value
            else:
                state = MISSED if (now - slot).total_seconds() >= missed_after_seconds else DUE
            slots.append(SlotView(slot=slot, job_id=job_id, job=job, state=state))
        views.append(ScheduleView(schedule=schedule, next_slot=schedule.next_slot(now), recent=tuple(slots)))
    return views


def parse_slot(schedule: ScheduleSpec, text: str, now: datetime) -> datetime:
    """`--slot`: an ISO date-time, with an offset or "Z", else read in the schedule's time zone; it must
    be one of the schedule's slots, and not a future one (its delivery would then find the job made)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SlotRefused(
            f"{text!r} is not an ISO date-time (e.g. 2026-11-30T22:00 or 2026-11-30T13:00Z)"
        ) from None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=schedule.zone)
    moment = moment.astimezone(UTC)
    if not schedule.slots(moment, moment + timedelta(seconds=1)):
        before = schedule.recent_slots(moment, 1)
        hint = f" (the slot before it: {scheduled_time_text(before[0])})" if before else ""
        raise SlotRefused(
            f"{scheduled_time_text(moment)} is not a slot of schedule {schedule.name} "
            f"({schedule.expression.text} in {schedule.timezone}){hint}"
        )
    if moment > now:
        raise SlotRefused(
            f"the slot {scheduled_time_text(moment)} has not come yet: Scheduler will run it "
            "(running it now would make Scheduler's delivery a duplicate)"
        )
    return moment


@dataclass(frozen=True)
class SlotRun:
    schedule: str
    scheduled_time: str
    job_id: str
    message_id: str
    # The job was there already: the message sent is a duplicate dispatch ignores.
    existing_status: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "scheduled_time": self.scheduled_time,
            "job_id": self.job_id,
            "message_id": self.message_id,
            "existing_status": self.existing_status,
        }


def run_slot(
    catalog: Catalog, schedule: ScheduleSpec, slot: datetime, queue: JobsQueue, table: JobTable
) -> SlotRun:
    """Send the slot's message, the one Scheduler sends, so its key makes it the slot's one job."""
    when = scheduled_time_text(slot)
    body = json.dumps(schedule.message(when), separators=(",", ":"))
    parse_submit_message(body, catalog)  # RejectedMessage: the reason dispatch would give
    existing = table.get(schedule.job_id(slot))
    message_id = queue.send_submit(body)
    return SlotRun(
        schedule=schedule.name,
        scheduled_time=when,
        job_id=schedule.job_id(slot),
        message_id=message_id,
        existing_status=existing.status.value if existing else None,
    )


def local_time(slot: datetime, schedule: ScheduleSpec) -> str:
    """A slot in the schedule's zone, then UTC: "2026-11-30 22:00 JST (13:00Z)"."""
    local = slot.astimezone(schedule.zone)
    return f"{local:%Y-%m-%d %H:%M %Z} ({iso(slot)[11:16]}Z)"
