"""The warm lane on the embedded local stack: how soon a warm job runs, and what preload saves.

- Start: submit (the application's SendMessage) -> RUNNING (the worker's claim, the attempt's `started`),
  for jobs run one at a time on a pool of the local stack's worker processes; the same for the same
  batch on the ECS path (a pool with no task, so each job goes to Fargate, tasks starting without a
  simulated delay): the lane's own cost against the orchestrator's.
- Preload: the same jobs with the sample application's simulated boot (`BATCHGATE_SAMPLE_BOOT_SECONDS`)
  in run mode `command` (a fresh process per job pays it) and `preload` (the pool task's zygote paid it
  once): submit -> SUCCEEDED, side by side.

Each configuration runs on a fresh stack. Run with `python -m bench` (all benchmarks, results in
bench/results.md) or `python -m bench.warm_lane`.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from batchgate.client import BatchClient
from batchgate.domain.jobs import parse_iso
from batchgate.ops.local.stack import LocalStack, StackOptions, find_root

from bench._figures import at_most, figures_table, median
from bench.local_overhead import POLL_SECONDS, wait_succeeded

BATCH = "attendance-import"
ARGUMENTS = ("uploads/bench.csv",)
JOBS = 10
BOOT_SECONDS = 1.0  # the sample application's simulated boot, in the preload comparison
START_TARGET_SECONDS = 0.5


@dataclass(frozen=True)
class Configuration:
    name: str
    run_mode: str
    pool_tasks: int | None = None  # None: the pool's schedule (open); 0: no task, jobs go to ECS
    boot_seconds: float = 0.0


CONFIGURATIONS = (
    Configuration("warm pool, command mode", "command"),
    Configuration("ECS path (pool with no task), tasks start at once", "command", pool_tasks=0),
    Configuration(
        f"warm pool, command mode, {BOOT_SECONDS:.0f} s app boot", "command", boot_seconds=BOOT_SECONDS
    ),
    Configuration(
        f"warm pool, preload mode, {BOOT_SECONDS:.0f} s app boot", "preload", boot_seconds=BOOT_SECONDS
    ),
)


@dataclass
class Measurement:
    configuration: Configuration
    start: list[float] = field(default_factory=list)  # submit -> RUNNING
    done: list[float] = field(default_factory=list)  # submit -> SUCCEEDED seen
    strategies: set[str] = field(default_factory=set)


def bench_catalog(directory: Path, run_mode: str) -> Path:
    """The packaged catalog with the bench batch on its pool in `run_mode`."""
    document: dict[str, Any] = json.loads(resources.files("batchgate").joinpath("catalog.json").read_text())
    batch = document["batches"][BATCH]
    if "pool" not in batch:
        raise RuntimeError(f"the packaged catalog puts {BATCH} on no pool")
    batch["run_mode"] = run_mode
    if run_mode != "preload":
        batch.pop("preload", None)
    path = directory / f"catalog-{run_mode}.json"
    path.write_text(json.dumps(document))
    return path


def measure(configuration: Configuration, root: Path, number: int) -> Measurement:
    measurement = Measurement(configuration)
    previous = os.environ.get("BATCHGATE_SAMPLE_BOOT_SECONDS")
    os.environ["BATCHGATE_SAMPLE_BOOT_SECONDS"] = str(configuration.boot_seconds)
    try:
        with tempfile.TemporaryDirectory(prefix="batchgate-bench-") as scratch:
            options = StackOptions(
                root=root,
                catalog_path=bench_catalog(Path(scratch), configuration.run_mode),
                state_path=Path(scratch) / "local.json",
                log_level="WARNING",
                watchdog=False,
                pool_tasks=configuration.pool_tasks,
            )
            with LocalStack(options) as stack:
                client = BatchClient(stack.outputs["queue_url"], stack.client_aws().sqs())
                for job_number in range(JOBS):
                    submitted = time.time()
                    receipt = client.submit(
                        BATCH, ARGUMENTS, idempotency_key=f"bench-warm-{number}-{job_number}"
                    )
                    assert receipt.job_id_hint is not None
                    job, seen = wait_succeeded(stack, receipt.job_id_hint)
                    attempt = job.attempt
                    assert attempt is not None
                    measurement.strategies.add(attempt.strategy)
                    measurement.start.append(parse_iso(attempt.timeline["started"]).timestamp() - submitted)
                    measurement.done.append(seen - submitted)
    finally:
        if previous is None:
            os.environ.pop("BATCHGATE_SAMPLE_BOOT_SECONDS", None)
        else:
            os.environ["BATCHGATE_SAMPLE_BOOT_SECONDS"] = previous
    return measurement


def _s(values: list[float]) -> str:
    p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]
    return f"{statistics.median(values):.2f} s (p90 {p90:.2f})"


def report(measurements: list[Measurement]) -> str:
    warm, ecs, command, preload = measurements
    start = median(warm.start)
    saving = median(preload.done) / median(command.done)
    figures = [
        at_most(
            "warm lane: submit -> RUNNING, median (local stack)",
            start,
            START_TARGET_SECONDS,
            f"≤ {START_TARGET_SECONDS} s",
            f"{start:.2f} s (ECS path on the same stack {median(ecs.start):.2f} s)",
        ),
        at_most(
            f"warm lane: preload / command mode, submit -> SUCCEEDED with a {BOOT_SECONDS:.0f} s app boot",
            saving,
            1.0,
            "< 1x",
            f"{saving:.2f}x ({median(preload.done):.2f} s vs {median(command.done):.2f} s)",
        ),
    ]
    lines = [
        "## The warm lane on the local stack (`bench/warm_lane.py`)",
        "",
        f"Batch `{BATCH}` ({JOBS} jobs one at a time, each on a fresh stack per configuration). Start = "
        "the application's submit -> RUNNING (the worker's claim, or the ECS task's start); done = submit "
        f"-> SUCCEEDED seen in the table (polled every {POLL_SECONDS * 1000:.0f} ms). The app boot is the "
        "samples' simulated one (`BATCHGATE_SAMPLE_BOOT_SECONDS`); on the ECS path tasks start without a "
        "simulated delay, so its start is the orchestrator's own way in, not Fargate's ~50 s.",
        "",
        figures_table(figures),
        "",
        "| configuration | ran on | start | done |",
        "|---|---|---|---|",
    ]
    for item in measurements:
        lines.append(
            f"| {item.configuration.name} | {', '.join(sorted(item.strategies))} | {_s(item.start)} | "
            f"{_s(item.done)} |"
        )
    lines.append("")
    return "\n".join(lines)


def run() -> str:
    root = find_root(Path(__file__).resolve().parent)
    return report(
        [measure(configuration, root, number) for number, configuration in enumerate(CONFIGURATIONS)]
    )


if __name__ == "__main__":
    print(run())
