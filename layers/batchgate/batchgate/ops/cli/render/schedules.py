"""`batchgate schedules`: per schedule a headline (batch, when, tenant, next slot), then its last slots'
jobs and how they went."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchgate.domain.jobs import JobStatus, iso
from batchgate.ops.cli.render.text import plain, status_text
from batchgate.ops.schedule_status import DUE, MISSED, ScheduleView, SlotRun, local_time


def schedules_document(views: Iterable[ScheduleView], now: datetime) -> dict[str, Any]:
    return {"at": iso(now), "schedules": [view.to_dict() for view in views]}


def render_schedules(console: Console, views: list[ScheduleView], show_command: str) -> None:
    if not views:
        console.print(plain("The catalog declares no schedule."))
        return
    for index, view in enumerate(views):
        if index:
            console.print()
        _render_schedule(console, view, show_command)


def _render_schedule(console: Console, view: ScheduleView, show_command: str) -> None:
    schedule = view.schedule
    header = Text(schedule.name, style="bold")
    header.append(f"  {schedule.batch}  {schedule.expression.text} {schedule.timezone}")
    if schedule.tenant:
        header.append(f"  tenant {schedule.tenant}")
    if schedule.start_tolerance_seconds is not None:
        header.append(f"  starts within {schedule.start_tolerance_seconds}s")
    console.print(header)
    upcoming = local_time(view.next_slot, schedule) if view.next_slot else None
    console.print(Text("  next  ", style="dim") + plain(upcoming))
    if not view.recent:
        return
    table = Table(box=None, pad_edge=False, header_style="dim")
    for name in ("  SLOT", "STATE", "JOB ID", "REASON"):
        table.add_column(name, no_wrap=name != "REASON")
    for slot in view.recent:
        if slot.state == MISSED:
            state = Text(MISSED, style="red bold")
        elif slot.state == DUE:
            state = Text(DUE, style="yellow")
        else:
            state = status_text(JobStatus(slot.state))
        table.add_row(
            plain("  " + local_time(slot.slot, schedule)),
            state,
            plain(slot.job_id if slot.job else f"({slot.job_id})"),
            plain(slot.job.reason if slot.job else None),
        )
    console.print(table)
    console.print(Text(f"  details: {show_command} <job id>", style="dim"))


def render_slot_run(console: Console, run: SlotRun, show_line: str) -> None:
    if run.existing_status is not None:
        console.print(
            plain(
                f"The slot {run.scheduled_time} of {run.schedule} already has its job {run.job_id} "
                f"({run.existing_status}): the message sent is a duplicate dispatch ignores."
            )
        )
    else:
        console.print(plain(f"Sent the slot {run.scheduled_time} of {run.schedule}: job {run.job_id}"))
    console.print(Text(f"  {show_line}", style="dim"))
