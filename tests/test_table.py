from __future__ import annotations

from typing import Any

import boto3
import pytest
from batchgate.adapters.job_table import (
    INDEXES,
    KEY_ATTRIBUTE,
    PROJECTIONS,
    ConcurrentUpdateError,
    JobTable,
    UnreadJobsError,
)
from batchgate.domain.jobs import Job, JobStatus, job_id_for

from tests.conftest import Stack
from tests.test_jobs import make_job


def test_create_is_conditional(stack: Stack) -> None:
    job = make_job()
    stored = stack.table.create(job)
    assert stored is not None and stored.revision == 1
    assert stack.table.create(job._replace(arguments=("other",))) is None
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

    def change(job: Job) -> Job:
        calls.append(1)
        if len(calls) == 1:  # another writer gets in between our read and our write
            stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1"))
        return job._replace(reason="mutated")

    after = stack.table.mutate(stored.job_id, change)
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
    won = stack.table.apply(stored.job_id, lambda job: job._replace(reason="mutated"), read=stored)
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
        stack.table.save(other._replace(reason=f"other {other.revision}"))
        return job._replace(reason="mutated")

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


def test_query_needs_a_status_or_a_batch(stack: Stack) -> None:
    with pytest.raises(ValueError, match="by status, by batch"):
        stack.table.query()


class CountingClient:
    """The real client, with the keys each BatchGetItem asked for."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, **request: Any) -> Any:
        for table in request["RequestItems"].values():
            self.asked.extend(key["job_id"]["S"] for key in table["Keys"])
        return self._client.batch_get_item(**request)


def test_query_by_status_and_batch_reads_only_that_batchs_jobs_by_key(stack: Stack) -> None:
    for minute in range(6):
        batch = "report-export" if minute % 3 else "payroll-calculation"
        stack.table.create(
            make_job(
                job_id=job_id_for(batch, str(minute)),
                batch=batch,
                created_at=f"2026-11-28T10:0{minute}:00.000Z",
                status=JobStatus.FAILED,
            )
        )
    client = CountingClient(boto3.client("dynamodb", region_name="us-east-1"))
    table = JobTable(stack.table.table_name, client)  # type: ignore[arg-type]
    page = table.query(status="FAILED", batch="payroll-calculation")
    assert [(job.batch, job.created_at[14:16]) for job in page.jobs] == [
        ("payroll-calculation", "03"),
        ("payroll-calculation", "00"),
    ]
    assert client.asked == [job.job_id for job in page.jobs]  # the index's batch filtered the rest


def test_indexes_hold_only_their_projection_and_queries_give_whole_jobs(stack: Stack) -> None:
    stored = stack.table.create(make_job(idempotency_key="payroll-2026-11", reason="why", tenant="acme"))
    assert stored is not None
    client = boto3.client("dynamodb", region_name="us-east-1")
    for index, (hash_name, _) in INDEXES.items():
        [entry] = client.query(
            TableName=stack.table.table_name,
            IndexName=index,
            KeyConditionExpression="#h = :h",
            ExpressionAttributeNames={"#h": hash_name},
            ExpressionAttributeValues={":h": {"S": getattr(stored, hash_name)}},
        )["Items"]
        assert set(entry) <= {KEY_ATTRIBUTE, *INDEXES[index], *PROJECTIONS[index]}
        assert "updated_at" not in entry and "revision" not in entry
    assert stack.table.query(status="SUBMITTED").jobs == [stored]
    assert stack.table.query(batch=stored.batch).jobs == [stored]
    assert stack.table.query(tenant="acme").jobs == [stored]


class MovesAfterTheIndexRead(CountingClient):
    """The job changes status between the index's answer and the read by key, as when the index
    (eventually consistent) lags behind the table."""

    def __init__(self, client: Any, move: Any) -> None:
        super().__init__(client)
        self._move = move

    def query(self, **request: Any) -> Any:
        response = self._client.query(**request)
        if self._move is not None:
            self._move()
            self._move = None
        return response


def test_a_job_that_left_the_status_since_the_index_read_is_left_out(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    client = MovesAfterTheIndexRead(
        boto3.client("dynamodb", region_name="us-east-1"),
        lambda: stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1")),
    )
    table = JobTable(stack.table.table_name, client)  # type: ignore[arg-type]
    assert table.query(status="SUBMITTED").jobs == []
    assert [job.job_id for job in table.query(status="DISPATCHING").jobs] == [stored.job_id]


class Unprocessed(CountingClient):
    """DynamoDB leaves every key but the first unprocessed on the first `lazy` calls."""

    def __init__(self, client: Any, lazy: int) -> None:
        super().__init__(client)
        self.lazy = lazy

    def batch_get_item(self, **request: Any) -> Any:
        if self.lazy <= 0:
            return super().batch_get_item(**request)
        self.lazy -= 1
        [(name, table)] = request["RequestItems"].items()
        self.asked.extend(key["job_id"]["S"] for key in table["Keys"])
        first, *rest = table["Keys"]
        answer = self._client.batch_get_item(RequestItems={name: {**table, "Keys": [first]}})
        return {**answer, "UnprocessedKeys": {name: {**table, "Keys": rest}} if rest else {}}


def test_get_many_reads_in_chunks_in_order_and_asks_again_for_unprocessed_keys(stack: Stack) -> None:
    ids = [job_id_for("payroll-calculation", str(number)) for number in range(150)]
    for job_id in ids:
        stack.table.create(make_job(job_id=job_id))
    pauses: list[int] = []
    client = Unprocessed(boto3.client("dynamodb", region_name="us-east-1"), lazy=2)
    table = JobTable(stack.table.table_name, client, pause=pauses.append)  # type: ignore[arg-type]
    wanted = [*reversed(ids), "bg-missing-0"]
    assert [job.job_id for job in table.get_many(wanted)] == list(reversed(ids))
    # The first chunk of 100 keys takes three calls (one key answered on each of the first two), with
    # a pause before each call after the first; the second chunk of 51 one call.
    assert len(client.asked) == 100 + 99 + 98 + 51
    assert pauses == [0, 1]
    stubborn = JobTable(
        stack.table.table_name,
        Unprocessed(boto3.client("dynamodb", region_name="us-east-1"), lazy=100),  # type: ignore[arg-type]
        pause=pauses.append,
    )
    with pytest.raises(UnreadJobsError):
        stubborn.get_many(ids[:20])  # one key answered per call: 12 left after 8 calls


def test_mutate_from_a_stale_read_rereads_and_keeps_the_other_write(stack: Stack) -> None:
    stored = stack.table.create(make_job())
    assert stored is not None
    stack.table.save(stored.moved_to(JobStatus.DISPATCHING, "t1"))
    after = stack.table.mutate(stored.job_id, lambda job: job._replace(reason="mutated"), read=stored)
    assert after is not None and after.status is JobStatus.DISPATCHING and after.reason == "mutated"
    assert after.revision == 3
