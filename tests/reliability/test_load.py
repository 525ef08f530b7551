"""A load run on the local stack: 1,000 jobs of three batches submitted in one burst (SendMessageBatch
calls from several threads at once) to `batchgate local up` in its own process, every task a real
process. Every job ends as its arguments say (succeeded, or failed with the application's exit code),
with one task each, nothing in any dead-letter queue; the time to drain and the RunTask rate go into
docs/reliability.md beside the launch governor's limits.

The stack runs four environments per function and tells the governor so (DispatchMaxConcurrency=4): each takes
half of the account's limits, as the deployed functions do at their maximum concurrency.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from batchgate.domain.jobs import Job, JobStatus, job_id_for, parse_iso
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS

from tests.integration.local_stack import Stack, running_stack, short_timeout_catalog
from tests.reliability.conftest import Tally

pytestmark = [pytest.mark.integration, pytest.mark.reliability_full]

JOBS = 1000
DISPATCH_ENVIRONMENTS = 4
DRAIN_SECONDS = 2400.0
SEND_THREADS = 10


@dataclass(frozen=True)
class Expected:
    batch: str
    arguments: list[str]
    status: JobStatus
    exit_code: int


# The mix, by share of the jobs: quick successes of each batch and an application failure (exit 3,
# not retried by the default policy).
MIX = [
    Expected("payroll-calculation", ["2026-11", "acme"], JobStatus.SUCCEEDED, 0),
    Expected("report-export", ["noop"], JobStatus.SUCCEEDED, 0),
    Expected("attendance-import", ["uploads/file.csv"], JobStatus.SUCCEEDED, 0),
    Expected("payroll-calculation", ["fail"], JobStatus.FAILED, 3),
]
WEIGHTS = [4, 3, 2, 1]


def workload() -> dict[str, Expected]:
    """The jobs of the run by job id, in the order of the mix's weights."""
    cycle = [expected for expected, weight in zip(MIX, WEIGHTS, strict=True) for _ in range(weight)]
    return {
        job_id_for(cycle[n % len(cycle)].batch, f"load-{n:04d}"): cycle[n % len(cycle)] for n in range(JOBS)
    }


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("load")
    arguments = [
        "--catalog",
        str(short_timeout_catalog(directory)),
        "--pool-tasks",
        "0",  # attendance-import's pool closed: its jobs go to ECS like the others
        "--concurrency",
        str(DISPATCH_ENVIRONMENTS),
        "--parameter",
        f"DispatchMaxConcurrency={DISPATCH_ENVIRONMENTS}",
        "--no-docker",
        # No scheduled sweep while the burst drains (its first run is an hour away): past its
        # 300 s event grace it would compare the queued jobs with the local endpoint's DescribeTasks,
        # where moto reports every stopped container with exit code 0 (it never learns the process's),
        # and end a job whose task failed as SUCCEEDED before the task's own STOPPED event arrives.
        "--parameter",
        "SweepSchedule=rate(1 hour)",
    ]
    with running_stack(directory, arguments) as stack:
        yield stack


def submit_burst(stack: Stack, jobs: dict[str, Expected]) -> None:
    bodies = [
        json.dumps(
            {
                "schema_version": 1,
                "batch": expected.batch,
                "arguments": expected.arguments,
                "idempotency_key": f"load-{n:04d}",
            }
        )
        for n, expected in enumerate(jobs.values())
    ]
    chunks = [bodies[start : start + 10] for start in range(0, len(bodies), 10)]

    def send(chunk: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        response = stack.sqs.send_message_batch(QueueUrl=stack.state["queue_url"], Entries=entries)  # type: ignore[arg-type]
        assert not response.get("Failed"), response.get("Failed")

    with ThreadPoolExecutor(SEND_THREADS) as pool:
        list(pool.map(send, chunks))


def wait_until_drained(stack: Stack, job_ids: list[str]) -> dict[str, Job]:
    deadline = time.monotonic() + DRAIN_SECONDS
    table = stack.table
    ended: dict[str, Job] = {}
    while time.monotonic() < deadline:
        pending = [job_id for job_id in job_ids if job_id not in ended]
        for job in table.get_many(pending):
            if job.status.is_terminal:
                ended[job.job_id] = job
        if len(ended) == len(job_ids):
            return ended
        time.sleep(1.0)
    pytest.fail(f"{len(job_ids) - len(ended)} of {len(job_ids)} jobs not ended in {DRAIN_SECONDS:.0f} s")


def tasks_per_job(stack: Stack) -> Counter[str]:
    """How many tasks the cluster holds for each startedBy (every task of the run, stopped or not)."""
    ecs, cluster = stack.ecs, stack.state["cluster"]
    arns: list[str] = []
    for desired in ("RUNNING", "STOPPED"):
        for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus=desired):
            arns.extend(page["taskArns"])
    started_by: Counter[str] = Counter()
    for start in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"]:
            started_by[task.get("startedBy", "")] += 1
    return started_by


