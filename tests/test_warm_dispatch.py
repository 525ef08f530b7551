"""Dispatch's side of the warm lane: offers, their checks, and ECS behind the pool."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import ModuleType

import pytest
from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.jobs import JobStatus, parse_iso
from batchgate.domain.pools import SlotJob
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.warm import NOT_PICKED_UP, OFFERED, WARM, WorkOffer
from batchgate.services.dispatch import Dispatcher, DispatchResult
from batchgate.services.settings import Settings
from batchgate.services.warm_advice import WarmAdvice
from botocore.exceptions import ClientError

from tests.conftest import LambdaContextStub, RecordingSqs, Stack
from tests.warm_lane import (
    NOW,
    POOL,
    WarmStack,
    claim,
    heartbeat,
    report_exit,
    submit,
    warm_stack,
)


@pytest.fixture
def ws(stack: Stack) -> WarmStack:
    warm = warm_stack(stack, max_attempts=2)
    warm.pools.put(heartbeat("one"))
    return warm


def sqs_error(operation: str = "SendMessage") -> ClientError:
    return ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, operation)


def test_a_warm_job_is_offered_claimed_and_succeeds_without_any_run_task(ws: WarmStack) -> None:
    body, job_id = submit("warm-1")
    assert ws.dispatcher().dispatch("m-1", body) is DispatchResult.DISPATCHED

    job = ws.job(job_id)
    attempt = job.attempt
    assert attempt is not None and job.status is JobStatus.DISPATCHED
    assert (attempt.strategy, attempt.capacity_provider, attempt.task_arn) == (WARM, POOL, None)
    assert attempt.timeline[OFFERED] == "2026-12-01T00:00:00.000Z"
    assert job.plan is not None and job.plan.reason.startswith("WARM")
    assert ws.offers() == [WorkOffer(job_id, 1)]
    assert ws.checks() == [(WorkOffer(job_id, 1), 2)]  # delayed by the pool's offer_seconds
    assert ws.ecs.requests == []

    ws.clock.advance(0.4)
    claimed = claim(ws, job_id, 1, "one", slot=1)
    assert claimed is not None and claimed.written and claimed.after.status is JobStatus.RUNNING
    ws.clock.advance(12)
    done = report_exit(ws, job_id, 1, "one", exit_code=0)
    assert done.status is JobStatus.SUCCEEDED

    # The check arrives after the claim: it changes nothing and launches nothing.
    ws.clock.advance(2)
    assert ws.dispatcher().check_warm(WorkOffer(job_id, 1).body()) is DispatchResult.DUPLICATE
    assert ws.job(job_id).status is JobStatus.SUCCEEDED
    assert ws.ecs.requests == []


def test_the_check_wins_an_unclaimed_offer_goes_to_ecs_at_once_without_using_an_attempt(
    ws: WarmStack,
) -> None:
    body, job_id = submit("warm-2")
    ws.dispatcher().dispatch("m-2", body)
    ws.clock.advance(2)

    assert ws.dispatcher().check_warm(WorkOffer(job_id, 1).body()) is DispatchResult.DISPATCHED

    job = ws.job(job_id)
    first, second = job.attempts
    assert (first.strategy, first.stop_code, first.last_status) == (WARM, NOT_PICKED_UP, "STOPPED")
    assert first.stopped_reason == "not picked up by warm pool attendance within 2 s"
    assert second.strategy != WARM and second.task_arn is not None
    assert job.plan is not None and "previous attempt ended WarmNotPickedUp" in job.plan.reason
    assert len(ws.ecs.requests) == 1
    assert ws.ecs.requests[0]["capacityProviderStrategy"][0]["capacityProvider"] != POOL
    # Started on ECS when the check arrived: offer_seconds after the submit, not later.
    assert (parse_iso(second.dispatched_at) - NOW).total_seconds() == 2

    # A worker that receives the offer late runs nothing.
    late = claim(ws, job_id, 1, "one")
    assert late is None or not late.written
    # The same check delivered again launches nothing more.
    assert ws.dispatcher().check_warm(WorkOffer(job_id, 1).body()) is DispatchResult.DUPLICATE
    assert len(ws.ecs.requests) == 1

    # max_attempts is 2, and attempt 1 never ran: attempt 2's infrastructure failure is retried.
    event = stopped_event(second.task_arn or "", job_id, 2, "TaskFailedToStart")
    ws.stack.tracker().track(event)
    retried = ws.job(job_id)
    assert retried.status is JobStatus.RETRYING
    assert retried.reason is not None and "attempt 3 of 3, 1 of them never ran" in retried.reason


def test_a_check_whose_launch_did_not_finish_launches_when_delivered_again(ws: WarmStack) -> None:
    body, job_id = submit("warm-3")
    ws.dispatcher().dispatch("m-3", body)
    ws.clock.advance(2)
    broken = ws.dispatcher()
    object.__setattr__(
        broken, "_resume", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("crash"))
    )
    with pytest.raises(RuntimeError):
        broken.check_warm(WorkOffer(job_id, 1).body())
    assert ws.job(job_id).status is JobStatus.RETRYING

    assert ws.dispatcher().check_warm(WorkOffer(job_id, 1).body()) is DispatchResult.DISPATCHED
    assert [a.number for a in ws.job(job_id).attempts] == [1, 2]
    assert len(ws.ecs.requests) == 1


def stopped_event(task_arn: str, job_id: str, attempt: int, stop_code: str) -> dict[str, object]:
    return {
        "version": "0",
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "time": "2026-12-01T00:01:00Z",
        "detail": {
            "taskArn": task_arn,
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/batchgate-dev",
            "startedBy": job_id,
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "version": 3,
            "stopCode": stop_code,
            "stoppedReason": "ResourceInitializationError: unable to pull secrets",
            "overrides": {
                "containerOverrides": [
                    {
                        "name": "attendance",
                        "environment": [{"name": "BATCHGATE_ATTEMPT", "value": str(attempt)}],
                    }
                ]
            },
            "containers": [{"name": "attendance", "lastStatus": "STOPPED"}],
        },
    }


@pytest.mark.parametrize(
    ("beat", "why"),
    [
        (None, "no free slot (0 tasks up)"),
        (
            heartbeat(
                "one",
                running=(SlotJob("bg-x-1", 1, 0, "2026-12-01T00:00:00.000Z"), SlotJob("bg-x-2", 1, 1, "x")),
            ),
            "no free slot (1 task up)",
        ),
        (heartbeat("one", at=NOW - timedelta(seconds=16)), "(0 tasks up)"),
        (heartbeat("one", stopping=True), "(0 tasks up)"),
        (heartbeat("one", batches=("other-batch",)), "(0 tasks up)"),
    ],
    ids=["zero-tasks", "full", "stale", "stopping", "older-image"],
)
def test_a_pool_without_a_fresh_free_slot_sends_the_job_to_ecs_at_once(
    stack: Stack, beat: object, why: str
) -> None:
    ws = warm_stack(stack)
    if beat is not None:
        ws.pools.put(beat)  # type: ignore[arg-type]
    body, job_id = submit("cold")
    assert ws.dispatcher().dispatch("m", body) is DispatchResult.DISPATCHED
    job = ws.job(job_id)
    assert job.attempt is not None and job.attempt.strategy != WARM and job.attempt.task_arn
    assert job.plan is not None and why in job.plan.reason
    assert ws.offers() == [] and ws.checks() == []
    assert len(ws.ecs.requests) == 1


def test_an_unreadable_pool_table_plans_without_the_pool_and_never_fails_the_job(stack: Stack) -> None:
    ws = warm_stack(stack)
    missing = WarmAdvice(PoolTable("no-such-table", ws.pools._client))
    body, job_id = submit("unreadable")
    assert ws.dispatcher(advice=missing).dispatch("m", body) is DispatchResult.DISPATCHED
    job = ws.job(job_id)
    assert job.attempt is not None and job.attempt.strategy != WARM and job.attempt.task_arn
    assert job.plan is not None and "no heartbeat read" in job.plan.reason
    assert ws.offers() == [] and len(ws.ecs.requests) == 1


def test_heartbeats_are_read_once_per_cache_period(ws: WarmStack) -> None:
    dispatcher = ws.dispatcher()
    for index in range(2):
        dispatcher.dispatch(f"m-{index}", submit(f"cached-{index}")[0])
    assert len(ws.offers()) == 2
    # Slots freed meanwhile are seen after the cache period, not before.
    ws.pools.put(heartbeat("two"))
    dispatcher.dispatch("m-2", submit("cached-2")[0])
    assert len(ws.offers()) == 2 and len(ws.ecs.requests) == 1
    ws.monotonic.value += 1.0
    dispatcher.dispatch("m-3", submit("cached-3")[0])
    assert len(ws.offers()) == 3


def test_a_burst_larger_than_the_pool_overflows_to_ecs_and_nothing_waits_beyond_the_check(
    stack: Stack,
) -> None:
    """09:00: 12 jobs at once, 2 pool tasks of 2 slots, two dispatch containers each reading the same
    4 free slots. Each container offers at most what it read (the rest go to ECS at once); offers the
    other container's took are not picked up and go to ECS when their check comes, offer_seconds later."""
    ws = warm_stack(stack)
    ws.pools.put(heartbeat("one"))
    ws.pools.put(heartbeat("two"))
    containers = [ws.dispatcher(advice=WarmAdvice(ws.pools, monotonic=ws.monotonic)) for _ in range(2)]
    jobs = []
    for index in range(12):
        body, job_id = submit(f"burst-{index}")
        containers[index % 2].dispatch(f"m-{index}", body)
        jobs.append(job_id)

    offered = [offer.job_id for offer in ws.offers()]
    assert len(offered) == 8  # 4 per container
    assert len(ws.ecs.requests) == 4  # the overflow, at once
    for job_id in jobs:
        if job_id not in offered:
            first = ws.job(job_id).attempts[0]
            assert first.strategy != WARM and first.dispatched_at == "2026-12-01T00:00:00.000Z"

    # The pool's 4 slots take the first 4 offers it receives.
    for slot, job_id in enumerate(offered[:4]):
        assert claim(ws, job_id, 1, "one" if slot < 2 else "two", slot % 2) is not None
    ws.clock.advance(2)
    for offer, delay in ws.checks():
        assert delay == 2
        containers[0].check_warm(offer.body())

    for job_id in jobs:
        job = ws.job(job_id)
        running_where = job.attempt
        assert running_where is not None
        if job_id in offered[:4]:
            assert job.status is JobStatus.RUNNING and running_where.strategy == WARM
        else:
            # On ECS, at most offer_seconds after the submit.
            assert running_where.strategy != WARM and running_where.task_arn is not None
            waited = (parse_iso(running_where.dispatched_at) - NOW).total_seconds()
            assert waited <= 2
    assert len(ws.ecs.requests) == 8  # 4 at once + 4 after their check


