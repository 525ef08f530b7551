"""The comparison as rows (shared by the CLI's table and the markdown report) and as a markdown report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from batchgate.domain.strategy import SHORT_NAMES
from batchgate.ops.job_views import format_duration
from batchgate.ops.whatif.model import DEDICATED, WhatIfSettings
from batchgate.ops.whatif.outcome import PolicyOutcome
from batchgate.ops.whatif.trace import DAY, Trace

COLUMNS = (
    "POLICY",
    "COST/MONTH",
    "START p50",
    "START p95",
    "QUEUE p95",
    "WAITED",
    "SHORT: START p50",
    "SHORT: DONE p50",
    "SPOF",
    "RAN ON",
)
CDF_PLOT = "start-latency-cdf.png"
COST_PLOT = "cost-vs-latency.png"
PLOT_TITLES = {
    CDF_PLOT: "Start latency per policy (CDF)",
    COST_PLOT: "Monthly cost against p95 start latency",
}


def ran_on(outcome: PolicyOutcome) -> str:
    names = {**SHORT_NAMES, DEDICATED: "server"}
    return ", ".join(
        f"{names.get(strategy, strategy)} {count}" for strategy, count in sorted(outcome.runs.items())
    )


def rows(outcomes: Sequence[PolicyOutcome]) -> list[list[str]]:
    """One row per policy, in COLUMNS order."""
    return [
        [
            outcome.label,
            f"${outcome.month_usd:,.2f}",
            format_duration(outcome.start_p50),
            format_duration(outcome.start_p95),
            format_duration(outcome.queueing_p95),
            str(outcome.waited),
            format_duration(outcome.short_start_p50),
            format_duration(outcome.short_turnaround_p50),
            f"{outcome.single_points_of_failure}: {outcome.failure_note}"
            if outcome.single_points_of_failure
            else "0",
            ran_on(outcome),
        ]
        for outcome in outcomes
    ]


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def window_text(trace: Trace, settings: WhatIfSettings) -> str:
    days = trace.window_seconds / DAY
    scaled = (
        "costs are per month as they are"
        if abs(days - settings.month_days) < 1e-6
        else f"costs are scaled from {days:.2f} days to a month of {settings.month_days:g} days"
    )
    span = f"from {_day(trace.window_start)} to {_day(trace.window_end)} ({days:.2f} days)"
    return f"{len(trace.jobs)} jobs {span}; {scaled}"


def notes(trace: Trace, outcomes: Sequence[PolicyOutcome], measured: dict[str, float]) -> list[str]:
    """What a reader of the table must know about the input and the replay."""
    found: list[str] = []
    if trace.skipped:
        found.append(f"{trace.skipped} jobs of the input never ran to an end and are left out")
    for outcome in outcomes:
        if outcome.not_run:
            found.append(f"{outcome.label}: {outcome.not_run} jobs fit none of its machines and never ran")
    if measured:
        figures = ", ".join(
            f"{SHORT_NAMES.get(name, name)} {seconds:.0f} s" for name, seconds in measured.items()
        )
        found.append(f"start latency p50 measured in the input: {figures}")
    return found


def markdown(
    trace: Trace,
    outcomes: Sequence[PolicyOutcome],
    settings: WhatIfSettings,
    *,
    plots: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """The report; `notes` as `notes()` (and the caller) gave them."""
    lines = [
        "# What if: launch policies replayed on the same jobs",
        "",
        f"Input: `{trace.source}`, {window_text(trace, settings)}.",
        "",
        _table(rows(outcomes)),
        "",
        "- **cost/month**: machines paid around the clock plus Fargate and Fargate Spot tasks billed per "
        "second from image pull start, one-minute minimum; a warm pool's tasks over its scheduled hours.",
        "- **start**: submitted -> the batch running (queueing included); **queue**: waiting for a free "
        "machine; **waited**: jobs that waited at all.",
        f"- **short**: the {outcomes[0].short_jobs if outcomes else 0} batches whose run time is at most "
        f"{settings.short_batch_seconds:g} s; **done**: submitted -> finished.",
        "- **SPOF**: single points of failure, parts whose loss stops every job.",
    ]
    lines += [f"- note: {note}" for note in notes]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{PLOT_TITLES.get(name, name)}]({name})" for name in plots]
    lines += ["", "## Settings", "", _table([["setting", "value"]], header_only=True)]
    for name, value in settings.to_dict().items():
        lines.append(f"| `{name}` | {_value(value)} |")
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(body: list[list[str]], header_only: bool = False) -> str:
    header = body[0] if header_only else list(COLUMNS)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    if not header_only:
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]
    return "\n".join(lines)
