"""The demo workload of `batchgate local demo` (and `make run`): a few jobs of each kind through the whole
product, each with the end it must reach.

Successes on each launch class and on the warm pool (attendance-import in run mode preload, and a copy
of it in run mode command), a batch that exits non-zero, an import that fails once with a retryable exit
code and succeeds on its second attempt, two messages dispatch must reject, a message delivered twice,
and an export that runs past its timeout and is stopped: by the sweep (TIMED_OUT) when the template
schedules it, else by the local watchdog (FAILED, stop code UserInitiated). The catalog is the packaged
one with report-export's timeout lowered to a few seconds and a retry rule for attendance-import's exit
code 75 with a one-second back-off, so that both show within the demo's minute. The payroll jobs (the
duplicate and the failing one) are tenant acme's. The failing batch's job events on the local bus and
its notification are shown (demo_notifications), then a scheduled job and a missed scheduled run
(batchgate.ops.local.schedule_demo).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from batchgate.adapters.history_table import HistoryTable
from batchgate.domain.jobs import Job, JobStatus, job_id_for, parse_iso
from batchgate.domain.messages import SubmitMessage
from batchgate.ops.local.demo_notifications import show_failed_job_notification
from batchgate.ops.local.schedule_demo import DEMO_MISSED_AFTER_SECONDS, DEMO_SCHEDULES, run_schedule_demo
from batchgate.ops.local.stack import LocalStack, StackOptions
from batchgate.services.history_feed import FINISHED_STATUSES

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEMO_TIMEOUT_BATCH = "report-export"
DEMO_TIMEOUT_SECONDS = 5
DEMO_RETRY_BATCH = "attendance-import"
DEMO_RETRY = {"rules": [{"action": "RETRY", "exit_codes": [75]}], "base_delay_seconds": 1}
# A second batch on attendance-import's warm pool and image, in run mode command, so the demo shows
# both run modes side by side (attendance-import itself is preload in the packaged catalog).
DEMO_COMMAND_BATCH = "attendance-check"
WAIT_SECONDS = 45.0
FAILING_LABEL = "payroll failing"  # the job whose events and notification the demo shows
HISTORY_WAIT_SECONDS = 15.0  # the history function reads the job table's stream a moment later
POLL_SECONDS = 0.3


@dataclass(frozen=True)
class Expectation:
    """How a demo job must end. `check` returns a problem, or None when the job is as expected."""

    status: JobStatus
    check: Callable[[Job, LocalStack], str | None] | None = None


@dataclass(frozen=True)
class DemoJob:
    label: str
    batch: str
    arguments: tuple[str, ...]
    expect: Expectation
    body: str | None = None  # a raw body instead of a well-formed message (the app may not be Python)
    copies: int = 1  # sent this many times: a duplicate delivery
    key: str = field(default="")
    swept: Expectation | None = None  # the end instead when the template's sweep runs
    tenant: str | None = None

    def expectation(self, stack: LocalStack) -> Expectation:
        return self.swept if self.swept is not None and stack.runs_schedules else self.expect

    @property
    def idempotency_key(self) -> str:
        return self.key or f"demo-{self.label.replace(' ', '-')}"

    @property
    def job_id(self) -> str:
        return job_id_for(self.batch, self.idempotency_key)

    def message_body(self) -> str:
        if self.body is not None:
            return self.body
        return SubmitMessage(
            self.batch, self.arguments, idempotency_key=self.idempotency_key, tenant=self.tenant
        ).to_json()


def _exit_code(expected: int) -> Callable[[Job, LocalStack], str | None]:
    def check(job: Job, stack: LocalStack) -> str | None:
        attempt = job.attempt
        actual = attempt.exit_code if attempt else None
        return None if actual == expected else f"exit code {actual}, expected {expected}"

    return check


def _has_reason(job: Job, stack: LocalStack) -> str | None:
    return None if job.reason else "no reason recorded"


def _one_task(job: Job, stack: LocalStack) -> str | None:
    ecs = stack.client_aws().ecs()
    tasks = ecs.list_tasks(cluster=stack.state()["cluster"], startedBy=job.job_id, desiredStatus="STOPPED")
    count = len(tasks["taskArns"])
    return None if count == 1 else f"{count} tasks started for one job"


def _stopped_by_user(job: Job, stack: LocalStack) -> str | None:
    attempt = job.attempt
    stop_code = attempt.stop_code if attempt else None
    return None if stop_code == "UserInitiated" else f"stop code {stop_code}, expected UserInitiated"


def _has_logs(job: Job, stack: LocalStack) -> str | None:
    attempt = job.attempt
    if attempt is None or not attempt.log_group or not attempt.log_stream:
        return "no log stream recorded"
    events = (
        stack.client_aws()
        .logs()
        .get_log_events(logGroupName=attempt.log_group, logStreamName=attempt.log_stream)["events"]
    )
    return None if events else f"log stream {attempt.log_stream} is empty"


def _attempts(count: int, first_exit_code: int) -> Callable[[Job, LocalStack], str | None]:
    def check(job: Job, stack: LocalStack) -> str | None:
        first = job.attempts[0].exit_code if job.attempts else None
        if len(job.attempts) == count and first == first_exit_code:
            return None
        actual = f"{len(job.attempts)} attempts, the first exiting {first}"
        return f"{actual}; expected {count}, the first exiting {first_exit_code}"

    return check


def _timed_out_by_sweep(job: Job, stack: LocalStack) -> str | None:
    attempt = job.attempt
    stopped_reason = attempt.stopped_reason if attempt else None
    if not (job.reason and "timeout" in job.reason and stopped_reason and "timeout" in stopped_reason):
        return f"reason {job.reason!r} and stopped reason {stopped_reason!r} should name the timeout"
    return None


def _ran_warm(job: Job, stack: LocalStack) -> str | None:
    """Started on a warm pool's slot, claimed by a worker: the warm lane took it."""
    attempt = job.attempt
    if attempt is None or attempt.strategy != "WARM" or attempt.slot is None:
        return f"ran on {attempt.strategy if attempt else 'nothing'}, expected a warm pool's slot"
    return None


