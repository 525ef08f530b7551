from __future__ import annotations

from dataclasses import replace

import boto3
import pytest
from batchgate.adapters.job_table import ConcurrentUpdateError, JobTable
from batchgate.domain.jobs import Job, JobStatus, job_id_for

from tests.conftest import Stack
from tests.test_jobs import make_job


def test_create_is_conditional(stack: Stack) -> None:
    job = make_job()
    stored = stack.table.create(job)
    assert stored is not None and stored.revision == 1
    assert stack.table.create(replace(job, arguments=("other",))) is None
    fetched = stack.table.get(job.job_id)
    assert fetched == stored


def test_save_refuses_a_stale_revision(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1"))
    with pytest.raises(ConcurrentUpdateError):
        stack.table.save(stored.moved_to(JobStatus.REJECTED, "t2"))
    current = stack.table.get(stored.job_id)
    assert current is not None and current.status is JobStatus.DISPATCHING


def test_mutate_rereads_after_a_concurrent_write(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    calls: list[int] = []

    def change(job: object) -> object:
        calls.append(1)
        if len(calls) == 1:  # another writer gets in between our read and our write
            stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1"))
        return replace(job, reason="mutated")  # type: ignore[type-var]

    after = stack.table.mutate(stored.job_id, change)  # type: ignore[arg-type]
    assert len(calls) == 2
    assert after is not None and after.status is JobStatus.DISPATCHING and after.reason == "mutated"


def test_apply_tells_the_job_it_changed_from_another_writers_change(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    other = stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1"))

    def to_dispatching(job: Job) -> Job | None:
        return None if job.status is JobStatus.DISPATCHING else job.moved_to(JobStatus.DISPATCHING, "t2")

    # Read before the other writer's change, which makes this one a no-op: nothing written.
    lost = stack.table.apply(stored.job_id, to_dispatching, read=stored)
    assert lost is not None and not lost.written
    assert lost.before == lost.after == other
    won = stack.table.apply(stored.job_id, lambda job: replace(job, reason="mutated"), read=stored)
    assert won is not None and won.written
    assert won.before == other  # what the change was applied to, not the stale read
    assert won.after.reason == "mutated" and won.after.revision == other.revision + 1
    assert stack.table.apply("bg-nothing-0", lambda job: job) is None


def test_mutate_pauses_after_each_lost_write_but_the_last(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    pauses: list[int] = []
    table = JobTable(
        stack.table.table_name, boto3.client("dynamodb", region_name="us-east-1"), pause=pauses.append
    )

    def change(job: Job) -> Job:
        # Another writer gets in between every read and write of ours.
        other = stack.table.get(job.job_id)
        assert other is not None
        stack.table.save(replace(other, reason=f"other {other.revision}"))
        return replace(job, reason="mutated")

    with pytest.raises(ConcurrentUpdateError):
        table.mutate(stored.job_id, change, tries=3)
    assert pauses == [0, 1]
    current = stack.table.get(stored.job_id)
    assert current is not None and current.reason == "other 3"


def test_mutate_of_a_missing_job_returns_none(stack: Stack) -> None:
    assert stack.table.mutate("bg-nothing-0", lambda job: job) is None


def test_query_newest_first_by_status_and_batch_with_pagination(stack: Stack) -> None:
    for minute in range(7):
        created = f"2026-11-28T10:0{minute}:00.000Z"
        batch = "report-export" if minute % 2 else "payroll-calculation"
        status = JobStatus.FAILED if minute == 3 else JobStatus.SUCCEEDED
        stack.table.create(
            make_job(job_id=job_id_for(batch, str(minute)), batch=batch, created_at=created, status=status)
        )
    page = stack.table.query(status="SUCCEEDED", limit=4)
    assert [job.created_at[14:16] for job in page.jobs] == ["06", "05", "04", "02"]
    assert page.next_token is not None
    rest = stack.table.query(status="SUCCEEDED", limit=4, next_token=page.next_token)
    assert [job.created_at[14:16] for job in rest.jobs] == ["01", "00"]
    by_batch = list(stack.table.iterate(batch="report-export", limit=1))
    assert [job.created_at[14:16] for job in by_batch] == ["05", "03", "01"]
    window = stack.table.query(
        batch="payroll-calculation", since="2026-11-28T10:02:00.000Z", until="2026-11-28T10:04:00.000Z"
    )
    assert [job.created_at[14:16] for job in window.jobs] == ["04", "02"]


def test_query_oldest_first_by_status_with_pagination(stack: Stack) -> None:
    for minute in range(5):
        created = f"2026-11-28T10:0{minute}:00.000Z"
        stack.table.create(
            make_job(job_id=job_id_for("payroll-calculation", str(minute)), created_at=created)
        )
    page = stack.table.query(status="SUBMITTED", limit=3, oldest_first=True)
    assert [job.created_at[14:16] for job in page.jobs] == ["00", "01", "02"]
    every = stack.table.iterate(status="SUBMITTED", limit=3, oldest_first=True)
    assert [job.created_at[14:16] for job in every] == ["00", "01", "02", "03", "04"]


def test_query_needs_exactly_one_index(stack: Stack) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        stack.table.query()


def test_mutate_from_a_stale_read_rereads_and_keeps_the_other_write(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1"))
    after = stack.table.mutate(stored.job_id, lambda job: replace(job, reason="mutated"), read=stored)
    assert after is not None and after.status is JobStatus.DISPATCHING and after.reason == "mutated"
    assert after.revision == 3
