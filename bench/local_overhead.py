"""What the orchestrator adds to a job, measured on the embedded local stack.

- Overhead: submit -> SUCCEEDED seen in the job table, for a command that does nothing (report-export
  "noop"), minus the command's own run time (the task's started -> stopping). Jobs one at a time, and
  split into the way in (submit -> task created: queue, batching window, dispatch, RunTask) and the
  way out (container exit -> SUCCEEDED: task event, rule, track, table).
- Handler time: the functions' own REPORT durations per invocation, from their log groups.
- Throughput: jobs per second from submitting N at once to the last one SUCCEEDED.

Each configuration runs on a fresh stack; tasks start without simulated delay. Run with
`python -m bench` (all benchmarks, results in bench/results.md) or `python -m bench.local_overhead`.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from batchgate.adapters.job_table import STATUS_INDEX
from batchgate.client import BatchClient
from batchgate.domain.jobs import Job, JobStatus, parse_iso
from batchgate.domain.messages import SubmitMessage
from batchgate.ops.local.stack import LocalStack, StackOptions, find_root

SEQUENTIAL_JOBS = 10
THROUGHPUT_JOBS = 50
POLL_SECONDS = 0.02
JOB_TIMEOUT_SECONDS = 60.0
THROUGHPUT_TIMEOUT_SECONDS = 300.0
NOOP = ("report-export", ("noop",))
_REPORT = re.compile(r"^REPORT RequestId: \S+\tDuration: ([0-9.]+) ms")


@dataclass(frozen=True)
class Configuration:
    name: str
    parameters: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1


CONFIGURATIONS = (
    Configuration("batching window 1 s, 1 environment per function", {"DispatchBatchingWindowSeconds": "1"}),
    Configuration("template defaults (batching window 0 s), 1 environment per function"),
    Configuration(
        "batching window 0 s, 4 environments per function", {"DispatchBatchingWindowSeconds": "0"}, 4
    ),
)


@dataclass
class Measurement:
    configuration: Configuration
    overhead: list[float] = field(default_factory=list)  # seconds per job
    way_in: list[float] = field(default_factory=list)
    way_out: list[float] = field(default_factory=list)
    command: list[float] = field(default_factory=list)
    throughput_seconds: float = 0.0
    endpoint_cpu_seconds: float = 0.0
    handler_ms: dict[str, list[float]] = field(default_factory=dict)


def wait_succeeded(stack: LocalStack, job_id: str) -> tuple[Job, float]:
    """The job once SUCCEEDED, and the wall-clock time it was first seen so."""
    table = stack.table()
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        job = table.get(job_id)
        if job is not None and job.status.is_terminal:
            if job.status is not JobStatus.SUCCEEDED:
                raise RuntimeError(f"benchmark job {job_id} ended {job.status}: {job.reason}")
            return job, time.time()
        time.sleep(POLL_SECONDS)
    raise RuntimeError(
        f"benchmark job {job_id} did not end in {JOB_TIMEOUT_SECONDS}s: {stack.diagnose(job_id)}"
    )


def measure_sequential(stack: LocalStack, client: BatchClient, measurement: Measurement, run: str) -> None:
    batch, arguments = NOOP
    for number in range(SEQUENTIAL_JOBS):
        submitted = time.time()
        receipt = client.submit(batch, arguments, idempotency_key=f"bench-{run}-{number}")
        assert receipt.job_id_hint is not None
        job, seen = wait_succeeded(stack, receipt.job_id_hint)
        timeline = job.attempt.timeline if job.attempt else {}
        created, started, stopping = (
            parse_iso(timeline[key]).timestamp() for key in ("created", "started", "stopping")
        )
        command = stopping - started
        measurement.command.append(command)
        measurement.overhead.append(seen - submitted - command)
        measurement.way_in.append(created - submitted)
        measurement.way_out.append(seen - stopping)


def measure_throughput(stack: LocalStack, client: BatchClient, measurement: Measurement, run: str) -> None:
    batch, arguments = NOOP
    messages = [
        SubmitMessage(batch, arguments, idempotency_key=f"bench-{run}-many-{number}")
        for number in range(THROUGHPUT_JOBS)
    ]
    endpoint_cpu = cpu_seconds(stack.endpoint.pid)
    started = time.monotonic()
    result = client.submit_many(messages)
    if not result.all_sent:
        raise RuntimeError(f"SQS refused benchmark messages: {result.failures}")
    deadline = started + THROUGHPUT_TIMEOUT_SECONDS
    before = succeeded(stack)
    while time.monotonic() < deadline:
        if succeeded(stack) - before >= THROUGHPUT_JOBS:
            measurement.throughput_seconds = time.monotonic() - started
            measurement.endpoint_cpu_seconds = cpu_seconds(stack.endpoint.pid) - endpoint_cpu
            return
        time.sleep(0.25)
    raise RuntimeError(f"{THROUGHPUT_JOBS} jobs did not all succeed in {THROUGHPUT_TIMEOUT_SECONDS}s")


def succeeded(stack: LocalStack) -> int:
    """SUCCEEDED jobs, counted by the status index (COUNT: the endpoint does not serialise the items)."""
    response = (
        stack.client_aws()
        .dynamodb()
        .query(
            TableName=stack.outputs["table_name"],
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": {"S": JobStatus.SUCCEEDED.value}},
            Select="COUNT",
        )
    )
    return int(response["Count"])


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handler_durations(stack: LocalStack) -> dict[str, list[float]]:
    """REPORT durations (ms) per function, from the functions' CloudWatch log groups."""
    logs = stack.client_aws().logs()
    durations: dict[str, list[float]] = {}
    for function in (stack.resources.functions if stack.resources else {}).values():
        group = function.log_group
        for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
            events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
            for event in events:
                match = _REPORT.match(event["message"])
                if match:
                    durations.setdefault(function.logical_id, []).append(float(match.group(1)))
    return durations


