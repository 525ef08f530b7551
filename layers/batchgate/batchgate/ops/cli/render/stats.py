"""`batchgate stats`: one row per batch and strategy, the window, and the notes on the estimate."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from batchgate.ops import job_views
from batchgate.ops.cli.render.text import filter_words, plain
from batchgate.ops.job_search import JobFilter
from batchgate.ops.stats import NO_STRATEGY, StatsRow

LEGEND = (
    "OK: SUCCEEDED; RUNNING: not ended yet (waiting, launching, running or retrying); "
    "SUCCESS: OK / (OK + FAILED + TIMED OUT), CANCELLED and REJECTED left out",
    "a job counts under the strategy of its last attempt",
)
NO_STRATEGY_LEGEND = (
    f"strategy {NO_STRATEGY}: jobs that never had an attempt (rejected, cancelled or still waiting before "
    "their launch)"
)


def stats_document(
    rows: list[StatsRow], job_filter: JobFilter, region: str, *, jobs: int, truncated: bool, notes: list[str]
) -> dict[str, Any]:
    return {
        "since": job_filter.since,
        "until": job_filter.until,
        "tenant": job_filter.tenant,
        "region": region,
        "jobs": jobs,
        "truncated": truncated,
        "rows": [row.to_dict() for row in rows],
        "notes": notes,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def render_stats(console: Console, rows: list[StatsRow], job_filter: JobFilter, notes: list[str]) -> None:
    if not rows:
        console.print(plain("No jobs found" + filter_words(job_filter) + "."))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in (
        "BATCH",
        "STRATEGY",
        "JOBS",
        "OK",
        "FAILED",
        "TIMED OUT",
        "CANCELLED",
        "REJECTED",
        "RUNNING",
        "SUCCESS",
        "START p50",
        "START p95",
        "RUN p50",
        "RUN p95",
        "EST. COST",
    ):
        table.add_column(name, no_wrap=True, justify="left" if name in ("BATCH", "STRATEGY") else "right")
    for row in rows:
        data = row.to_dict()
        cost = f"${data['estimated_cost_usd']:.4f}" + ("" if row.cost_complete else "+")
        table.add_row(
            plain(row.batch),
            plain(row.strategy),
            plain(row.jobs),
            plain(row.succeeded),
            plain(row.failed),
            plain(row.timed_out),
            plain(row.cancelled),
            plain(row.rejected),
            plain(row.in_progress),
            plain(_percent(row.success_rate)),
            plain(job_views.format_duration(data["start_latency_p50_seconds"])),
            plain(job_views.format_duration(data["start_latency_p95_seconds"])),
            plain(job_views.format_duration(data["run_time_p50_seconds"])),
            plain(job_views.format_duration(data["run_time_p95_seconds"])),
            plain(cost),
        )
    console.print(table)
    console.print(plain("window:" + filter_words(job_filter)), style="dim")
    for line in LEGEND:
        console.print(plain(line), style="dim")
    if any(row.strategy == NO_STRATEGY for row in rows):
        console.print(plain(NO_STRATEGY_LEGEND), style="dim")
    for note in notes:
        console.print(plain(f"note: {note}"), style="dim")
    if any(not row.cost_complete for row in rows):
        console.print(
            plain("note: '+' marks a cost that leaves out running jobs or strategies without a price"),
            style="dim",
        )