def _all(*checks: Callable[[Job, LocalStack], str | None]) -> Callable[[Job, LocalStack], str | None]:
    def check(job: Job, stack: LocalStack) -> str | None:
        problems = [problem for problem in (one(job, stack) for one in checks) if problem]
        return "; ".join(problems) or None

    return check


DEMO_JOBS = (
    DemoJob(
        "payroll",
        "payroll-calculation",
        ("2026-11", "acme"),
        Expectation(JobStatus.SUCCEEDED, _all(_exit_code(0), _has_logs, _one_task)),
        copies=2,  # delivered twice: one job, one task
        tenant="acme",
    ),
    DemoJob(
        "attendance",
        "attendance-import",
        ("uploads/2026-11/acme.csv",),
        Expectation(JobStatus.SUCCEEDED, _all(_has_logs, _ran_warm)),
    ),
    DemoJob(
        "attendance check",
        DEMO_COMMAND_BATCH,
        ("uploads/2026-11/acme.csv",),
        Expectation(JobStatus.SUCCEEDED, _all(_has_logs, _ran_warm)),
    ),
    DemoJob(
        "attendance retried",
        "attendance-import",
        ("uploads/2026-11/flaky.csv",),
        Expectation(JobStatus.SUCCEEDED, _attempts(2, first_exit_code=75)),
    ),
    DemoJob(
        "headcount export", "report-export", ("headcount", "2026-11", "csv"), Expectation(JobStatus.SUCCEEDED)
    ),
    DemoJob(
        FAILING_LABEL,
        "payroll-calculation",
        ("fail",),
        Expectation(JobStatus.FAILED, _exit_code(3)),
        tenant="acme",
    ),
    DemoJob(
        "unknown batch",
        "payroll-calc",
        ("2026-11",),
        Expectation(JobStatus.REJECTED, _has_reason),
        body=json.dumps(
            {
                "schema_version": 1,
                "batch": "payroll-calc",
                "arguments": ["2026-11"],
                "idempotency_key": "demo-unknown-batch",
            }
        ),
    ),
    DemoJob(
        "shell injection",
        "payroll-calculation",
        ("2026-11; rm -rf /",),
        Expectation(JobStatus.REJECTED, _has_reason),
        body=json.dumps(
            {
                "schema_version": 1,
                "batch": "payroll-calculation",
                "arguments": ["2026-11; rm -rf /"],
                "idempotency_key": "demo-shell-injection",
            }
        ),
    ),
    DemoJob(
        "slow export",
        "report-export",
        ("slow",),
        Expectation(JobStatus.FAILED, _all(_stopped_by_user, _has_logs)),
        swept=Expectation(JobStatus.TIMED_OUT, _timed_out_by_sweep),
    ),
)


