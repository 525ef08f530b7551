"""`batchgate pools`: per pool a headline (state, slots, queue), its tasks, and the jobs in their slots."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchgate.domain.jobs import iso
from batchgate.ops import job_views
from batchgate.ops.cli.render.text import plain
from batchgate.ops.pool_status import OPEN, PoolView, QueueBacklog, TaskView

STATE_STYLES = {OPEN: "green"}


def pools_document(views: Iterable[PoolView], now: datetime) -> dict[str, Any]:
    return {"at": iso(now), "pools": [view.to_dict() for view in views]}


def task_id(task_arn: str) -> str:
    """arn:aws:ecs:...:task/<cluster>/<id> -> <id>: what the ECS console shows."""
    return task_arn.rsplit("/", 1)[-1]


def backlog_words(backlog: QueueBacklog | None) -> str:
    if backlog is None:
        return "work queue unknown (give --pool-queue-urls)"
    age = "-" if backlog.oldest_age_seconds is None else job_views.format_duration(backlog.oldest_age_seconds)
    return f"queue {backlog.waiting} waiting, {backlog.in_flight} in flight, oldest {age}"


def render_pools(console: Console, views: list[PoolView]) -> None:
    if not views:
        console.print(plain("The catalog declares no warm pool."))
        return
    for index, view in enumerate(views):
        if index:
            console.print()
        _render_pool(console, view)


def _render_pool(console: Console, view: PoolView) -> None:
    header = Text(view.pool.name, style="bold")
    header.append("  ")
    header.append(view.state, style=STATE_STYLES.get(view.state, "yellow"))
    header.append(
        f"  {len(view.fresh_tasks)} task(s) fresh, slots {view.busy} busy / {view.free} free"
        f"  {backlog_words(view.backlog)}"
    )
    console.print(header)
    console.print(Text("  batches  ", style="dim") + plain(", ".join(view.batches) or None))
    if not view.tasks:
        return
    tasks = Table(box=None, pad_edge=False, header_style="dim")
    for name in ("  TASK", "AZ", "HEARTBEAT", "BUSY", "STOPPING", "IMAGE DIGEST", "NOT SERVING", "IMAGE"):
        tasks.add_column(name, no_wrap=True)
    for task in view.tasks:
        tasks.add_row(
            plain("  " + task_id(task.task.task_arn)),
            plain(task.task.availability_zone),
            _heartbeat(task),
            plain(f"{task.busy}/{task.task.slots}"),
            plain("yes" if task.task.stopping else "no"),
            plain(task.task.image_digest),
            plain(", ".join(batch for batch, served in task.serves.items() if not served) or None),
            plain(task.task.image),
        )
    console.print(tasks)
    jobs = [(task, job) for task in view.tasks for job in task.jobs]
    if not jobs:
        return
    table = Table(box=None, pad_edge=False, header_style="dim")
    for name in ("  JOB ID", "ATTEMPT", "SLOT", "RUNNING FOR", "TASK"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("ATTEMPT", "SLOT") else "left")
    for task, job in jobs:
        table.add_row(
            plain("  " + job.job_id),
            plain(job.attempt),
            plain(job.slot),
            plain(job_views.format_duration(job.running_seconds)),
            plain(task_id(task.task.task_arn)),
        )
    console.print(table)


def _heartbeat(task: TaskView) -> Text:
    age = job_views.format_duration(task.heartbeat_age_seconds)
    if task.fresh:
        return Text(f"{age} ago")
    return Text(f"{age} ago (stale)", style="yellow")
