"""`batchgate jobs` and `batchgate show`: a page of jobs as a table, one job with its attempts and
their timelines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchgate.domain.jobs import Attempt, Job, JobStatus
from batchgate.domain.pools import PoolTask
from batchgate.domain.retry_policy import DEFAULT_POLICY, RetryPolicy
from batchgate.ops import job_views
from batchgate.ops.cli.render.text import filter_words, plain, short_time, shorten, status_text
from batchgate.ops.job_search import JobFilter, SearchPage

# The REASON column of `jobs`: enough to tell reasons apart; `show` (or --json) has the whole text.
REASON_WIDTH = 48
MASKED_NOTE = "values masked: --reveal-env shows them"


def job_page_document(rows: list[dict[str, Any]], page: SearchPage) -> dict[str, Any]:
    return {"jobs": rows, "next": page.next_token}


def render_job_page(
    console: Console, page: SearchPage, rows: list[dict[str, Any]], job_filter: JobFilter
) -> None:
    """The page's jobs (`rows` are their job_views.job_row), and how to read on when there is more."""
    if not rows and page.next_token:
        # The page spent its query budget on jobs the filter skips: the rest of the index is unread.
        console.print(
            plain(
                "No jobs found" + filter_words(job_filter) + " among the jobs read so far; the search "
                f"stopped before the end: continue it with --next {page.next_token}"
            ),
            soft_wrap=True,
        )
        return
    if not rows:
        console.print(plain("No jobs found" + filter_words(job_filter) + "."))
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in (
            "JOB ID",
            "BATCH",
            "STATUS",
            "STRATEGY",
            "QUEUED (UTC)",
            "START",
            "RUN",
            "EXIT",
            "REASON",
        ):
            justify: Literal["left", "right"] = "right" if name in ("START", "RUN", "EXIT") else "left"
            table.add_column(name, no_wrap=True, justify=justify)
        for job, row in zip(page.jobs, rows, strict=True):
            table.add_row(
                plain(row["job_id"]),
                plain(row["batch"]),
                status_text(job.status),
                plain(row["strategy"]),
                plain(short_time(row["queued"])),
                plain(job_views.format_duration(row["start_latency_seconds"])),
                plain(job_views.format_duration(row["run_time_seconds"])),
                plain(row["exit_code"]),
                plain(shorten(row["reason"], REASON_WIDTH)),
            )
        console.print(table)
    if page.next_token:
        console.print(
            plain(f"more jobs: repeat the command with --next {page.next_token}"), style="dim", soft_wrap=True
        )


class _Facts:
    """Label/value lines with the values aligned (no padding after them, unlike a rich grid)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Text]] = []

    def add_row(self, label: str, value: Text) -> None:
        self.rows.append((label, value))

    def print(self, console: Console) -> None:
        width = max((len(label) for label, _ in self.rows), default=0) + 2
        for label, value in self.rows:
            console.print(Text(label.ljust(width), style="dim") + value)


def render_job(
    console: Console,
    job: Job,
    region: str,
    now: datetime,
    heartbeats: Mapping[str, PoolTask | None] | None = None,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    reveal_environment: bool = False,
) -> None:
    header = Text()
    header.append(job.job_id, style="bold")
    header.append("  ")
    header.append_text(status_text(job.status))
    console.print(header)
    facts = _Facts()
    facts.add_row("batch", plain(job.batch))
    if job.tenant:
        facts.add_row("tenant", plain(job.tenant))
    facts.add_row("arguments", plain(" ".join(job.arguments) if job.arguments else None))
    if job.environment:
        environment = job_views.shown_environment(job, reveal_environment=reveal_environment)
        words = " ".join(f"{name}={value}" for name, value in sorted(environment.items()))
        facts.add_row("environment", plain(words if reveal_environment else f"{words} ({MASKED_NOTE})"))
    facts.add_row(
        "idempotency key", plain(job.idempotency_key or f"(none: from SQS message {job.message_id})")
    )
    facts.add_row("priority", plain(job.priority))
    if job.deadline:
        facts.add_row("deadline", plain(job.deadline))
    if job.submitted_at:
        facts.add_row("submitted", plain(job.submitted_at))
    wait = job_views.queue_wait(job)
    received = (
        job.created_at if wait is None else f"{job.created_at} (queue wait {job_views.format_duration(wait)})"
    )
    facts.add_row("received", plain(received))
    dispatched = job.attempts[0].dispatched_at if job.attempts else None
    if dispatched:
        facts.add_row("dispatched", plain(dispatched))
    facts.add_row("updated", plain(job.updated_at))
    if job.plan is not None:
        strategy = f"{job.plan.strategy} - {job.plan.reason}"
        if job.plan.fallbacks:
            strategy += f" (fallbacks: {', '.join(job.plan.fallbacks)})"
        facts.add_row("strategy", plain(strategy))
        if job.plan.cpu and job.plan.memory:
            facts.add_row("task size", plain(f"{job.plan.cpu} cpu units, {job.plan.memory} MiB"))
    elif job.strategy_preference:
        facts.add_row("strategy", plain(f"preference {job.strategy_preference}"))
    facts.add_row("attempts", plain(len(job.attempts)))
    facts.print(console)
    console.print()
    result = job_views.outcome(job)
    console.print(Text("What happened: ", style="bold") + plain(result.headline))
    for line in result.explanations:
        console.print(Text("  - ") + plain(line))
    _render_messages(console, job, reveal_environment)
    for attempt in job.attempts:
        console.print()
        render_attempt(console, job, attempt, region, now, heartbeats=heartbeats, policy=policy)


def _render_messages(console: Console, job: Job, reveal_environment: bool) -> None:
    """A REJECTED job's message as received, and the rejected messages a valid one replaced."""
    if job.status is JobStatus.REJECTED and job.raw_message:
        shown = job_views.shown_message(job.raw_message, reveal_environment=reveal_environment)
        console.print(Text("  message as received: ", style="dim") + plain(shown))
    for rejection in job.rejections:
        console.print(
            Text("  earlier: ", style="dim")
            + plain(f"message {rejection.message_id} received {rejection.received_at} was REJECTED: ")
            + plain(rejection.reason)
        )
        if rejection.raw_message:
            shown = job_views.shown_message(rejection.raw_message, reveal_environment=reveal_environment)
            console.print(Text("    message as received: ", style="dim") + plain(shown))