def demo_catalog(directory: Path) -> Path:
    """The packaged catalog, with the timeout of the demo's slow batch lowered and a quick retry rule."""
    document: dict[str, Any] = json.loads(resources.files("batchgate").joinpath("catalog.json").read_text())
    document["batches"][DEMO_TIMEOUT_BATCH]["timeout_seconds"] = DEMO_TIMEOUT_SECONDS
    document["batches"][DEMO_RETRY_BATCH]["retry"] = DEMO_RETRY
    warm = document["batches"][DEMO_RETRY_BATCH]
    if "pool" in warm:
        command = {key: value for key, value in warm.items() if key not in ("run_mode", "preload", "retry")}
        command["description"] = "The attendance import, run as a fresh process per job on the warm pool."
        document["batches"][DEMO_COMMAND_BATCH] = {**command, "run_mode": "command"}
    document["schedules"] = DEMO_SCHEDULES  # the schedules' step (batchgate.ops.local.schedule_demo)
    path = directory / "catalog.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def submit_all(sqs: SQSClient, queue_url: str, jobs: tuple[DemoJob, ...]) -> None:
    for job in jobs:
        for _ in range(job.copies):
            sqs.send_message(QueueUrl=queue_url, MessageBody=job.message_body())


class ProgressView:
    """Each job's status while the demo runs: a live table on a terminal, a line per change otherwise."""

    def __init__(self, console: Console, jobs: tuple[DemoJob, ...], expected: dict[str, JobStatus]) -> None:
        self._console = console
        self._jobs = jobs
        self._expected = expected
        self._last: dict[str, str] = {}
        self._live = (
            Live(self._table({}), console=console, refresh_per_second=4) if console.is_terminal else None
        )

    def __enter__(self) -> ProgressView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, found: dict[str, Job | None], elapsed: float) -> None:
        if self._live is not None:
            self._live.update(self._table(found, elapsed))
            return
        for demo in self._jobs:
            job = found.get(demo.label)
            status = job.status.value if job else "queued"
            if self._last.get(demo.label) != status:
                self._last[demo.label] = status
                self._console.print(f"  {elapsed:5.1f}s  {demo.label:<18} {status}", highlight=False)

    def _table(self, found: dict[str, Job | None], elapsed: float = 0.0) -> Table:
        table = Table(
            title=f"batchgate local demo  {elapsed:4.1f}s", title_justify="left", header_style="bold"
        )
        for name in ("job", "batch", "status", "expected", "attempt: task", "exit"):
            table.add_column(name, no_wrap=True)
        for demo in self._jobs:
            job = found.get(demo.label)
            attempt = job.attempt if job else None
            done = job is not None and job.status.is_terminal
            expected = self._expected[demo.label]
            style = ("green" if job.status is expected else "red") if job and done else "cyan"
            table.add_row(
                demo.label,
                demo.batch,
                Text(job.status.value if job else "queued", style=style),
                expected.value,
                Text(f"{attempt.number}: {attempt.last_status or '-'}") if attempt else "-",
                str(attempt.exit_code) if attempt and attempt.exit_code is not None else "",
            )
        return table


