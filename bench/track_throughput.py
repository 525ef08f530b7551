"""Track throughput: task state change events per second through one track handler process.

Jobs are dispatched first (untimed, no injected latency), then their sample life events (PROVISIONING,
PENDING, RUNNING, STOPPED exit 0, rewritten for each job's task; interleaved across jobs as many tasks
progress at once) go through the real track handler one invocation each, as EventBridge invokes it.
Two containers take turns: one whose every AWS request waits `LATENCY_SECONDS`, one without injected
latency (the handler's own cost next to in-process moto). Events/s = events / wall time of the
invocations, median of `RUNS` runs.

Run with `python -m bench` (all benchmarks) or `python -m bench.track_throughput`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from batchgate.domain.jobs import JobStatus, job_id_for
from moto import mock_aws

from bench._aws_calls import LatencyInjector
from bench._figures import Figure, figures_table, median, spread
from bench._in_process import (
    DISPATCH,
    LIFE_EVENTS,
    TRACK,
    InProcessStack,
    build_stack,
    good_bodies,
    invoke,
    life_events,
    load_function,
    plain_session,
    quiet_functions,
    sqs_event,
)

LATENCY_SECONDS = 0.050
JOBS_PER_RUN = 10
RUNS = 3
# What ECS's launch rate produces: 20 tasks/s, each with these events (at least).
ECS_TASKS_PER_SECOND = 20.0


@dataclass
class Container:
    name: str
    module: ModuleType
    latency: LatencyInjector
    rates: list[float] = field(default_factory=list)
    requests_per_event: list[float] = field(default_factory=list)


def _container(stack: InProcessStack, name: str, seconds: float) -> Container:
    session = plain_session()
    latency = LatencyInjector(seconds)
    latency.attach(session)
    return Container(name, load_function(stack, TRACK, session), latency)


def _dispatched_events(stack: InProcessStack, dispatch: ModuleType, label: str) -> list[dict[str, Any]]:
    """The life events of JOBS_PER_RUN new payroll jobs, stage by stage across the jobs."""
    bodies = good_bodies(JOBS_PER_RUN, label, kinds=1)
    response = invoke(dispatch, sqs_event(bodies, label))
    if response != {"batchItemFailures": []}:
        raise RuntimeError(f"dispatch answered {response}")
    table = stack.table()
    per_job = []
    for number in range(JOBS_PER_RUN):
        job = table.get(job_id_for("payroll-calculation", f"{label}-{number}"))
        if job is None:
            raise RuntimeError(f"no job {label}-{number}")
        per_job.append(life_events(job, stack))
    return [events[stage] for stage in range(len(LIFE_EVENTS)) for events in per_job]


def _run(stack: InProcessStack, container: Container, events: list[dict[str, Any]]) -> None:
    requests = container.latency.requests
    started = time.perf_counter()
    for event in events:
        invoke(container.module, event)
    elapsed = time.perf_counter() - started
    container.rates.append(len(events) / elapsed)
    container.requests_per_event.append((container.latency.requests - requests) / len(events))
    job_ids = {event["detail"]["startedBy"] for event in events}
    table = stack.table()
    for job_id in job_ids:
        job = table.get(job_id)
        if job is None or job.status is not JobStatus.SUCCEEDED:
            raise RuntimeError(f"{container.name}: job {job_id} ended {job.status if job else None}")


def measure() -> list[Container]:
    with mock_aws(), quiet_functions():
        stack = build_stack()
        dispatch = load_function(stack, DISPATCH, plain_session(), {"DISPATCH_MAX_CONCURRENCY": "1"})
        containers = [
            _container(stack, f"{LATENCY_SECONDS * 1000:.0f} ms per AWS request", LATENCY_SECONDS),
            _container(stack, "no injected latency (in-process moto)", 0.0),
        ]
        # Warm-up: each container's first events also read the task definition (cached afterwards).
        for number, container in enumerate(containers):
            _run(stack, container, _dispatched_events(stack, dispatch, f"warm-{number}"))
            container.rates.clear()
            container.requests_per_event.clear()
        for run in range(RUNS):
            for number, container in enumerate(containers):
                time.sleep(1.0)  # the dispatcher's launch-rate governor: a full bucket per batch
                _run(stack, container, _dispatched_events(stack, dispatch, f"run-{run}-{number}"))
    return containers


def report(containers: list[Container]) -> str:
    latent, bare = containers
    rate = median(latent.rates)
    needed = ECS_TASKS_PER_SECOND * len(LIFE_EVENTS)
    figures = [
        Figure(
            f"track: task events/s per handler process ({LATENCY_SECONDS * 1000:.0f} ms per call)",
            "-",
            f"{rate:.1f}/s ({1000 / rate:.0f} ms per event)",
        ),
        Figure(
            "track: task events/s per handler process, no injected latency",
            "-",
            f"{median(bare.rates):.0f}/s ({1000 / median(bare.rates):.1f} ms per event)",
        ),
    ]
    lines = [
        "## Track throughput (`bench/track_throughput.py`)",
        "",
        f"{JOBS_PER_RUN} dispatched jobs per run, their {len(LIFE_EVENTS)} sample life events each "
        f"(PROVISIONING, PENDING, RUNNING, STOPPED exit 0) through the real track handler, one invocation "
        f"per event, in one container; {RUNS} runs per container after a warm-up run, taking turns; "
        "median (min-max) events per second.",
        "",
        figures_table(figures),
        "",
        "| container | events/s | AWS requests per event |",
        "|---|---|---:|",
        *(
            f"| {container.name} | {spread(container.rates)} | {median(container.requests_per_event):.2f} |"
            for container in containers
        ),
        "",
        "- An event costs one GetItem and one conditional PutItem of the job, and nothing else: the "
        "history function folds the finished attempt in from the job table's stream (bench/work_per_job.py "
        "counts it).",
        f"- At ECS's launch rate ({ECS_TASKS_PER_SECOND:.0f} tasks/s, {len(LIFE_EVENTS)} events each: "
        f"{needed:.0f} events/s), {math.ceil(needed / rate)} track environments at this latency keep up; "
        "EventBridge invokes the function asynchronously, so Lambda runs as many as the events need.",
        "",
    ]
    return "\n".join(lines)


def run() -> str:
    return report(measure())


if __name__ == "__main__":
    print(run())