def render_attempt(
    console: Console,
    job: Job,
    attempt: Attempt,
    region: str,
    now: datetime,
    *,
    heartbeats: Mapping[str, PoolTask | None] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> None:
    title = Text(f"Attempt {attempt.number} of {len(job.attempts)}", style="bold")
    title.append(f"  {attempt.strategy}")
    if attempt.capacity_provider and attempt.capacity_provider != attempt.strategy:
        title.append(f" ({attempt.capacity_provider})")
    if attempt.last_status:
        title.append(f"  task {attempt.last_status}")
    console.print(title)
    if attempt.task_arn:
        console.print(Text("  task  ", style="dim") + plain(attempt.task_arn), soft_wrap=True)
        task_url = job_views.task_console_url(region, attempt.task_arn)
        if task_url:
            console.print(Text("        ") + plain(task_url), soft_wrap=True)
    timeline = Table(box=None, pad_edge=False, header_style="dim")
    timeline.add_column("  phase", no_wrap=True)
    timeline.add_column("at (UTC)", no_wrap=True)
    timeline.add_column("took", justify="right", no_wrap=True)
    timeline.add_column("spent on", style="dim")
    for phase in job_views.phases(job, attempt):
        timeline.add_row(
            plain("  " + phase.label),
            plain(phase.at),
            Text("" if phase.duration is None else job_views.format_duration(phase.duration)),
            Text(phase.spent_on or ""),
        )
    console.print(timeline)
    warm = job_views.warm_document(job, attempt, heartbeats or {}, now)
    if warm is not None:
        _render_warm(console, attempt, warm)
    numbers = [
        f"start latency {job_views.format_duration(job_views.start_latency(attempt, job.submitted_at))}",
        f"time to start {job_views.format_duration(job_views.time_to_start(job, attempt))}",
        f"run time {job_views.format_duration(job_views.run_time(attempt, now))}",
        f"exit code {'-' if attempt.exit_code is None else attempt.exit_code}",
    ]
    console.print(Text("  ") + plain(" | ".join(numbers)))
    for label, value in _attempt_details(attempt):
        console.print(Text(f"  {label}  ", style="dim") + plain(value))
    cause = job_views.retry_cause(job, attempt, policy)
    if cause:
        console.print(Text("  retried  ", style="dim") + plain(f"by the {cause}"))
    if attempt.log_group and attempt.log_stream:
        console.print(Text("  logs  ", style="dim") + plain(f"{attempt.log_group}  {attempt.log_stream}"))
        url = job_views.log_console_url(region, attempt.log_group, attempt.log_stream)
        console.print(Text("        ") + plain(url), soft_wrap=True)  # never split a link
        console.print(
            Text("        ", style="dim") + plain(f"batchgate logs {job.job_id} --attempt {attempt.number}"),
            style="dim",
        )
    else:
        console.print(Text("  logs  ", style="dim") + plain("no log location recorded"))


def _render_warm(console: Console, attempt: Attempt, warm: Mapping[str, Any]) -> None:
    """The worker that claimed a WARM attempt, its slot and image, and its task's heartbeat."""
    if warm["task_arn"] is None:
        waiting = attempt.last_status is None
        console.print(
            Text("  worker     ", style="dim")
            + plain(
                f"offered to pool {warm['pool']}: "
                + ("no worker has claimed it yet" if waiting else "no worker claimed it")
            )
        )
        return
    console.print(
        Text("  worker     ", style="dim")
        + plain(f"pool {warm['pool']}, slot {warm['slot']}, image digest {warm['image_digest'] or '-'}")
    )
    heartbeat = warm["heartbeat"]
    if heartbeat is not None:
        words = job_views.heartbeat_words(heartbeat)
    elif attempt.last_status in ("STOPPED", "DELETED"):
        words = "not read (the attempt has ended)"
    else:
        words = "not read: the pool table is unknown (give --pool-table)"
    console.print(Text("  heartbeat  ", style="dim") + plain(words))


def _attempt_details(attempt: Attempt) -> list[tuple[str, str]]:
    """How the attempt stopped or failed to launch, as (label, text) lines; only what is known."""
    details: list[tuple[str, str]] = []
    if attempt.stop_code or attempt.stopped_reason:
        details.append(("stopped", f"{attempt.stop_code or '-'}: {attempt.stopped_reason or '-'}"))
    if attempt.container_reason:
        details.append(("container", attempt.container_reason))
    if attempt.error:
        details.append(("dispatch", attempt.error))
    if attempt.note:
        details.append(("sweep", attempt.note))
    details.extend(("RunTask failure", json.dumps(failure)) for failure in attempt.launch_failures)
    if len(attempt.tries) > 1:  # a fallback happened: show every try
        details.extend(("RunTask try", json.dumps(entry, default=str)) for entry in attempt.tries)
    return details