def settled(job: Job | None) -> bool:
    """Ended, and its task too: the sweep ends a job TIMED_OUT when it stops the task, a moment before
    the task's STOPPED event (exit code, stop code) is applied."""
    if job is None or not job.status.is_terminal:
        return False
    attempt = job.attempt
    return attempt is None or attempt.task_arn is None or attempt.last_status == "STOPPED"


def wait_for(
    stack: LocalStack, jobs: tuple[DemoJob, ...], view: ProgressView, seconds: float
) -> dict[str, Job | None]:
    table = stack.table()
    started = time.monotonic()
    found: dict[str, Job | None] = {}
    while True:
        stack.check()
        found = {demo.label: table.get(demo.job_id) for demo in jobs}
        elapsed = time.monotonic() - started
        view.update(found, elapsed)
        if all(settled(job) for job in found.values()) or elapsed > seconds:
            return found
        time.sleep(POLL_SECONDS)


def verify(stack: LocalStack, jobs: tuple[DemoJob, ...], found: dict[str, Job | None]) -> list[str]:
    """One line per job that did not end as expected."""
    problems = []
    for demo in jobs:
        job = found.get(demo.label)
        expect = demo.expectation(stack)
        if job is None:
            problems.append(f"{demo.label}: no job {demo.job_id} in the table")
        elif job.status is not expect.status:
            problems.append(
                f"{demo.label}: {job.status.value} ({job.reason}), expected {expect.status.value}"
            )
        elif expect.check is not None and (problem := expect.check(job, stack)):
            problems.append(f"{demo.label}: {problem}")
    return problems


def finished_attempts(found: dict[str, Job | None]) -> Counter[tuple[str, str]]:
    """(batch, strategy) -> the demo jobs' attempts whose task stopped: what the history must hold."""
    return Counter(
        (job.batch, attempt.strategy)
        for job in found.values()
        if job is not None
        for attempt in job.attempts
        if attempt.last_status in FINISHED_STATUSES
    )


def wait_for_history(
    stack: LocalStack, expected: Counter[tuple[str, str]], seconds: float
) -> Counter[tuple[str, str]]:
    """What the history table holds once it holds `expected` (the stack's history starts empty), or
    after `seconds`."""
    if stack.resources is None or "HistoryTable" not in stack.resources.refs:
        return Counter()
    history = HistoryTable(
        stack.resources.refs["HistoryTable"], stack.client_aws().dynamodb(), cache_seconds=0
    )
    batches = sorted({batch for batch, _ in expected})
    deadline = time.monotonic() + seconds
    while True:
        held = Counter(
            {
                (batch, strategy): summary.observed
                for batch in batches
                for strategy, summary in history.summaries(batch).items()
            }
        )
        if held == expected or time.monotonic() > deadline:
            return held
        time.sleep(POLL_SECONDS)


def print_job_table(console: Console, state_path: Path) -> None:
    """The job table as ops see it: the CLI's own `batchgate --local jobs`."""
    from batchgate.ops.cli import cli

    try:
        cli.main(
            args=["--local", "--local-state", str(state_path), "jobs", "--limit", "50"],
            prog_name="batchgate",
            standalone_mode=False,
        )
    except SystemExit as error:  # click's exit, even outside standalone mode for some paths
        if error.code:
            console.print(f"batchgate jobs exited with {error.code}")


def start_seconds(job: Job) -> float | None:
    """Submit to start of the job's last attempt: what the application waited for it to begin."""
    attempt = job.attempt
    started = attempt.timeline.get("started") if attempt else None
    if started is None:
        return None
    return (parse_iso(started) - parse_iso(job.created_at)).total_seconds()


