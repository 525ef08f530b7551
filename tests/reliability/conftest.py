"""Shared pieces of the reliability tests: a recording jobs queue, fault-injecting client wrappers,
invariant checks, and the tally that becomes docs/reliability.md.

`BATCHGATE_WRITE_RELIABILITY=1 make test-reliability` (every reliability test, the large counts and the
local stack's load run included) writes docs/reliability.md at the end of the run with the numbers of
that run (what was tried, what held); without the variable nothing is written.
"""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.described_tasks import task_attempt
from batchgate.domain.jobs import Job, JobStatus
from batchgate.domain.relaunch import KIND_ATTRIBUTE
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.conftest import RecordingSqs, Stack

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "reliability.md"
WRITE_VARIABLE = "BATCHGATE_WRITE_RELIABILITY"


# The tally: what the tests tried and what held, by area.


@dataclass
class Tally:
    tried: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    # Measured values (seconds, rates) of the run, by name: the last one measured.
    figures: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, what: str, n: int = 1) -> None:
        self.tried[what] += n

    def check(self, invariant: str, ok: bool) -> None:
        """One check of an invariant; a failed check also fails the test (the assert after it)."""
        self.held[invariant] += 1 if ok else 0
        self.tried[f"check: {invariant}"] += 1

    def figure(self, what: str, value: float) -> None:
        self.figures[what] = value

    def outcome(self, area: str, result: str) -> None:
        self.outcomes.setdefault(area, Counter())[result] += 1


TALLY = Tally()
_FAILED: list[str] = []


@pytest.fixture
def tally() -> Tally:
    return TALLY


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and "reliability" in report.nodeid:
        _FAILED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(WRITE_VARIABLE) != "1" or not TALLY.tried:
        return
    REPORT.write_text(render(TALLY, _FAILED, time.monotonic() - TALLY.started), encoding="utf-8")


# Order of the sections in the report, and what each counter means.
AREAS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Task events: duplication and reordering (invariant 2)",
        "Hypothesis generates any duplication and order of a job's task events, over one attempt and over "
        "a failed attempt followed by a retry, and compares the final job with the in-order replay.",
        [
            ("event sequences (one attempt)", "event sequences replayed, one attempt"),
            ("event sequences (two attempts)", "event sequences replayed, a retried job (two attempts)"),
            ("events applied", "task events applied in those sequences"),
            ("duplicate events", "of which duplicates"),
        ],
    ),
    (
        "Redelivery and crashes (invariant 1)",
        "Submit and relaunch messages delivered again, and dispatch crashing between RunTask and the "
        "table write; moto counts the tasks per (job, attempt).",
        [
            ("duplicated deliveries", "duplicate deliveries of submit and relaunch messages"),
            ("crash after RunTask", "crashes right after RunTask (the table write failed once)"),
        ],
    ),
    (
        "Injected faults (invariants 3 and 4)",
        "AWS errors injected into the ECS, DynamoDB and SQS clients under dispatch, track and the sweep.",
        [
            ("fault: RunTask", "RunTask: ThrottlingException, 5xx, read timeouts"),
            ("fault: ListTasks/DescribeTasks", "ListTasks / DescribeTasks errors"),
            ("fault: DynamoDB", "DynamoDB errors (throttling, 5xx)"),
            ("fault: SQS", "SQS SendMessage errors (retry message)"),
            ("fault: track Lambda", "track invocations failing, then the event applied again"),
        ],
    ),
    (
        "History from the job table's stream",
        "The history function fed the stream in batches as Lambda feeds it (resumed at the first "
        "failed record, or the whole batch again when the invocation fails), with throttling, 5xx and "
        "timeouts injected at random into the history table's reads and writes.",
        [
            ("history: stream records", "stream records delivered"),
            ("history: invocations", "invocations"),
            ("history: failed invocations", "of which failed in part or whole"),
            ("fault: history table", "history table errors injected"),
        ],
    ),
    (
        "Bad input (invariant 3)",
        "Hypothesis-generated submit messages through the dispatcher (random JSON, mutated valid "
        "messages, random bytes; text drawn from every Unicode general category, control characters, "
        "and lone surrogates as JSON escapes such as `\\ud83d`), relaunch bodies, and task events with "
        "fields replaced by any JSON value.",
        [
            ("fuzz: submit messages", "submit messages fuzzed"),
            ("fuzz: relaunch messages", "relaunch message bodies fuzzed"),
            ("fuzz: task events", "task events fuzzed"),
        ],
    ),
    (
        "Timeouts, stuck jobs and missed events (invariant 5)",
        "The sweep against moto: tasks past their timeout (and ones that stopped within it, their "
        "STOPPED event late or missed), tasks that never start, missed STOPPED events, lost launches "
        "and lost retry messages.",
        [
            ("sweep: timeouts", "jobs timed out (StopTask with the reason)"),
            ("sweep: reconciled", "missed task states applied from DescribeTasks"),
            ("sweep: relaunched", "lost launches and retries relaunched"),
            ("sweep: explained", "stuck jobs explained"),
        ],
    ),
    (
        "Retry policy and cancel",
        "Failures run through the policy (defaults and catalog rules), back-off bounds, and cancel "
        "racing launch, retry and task events.",
        [
            ("policy decisions", "retry decisions checked"),
            ("retries", "jobs retried end to end (attempt n+1 dispatched)"),
            ("cancels", "cancels"),
        ],
    ),
]