@pytest.mark.parametrize("failing", ["offer", "check"])
def test_an_offer_that_cannot_be_sent_moves_the_attempt_to_the_next_strategy_at_once(
    ws: WarmStack, failing: str
) -> None:
    queue = ws.pool_sqs if failing == "offer" else ws.jobs_sqs
    queue.fail.append(sqs_error())
    body, job_id = submit("offer-fails")
    assert ws.dispatcher().dispatch("m", body) is DispatchResult.DISPATCHED

    job = ws.job(job_id)
    (attempt,) = job.attempts
    assert attempt.strategy != WARM and attempt.task_arn is not None and attempt.launch_try == 1
    assert attempt.tries[0]["strategy"] == WARM
    assert "warm offer to pool attendance not sent" in attempt.tries[0]["error"]
    assert len(ws.ecs.requests) == 1
    assert ws.ecs.requests[0]["capacityProviderStrategy"][0]["capacityProvider"] == attempt.strategy
    if failing == "check":
        assert ws.offers() == []  # no offer goes out without its check


def test_a_duplicate_submit_sends_one_offer_and_no_run_task(ws: WarmStack) -> None:
    body, job_id = submit("twice")
    dispatcher = ws.dispatcher()
    assert dispatcher.dispatch("m-1", body) is DispatchResult.DISPATCHED
    assert dispatcher.dispatch("m-1", body) is DispatchResult.DUPLICATE
    assert ws.offers() == [WorkOffer(job_id, 1)]
    assert ws.ecs.requests == []


