"""Track's side of the warm lane: a pool task's STOPPED event fails the attempts it ran, at once."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import JobStatus, parse_iso
from batchgate.domain.pools import SlotJob
from batchgate.domain.warm import POOL_TASK_STOPPED, WARM
from batchgate.services.dispatch import DispatchResult
from batchgate.services.settings import Settings
from batchgate.services.track import Tracker, TrackResult

from tests.conftest import RecordingSqs, Stack, event_fixture
from tests.warm_lane import JOBS_QUEUE_URL, WarmStack, claim, heartbeat, report_exit, submit, warm_stack

SAMPLE = event_fixture("task-pool-stopped.json")
STOPPED_TASK = SAMPLE["detail"]["taskArn"].rsplit("/", 1)[1]
PREFIX = "batchgate-dev-pool-"


@pytest.fixture
def ws(stack: Stack) -> WarmStack:
    warm = warm_stack(stack)
    warm.pools.put(heartbeat(STOPPED_TASK, slots=4))
    warm.pools.put(heartbeat("other"))
    return warm


def tracker(ws: WarmStack, retries: RecordingSqs, *, prefix: str | None = PREFIX) -> Tracker:
    return Tracker(
        catalog=ws.catalog,
        table=ws.stack.table,
        ecs=EcsTasks(ws.stack.settings.cluster, ws.stack.ecs_client),
        jobs_queue=JobsQueue(JOBS_QUEUE_URL, retries),  # type: ignore[arg-type]
        pools=ws.pools,
        pool_service_prefix=prefix,
    )


def running_warm(ws: WarmStack, key: str, task: str, slot: int) -> str:
    body, job_id = submit(key)
    ws.dispatcher().dispatch(f"m-{key}", body)
    write = claim(ws, job_id, 1, task, slot)
    assert write is not None and write.after.status is JobStatus.RUNNING
    return job_id


def list_running(ws: WarmStack, task: str, jobs: list[tuple[str, int]]) -> None:
    ws.pools.put(
        heartbeat(
            task,
            slots=4,
            running=tuple(
                SlotJob(job_id, attempt, slot, "2026-12-01T00:00:00.000Z")
                for slot, (job_id, attempt) in enumerate(jobs)
            ),
        )
    )


def test_a_stopped_pool_task_fails_exactly_the_attempts_it_ran_and_they_relaunch_on_ecs(
    ws: WarmStack,
) -> None:
    ws.monotonic.value += 10  # four offers from one container: the pool's read is refreshed for each
    first = running_warm(ws, "on-task-1", STOPPED_TASK, 0)
    ws.monotonic.value += 10
    second = running_warm(ws, "on-task-2", STOPPED_TASK, 1)
    ws.monotonic.value += 10
    finished = running_warm(ws, "finished", STOPPED_TASK, 2)
    report_exit(ws, finished, 1, STOPPED_TASK, exit_code=0)
    ws.monotonic.value += 10
    elsewhere = running_warm(ws, "elsewhere", "other", 0)
    # The heartbeat still lists the finished job (written before its report) and a job whose attempt 1
    # ran on another task.
    list_running(ws, STOPPED_TASK, [(first, 1), (second, 1), (finished, 1), (elsewhere, 1)])
    retries = RecordingSqs()

    assert tracker(ws, retries).track(SAMPLE) is TrackResult.APPLIED

    for job_id in (first, second):
        job = ws.job(job_id)
        attempt = job.attempt
        assert job.status is JobStatus.RETRYING and attempt is not None
        assert (attempt.strategy, attempt.stop_code, attempt.last_status) == (
            WARM,
            POOL_TASK_STOPPED,
            "STOPPED",
        )
        assert (
            attempt.stopped_reason == "pool task stopped: SpotInterruption: Your Spot Task was interrupted."
        )
        assert attempt.timeline["stopped"] == "2026-12-01T00:07:57.215Z"
    assert ws.job(finished).status is JobStatus.SUCCEEDED
    assert ws.job(elsewhere).status is JobStatus.RUNNING
    assert sorted(relaunch.job_id for relaunch, _ in retries.relaunches()) == sorted([first, second])
    assert {relaunch.attempt for relaunch, _ in retries.relaunches()} == {2}

    # The same event again changes nothing and relaunches nothing new.
    again = RecordingSqs()
    assert tracker(ws, again).track(SAMPLE) is TrackResult.UNCHANGED

    # The retries go to ECS: never warm again after a stopped pool task.
    before = len(ws.ecs.requests)
    ws.clock.at = parse_iso("2026-12-01T00:07:57.215Z")  # when the pool task stopped
    ws.clock.advance(max(delay for _, delay in retries.relaunches()))  # the relaunches' back-off
    for relaunch, _ in retries.relaunches():
        assert ws.dispatcher().relaunch(relaunch.body()) is DispatchResult.DISPATCHED
        retried = ws.job(relaunch.job_id).attempt
        assert retried is not None and retried.number == 2 and retried.strategy != WARM and retried.task_arn
    assert len(ws.ecs.requests) == before + 2


def event_with(**detail: Any) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE)
    event["detail"].update(detail)
    return event


def test_other_states_of_a_pool_task_change_nothing(ws: WarmStack) -> None:
    job_id = running_warm(ws, "still-running", STOPPED_TASK, 0)
    list_running(ws, STOPPED_TASK, [(job_id, 1)])
    for status in ("RUNNING", "DEACTIVATING", "STOPPING"):
        event = event_with(lastStatus=status, desiredStatus="STOPPED")
        assert tracker(ws, RecordingSqs()).track(event) is TrackResult.UNCHANGED
    assert ws.job(job_id).status is JobStatus.RUNNING


def test_pool_tasks_are_not_ours_without_the_pool_settings_or_of_another_stack(ws: WarmStack) -> None:
    job_id = running_warm(ws, "untouched", STOPPED_TASK, 0)
    list_running(ws, STOPPED_TASK, [(job_id, 1)])
    assert tracker(ws, RecordingSqs(), prefix=None).track(SAMPLE) is TrackResult.NOT_OURS
    other_stack = event_with(group="service:batchgate-prod-pool-attendance")
    assert tracker(ws, RecordingSqs()).track(other_stack) is TrackResult.NOT_OURS
    assert tracker(ws, RecordingSqs()).track(event_fixture("task-not-ours.json")) is TrackResult.NOT_OURS
    assert ws.job(job_id).status is JobStatus.RUNNING


def test_a_stopped_pool_task_without_a_heartbeat_item_changes_nothing(ws: WarmStack) -> None:
    ws.pools.delete("attendance", SAMPLE["detail"]["taskArn"])
    assert tracker(ws, RecordingSqs()).track(SAMPLE) is TrackResult.UNCHANGED


def test_track_builds_the_pool_table_only_when_the_settings_name_it(stack: Stack) -> None:
    assert Tracker.from_settings(stack.settings).pools is None
    settings = Settings(
        table_name="t", cluster="c", pool_table_name="pools", pool_service_prefix="batchgate-dev-pool-"
    )
    built = Tracker.from_settings(settings)
    assert built.pools is not None and built.pools.table_name == "pools"
    assert built.pool_service_prefix == "batchgate-dev-pool-"
