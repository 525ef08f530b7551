"""The pool table adapter against moto, the work message and the pool settings."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.jobs import iso
from batchgate.domain.pools import PoolTask, SlotJob
from batchgate.domain.warm import InvalidWorkOffer, WorkOffer
from batchgate.services.settings import Settings

from tests.conftest import create_pool_table

JOB = "bg-attendance-import-00000000000000000001"


def heartbeat(task: str, running: int = 0) -> PoolTask:
    return PoolTask(
        pool="attendance",
        task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/c/{task}",
        slots=2,
        running=tuple(
            SlotJob(JOB, 1, slot, iso(datetime(2026, 12, 1, tzinfo=UTC))) for slot in range(running)
        ),
        heartbeat_at=iso(datetime(2026, 12, 1, tzinfo=UTC)),
        expires_at=1_800_000_000,
        batches=("attendance-import",),
        image="123.dkr.ecr.us-east-1.amazonaws.com/attendance:1",
        image_digest="sha256:abc",
    )


def test_heartbeats_are_written_read_by_pool_and_by_task_and_deleted(aws: None) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_pool_table(client, "pools")
    table = PoolTable("pools", client)
    first, second = heartbeat("one", running=1), heartbeat("two")
    table.put(first)
    table.put(second)
    table.put(PoolTask.from_item({**heartbeat("other").to_item(), "pool": "reports"}))
    assert sorted(task.task_arn for task in table.tasks("attendance")) == sorted(
        [first.task_arn, second.task_arn]
    )
    assert table.get("attendance", first.task_arn) == first
    table.delete("attendance", first.task_arn)
    assert table.get("attendance", first.task_arn) is None


def test_a_work_message_round_trips_and_a_forged_one_is_refused() -> None:
    offer = WorkOffer(JOB, 2)
    assert WorkOffer.parse(offer.body()) == offer
    for body in (
        "not json",
        "[]",
        '{"job_id": "x", "attempt": 1}',
        f'{{"job_id": "{JOB}", "attempt": true}}',
    ):
        with pytest.raises(InvalidWorkOffer):
            WorkOffer.parse(body)


def test_pool_settings_come_from_the_environment() -> None:
    env = {
        "JOB_TABLE_NAME": "jobs",
        "ECS_CLUSTER": "c",
        "POOL_TABLE_NAME": "pools",
        "POOL_QUEUE_URLS": "attendance=https://sqs/attendance, reports=https://sqs/reports",
    }
    settings = Settings.from_environment(env)
    assert settings.pool_table_name == "pools"
    assert dict(settings.pool_queue_urls) == {
        "attendance": "https://sqs/attendance",
        "reports": "https://sqs/reports",
    }
    with pytest.raises(RuntimeError, match="is not pool=url"):
        Settings.from_environment(env | {"POOL_QUEUE_URLS": "attendance"})