def describe(stack: Stack, arns: list[str]) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        response = stack.ecs.describe_tasks(cluster=stack.state["cluster"], tasks=arns[start : start + 100])
        tasks.extend(dict(task) for task in response["tasks"])
    return tasks


def messages_in(stack: Stack, queue_url: str) -> int:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def peak_rate(moments: list[float], window: float) -> float:
    """The most launches in any `window` seconds, per second."""
    moments = sorted(moments)
    most, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most / window


def test_a_burst_of_1000_jobs_drains_with_one_task_each_and_an_empty_dlq(
    load_stack: Stack, tally: Tally
) -> None:
    jobs = workload()
    started = time.monotonic()
    submit_burst(load_stack, jobs)
    submitted = time.monotonic() - started
    ended = wait_until_drained(load_stack, list(jobs))
    drained = time.monotonic() - started

    wrong = {
        job_id: (job.status.value, job.attempt.exit_code if job.attempt else None, len(job.attempts))
        for job_id, job in ended.items()
        if (job.status, job.attempt.exit_code if job.attempt else None)
        != (jobs[job_id].status, jobs[job_id].exit_code)
        or len(job.attempts) != 1
    }
    tasks = tasks_per_job(load_stack)
    not_one = {job_id: tasks[job_id] for job_id in jobs if tasks[job_id] != 1}
    for job_id in jobs:
        tally.check("one task per attempt", tasks[job_id] == 1)
    state = load_stack.state
    queues = {name: url for name, url in state["dlq_urls"].items() if url}
    # The warm pools' DLQs: "pool=url,pool=url".
    pools = [pair.partition("=") for pair in (state.get("pool_dlq_urls") or "").split(",") if pair]
    queues |= {f"pool {name}": url for name, _, url in pools}
    in_dlq = {name: messages_in(load_stack, url) for name, url in queues.items()}
    # What ran for a job that ended otherwise: its task's startedBy and command (the diagnosis).
    ran = {
        task["startedBy"]: (task["taskArn"], task["overrides"]["containerOverrides"][0].get("command"))
        for task in describe(
            load_stack,
            [
                job.attempt.task_arn
                for job_id, job in ended.items()
                if job_id in wrong and job.attempt and job.attempt.task_arn
            ],
        )
    }

    # The RunTask rate: the moment each task was created (the local executor sees a RunTask within its
    # 0.2 s poll), against the governor's limits for the whole account.
    created = [
        parse_iso(job.attempt.timeline["created"]).timestamp()
        for job in ended.values()
        if job.attempt is not None and "created" in job.attempt.timeline
    ]
    limits = DEFAULT_STRATEGY_SETTINGS
    per_second = peak_rate(created, 1.0)
    per_ten_seconds = peak_rate(created, 10.0)
    launching = max(created) - min(created)
    tally.add("load: jobs", JOBS)
    tally.add("load: batches", len({expected.batch for expected in jobs.values()}))
    tally.figure("load: submit seconds", submitted)
    tally.figure("load: drain seconds", drained)
    tally.figure("load: launch seconds", launching)
    tally.figure("load: mean launch rate", JOBS / launching if launching else float(JOBS))
    tally.figure("load: peak launch rate 1 s", per_second)
    tally.figure("load: peak launch rate 10 s", per_ten_seconds)
    tally.figure("load: RunTask limit", limits.run_task_calls_per_second)
    tally.figure("load: Fargate limit", limits.fargate_launch_per_second)
    tally.figure("load: Fargate burst", limits.fargate_launch_burst)
    tally.add("load: DLQ messages", sum(in_dlq.values()))
    tally.add("load: DLQs checked", len(in_dlq))
    tally.add("load: as expected", JOBS - len(wrong))
    tally.add("load: one task", JOBS - len(not_one))
    for job_id, expected in jobs.items():
        got = ended[job_id].status.value
        tally.outcome("load run", f"{expected.batch} {' '.join(expected.arguments)}: {got}")

    assert not wrong, (
        f"{len(wrong)} jobs ended otherwise: {[(j, wrong[j], ran.get(j)) for j in list(wrong)[:5]]}"
    )
    assert not not_one, f"jobs without exactly one task: {list(not_one.items())[:5]}"
    assert set(in_dlq) >= {"jobs", "track", "history"}
    assert not any(in_dlq.values()), in_dlq
    assert len(created) == JOBS
    # The governor's buckets: at most one burst above the rate in any window (plus the executor's
    # poll, which can put two polls' tasks in one second).
    assert per_ten_seconds <= limits.run_task_calls_per_second + 2 * limits.run_task_calls_per_second / 10
