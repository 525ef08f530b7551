"""The jobs a what-if replay runs: read from an exported trace file (CSV or JSON lines) or built from
Job items of the job table.

A trace row is one job: `batch`, `submitted_at` (ISO 8601 UTC or epoch seconds), `cpu` (units, 1024 =
1 vCPU), `memory` (MiB), `run_seconds` (the batch's own run time), `exit_code`; optionally `priority`,
and `strategy` with `start_seconds` (where it ran and how long it took to start: the measured start
latency the replay's start model uses in place of its defaults).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from batchgate.domain.jobs import Job, iso, parse_iso
from batchgate.domain.pricing import TaskSize
from batchgate.ops.job_views import run_time, start_latency
from batchgate.ops.stats import percentile, size_of

REQUIRED_COLUMNS = ("batch", "submitted_at", "cpu", "memory", "run_seconds", "exit_code")
OPTIONAL_COLUMNS = ("priority", "strategy", "start_seconds")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
DAY = 86400.0


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, the line and the field."""


@dataclass(frozen=True)
class TraceJob:
    batch: str
    submitted_at: float  # epoch seconds
    cpu: int
    memory: int
    run_seconds: float
    exit_code: int = 0
    priority: int = 0
    strategy: str | None = None
    start_seconds: float | None = None

    def to_row(self) -> dict[str, str]:
        return {
            "batch": self.batch,
            "submitted_at": iso(datetime.fromtimestamp(self.submitted_at, tz=UTC)),
            "cpu": str(self.cpu),
            "memory": str(self.memory),
            "run_seconds": f"{self.run_seconds:g}",
            "exit_code": str(self.exit_code),
            "priority": str(self.priority),
            "strategy": self.strategy or "",
            "start_seconds": "" if self.start_seconds is None else f"{self.start_seconds:g}",
        }


@dataclass(frozen=True)
class Trace:
    """Jobs in submission order, and the window they cover (costs paid around the clock are paid for
    the whole window)."""

    jobs: tuple[TraceJob, ...]
    window_start: float
    window_end: float
    source: str
    # Jobs of the input that cannot be replayed (never ran, still running).
    skipped: int = 0

    @property
    def window_seconds(self) -> float:
        return max(self.window_end - self.window_start, 1.0)

    def measured_start_p50(self) -> dict[str, float]:
        """p50 of the measured start latency per strategy, for the strategies the input has them for."""
        measured: dict[str, list[float]] = {}
        for job in self.jobs:
            if job.strategy and job.start_seconds is not None:
                measured.setdefault(job.strategy, []).append(job.start_seconds)
        return {
            strategy: value
            for strategy, values in sorted(measured.items())
            if (value := percentile(values, 0.5)) is not None
        }


