"""Cancel and the history feed with WARM attempts."""

from __future__ import annotations

import boto3
import pytest
from batchgate.adapters.history_table import HistoryTable
from batchgate.domain.jobs import Attempt, JobStatus
from batchgate.domain.latency_sketch import observation_of
from batchgate.domain.warm import NOT_PICKED_UP, OFFERED, WARM, WorkOffer
from batchgate.services.cancel import cancel_job
from batchgate.services.history_feed import HistoryFeed, JobChange

from tests.conftest import Stack, create_history_table
from tests.warm_lane import WarmStack, claim, heartbeat, report_exit, submit, warm_stack


@pytest.fixture
def ws(stack: Stack) -> WarmStack:
    warm = warm_stack(stack)
    warm.pools.put(heartbeat("one"))
    return warm


@pytest.mark.parametrize("claimed", [True, False], ids=["claimed", "offered"])
def test_cancelling_a_warm_job_stops_no_task_and_the_worker_claims_nothing_after(
    ws: WarmStack, claimed: bool
) -> None:
    body, job_id = submit("cancel-me")
    ws.dispatcher().dispatch("m", body)
    if claimed:
        claim(ws, job_id, 1, "one")

    job = cancel_job(ws.stack.table, ws.ecs, job_id, "ops", clock=ws.clock)

    assert job.status is JobStatus.CANCELLED
    assert ws.ecs.stopped == [] and ws.ecs.listed == []
    if not claimed:
        late = claim(ws, job_id, 1, "one")
        assert late is None or not late.written
        assert ws.dispatcher().check_warm(WorkOffer(job_id, 1).body()).value == "DUPLICATE"
        assert ws.ecs.requests == []
    assert ws.job(job_id).status is JobStatus.CANCELLED


def test_cancelling_an_ecs_job_still_stops_its_task(ws: WarmStack) -> None:
    ws.pools.delete("attendance", heartbeat("one").task_arn)  # no free slot: ECS
    body, job_id = submit("on-ecs")
    ws.dispatcher().dispatch("m", body)
    task = ws.job(job_id).attempt
    assert task is not None and task.strategy != WARM and task.task_arn
    cancel_job(ws.stack.table, ws.ecs, job_id, "ops", clock=ws.clock)
    assert ws.ecs.stopped == [task.task_arn]


def test_a_warm_attempt_folds_into_the_warm_history_with_its_start_counted_from_the_offer(
    ws: WarmStack,
) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, "history")
    history = HistoryTable("history", client)
    body, job_id = submit("folded")
    ws.dispatcher().dispatch("m", body)
    ws.clock.advance(0.8)
    claim(ws, job_id, 1, "one")
    before = ws.job(job_id)
    ws.clock.advance(14)
    after = report_exit(ws, job_id, 1, "one", exit_code=0)

    (observation,) = HistoryFeed(history).fold(JobChange("1", before, after))

    assert observation.strategy == WARM and observation.succeeded
    assert observation.start_seconds == pytest.approx(0.8)
    assert observation.run_seconds == pytest.approx(14)
    summary = history.summaries("attendance-import")[WARM]
    assert summary.attempts == 1 and summary.start_p50 is not None and 0 < summary.start_p50 < 2


def test_a_warm_start_counts_from_the_dispatch_when_the_claim_beat_the_offer_record() -> None:
    attempt = Attempt(
        number=1,
        strategy=WARM,
        capacity_provider="attendance",
        dispatched_at="2026-12-01T00:00:00.000Z",
        last_status="STOPPED",
        exit_code=0,
        timeline={"started": "2026-12-01T00:00:01.200Z", "stopped": "2026-12-01T00:00:15.000Z"},
    )
    assert observation_of(attempt).start_seconds == pytest.approx(1.2)
    # A worker clock a little behind dispatch's never gives a negative start.
    skewed = attempt._replace(timeline={**attempt.timeline, OFFERED: "2026-12-01T00:00:01.300Z"})
    assert observation_of(skewed).start_seconds == 0.0


def test_a_first_attempt_starts_at_the_send_and_a_later_one_at_its_own_launch() -> None:
    warm = Attempt(
        number=1,
        strategy=WARM,
        capacity_provider="attendance",
        dispatched_at="2026-12-01T00:00:00.000Z",
        last_status="STOPPED",
        exit_code=0,
        timeline={OFFERED: "2026-12-01T00:00:00.100Z", "started": "2026-12-01T00:00:01.200Z"},
    )
    sent = "2026-11-30T23:59:58.500Z"
    assert observation_of(warm, sent).start_seconds == pytest.approx(2.7)
    assert observation_of(warm).start_seconds == pytest.approx(1.1)
    # A later attempt was not sent by the application: its start counts from its own offer or task.
    assert observation_of(warm._replace(number=2), sent).start_seconds == pytest.approx(1.1)
    ecs = Attempt(
        number=2,
        strategy="FARGATE",
        capacity_provider="FARGATE",
        dispatched_at="2026-12-01T00:00:00.000Z",
        timeline={"created": "2026-12-01T00:00:01.000Z", "started": "2026-12-01T00:00:41.000Z"},
    )
    assert observation_of(ecs, sent).start_seconds == pytest.approx(40)
    assert observation_of(ecs._replace(number=1), sent).start_seconds == pytest.approx(42.5)


def test_the_history_feed_counts_a_first_attempt_from_the_send(ws: WarmStack) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, "history")
    body, job_id = submit("sent")
    sent_ms = int(ws.clock().timestamp() * 1000) - 1500
    ws.dispatcher().dispatch("m", body, str(sent_ms))
    ws.clock.advance(0.8)
    claim(ws, job_id, 1, "one")
    before = ws.job(job_id)
    ws.clock.advance(14)
    after = report_exit(ws, job_id, 1, "one", exit_code=0)

    (observation,) = HistoryFeed(HistoryTable("history", client)).fold(JobChange("1", before, after))

    assert observation.start_seconds == pytest.approx(2.3)


def test_an_offer_not_picked_up_is_not_folded(ws: WarmStack) -> None:
    body, job_id = submit("not-picked")
    ws.dispatcher().dispatch("m", body)
    before = ws.job(job_id)
    ws.clock.advance(2)
    ws.dispatcher().check_warm(WorkOffer(job_id, 1).body())
    after = ws.job(job_id)
    assert after.attempts[0].stop_code == NOT_PICKED_UP
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, "history")
    assert HistoryFeed(HistoryTable("history", client)).fold(JobChange("1", before, after)) == []