def summary_table(jobs: tuple[DemoJob, ...], found: dict[str, Job | None]) -> Table:
    """Each demo job by its name: how it ended, where each attempt ran, how long it took to start, why."""
    table = Table(title="demo jobs", title_justify="left", header_style="bold")
    for name in ("demo job", "sent", "status", "attempts", "start", "reason"):
        table.add_column(name, overflow="fold")
    for demo in jobs:
        job = found.get(demo.label)
        if job is None:
            table.add_row(demo.label, str(demo.copies), "missing", "", "", "")
            continue
        sent = f"{demo.copies}x: 1 job" if demo.copies > 1 else "1x"
        attempts = ", ".join(f"{a.number}: {a.strategy}" for a in job.attempts) or "-"
        seconds = start_seconds(job)
        table.add_row(
            demo.label,
            sent,
            job.status.value,
            Text(attempts),
            f"{seconds:.1f} s" if seconds is not None else "-",
            Text(job.reason or ""),  # text from ECS: never rich markup
        )
    return table


def run_demo(options: StackOptions, console: Console) -> int:
    """Start the stack, run the demo workload, print the job table, stop. 0 when every job ended as
    expected."""
    scratch = Path(tempfile.mkdtemp(prefix="batchgate-demo-"))
    state_path = options.state_path or scratch / "local.json"
    started = time.monotonic()
    try:
        catalog = options.catalog_path or demo_catalog(scratch)
        # The schedules' step fires its own slots and lets the sweep find a missed one within seconds.
        parameters = {"ScheduleMissedAfterSeconds": str(DEMO_MISSED_AFTER_SECONDS), **options.parameters}
        stack = LocalStack(
            replace(
                options, catalog_path=catalog, state_path=state_path, parameters=parameters, schedule_speed=0
            )
        )
        with stack:
            enforcer = (
                "the scheduled sweep" if stack.runs_schedules else "the local watchdog (no sweep scheduled)"
            )
            console.print(
                f"local stack up in {time.monotonic() - started:.1f}s at {stack.endpoint.url}, "
                f"resources from {options.root / 'template.yaml'}\n"
                f"{len(DEMO_JOBS)} demo jobs; in this demo {DEMO_TIMEOUT_BATCH} times out after "
                f"{DEMO_TIMEOUT_SECONDS}s (enforced by {enforcer}), {DEMO_RETRY_BATCH} retries exit code 75:",
                highlight=False,
            )
            submit_all(stack.client_aws().sqs(), stack.outputs["queue_url"], DEMO_JOBS)
            expected = {demo.label: demo.expectation(stack).status for demo in DEMO_JOBS}
            with ProgressView(console, DEMO_JOBS, expected) as view:
                found = wait_for(stack, DEMO_JOBS, view, WAIT_SECONDS)
            print_job_table(console, state_path)
            console.print(summary_table(DEMO_JOBS, found))
            problems = verify(stack, DEMO_JOBS, found)
            expected_history = finished_attempts(found)
            held = wait_for_history(stack, expected_history, HISTORY_WAIT_SECONDS)
            if held == expected_history:
                console.print(
                    f"history: all {sum(held.values())} finished attempts folded in from the job table's "
                    f"stream, once each ({len(held)} batch and strategy pairs)",
                    highlight=False,
                )
            else:
                problems.append(f"history holds {dict(held)}, expected {dict(expected_history)}")
            problems += show_failed_job_notification(stack, console, found.get(FAILING_LABEL))
            problems += run_schedule_demo(stack, console)
            console.print("stopping the local stack", highlight=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - started
    if problems:
        console.print(f"[bold red]demo failed[/] after {elapsed:.1f}s:")
        for problem in problems:
            console.print(f"  {problem}", highlight=False, markup=False)
        return 1
    console.print(f"[bold green]demo passed[/]: {len(DEMO_JOBS)} jobs ended as expected in {elapsed:.1f}s")
    return 0