def whole_days(first: float, last: float) -> tuple[float, float]:
    """From midnight UTC of `first`'s day to midnight after `last`'s: a file's window."""
    start = datetime.fromtimestamp(first, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = datetime.fromtimestamp(last, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), (end + timedelta(days=1)).timestamp()


def make_trace(jobs: Iterable[TraceJob], source: str, window: tuple[float, float] | None = None) -> Trace:
    ordered = tuple(sorted(jobs, key=lambda job: job.submitted_at))
    if window is None:
        window = whole_days(ordered[0].submitted_at, ordered[-1].submitted_at) if ordered else (0.0, DAY)
    return Trace(jobs=ordered, window_start=window[0], window_end=window[1], source=source)


# --- files ----------------------------------------------------------------------------------------------


def load_trace(path: str | Path) -> Trace:
    """A CSV (header row with the column names) or JSON lines file (`.jsonl`, `.ndjson`, `.json`: one
    object per line)."""
    location = Path(path)
    try:
        text = location.read_text(encoding="utf-8")
    except OSError as error:
        raise TraceError(f"{location}: cannot be read: {error.strerror or error}") from error
    if location.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = _json_rows(text, location)
    else:
        rows = _csv_rows(text, location)
    jobs = [parse_row(row, f"{location}:{line}") for line, row in rows]
    if not jobs:
        raise TraceError(f"{location}: no jobs")
    return make_trace(jobs, source=str(location))


def _csv_rows(text: str, location: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or ())]
    if missing:
        present = ", ".join(reader.fieldnames or ()) or "none (the file is empty)"
        raise TraceError(
            f"{location}: missing column {', '.join(missing)}; the file's columns: {present}; expected: "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    for row in reader:
        yield reader.line_num, row


def _json_rows(text: str, location: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except ValueError as error:
            raise TraceError(f"{location}:{line}: not valid JSON: {error}") from error
        if not isinstance(row, dict):
            raise TraceError(f"{location}:{line}: expected a JSON object")
        yield line, row


def parse_row(row: Mapping[str, Any], where: str) -> TraceJob:
    def field(name: str) -> Any:
        value = row.get(name)
        if value is None or value == "":
            raise TraceError(f"{where}: missing {name}")
        return value

    def number(name: str, kind: type[int] | type[float]) -> Any:
        raw = field(name)
        try:
            value = kind(float(raw)) if kind is int else kind(raw)
        except (TypeError, ValueError) as error:
            raise TraceError(f"{where}: {name} {raw!r} is not a number") from error
        if value < 0:
            raise TraceError(f"{where}: {name} must not be negative, got {raw!r}")
        return value

    def optional(name: str) -> Any:
        value = row.get(name)
        return None if value is None or value == "" else value

    cpu, memory = number("cpu", int), number("memory", int)
    if cpu <= 0 or memory <= 0:
        raise TraceError(f"{where}: cpu and memory must be positive")
    exit_code = field("exit_code")
    try:
        exit_value = int(exit_code)
    except (TypeError, ValueError) as error:
        raise TraceError(f"{where}: exit_code {exit_code!r} is not an integer") from error
    start = optional("start_seconds")
    strategy = optional("strategy")
    return TraceJob(
        batch=str(field("batch")),
        submitted_at=_moment(field("submitted_at"), where),
        cpu=cpu,
        memory=memory,
        run_seconds=number("run_seconds", float),
        exit_code=exit_value,
        priority=number("priority", int) if optional("priority") is not None else 0,
        strategy=None if strategy is None else str(strategy),
        start_seconds=None if start is None else number("start_seconds", float),
    )


def _moment(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = parse_iso(text)
    except ValueError as error:
        raise TraceError(f"{where}: submitted_at {text!r} is neither ISO 8601 nor epoch seconds") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def write_trace_csv(trace: Iterable[TraceJob], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for job in trace:
            writer.writerow(job.to_row())


# --- the job table --------------------------------------------------------------------------------------


def trace_from_jobs(
    jobs: Iterable[Job], sizes: Mapping[str, TaskSize], window: tuple[float, float], source: str
) -> Trace:
    """The jobs of the table that ran to an end, each as it ran last: when it was sent (received, for an
    item stored without its send time), its size (plan, else catalog), the run time and start latency of
    its last attempt (from the send for a first attempt, as the history counts it), where it ran, its
    exit code. The others (rejected,
    never started, still running, no known size) are counted in `skipped`."""
    rows: list[TraceJob] = []
    skipped = 0
    for job in jobs:
        attempt = job.attempt
        ran = run_time(attempt)
        size = size_of(job, sizes)
        if attempt is None or ran is None or size is None:
            skipped += 1
            continue
        rows.append(
            TraceJob(
                batch=job.batch,
                submitted_at=parse_iso(job.submitted_at or job.created_at).timestamp(),
                cpu=size.cpu,
                memory=size.memory,
                run_seconds=ran,
                exit_code=attempt.exit_code if attempt.exit_code is not None else 1,
                priority=job.priority,
                strategy=attempt.strategy,
                start_seconds=start_latency(attempt, job.submitted_at),
            )
        )
    trace = make_trace(rows, source=source, window=window)
    return Trace(trace.jobs, trace.window_start, trace.window_end, trace.source, skipped)
