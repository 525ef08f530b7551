"""`batchgate stats`: one row per batch and strategy, the window, and the notes on the estimate."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from batchgate.ops import job_views
from batchgate.ops.cli.render.text import filter_words, plain
from batchgate.ops.job_search import JobFilter
from batchgate.ops.stats import StatsRow


def stats_document(
    rows: list[StatsRow], job_filter: JobFilter, region: str, *, jobs: int, truncated: bool, notes: list[str]
) -> dict[str, Any]:
    return {
        "since": job_filter.since,
        "until": job_filter.until,
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
            plain(_percent(row.success_rate)),
            plain(job_views.format_duration(data["start_latency_p50_seconds"])),
            plain(job_views.format_duration(data["start_latency_p95_seconds"])),
            plain(job_views.format_duration(data["run_time_p50_seconds"])),
            plain(job_views.format_duration(data["run_time_p95_seconds"])),
            plain(cost),
        )
    console.print(table)
    console.print(plain("window:" + filter_words(job_filter)), style="dim")
    for note in notes:
        console.print(plain(f"note: {note}"), style="dim")
    if any(not row.cost_complete for row in rows):
        console.print(
            plain("note: '+' marks a cost that leaves out running jobs or strategies without a price"),
            style="dim",
        )
