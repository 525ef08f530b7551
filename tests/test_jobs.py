from __future__ import annotations

from typing import Any

import pytest
from batchgate.domain.jobs import (
    BATCH_NAME_PATTERN,
    MAX_STORED_TEXT,
    Attempt,
    Job,
    JobStatus,
    LaunchPlan,
    client_token,
    is_job_id,
    job_id_for,
    stored_text,
)


def make_job(**changes: Any) -> Job:
    base = Job(
        job_id=job_id_for("payroll-calculation", "key-1"),
        batch="payroll-calculation",
        status=JobStatus.SUBMITTED,
        created_at="2026-11-28T10:00:00.000Z",
        updated_at="2026-11-28T10:00:00.000Z",
        expires_at=1_800_000_000,
        message_id="m-1",
        arguments=("2026-11",),
    )
    return base._replace(**changes)


def test_job_id_is_deterministic_and_fits_ecs_limits() -> None:
    longest = "a" * 32
    assert BATCH_NAME_PATTERN.match(longest)
    job_id = job_id_for(longest, "k" * 128)
    assert job_id == job_id_for(longest, "k" * 128)
    assert job_id != job_id_for(longest, "k" * 127)
    assert len(client_token(job_id, 10)) <= 64  # RunTask clientToken limit
    assert len(job_id) <= 128  # startedBy limit
    assert is_job_id(job_id)


def test_job_id_differs_per_batch_for_the_same_key() -> None:
    assert job_id_for("report-export", "k") != job_id_for("payroll-calculation", "k")


def test_job_id_of_an_unreadable_batch_name_is_still_valid() -> None:
    job_id = job_id_for("Not A Batch! " * 10, "message-id")
    assert job_id.startswith("bg-rejected-")
    assert len(client_token(job_id, 1)) <= 64


def test_status_never_moves_back_and_terminal_is_final() -> None:
    running = make_job(status=JobStatus.RUNNING)
    assert running.moved_to(JobStatus.PENDING, "t").status is JobStatus.RUNNING
    cancelled = make_job(status=JobStatus.CANCELLED)
    assert cancelled.moved_to(JobStatus.FAILED, "t", "exit 1").status is JobStatus.CANCELLED
    assert running.moved_to(JobStatus.SUCCEEDED, "t").status is JobStatus.SUCCEEDED


@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status_has_a_rank(status: JobStatus) -> None:
    assert status.rank >= JobStatus.SUBMITTED.rank
    assert status.is_terminal == (status.rank == max(s.rank for s in JobStatus))


def test_item_round_trip_keeps_every_field() -> None:
    plan = LaunchPlan("FARGATE", "FARGATE", "catalog default", ("FARGATE_SPOT",), {"launch_class": "bulk"})
    attempt = Attempt(
        number=1,
        strategy="FARGATE",
        capacity_provider="FARGATE",
        dispatched_at="2026-11-28T10:00:01.000Z",
        task_arn="arn:aws:ecs:us-east-1:123456789012:task/c/abc",
        event_version=3,
        timeline={"created": "2026-11-28T10:00:02.000Z"},
        exit_code=0,
        log_group="/ecs/x",
        log_stream="batch/x/abc",
        launch_failures=({"reason": "RESOURCE:MEMORY"},),
    )
    job = make_job(status=JobStatus.RUNNING, plan=plan, attempts=(attempt,), reason="r", revision=4)
    item = job.to_item()
    assert Job.from_item(item) == job
    # The current attempt's essentials are visible at the top level for ops.
    assert item["task_arn"] == attempt.task_arn
    assert item["strategy_reason"] == "catalog default"
    assert item["log_stream"] == "batch/x/abc"
    assert item["attempt"] == 1


def test_stored_text_cuts_long_texts_and_keeps_short_ones() -> None:
    assert stored_text("short") == "short"
    assert stored_text("x" * MAX_STORED_TEXT) == "x" * MAX_STORED_TEXT
    cut = stored_text("y" * (MAX_STORED_TEXT + 1))
    assert len(cut) == MAX_STORED_TEXT and cut.endswith("…")
