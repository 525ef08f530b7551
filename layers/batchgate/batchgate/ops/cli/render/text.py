"""The pieces every command's output is made of: JSON on stdout, user data as plain text, statuses in
colour, short times, and a filter in words."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.text import Text

from batchgate.domain.jobs import JobStatus
from batchgate.ops.job_search import JobFilter
from batchgate.ops.terminal import terminal_text

STATUS_STYLES = {
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.TIMED_OUT: "bold red",
    JobStatus.REJECTED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.RUNNING: "cyan",
}


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False, default=str))


def plain(value: Any) -> Text:
    """User data as text, never as rich markup, its control characters visibly escaped (one line)."""
    return Text("-" if value is None or value == "" else terminal_text(str(value)))


def shorten(value: str | None, width: int) -> str | None:
    """One line of at most `width` characters, an ellipsis marking what was cut."""
    if value is None:
        return None
    line = " ".join(value.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "\u2026"


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def short_time(value: str | None) -> str:
    """2026-11-27T01:02:03.456Z -> 2026-11-27 01:02:03Z."""
    if not value:
        return "-"
    return value[:19].replace("T", " ") + "Z" if len(value) >= 19 else value


def filter_words(job_filter: JobFilter) -> str:
    """` with status FAILED of batch payroll queued since ...`: the filter as the end of a sentence."""
    words = []
    if job_filter.statuses:
        words.append("with status " + " or ".join(status.value for status in job_filter.statuses))
    if job_filter.batch:
        words.append(f"of batch {job_filter.batch}")
    if job_filter.tenant:
        words.append(f"of tenant {job_filter.tenant}")
    if job_filter.since:
        words.append(f"queued since {job_filter.since}")
    if job_filter.until:
        words.append(f"queued until {job_filter.until}")
    return (" " + " ".join(words)) if words else ""