def test_an_offer_not_recorded_is_sent_again_by_a_redelivery_or_a_relaunch(ws: WarmStack) -> None:
    body, job_id = submit("unrecorded")
    crashing = ws.dispatcher()
    table = crashing.table

    original = table.mutate
    calls = {"n": 0}

    def mutate(job_id: str, change: Callable[..., object], *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # begin_attempt first, then the offer's record
            raise RuntimeError("crashed before the offer was recorded")
        return original(job_id, change, *args, **kwargs)  # type: ignore[arg-type]

    object.__setattr__(table, "mutate", mutate)
    try:
        with pytest.raises(RuntimeError):
            crashing.dispatch("m-1", body)
    finally:
        object.__delattr__(table, "mutate")
    job = ws.job(job_id)
    assert job.status is JobStatus.DISPATCHING and job.attempt is not None and job.attempt.strategy == WARM

    assert ws.dispatcher().dispatch("m-1", body) is DispatchResult.DISPATCHED
    assert ws.offers() == [WorkOffer(job_id, 1), WorkOffer(job_id, 1)]
    assert ws.job(job_id).status is JobStatus.DISPATCHED
    assert ws.ecs.requests == []


def test_a_relaunch_of_a_warm_attempt_still_dispatching_offers_it_again(ws: WarmStack) -> None:
    body, job_id = submit("relaunched")
    ws.pool_sqs.fail.append(RuntimeError("process killed"))
    with pytest.raises(RuntimeError):
        ws.dispatcher().dispatch("m-1", body)
    assert ws.job(job_id).status is JobStatus.DISPATCHING
    assert ws.dispatcher().relaunch(Relaunch(job_id, 1).body()) is DispatchResult.DISPATCHED
    assert ws.offers() == [WorkOffer(job_id, 1)] and ws.ecs.requests == []


def test_the_dispatch_handler_routes_warm_checks(
    ws: WarmStack, load_handler: Callable[[str], ModuleType]
) -> None:
    app = load_handler("dispatch")
    dispatcher = ws.dispatcher()
    setattr(app, "dispatcher", dispatcher)  # noqa: B010
    body, job_id = submit("through-the-handler")
    dispatcher.dispatch("m-1", body)
    ws.clock.advance(2)
    checks = RecordingSqs()
    checks.sent = list(ws.jobs_sqs.sent)
    response = app.handler(checks.as_sqs_event(), LambdaContextStub())
    assert response == {"batchItemFailures": []}
    job = ws.job(job_id)
    assert [a.strategy == WARM for a in job.attempts] == [True, False]
    assert job.attempts[0].stop_code == NOT_PICKED_UP


def test_dispatch_builds_the_warm_lane_only_when_the_settings_name_it(stack: Stack) -> None:
    plain = Dispatcher.from_settings(stack.settings)
    assert (plain.warm_advice, plain.pool_queues, plain.jobs_queue) == (None, None, None)
    warm = Dispatcher.from_settings(
        Settings(
            table_name=stack.settings.table_name,
            cluster=stack.settings.cluster,
            jobs_queue_url="https://sqs/jobs",
            pool_table_name="pools",
            pool_queue_urls={POOL: "https://sqs/pool"},
        )
    )
    assert warm.warm_advice is not None and warm.pool_queues is not None and warm.jobs_queue is not None
    assert warm.pool_queues.queue_urls == {POOL: "https://sqs/pool"}


def test_settings_read_the_pool_service_prefix() -> None:
    env = {"JOB_TABLE_NAME": "t", "ECS_CLUSTER": "c", "POOL_SERVICE_PREFIX": "batchgate-dev-pool-"}
    assert Settings.from_environment(env).pool_service_prefix == "batchgate-dev-pool-"
    assert Settings.from_environment({"JOB_TABLE_NAME": "t", "ECS_CLUSTER": "c"}).pool_service_prefix is None
