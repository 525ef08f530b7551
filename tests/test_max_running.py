"""A batch's `max_running`: jobs over it wait (a relaunch with a delay, never the record's receives),
show why, take a slot when one is free, and never hold up other batches; two dispatchers never both
take the last slot."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import boto3
import pytest
from batchgate.adapters.batch_slots import BatchSlotTable
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.batch_slots import BatchSlots, holds_slot
from batchgate.domain.catalog import CatalogError, load_catalog
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso, job_id_for
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS
from batchgate.domain.warm import WARM
from batchgate.ops.job_views import job_row, outcome
from batchgate.services.dispatch import Dispatcher, DispatchResult
from batchgate.services.history_feed import HistoryFeed
from batchgate.services.launch_deferral import LaunchDeferral

from tests.conftest import TABLE, RecordingSqs, Stack, create_history_table, job_stream_records
from tests.test_catalog import PAYROLL as PAYROLL_PATH
from tests.test_catalog import packaged_document, set_value, write_catalog
from tests.test_fallback import T0
from tests.test_jobs import make_job
from tests.test_relaunch_guard import Clock
from tests.warm_lane import BATCH as WARM_BATCH
from tests.warm_lane import heartbeat, warm_stack
from tests.warm_lane import submit as warm_submit

BATCH = "payroll-calculation"


def submit(key: str, batch: str = BATCH) -> str:
    arguments = ["2026-11"] if batch == BATCH else ["monthly"]
    return json.dumps({"schema_version": 1, "batch": batch, "arguments": arguments, "idempotency_key": key})


def limited(stack: Stack, sqs: RecordingSqs, clock: Clock, max_running: int = 2) -> Dispatcher:
    """Dispatch with payroll limited to `max_running`, the slots in the job table, deferrals recorded."""
    spec = stack.catalog.batches[BATCH]._replace(max_running=max_running)
    catalog = stack.catalog._replace(batches=MappingProxyType({**stack.catalog.batches, BATCH: spec}))
    deferral = LaunchDeferral(JobsQueue("https://queue", sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)  # type: ignore[arg-type]
    return replace(
        stack.dispatcher(),
        catalog=catalog,
        deferral=deferral,
        slots=BatchSlotTable(TABLE, boto3.client("dynamodb", region_name="us-east-1")),
        clock=clock,
    )


def job(stack: Stack, key: str, batch: str = BATCH) -> Job:
    found = stack.table.get(job_id_for(batch, key))
    assert found is not None
    return found


def end(stack: Stack, key: str, at: datetime) -> None:
    stack.table.mutate(
        job_id_for(BATCH, key), lambda current: current.moved_to(JobStatus.SUCCEEDED, iso(at), "exit code 0")
    )


def test_jobs_over_max_running_wait_with_the_reason_and_launch_when_a_slot_frees(stack: Stack) -> None:
    clock, sqs = Clock(), RecordingSqs()
    dispatch = limited(stack, sqs, clock)
    assert [dispatch.dispatch(f"m-{n}", submit(f"k-{n}")) for n in range(3)] == [
        DispatchResult.DISPATCHED,
        DispatchResult.DISPATCHED,
        DispatchResult.DEFERRED,
    ]
    waiting = job(stack, "k-2")
    assert waiting.status is JobStatus.DISPATCHING and waiting.attempt is not None
    assert waiting.attempt.task_arn is None and waiting.attempt.note == "waiting: 2/2 running"
    # Visible in `batchgate jobs` and `batchgate show`.
    assert job_row(waiting)["reason"] == "waiting: 2/2 running"
    assert outcome(waiting).headline == "DISPATCHING: waiting: 2/2 running"
    # Put back as a relaunch with a delay: the record in hand is done, no receive spent.
    [(relaunch, delay)] = sqs.relaunches()
    assert relaunch == Relaunch(waiting.job_id, 1, deferrals=1) and delay == 2
    # Still full when it comes back: it waits longer.
    clock.advance(delay)
    assert dispatch.relaunch(sqs.sent[-1]["MessageBody"]) is DispatchResult.DEFERRED
    assert sqs.relaunches()[-1][1] == 4
    # One job ends: the next relaunch takes its slot.
    end(stack, "k-0", clock())
    clock.advance(4)
    assert dispatch.relaunch(sqs.sent[-1]["MessageBody"]) is DispatchResult.DISPATCHED
    launched = job(stack, "k-2")
    assert launched.status is JobStatus.DISPATCHED and launched.attempt is not None
    assert launched.attempt.task_arn is not None and launched.attempt.note is None
    assert len(stack.tasks_started_by(launched.job_id)) == 1
    holders = BatchSlotTable(TABLE, boto3.client("dynamodb", region_name="us-east-1")).get(BATCH).holders
    assert set(holders) == {job_id_for(BATCH, "k-1"), launched.job_id}


def test_a_waiting_batch_never_holds_up_another(stack: Stack) -> None:
    clock, sqs = Clock(), RecordingSqs()
    dispatch = limited(stack, sqs, clock, max_running=1)
    assert dispatch.dispatch("m-0", submit("k-0")) is DispatchResult.DISPATCHED
    results = [dispatch.dispatch(f"m-{n}", submit(f"k-{n}")) for n in range(1, 6)]
    assert set(results) == {DispatchResult.DEFERRED}
    assert dispatch.dispatch("r-1", submit("r-1", "report-export")) is DispatchResult.DISPATCHED


def test_two_dispatchers_never_both_take_the_last_slot(stack: Stack) -> None:
    clock, sqs = Clock(), RecordingSqs()
    dispatch = limited(stack, sqs, clock)
    assert dispatch.dispatch("m-0", submit("k-0")) is DispatchResult.DISPATCHED
    client = boto3.client("dynamodb", region_name="us-east-1")
    stale = BatchSlotTable(TABLE, client).get(BATCH)  # 1 of 2 held, as both dispatchers read it

    class ReadBeforeTheOtherWrote(BatchSlotTable):
        reads = 0

        def get(self, batch: str) -> BatchSlots:
            self.reads += 1
            return stale if self.reads == 1 else super().get(batch)

    assert dispatch.dispatch("m-1", submit("k-1")) is DispatchResult.DISPATCHED  # took the last slot
    late = replace(dispatch, slots=ReadBeforeTheOtherWrote(TABLE, client))
    assert late.dispatch("m-2", submit("k-2")) is DispatchResult.DEFERRED  # its write lost, then full
    running = [n for n in range(3) if job(stack, f"k-{n}").status is JobStatus.DISPATCHED]
    assert running == [0, 1]


def test_a_slot_is_held_until_its_attempt_ends_warm_ones_too() -> None:
    running = make_job(
        status=JobStatus.DISPATCHED,
        attempts=(Attempt(1, WARM, "pool-a", iso(T0), task_arn="arn:pool-task"),),
    )
    assert holds_slot(running, 1)
    assert not holds_slot(running, 2)  # held for an earlier attempt
    assert not holds_slot(running._replace(status=JobStatus.RETRYING), 1)
    assert not holds_slot(running._replace(status=JobStatus.CANCELLED), 1)
    assert not holds_slot(None, 1)
    slots = BatchSlots(BATCH, {running.job_id: 1, "bg-gone": 1})
    assert slots.freed({running.job_id: running}).holders == {running.job_id: 1}
    assert slots.taken_by("bg-new", 1, 2) is None
    assert slots.taken_by(running.job_id, 1, 2) is slots


def test_the_slot_items_pass_the_table_stream_by(stack: Stack) -> None:
    clock, sqs = Clock(), RecordingSqs()
    dispatch = limited(stack, sqs, clock, max_running=1)
    assert dispatch.dispatch("m-0", submit("k-0")) is DispatchResult.DISPATCHED
    end(stack, "k-0", clock() + timedelta(seconds=1))
    assert dispatch.dispatch("m-1", submit("k-1")) is DispatchResult.DISPATCHED  # frees k-0's slot
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(dynamodb, "batchgate-slots-history")
    fold = HistoryFeed(HistoryTable("batchgate-slots-history", dynamodb)).in_order()
    records = job_stream_records()
    assert any(r["dynamodb"]["Keys"]["job_id"]["S"] == f"slots#{BATCH}" for r in records)
    assert sum(fold(record) for record in records) == 0  # nothing unreadable, nothing folded


@pytest.mark.parametrize("value", [0, -1, 501, 2.5, "5", True])
def test_max_running_is_an_optional_positive_integer(tmp_path: Path, value: object) -> None:
    document = packaged_document()
    set_value(*PAYROLL_PATH, "max_running", value)(document)
    with pytest.raises(CatalogError, match="field 'max_running' must be an integer from 1 to 500"):
        load_catalog(write_catalog(tmp_path, document))
    set_value(*PAYROLL_PATH, "max_running", 5)(document)
    assert load_catalog(write_catalog(tmp_path, document)).batches[BATCH].max_running == 5
    assert load_catalog().batches[BATCH].max_running is None


def test_warm_jobs_take_slots_too(stack: Stack) -> None:
    ws = warm_stack(stack, max_running=1)  # max_running read from the catalog document
    ws.pools.put(heartbeat("one"))  # two free warm slots: the pool is not the limit
    deferral = LaunchDeferral(JobsQueue("https://queue", ws.jobs_sqs), DEFAULT_STRATEGY_SETTINGS)  # type: ignore[arg-type]
    client = boto3.client("dynamodb", region_name="us-east-1")
    dispatch = replace(ws.dispatcher(), slots=BatchSlotTable(TABLE, client), deferral=deferral)
    (first, first_id), (second, second_id) = warm_submit("warm-1"), warm_submit("warm-2")
    assert dispatch.dispatch("m-1", first) is DispatchResult.DISPATCHED
    assert dispatch.dispatch("m-2", second) is DispatchResult.DEFERRED
    assert [offer.job_id for offer in ws.offers()] == [first_id]  # the second was never offered
    waiting = ws.job(second_id)
    assert waiting.attempt is not None and waiting.attempt.note == "waiting: 1/1 running"
    assert BatchSlotTable(TABLE, client).get(ws.catalog.batches[WARM_BATCH].name).holders == {first_id: 1}
