"""The schedules' step of `batchgate local demo` (docs/schedules.md): a scheduled job fired by the local
scheduler from the catalog's declaration (its clock sped up, so an hourly slot comes within a second),
and a missed run the sweep notices: a minutely schedule the scheduler cannot deliver (paused), declared
three minutes before the demo, whose slots have no job once the demo's grace has passed.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from rich.console import Console

from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.schedule_table import ScheduleReports
from batchgate.domain.jobs import JobStatus, iso, utc_now
from batchgate.ops.local.scheduler import FiredSlot, LocalScheduler
from batchgate.ops.local.stack import LocalStack

SCHEDULED = "demo-payroll-hourly"
MISSED = "demo-export-minutely"
DEMO_SCHEDULES: dict[str, Any] = {
    SCHEDULED: {
        "description": "The month's payroll, every hour (the demo's scheduled job).",
        "batch": "payroll-calculation",
        "expression": "cron(0 * * * ? *)",
        "timezone": "Asia/Tokyo",
        "arguments": ["{scheduled_time:%Y-%m}"],
        "start_tolerance_seconds": 300,
    },
    MISSED: {
        "description": "A headcount export every minute Scheduler cannot deliver (the demo's missed run).",
        "batch": "report-export",
        "expression": "cron(* * * * ? *)",
        "timezone": "UTC",
        "arguments": ["headcount", "{scheduled_time:%Y-%m-%d}"],
    },
}
# The sweep's grace before a slot without a job is missed (template parameter ScheduleMissedAfterSeconds).
DEMO_MISSED_AFTER_SECONDS = 5
DEMO_SCHEDULE_SPEED = 3600.0  # an hourly schedule's next slot within a second
DECLARED_MINUTES_AGO = 3
WAIT_SECONDS = 30.0
POLL_SECONDS = 0.3


def run_schedule_demo(stack: LocalStack, console: Console) -> list[str]:
    """Fire one scheduled job and wait for its end, and for the sweep's missed-run report. The problems
    found, if any."""
    aws = stack.client_aws()
    resources = stack.resources
    table_name = resources.outputs.get("ScheduleTableName") if resources else None
    if not table_name or not stack.runs_schedules:
        return ["schedules: the template has no schedule table or no scheduled sweep"]
    reports = ScheduleReports(table_name, aws.dynamodb())
    reports.set_watching_since(MISSED, iso(utc_now() - timedelta(minutes=DECLARED_MINUTES_AGO)))
    scheduler = LocalScheduler(
        stack.catalog,
        JobsQueue(stack.outputs["queue_url"], aws.sqs()),
        speed=DEMO_SCHEDULE_SPEED,
        paused={MISSED},
    )
    problems: list[str] = []
    fired = _first_slot(scheduler)
    if fired is None:
        problems.append(f"schedules: {SCHEDULED} fired no slot")
    else:
        problems += _scheduled_job(stack, console, fired)
    problems += _missed_run(reports, console)
    return problems


def _first_slot(scheduler: LocalScheduler) -> FiredSlot | None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fired = scheduler.fire_due()
        if fired:
            return fired[0]
        time.sleep(0.1)
    return None


def _scheduled_job(stack: LocalStack, console: Console, fired: FiredSlot) -> list[str]:
    deadline = time.monotonic() + WAIT_SECONDS
    table = stack.table()
    while time.monotonic() < deadline:
        job = table.get(fired.job_id)
        if job is not None and job.status.is_terminal:
            console.print(
                f"schedule {fired.schedule}: slot {fired.scheduled_time} (the local scheduler, "
                f"{DEMO_SCHEDULE_SPEED:g}x) -> job {job.job_id} {job.status.value}, arguments "
                f"{' '.join(job.arguments)}",
                highlight=False,
            )
            if job.status is not JobStatus.SUCCEEDED:
                return [f"schedules: job {job.job_id} of {fired.schedule} ended {job.status.value}"]
            return []
        time.sleep(POLL_SECONDS)
    return [f"schedules: no end for job {fired.job_id} of {fired.schedule} within {WAIT_SECONDS:g}s"]


def _missed_run(reports: ScheduleReports, console: Console) -> list[str]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = reports.reports(MISSED)
        if found:
            slots = ", ".join(report.split("#", 1)[1] for report in found)
            console.print(
                f"schedule {MISSED}: no job for slot(s) {slots}: missed runs the sweep reported once each "
                "(MissedScheduledRuns, event Batchgate Scheduled Run Missed)",
                highlight=False,
            )
            return []
        time.sleep(POLL_SECONDS)
    return [f"schedules: the sweep reported no missed run of {MISSED} within {WAIT_SECONDS:g}s"]
