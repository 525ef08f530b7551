"""Duplicate deliveries at scale: every submit message and every relaunch message delivered up to four
times through the dispatch handler (SQS's at-least-once delivery, and an application sending a message
twice), the copies spread over different batches in a random order. Every (job, attempt) still has
exactly one task, and every job ends where one delivery would have left it."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from batchgate.domain.jobs import JobStatus, job_id_for

from tests.conftest import LambdaContextStub, Stack, sqs_event
from tests.reliability.conftest import (
    RecordingSqs,
    Tally,
    assert_one_task_per_attempt,
    assert_visible,
    tasks_by_attempt,
)
from tests.reliability.test_events_and_retries import retargeted, tracker

BATCH_SIZE = 10
MOST_COPIES = 4
# Jobs of the default run, and of the full one (`make test-reliability`).
JOBS = (12, 480)
ARGUMENTS = {
    "payroll-calculation": ["2026-11"],
    "report-export": ["payslips", "2026-11"],
    "attendance-import": ["uploads/file.csv"],
}


def deliver(app: ModuleType, records: list[dict[str, Any]]) -> None:
    """The records in batches, no batch holding two copies of one message (copies of a message meet
    in separate invocations, as SQS redelivers them), every record processed."""
    remaining = list(records)
    while remaining:
        batch: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        for record in remaining:
            same = any(record["body"] == taken["body"] for taken in batch)
            (later if same or len(batch) == BATCH_SIZE else batch).append(record)
        response = app.handler({"Records": batch}, LambdaContextStub())
        assert response == {"batchItemFailures": []}, response
        remaining = later


def copies(records: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """Each record 1 to MOST_COPIES times (a copy keeps the message id, as a redelivery does, or gets
    its own, as a second send does), shuffled; the copies and the number of duplicates among them."""
    delivered: list[dict[str, Any]] = []
    for record in records:
        for copy in range(rng.randint(1, MOST_COPIES)):
            again = json.loads(json.dumps(record))
            if copy and rng.random() < 0.5:
                again["messageId"] = f"{record['messageId']}-sent-again-{copy}"
            delivered.append(again)
    rng.shuffle(delivered)
    return delivered, len(delivered) - len(records)


@pytest.mark.parametrize(
    "jobs",
    [
        pytest.param(JOBS[0], id="default"),
        pytest.param(JOBS[1], marks=pytest.mark.reliability_full, id="full"),
    ],
)
def test_duplicate_submit_and_relaunch_messages_start_one_task_per_attempt(
    stack: Stack, load_handler: Callable[[str], ModuleType], jobs: int, tally: Tally
) -> None:
    rng = random.Random(jobs)
    app = load_handler("dispatch")
    app.dispatcher = stack.dispatcher()  # type: ignore[attr-defined]
    batches = sorted(ARGUMENTS)
    messages: dict[str, dict[str, Any]] = {
        f"dup-{n:04d}": {
            "schema_version": 1,
            "batch": batches[n % len(batches)],
            "arguments": ARGUMENTS[batches[n % len(batches)]],
            "idempotency_key": f"dup-{n:04d}",
        }
        for n in range(jobs)
    }
    job_ids = {key: job_id_for(message["batch"], key) for key, message in messages.items()}
    submits = sqs_event(*[json.dumps(message) for message in messages.values()], message_ids=list(messages))
    delivered, duplicates = copies(submits["Records"], rng)
    deliver(app, delivered)
    tally.add("duplicated deliveries", duplicates)

    # Every other job's task fails to start: its next attempt goes out as a relaunch message.
    sqs = RecordingSqs()
    track = tracker(stack, sqs)
    failing = [job_id for n, job_id in enumerate(job_ids.values()) if n % 2 == 0]
    for job_id in job_ids.values():
        job = assert_visible(stack, job_id, tally)
        assert job.status is JobStatus.DISPATCHED and job.attempt is not None, (job.status, job.reason)
        assert_one_task_per_attempt(stack, job_id, tally)
        if job_id in failing:
            assert job.attempt.task_arn is not None
            stopped = retargeted("task-stopped-failed-to-start.json", job.attempt.task_arn, 1, job_id)
            track.track(stopped)
    assert sorted(relaunch.job_id for relaunch, _ in sqs.relaunches()) == sorted(failing)
    relaunches = sqs.as_sqs_event()["Records"]
    for index, record in enumerate(relaunches):
        record["messageId"] = f"relaunch-{index:04d}"
    delivered, duplicates = copies(relaunches, rng)
    deliver(app, delivered)
    tally.add("duplicated deliveries", duplicates)
    tally.add("retries", len(failing))

    for job_id in job_ids.values():
        job = assert_visible(stack, job_id, tally)
        assert_one_task_per_attempt(stack, job_id, tally)
        expected = {1: 1, 2: 1} if job_id in failing else {1: 1}
        assert tasks_by_attempt(stack, job_id) == expected, job_id
        assert job.status is JobStatus.DISPATCHED and job.attempt_number == len(expected)