INVARIANTS = [
    ("one task per attempt", "no (job, attempt) ever had two tasks"),
    ("job visible", "every message ended as a job item (or in the DLQ)"),
    ("same final job", "any duplication/order of events gave the same final job"),
    ("not retried", "no cancelled job, application exit or exhausted job was retried"),
    ("back-off bounded", "every back-off was within 1..900 s and the batch's maximum"),
    ("sweep ended it", "every job past its timeout or lost was ended or relaunched by the sweep"),
    ("folded once", "every finished attempt was folded into the history exactly once"),
]


def render(tally: Tally, failed: list[str], seconds: float) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: what was tried and what held",
        "",
        "Generated by the reliability tests (`BATCHGATE_WRITE_RELIABILITY=1 make test-reliability`: "
        "every test of tests/reliability, with the large counts and the local stack's load run that "
        "`make test` leaves out); the numbers are those of the run below. Do not edit by hand: run the "
        "tests again.",
        "",
        f"Run: {when}, Python {platform.python_version()}, {seconds:.0f} s, "
        f"{'all tests passed' if not failed else f'{len(failed)} failing test(s)'}.",
        "",
    ]
    for title, text, counters in AREAS:
        lines += [f"## {title}", "", text, "", "| tried | count |", "|---|---:|"]
        lines += [f"| {label} | {tally.tried.get(key, 0):,} |" for key, label in counters]
        lines.append("")
    lines += render_faults_by_operation(tally)
    lines += render_load_run(tally)
    lines += ["## Invariants", "", "| invariant | checks | held |", "|---|---:|---:|"]
    for key, label in INVARIANTS:
        checks = tally.tried.get(f"check: {key}", 0)
        lines.append(f"| {label} | {checks:,} | {tally.held.get(key, 0):,} |")
    lines.append("")
    if tally.outcomes:
        lines += ["## Outcomes", "", "| area | outcome | count |", "|---|---|---:|"]
        for area in sorted(tally.outcomes):
            for result, n in sorted(tally.outcomes[area].items()):
                lines.append(f"| {area} | {result} | {n:,} |")
        lines.append("")
    if failed:
        lines += ["## Failing tests", "", *[f"- `{nodeid}`" for nodeid in failed], ""]
    lines += [
        "## Not covered here",
        "",
        "- Real ECS: moto neither dedupes `clientToken` nor emits task events; the tests drive events from "
        "`events/` and DescribeTasks output shaped like ECS's.",
        "- Lambda's own retries, SQS redrive to the DLQ after `maxReceiveCount` and EventBridge delivery "
        "are configuration (template.yaml), checked by `sam validate --lint`, not exercised here.",
        "",
    ]
    return "\n".join(lines)


FAULTS_BY_OPERATION = "fault by operation: "


def render_faults_by_operation(tally: Tally) -> list[str]:
    rows = [
        (key.removeprefix(FAULTS_BY_OPERATION), n)
        for key, n in tally.tried.items()
        if key.startswith(FAULTS_BY_OPERATION)
    ]
    if not rows:
        return []
    return [
        "## Injected faults, by AWS operation",
        "",
        "Every AWS operation the functions call (tests/reliability/test_faults_by_operation.py lists them "
        "from the adapters), failing one to three times in a row (throttling, 5xx, read timeouts) while "
        "the function calling it works, the work delivered again until done; after each, the job ended "
        "as without the fault, with one task per attempt, folded into the history once.",
        "",
        "| operation (function) | faults injected |",
        "|---|---:|",
        *[f"| {operation} | {n:,} |" for operation, n in rows],
        "",
    ]


