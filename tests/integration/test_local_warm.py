"""The warm lane on the local stack, across its real process boundaries: `batchgate local up` runs the
attendance pool as worker processes of the real worker; dispatch, track and the sweep run as their
own processes; the tests reach all of it over HTTP and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from batchgate.domain.jobs import JobStatus
from batchgate.domain.warm import POOL_TASK_STOPPED, WARM

from tests.integration.conftest import LOCAL_STACK_GROUP
from tests.integration.local_stack import BATCHGATE, ROOT, Stack

pytestmark = [pytest.mark.integration, LOCAL_STACK_GROUP]

WARM_BATCH = "attendance-import"


def cli(stack: Stack, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BATCHGATE, "--local", "--local-state", str(stack.state_path), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def worker_pid(task_arn: str) -> int:
    """The local pool worker standing for this pool task (its environment names the task)."""
    marker = f"BATCHGATE_WORKER_TASK_ARN={task_arn}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
            command = (environ.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in variables and b"batchgate.worker" in command and b"zygote" not in command:
            return int(environ.parent.name)
    raise AssertionError(f"no worker process for {task_arn}")


def test_a_warm_job_runs_on_a_pool_slot_with_its_own_log_stream(stack: Stack) -> None:
    job_id = stack.submit(WARM_BATCH, ["uploads/warm/acme.csv"], "warm-acme")
    job = stack.wait_for(job_id)
    assert job.status is JobStatus.SUCCEEDED, job.reason
    attempt = job.attempt
    assert attempt is not None and attempt.strategy == WARM and attempt.slot is not None
    assert attempt.log_stream == f"{WARM_BATCH}/{job_id}/1"
    assert stack.log_lines(job)[-1] == "attendance: uploads/warm/acme.csv: 3 rows imported"
    shown = cli(stack, "logs", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "3 rows imported" in shown.stdout
    pools = cli(stack, "pools", "--json")
    assert pools.returncode == 0, pools.stderr
    [pool] = json.loads(pools.stdout)["pools"]
    assert pool["pool"] == "attendance" and len(pool["tasks"]) == 2


def test_a_pool_task_killed_under_a_job_fails_its_attempt_at_once_and_ecs_runs_the_next(stack: Stack) -> None:
    job_id = stack.submit(WARM_BATCH, ["uploads/warm/slow.csv"], "warm-slow")
    running = stack.wait_until(job_id, lambda job: job.status is JobStatus.RUNNING)
    attempt = running.attempt
    assert attempt is not None and attempt.strategy == WARM and attempt.task_arn is not None
    os.kill(worker_pid(attempt.task_arn), signal.SIGKILL)  # out of memory, or its host lost

    moved = stack.wait_until(job_id, lambda job: job.attempt_number >= 2 and job.attempt is not None)
    first = moved.attempt_by_number(1)
    assert first is not None and first.stop_code == POOL_TASK_STOPPED
    assert "pool task stopped" in (first.stopped_reason or "")
    second = moved.attempt_by_number(2)
    assert second is not None and second.strategy in ("FARGATE", "FARGATE_SPOT")
    cancelled = cli(stack, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert stack.wait_for(job_id).status is JobStatus.CANCELLED


def test_a_closed_pool_sends_warm_jobs_to_ecs_at_once(closed_pool_stack: Stack) -> None:
    job_id = closed_pool_stack.submit(WARM_BATCH, ["uploads/warm/night.csv"], "warm-night")
    job = closed_pool_stack.wait_for(job_id)
    assert job.status is JobStatus.SUCCEEDED, job.reason
    assert [attempt.strategy for attempt in job.attempts] == ["FARGATE"]
    assert job.plan is not None and "no free slot" in job.plan.reason
