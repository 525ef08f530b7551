"""Dispatch throughput: a batch of submit messages through the real dispatch handler, with every AWS
call answered after an injected latency, at the template's bounded concurrency and forced sequential.

Each mode is its own container (a fresh import of functions/dispatch/app.py with the template's
environment) whose clients sleep `LATENCY_SECONDS` per request before in-process moto answers. The
handler's RunTask concurrency is the DISPATCH_CONCURRENCY setting (template `DispatchConcurrency`);
1 makes it sequential. One warm-up batch per container fills its caches (history), then the modes
take turns, `RUNS` batches each; every batch is new jobs.

The launch-rate governor holds each container to its share of ECS's rate: 20 RunTask calls/s divided
by DISPATCH_MAX_CONCURRENCY. The compared modes give one dispatcher the whole rate (1), so that the
figure is the dispatcher's own speed; the third mode shows the template's default (5 dispatchers at
4 calls/s each). Every timed batch starts after a pause that refills the governor's bucket.

Run with `python -m bench` (all benchmarks) or `python -m bench.dispatch_throughput`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import ModuleType

from batchgate.ops.template import load_template
from moto import mock_aws

from bench._aws_calls import CallCounter, LatencyInjector
from bench._figures import Figure, at_least, at_most, figures_table, median, spread
from bench._in_process import (
    DISPATCH,
    ROOT,
    InProcessStack,
    build_stack,
    good_bodies,
    invoke,
    load_function,
    plain_session,
    quiet_functions,
    sqs_event,
)

LATENCY_SECONDS = 0.050
# The template's defaults: DispatchBatchSize, and DispatchConcurrency (threads per invocation).
TEMPLATE_PARAMETERS = load_template(ROOT / "template.yaml")["Parameters"]
BATCH_SIZE = int(TEMPLATE_PARAMETERS["DispatchBatchSize"]["Default"])
THREADS = int(TEMPLATE_PARAMETERS["DispatchConcurrency"]["Default"])
RUNS = 5
REFILL_PAUSE_SECONDS = 1.0  # the governor's bucket: burst / rate = 1 s at the whole rate, 1 s at 4/s
ECS_RUN_TASK_PER_SECOND = 20.0
TARGET_RATIO = 0.25


@dataclass
class Mode:
    name: str
    environment: dict[str, str]
    seconds: list[float] = field(default_factory=list)
    requests_per_batch: list[int] = field(default_factory=list)


@dataclass
class Container:
    mode: Mode
    module: ModuleType
    counter: CallCounter
    latency: LatencyInjector


def _container(stack: InProcessStack, mode: Mode) -> Container:
    session = plain_session()
    counter = CallCounter(session)
    latency = LatencyInjector(LATENCY_SECONDS)
    latency.attach(session)
    return Container(mode, load_function(stack, DISPATCH, session, mode.environment), counter, latency)


def _batch(container: Container, label: str, *, timed: bool) -> None:
    event = sqs_event(good_bodies(BATCH_SIZE, label), label)
    container.counter.clear()
    requests = container.latency.requests
    started = time.perf_counter()
    response = invoke(container.module, event)
    elapsed = time.perf_counter() - started
    launched = container.counter.counts()["ecs:RunTask"]
    if response != {"batchItemFailures": []} or launched != BATCH_SIZE:
        raise RuntimeError(f"{container.mode.name}: {launched} RunTask calls, response {response}")
    if timed:
        container.mode.seconds.append(elapsed)
        container.mode.requests_per_batch.append(container.latency.requests - requests)


def measure() -> tuple[Mode, Mode, Mode]:
    concurrent = Mode(
        f"bounded concurrency (template DispatchConcurrency {THREADS})", {"DISPATCH_MAX_CONCURRENCY": "1"}
    )
    sequential = Mode(
        "forced sequential (DispatchConcurrency 1)",
        {"DISPATCH_MAX_CONCURRENCY": "1", "DISPATCH_CONCURRENCY": "1"},
    )
    defaults = Mode(f"template defaults: concurrency {THREADS}, governor share of 5 dispatchers", {})
    with mock_aws(), quiet_functions():
        stack = build_stack()
        containers = [_container(stack, mode) for mode in (concurrent, sequential, defaults)]
        for number, container in enumerate(containers):
            _batch(container, f"warm-{number}", timed=False)
        for run in range(RUNS):
            for number, container in enumerate(containers):
                time.sleep(REFILL_PAUSE_SECONDS)
                _batch(container, f"run-{run}-{number}", timed=True)
    return concurrent, sequential, defaults


def report(concurrent: Mode, sequential: Mode, defaults: Mode) -> str:
    ratio = median(concurrent.seconds) / median(sequential.seconds)
    rate = BATCH_SIZE / median(concurrent.seconds)
    default_rate = BATCH_SIZE / median(defaults.seconds)
    launch_rounds = math.ceil(BATCH_SIZE / THREADS)
    rounds = "one round" if launch_rounds == 1 else f"{launch_rounds} rounds"
    figures: list[Figure] = [
        at_most(
            f"dispatch: batch of {BATCH_SIZE}, bounded concurrency / sequential",
            ratio,
            TARGET_RATIO,
            f"≤ {TARGET_RATIO}x",
            f"{ratio:.3f}x ({median(concurrent.seconds):.3f} s vs {median(sequential.seconds):.3f} s)",
        ),
        at_least(
            "dispatch: messages/s per dispatcher",
            rate,
            ECS_RUN_TASK_PER_SECOND,
            f"> {ECS_RUN_TASK_PER_SECOND:.0f}/s (ECS RunTask rate)",
            f"{rate:.1f}/s",
        ),
        Figure(
            "dispatch: messages/s per dispatcher, template's governor share",
            "4/s (20/s shared by 5)",
            f"{default_rate:.1f}/s",
        ),
    ]
    lines = [
        "## Dispatch throughput (`bench/dispatch_throughput.py`)",
        "",
        f"A batch of {BATCH_SIZE} submit messages (the two good ones of events/sqs-submit-batch.json in "
        "turn, each a new job) through the real dispatch handler, every AWS request answered by "
        f"in-process moto after {LATENCY_SECONDS * 1000:.0f} ms. Each mode is one container; a warm-up "
        f"batch first, then {RUNS} batches per mode in turn; median (min-max) wall time of the handler "
        "call. Messages/s = batch size / median batch time.",
        "",
        figures_table(figures),
        "",
        "| mode | batch time | messages/s | AWS requests per batch |",
        "|---|---|---:|---:|",
    ]
    for mode in (concurrent, sequential, defaults):
        lines.append(
            f"| {mode.name} | {spread(mode.seconds, 1000, ' ms')} | "
            f"{BATCH_SIZE / median(mode.seconds):.1f} | {median(mode.requests_per_batch):.0f} |"
        )
    lines += [
        "",
        f"- Per message: 3 job-table writes and 1 RunTask, so {4 * LATENCY_SECONDS * 1000:.0f} ms of "
        f"waiting; {BATCH_SIZE} messages on {THREADS} threads take {rounds} of it.",
        "- The compared modes give the dispatcher all of ECS's launch rate (DISPATCH_MAX_CONCURRENCY 1); "
        "with the template's defaults the governor holds each of up to 5 dispatchers to 4 RunTask calls/s "
        "(burst 4), which is the last row: ECS's limit, not the dispatcher, sets that pace.",
        "",
    ]
    return "\n".join(lines)


def run() -> str:
    return report(*measure())


if __name__ == "__main__":
    print(run())