def measure(configuration: Configuration, root: Path, number: int) -> Measurement:
    measurement = Measurement(configuration)
    with tempfile.TemporaryDirectory(prefix="batchgate-bench-") as scratch:
        options = StackOptions(
            root=root,
            parameters=configuration.parameters,
            concurrency=configuration.concurrency,
            state_path=Path(scratch) / "local.json",
            log_level="WARNING",
            watchdog=False,  # nothing here times out; its index queries would only load the endpoint
        )
        with LocalStack(options) as stack:
            client = BatchClient(stack.outputs["queue_url"], stack.client_aws().sqs())
            measure_sequential(stack, client, measurement, f"{number}")
            measure_throughput(stack, client, measurement, f"{number}")
            time.sleep(1.5)  # the function hosts ship their logs every second
            measurement.handler_ms = handler_durations(stack)
    return measurement


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    p90 = statistics.quantiles(values, n=10)[-1]
    return f"{statistics.median(values) * 1000:.0f} ms (p90 {p90 * 1000:.0f})"


def report(measurements: list[Measurement]) -> str:
    polled = f"{POLL_SECONDS * 1000:.0f} ms"
    lines = [
        "## Orchestrator overhead on the local stack (`bench/local_overhead.py`)",
        "",
        f"Machine: {os.cpu_count()} CPUs. Command: `python -m reports.export noop` (does nothing). "
        f"Overhead = submit -> SUCCEEDED seen in the table (polled every {polled}) minus the command's "
        f"own run time; median (p90) of {SEQUENTIAL_JOBS} jobs run one at a time. Way in = submit -> "
        f"task created; way out = container exit -> SUCCEEDED. Throughput: {THROUGHPUT_JOBS} jobs "
        "submitted at once, until the last SUCCEEDED, and the CPU time the endpoint (moto) process used "
        "meanwhile. Handler time: the functions' own REPORT durations, median per invocation (dispatch "
        "handles a batch of messages, track one event). The timeout watchdog is off.",
        "",
        "| configuration | overhead per job | way in | way out | command run time | jobs/s "
        f"({THROUGHPUT_JOBS} jobs) | endpoint CPU during those | dispatch handler | track handler |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for item in measurements:
        rate = THROUGHPUT_JOBS / item.throughput_seconds if item.throughput_seconds else 0.0
        handlers = [
            f"{statistics.median(item.handler_ms[name]):.0f} ms ({len(item.handler_ms[name])} calls)"
            if item.handler_ms.get(name)
            else "-"
            for name in ("DispatchFunction", "TrackFunction")
        ]
        cells = [
            item.configuration.name,
            _ms(item.overhead),
            _ms(item.way_in),
            _ms(item.way_out),
            _ms(item.command),
            f"{rate:.1f} ({item.throughput_seconds:.1f} s)",
            f"{item.endpoint_cpu_seconds:.1f} s",
            *handlers,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "The local stack is not AWS: the way in includes the template's SQS batching window and the "
        "executor's 0.2 s poll for new tasks; every process (endpoint, functions, tasks) shares these "
        "CPUs, and the single moto process, busy most of the time, bounds the throughput (its DynamoDB "
        "serialises whole job items on every read and write).",
        "",
    ]
    return "\n".join(lines)


def run() -> str:
    root = find_root(Path(__file__).resolve().parent)
    measurements = [
        measure(configuration, root, number) for number, configuration in enumerate(CONFIGURATIONS)
    ]
    return report(measurements)


if __name__ == "__main__":
    print(run())
