"""Job events and notifications on the local stack, across process boundaries: a job of tenant acme
fails; its state changes reach the local bus, which `batchgate --local events` tails, and the template's
notification rule sends its readable message to the local topic (`events --notifications`)."""

from __future__ import annotations

import subprocess

import pytest
from batchgate.client import BatchClient
from batchgate.domain.jobs import JobStatus

from tests.integration.conftest import LOCAL_STACK_GROUP
from tests.integration.local_stack import BATCHGATE, ROOT, Stack

pytestmark = [pytest.mark.integration, LOCAL_STACK_GROUP]


@pytest.fixture
def stack(closed_pool_stack: Stack) -> Stack:
    return closed_pool_stack


def cli(stack: Stack, *arguments: str) -> str:
    result = subprocess.run(
        [BATCHGATE, "--local", "--local-state", str(stack.state_path), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_failed_jobs_events_and_notification_reach_the_local_bus_and_topic(stack: Stack) -> None:
    receipt = BatchClient(stack.state["queue_url"], stack.sqs).submit(
        "payroll-calculation", ["fail"], idempotency_key="it-events-fail", tenant="acme"
    )
    job_id = receipt.job_id
    job = stack.wait_for(job_id)
    assert (job.status, job.tenant) == (JobStatus.FAILED, "acme")

    lines = cli(stack, "events", "--job", job_id, "--follow", "--for", "4").splitlines()
    changes = [line.split("  ")[4] for line in lines]
    assert changes[0] == "new -> SUBMITTED" and changes[-1] == "STOPPING -> FAILED", lines
    assert all(f"{job_id}  payroll-calculation  tenant acme" in line for line in lines)

    [notification] = [
        line
        for line in cli(stack, "events", "--notifications", "--follow", "--for", "2").splitlines()
        if job_id in line
    ]
    assert notification.startswith(
        f"batchgate: job {job_id} of batch payroll-calculation (tenant acme) ended FAILED"
    )
    assert f"Details: batchgate show {job_id} ." in notification
    assert (
        "Logs: https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:"
        in notification
    )

    listed = cli(stack, "jobs", "--tenant", "acme", "--json")
    assert job_id in listed