def render_load_run(tally: Tally) -> list[str]:
    figures = tally.figures
    if "load: drain seconds" not in figures:
        return []
    jobs = tally.tried.get("load: jobs", 0)
    return [
        "## Load run on the local stack",
        "",
        f"{jobs:,} jobs of {tally.tried.get('load: batches', 0)} batches sent in one burst "
        f"(SendMessageBatch from 10 threads, {figures['load: submit seconds']:.1f} s) to `batchgate local "
        "up` (tests/reliability/test_load.py): the real functions, four environments each, every task a "
        "process. The launch governor's limits are the account's (DispatchMaxConcurrency=4, each "
        "environment a quarter). RunTask moments are the tasks' `createdAt` (the local executor's "
        "0.2 s poll).",
        "",
        "| measured | value |",
        "|---|---:|",
        "| jobs ended as expected (status, exit code, one attempt) | "
        f"{tally.tried.get('load: as expected', 0):,} of {jobs:,} |",
        f"| jobs with exactly one task | {tally.tried.get('load: one task', 0):,} of {jobs:,} |",
        f"| messages in the {tally.tried.get('load: DLQs checked', 0)} dead-letter queues | "
        f"{tally.tried.get('load: DLQ messages', 0):,} |",
        f"| time to drain (first send to last job ended) | {figures['load: drain seconds']:.0f} s |",
        f"| launches: first to last | {figures['load: launch seconds']:.0f} s |",
        f"| mean RunTask rate | {figures['load: mean launch rate']:.1f} /s |",
        f"| peak RunTask rate, any 10 s | {figures['load: peak launch rate 10 s']:.1f} /s |",
        f"| peak RunTask rate, any 1 s | {figures['load: peak launch rate 1 s']:.0f} /s |",
        f"| governor: RunTask calls | {figures['load: RunTask limit']:.0f} /s |",
        f"| governor: Fargate launches (on-demand and Spot each) | {figures['load: Fargate limit']:.0f} /s, "
        f"burst {figures['load: Fargate burst']:.0f} |",
        "",
    ]


# Recording jobs queue (moto's SQS honours DelaySeconds, which would make tests wait).


@pytest.fixture
def sqs() -> RecordingSqs:
    return RecordingSqs()


@pytest.fixture
def jobs_queue(sqs: RecordingSqs) -> JobsQueue:
    return JobsQueue("https://sqs.us-east-1.amazonaws.com/123456789012/batchgate-jobs", sqs)  # type: ignore[arg-type]


# Fault injection.


def throttling(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)


def server_error(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ServiceUnavailableException", "Message": "Service unavailable"},
            "ResponseMetadata": {"HTTPStatusCode": 503},  # type: ignore[typeddict-item]
        },
        operation,
    )


def read_timeout() -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url="https://aws.example")


FAULTS: dict[str, Callable[[str], Exception]] = {
    "throttling": throttling,
    "5xx": server_error,
    "timeout": lambda _operation: read_timeout(),
}


class FaultyClient:
    """A boto3 client whose named operations fail with the queued errors first, then pass through."""

    def __init__(self, client: Any, faults: dict[str, list[Exception]] | None = None) -> None:
        self._client = client
        self.faults: dict[str, list[Exception]] = {k: list(v) for k, v in (faults or {}).items()}
        self.calls: Counter[str] = Counter()
        self.injected = 0

    def inject(self, operation: str, *errors: Exception) -> None:
        self.faults.setdefault(operation, []).extend(errors)

    def get_paginator(self, operation: str) -> Any:
        """The client's paginator, each page requested through this client (counted, faults first)."""
        paginator = self._client.get_paginator(operation)
        paginator._method = getattr(self, operation)  # what botocore's paginator calls per page
        return paginator

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target) or name.startswith("_") or name == "meta":
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            queued = self.faults.get(name)
            if queued:
                self.injected += 1
                raise queued.pop(0)
            return target(*args, **kwargs)

        return call


# Invariants.


def tasks_by_attempt(stack: Stack, job_id: str) -> Counter[int | None]:
    """How many tasks moto started for each attempt of a job (by startedBy and BATCHGATE_ATTEMPT)."""
    arns = stack.tasks_started_by(job_id)
    if not arns:
        return Counter()
    tasks = stack.ecs_client.describe_tasks(cluster=stack.settings.cluster, tasks=arns)["tasks"]
    return Counter(task_attempt(task) for task in tasks)


def assert_one_task_per_attempt(stack: Stack, job_id: str, tally: Tally) -> None:
    counts = tasks_by_attempt(stack, job_id)
    ok = all(n == 1 for n in counts.values())
    tally.check("one task per attempt", ok)
    assert ok, f"{job_id}: tasks per attempt {dict(counts)}"


def assert_visible(stack: Stack, job_id: str, tally: Tally) -> Job:
    job = stack.table.get(job_id)
    tally.check("job visible", job is not None)
    assert job is not None, f"{job_id} vanished"
    return job


def all_jobs(stack: Stack) -> Iterator[Job]:
    for status in JobStatus:
        yield from stack.table.iterate(status=status.value)


__all__ = [
    "FAULTS",
    "KIND_ATTRIBUTE",
    "FaultyClient",
    "RecordingSqs",
    "Tally",
    "all_jobs",
    "assert_one_task_per_attempt",
    "assert_visible",
    "read_timeout",
    "server_error",
    "tasks_by_attempt",
    "throttling",
]
