"""The sweep's side of the warm lane: lost checks, silent pool tasks, timeouts, and ECS left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import JobStatus, iso
from batchgate.domain.pools import SlotJob
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.warm import NOT_PICKED_UP, POOL_TASK_STOPPED, WARM, WorkOffer
from batchgate.services.dispatch import DispatchResult
from batchgate.services.settings import Settings
from batchgate.services.sweep import Sweeper, SweepSettings

from tests.conftest import RecordingSqs, Stack
from tests.warm_lane import JOBS_QUEUE_URL, NOW, WarmStack, claim, heartbeat, submit, warm_stack


@pytest.fixture
def ws(stack: Stack) -> WarmStack:
    warm = warm_stack(stack)
    warm.pools.put(heartbeat("one"))
    return warm


def sweeper(ws: WarmStack, relaunches: RecordingSqs, settings: SweepSettings | None = None) -> Sweeper:
    return Sweeper(
        catalog=ws.catalog,
        table=ws.stack.table,
        ecs=ws.ecs,
        jobs_queue=JobsQueue(JOBS_QUEUE_URL, relaunches),  # type: ignore[arg-type]
        clock=ws.clock,
        pools=ws.pools,
        settings=settings or SweepSettings(),
    )


def offered(ws: WarmStack, key: str) -> str:
    body, job_id = submit(key)
    assert ws.dispatcher().dispatch(f"m-{key}", body) is DispatchResult.DISPATCHED
    assert ws.job(job_id).status is JobStatus.DISPATCHED
    return job_id


def claimed(ws: WarmStack, key: str) -> str:
    job_id = offered(ws, key)
    assert claim(ws, job_id, 1, "one") is not None
    return job_id


def beat(ws: WarmStack, *, listing: list[str], after: float) -> None:
    ws.pools.put(
        heartbeat(
            "one",
            at=NOW + timedelta(seconds=after),
            running=tuple(SlotJob(job_id, 1, slot, iso(NOW)) for slot, job_id in enumerate(listing)),
        )
    )


def test_an_offer_whose_check_was_lost_is_expired_and_the_next_attempt_relaunched(ws: WarmStack) -> None:
    job_id = offered(ws, "check-lost")
    relaunches = RecordingSqs()
    ws.clock.advance(2 + 30)  # offer_seconds + grace: not yet
    sweeper(ws, relaunches).sweep()
    assert ws.job(job_id).status is JobStatus.DISPATCHED and relaunches.sent == []

    ws.clock.advance(1)
    report = sweeper(ws, relaunches).sweep()
    job = ws.job(job_id)
    assert job.status is JobStatus.RETRYING and report.relaunched == 1
    assert job.attempt is not None and job.attempt.stop_code == NOT_PICKED_UP
    assert "its check never came" in (job.attempt.stopped_reason or "")
    assert relaunches.relaunches() == [(Relaunch(job_id, 2), 0)]
    assert ws.ecs.described == []

    assert ws.dispatcher().relaunch(Relaunch(job_id, 2).body()) is DispatchResult.DISPATCHED
    retried = ws.job(job_id).attempt
    assert retried is not None and retried.strategy != WARM and retried.task_arn
    # The check arriving at last finds the offer decided: nothing more.
    assert ws.dispatcher().check_warm(WorkOffer(job_id, 1).body()) is DispatchResult.DUPLICATE
    assert len(ws.ecs.requests) == 1


@pytest.mark.parametrize(
    ("heartbeat_after", "listed", "reason"),
    [
        (None, True, "worker heartbeat stale since 2026-12-01T00:00:00.000Z"),
        ("missing", False, "worker heartbeat missing"),
        (20.0, False, "no longer lists the job"),
    ],
    ids=["stale", "missing", "not-listed"],
)
def test_a_claimed_attempt_whose_pool_task_stopped_answering_fails_and_is_retried(
    ws: WarmStack, heartbeat_after: float | str | None, listed: bool, reason: str
) -> None:
    job_id = claimed(ws, "silent")
    beat(ws, listing=[job_id] if listed else [], after=0)
    ws.clock.advance(25)
    if heartbeat_after == "missing":
        ws.pools.delete("attendance", heartbeat("one").task_arn)
    elif isinstance(heartbeat_after, float):
        beat(ws, listing=[], after=heartbeat_after)
    relaunches = RecordingSqs()

    report = sweeper(ws, relaunches).sweep()

    job = ws.job(job_id)
    attempt = job.attempt
    assert job.status is JobStatus.RETRYING and attempt is not None and report.reconciled == 1
    assert attempt.stop_code == POOL_TASK_STOPPED and reason in (attempt.stopped_reason or "")
    assert [relaunch for relaunch, _ in relaunches.relaunches()] == [Relaunch(job_id, 2)]
    assert ws.ecs.described == [] and ws.ecs.stopped == []


def test_a_claimed_attempt_its_fresh_heartbeat_lists_or_just_claimed_is_left_alone(ws: WarmStack) -> None:
    listed = claimed(ws, "listed")
    ws.monotonic.value += 10
    just_claimed = claimed(ws, "just-claimed")
    beat(ws, listing=[listed], after=4)  # written 4 s after the claim: may not list it yet
    ws.clock.advance(10)
    relaunches = RecordingSqs()
    sweeper(ws, relaunches).sweep()
    assert ws.job(listed).status is JobStatus.RUNNING
    assert ws.job(just_claimed).status is JobStatus.RUNNING
    assert relaunches.sent == []


def test_a_warm_attempt_past_its_timeout_ends_timed_out_without_stopping_the_pool_task(ws: WarmStack) -> None:
    job_id = claimed(ws, "too-long")
    ws.clock.advance(601)  # attendance-import's timeout_seconds is 600
    beat(ws, listing=[job_id], after=600)
    report = sweeper(ws, RecordingSqs()).sweep()
    job = ws.job(job_id)
    assert job.status is JobStatus.TIMED_OUT and report.timed_out == 1
    assert job.reason is not None and "exceeded timeout of 600 s" in job.reason
    assert ws.ecs.stopped == [] and ws.ecs.described == []


def test_warm_attempts_are_never_compared_with_ecs_and_a_lost_offer_send_is_resumed_as_an_offer(
    ws: WarmStack,
) -> None:
    quiet = claimed(ws, "quiet")
    # A WARM attempt begun but whose offer was never sent (the dispatch died): DISPATCHING.
    body, unsent = submit("unsent")
    ws.pool_sqs.fail.append(RuntimeError("killed"))
    ws.monotonic.value += 10
    with pytest.raises(RuntimeError):
        ws.dispatcher().dispatch("m-unsent", body)
    ws.clock.advance(450)  # past the event grace (300 s) and this launch grace, within the timeout
    beat(ws, listing=[quiet], after=450)
    relaunches = RecordingSqs()

    sweeper(ws, relaunches, SweepSettings(launch_grace_seconds=400)).sweep()

    assert ws.ecs.described == [] and ws.ecs.listed == []
    assert ws.job(quiet).status is JobStatus.RUNNING
    assert relaunches.relaunches() == [(Relaunch(unsent, 1), 0)]
    assert ws.dispatcher().relaunch(Relaunch(unsent, 1).body()) is DispatchResult.DISPATCHED
    assert ws.offers()[-1] == WorkOffer(unsent, 1) and ws.ecs.requests == []
    assert ws.ecs.listed == []  # no task of its own to look for


def test_the_sweep_builds_the_pool_table_only_when_the_settings_name_it(stack: Stack) -> None:
    assert Sweeper.from_settings(stack.settings).pools is None
    built = Sweeper.from_settings(Settings(table_name="t", cluster="c", pool_table_name="pools"))
    assert built.pools is not None and built.pools.table_name == "pools"
