"""Missed and late scheduled runs (docs/schedules.md): what the sweep concludes from a slot and its job.

Pure. A slot whose job does not exist `missed_after` past its time is a missed run; a job that started
(RUNNING) more than its schedule's start tolerance after its slot is a late start. Each is published as
an event of its own detail-type on the job events' bus, with `status` MISSED or LATE so that the job
notification rule's pattern takes the missed ones; the event never carries the job's arguments.
"""

import json
from datetime import datetime
from typing import Any, NamedTuple

from batchgate.domain.job_events import JOB_EVENT_SOURCE
from batchgate.domain.jobs import Job, iso, parse_iso
from batchgate.domain.schedules import ScheduleSpec, scheduled_time_text

SCHEDULED_RUN_MISSED = "Batchgate Scheduled Run Missed"
SCHEDULED_RUN_LATE = "Batchgate Scheduled Run Late"
MISSED = "MISSED"
LATE = "LATE"
SCHEDULED_RUN_EVENT_VERSION = 1


class SlotReport(NamedTuple):
    """A missed or late slot: what the sweep reports once."""

    kind: str  # MISSED or LATE
    schedule: ScheduleSpec
    slot: datetime
    job_id: str
    reason: str
    started_at: str | None = None

    @property
    def report_key(self) -> str:
        return f"{self.kind.lower()}#{scheduled_time_text(self.slot)}"

    def detail(self) -> dict[str, Any]:
        return {
            "version": SCHEDULED_RUN_EVENT_VERSION,
            "event_id": f"{self.schedule.name}:{scheduled_time_text(self.slot)}:{self.kind}",
            "schedule": self.schedule.name,
            "batch": self.schedule.batch,
            "tenant": self.schedule.tenant,
            "job_id": self.job_id,
            "status": self.kind,
            "scheduled_time": scheduled_time_text(self.slot),
            "started_at": self.started_at,
            "reason": self.reason,
        }

    def entry(self, bus_name: str, now: datetime) -> dict[str, Any]:
        return {
            "Source": JOB_EVENT_SOURCE,
            "DetailType": SCHEDULED_RUN_MISSED if self.kind == MISSED else SCHEDULED_RUN_LATE,
            "Detail": json.dumps(self.detail(), separators=(",", ":"), sort_keys=True),
            "EventBusName": bus_name,
            "Time": now,
            "Resources": [],
        }


def started_at(job: Job) -> str | None:
    """When the job first ran (its first attempt that reached RUNNING)."""
    return next((a.timeline["started"] for a in job.attempts if a.timeline.get("started")), None)


def slot_report(
    schedule: ScheduleSpec, slot: datetime, job: Job | None, now: datetime, missed_after_seconds: int
) -> SlotReport | None:
    """What a slot is worth reporting, if anything."""
    job_id = schedule.job_id(slot)
    when = scheduled_time_text(slot)
    if job is None:
        if (now - slot).total_seconds() < missed_after_seconds:
            return None  # Scheduler may still be retrying its delivery
        return SlotReport(
            kind=MISSED,
            schedule=schedule,
            slot=slot,
            job_id=job_id,
            reason=(
                f"schedule {schedule.name} had no job for its slot {when} "
                f"{_minutes(missed_after_seconds)} after it (run it: batchgate schedules run "
                f"{schedule.name} --slot {when})"
            ),
        )
    tolerance = schedule.start_tolerance_seconds
    started = started_at(job)
    if tolerance is None or started is None:
        return None
    late = (parse_iso(started) - slot).total_seconds()
    if late <= tolerance:
        return None
    return SlotReport(
        kind=LATE,
        schedule=schedule,
        slot=slot,
        job_id=job_id,
        started_at=iso(parse_iso(started)),
        reason=(
            f"job {job_id} of schedule {schedule.name} started {round(late)} s after its slot {when}; "
            f"the schedule's start tolerance is {tolerance} s"
        ),
    )


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
