"""The warm lane's pure rules: catalog pools, offer/claim/expire of a WARM attempt, heartbeats, and
plan_launch's WARM choice."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain.catalog import BatchSpec, CatalogError, PoolSpec, parse_catalog
from batchgate.domain.jobs import Attempt, Job, JobStatus, LaunchPlan, iso
from batchgate.domain.latency_sketch import HistorySummary
from batchgate.domain.pools import PoolTask, SlotJob, WarmSlots, warm_slots
from batchgate.domain.strategy import plan_launch
from batchgate.domain.task_events import apply_task_event
from batchgate.domain.warm import (
    NOT_PICKED_UP,
    OFFERED,
    POOL_TASK_STOPPED,
    WARM,
    WorkerClaim,
    claim_warm,
    expire_warm_offer,
    offer_warm,
    warm_change,
)

PACKAGED = json.loads(
    (Path(__file__).parents[1] / "layers/batchgate/batchgate/catalog.json").read_text(encoding="utf-8")
)
POOL = {
    "task_definition": "batchgate-attendance",
    "container": "attendance",
    "cpu": 1024,
    "memory": 2048,
    "slots": 2,
    "capacity_provider": "FARGATE_SPOT",
    "architecture": "ARM64",
    "min_tasks": 0,
    "max_tasks": 4,
    "schedule": {
        "timezone": "Asia/Tokyo",
        "windows": [{"start": "cron(0 8 ? * MON-FRI *)", "end": "cron(0 20 ? * MON-FRI *)", "tasks": 2}],
    },
}
NOW = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


def catalog_with(pool: dict[str, Any] | None = None, **batch: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(PACKAGED)
    document["pools"] = {"attendance": pool if pool is not None else copy.deepcopy(POOL)}
    document["batches"]["attendance-import"].update({"pool": "attendance", **batch})
    return document


def test_a_batch_names_its_pool_and_run_mode() -> None:
    catalog = parse_catalog(catalog_with(run_mode="preload"))
    spec = catalog.get("attendance-import")
    assert spec is not None
    assert (spec.pool, spec.run_mode, spec.preload) == ("attendance", "preload", ("attendance.import_file",))
    pool = catalog.pool_of(spec)
    assert pool is not None
    assert (pool.slots, pool.capacity_provider, pool.architecture, pool.timezone) == (
        2,
        "FARGATE_SPOT",
        "ARM64",
        "Asia/Tokyo",
    )
    assert pool.windows[0].tasks == 2
    assert pool.max_run_seconds == 90
    assert catalog.batches_of("attendance") == (spec,)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(catalog_with() | {"pools": {}}, "unknown pool 'attendance'", id="unknown pool"),
        pytest.param(
            catalog_with(POOL | {"task_definition": "batchgate-reports"}),
            "runs its batches' own image",
            id="other image",
        ),
        pytest.param(
            catalog_with(run_mode="preload", command=["node", "import.js"]),
            "needs a 'python -m module' command",
            id="preload of a non-python command",
        ),
        pytest.param(catalog_with(run_mode="fork"), "'fork' is not one of", id="unknown run mode"),
        pytest.param(
            catalog_with(POOL | {"max_run_seconds": 115}),
            "max_run_seconds",
            id="run longer than stop timeout",
        ),
        pytest.param(
            catalog_with(POOL | {"schedule": {"timezone": "Mars/Olympus", "windows": []}}),
            "not an IANA time zone",
            id="unknown time zone",
        ),
        pytest.param(
            catalog_with(
                POOL
                | {"schedule": {"timezone": "UTC", "windows": [{"start": "8:00", "end": "x", "tasks": 1}]}}
            ),
            "must match",
            id="not a cron expression",
        ),
        pytest.param(catalog_with(POOL | {"capacity_provider": "EC2"}), "not one of FARGATE", id="EC2 pool"),
        pytest.param(catalog_with(POOL | {"slots": 0}), "'slots' must be an integer", id="no slot"),
    ],
)
def test_the_catalog_refuses_a_bad_pool_or_pool_reference(document: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(document)


def test_preload_needs_a_pool() -> None:
    document = copy.deepcopy(PACKAGED)
    # The packaged attendance import names its pool and preloads: without the pool, preload is refused.
    assert document["batches"]["attendance-import"].pop("pool") == "attendance"
    assert document["batches"]["attendance-import"]["run_mode"] == "preload"
    with pytest.raises(CatalogError, match="needs a 'pool'"):
        parse_catalog(document)


# Offer, claim, expire.


def warm_job(status: JobStatus = JobStatus.DISPATCHING, **attempt: Any) -> Job:
    begun = Attempt(
        number=1, strategy=WARM, capacity_provider="attendance", dispatched_at=iso(NOW), **attempt
    )
    return Job(
        job_id="bg-attendance-import-00000000000000000001",
        batch="attendance-import",
        status=status,
        created_at=iso(NOW),
        updated_at=iso(NOW),
        expires_at=0,
        message_id="m-1",
        plan=LaunchPlan(strategy=WARM, capacity_provider="attendance", reason="warm", fallbacks=("FARGATE",)),
        attempts=(begun,),
    )


CLAIM = WorkerClaim(
    task_arn="arn:aws:ecs:us-east-1:123456789012:task/c/pool-task-1",
    slot=1,
    image_digest="sha256:abc",
    log_group="/batchgate/pools/attendance",
    log_stream="attendance/bg-attendance-import-00000000000000000001/1",
    at=iso(NOW + timedelta(seconds=1)),
)


def test_an_offer_then_a_claim_make_the_job_running_on_the_pool_task() -> None:
    offered = offer_warm(warm_job(), 1, iso(NOW))
    assert offered is not None and offered.status is JobStatus.DISPATCHED
    assert offered.attempts[0].timeline[OFFERED] == iso(NOW)
    claimed = claim_warm(offered, 1, CLAIM)
    assert claimed is not None and claimed.status is JobStatus.RUNNING
    attempt = claimed.attempts[0]
    assert (attempt.task_arn, attempt.slot, attempt.image_digest) == (CLAIM.task_arn, 1, "sha256:abc")
    assert (attempt.log_group, attempt.log_stream) == (CLAIM.log_group, CLAIM.log_stream)
    assert attempt.timeline["started"] == CLAIM.at
    # A duplicate work message: the second claim changes nothing.
    assert claim_warm(claimed, 1, CLAIM._replace(slot=2)) is None


def test_the_first_of_claim_and_check_wins() -> None:
    offered = offer_warm(warm_job(), 1, iso(NOW))
    assert offered is not None
    expired = expire_warm_offer(
        offered, 1, iso(NOW + timedelta(seconds=2)), "not picked up by pool attendance"
    )
    assert expired is not None and expired.status is JobStatus.RETRYING
    assert expired.attempts[0].stop_code == NOT_PICKED_UP
    assert claim_warm(expired, 1, CLAIM) is None  # a late worker runs nothing
    claimed = claim_warm(offered, 1, CLAIM)
    assert claimed is not None
    assert expire_warm_offer(claimed, 1, iso(NOW), "late check") is None  # the check finds it claimed


def test_a_cancelled_or_superseded_attempt_is_never_claimed() -> None:
    cancelled = warm_job(JobStatus.CANCELLED)
    assert claim_warm(cancelled, 1, CLAIM) is None
    job = warm_job(JobStatus.DISPATCHED)
    second = Attempt(number=2, strategy="FARGATE", capacity_provider="FARGATE", dispatched_at=iso(NOW))
    superseded = job._replace(attempts=(*job.attempts, second))
    assert claim_warm(superseded, 1, CLAIM) is None
    assert expire_warm_offer(superseded, 1, iso(NOW), "late") is None


def test_the_workers_reports_go_through_apply_task_event() -> None:
    claimed = claim_warm(warm_job(JobStatus.DISPATCHED), 1, CLAIM)
    assert claimed is not None
    stopped = warm_change(
        CLAIM.task_arn,
        claimed.job_id,
        1,
        version=2,
        last_status="STOPPED",
        at=iso(NOW + timedelta(seconds=15)),
        timestamps={"stopped": iso(NOW + timedelta(seconds=15))},
        container="attendance",
        exit_code=0,
        stop_code="EssentialContainerExited",
    )
    done = apply_task_event(claimed, stopped, "attendance")
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert done.attempts[0].exit_code == 0
    # Out of order: the claim's RUNNING (version 1) after STOPPED changes nothing.
    assert claim_warm(done, 1, CLAIM) is None


# Heartbeats and plan_launch.


def heartbeat(
    *, running: int = 0, age: float = 1.0, batches: tuple[str, ...] = ("attendance-import",)
) -> PoolTask:
    return PoolTask(
        pool="attendance",
        task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/c/t-{running}-{age}",
        slots=2,
        running=tuple(SlotJob(f"bg-x-{n}", 1, n, iso(NOW)) for n in range(running)),
        heartbeat_at=iso(NOW - timedelta(seconds=age)),
        expires_at=0,
        batches=batches,
    )


def test_free_slots_count_only_fresh_tasks_running_the_batch_image() -> None:
    pool = PoolSpec("attendance", "batchgate-attendance", "attendance", 1024, 2048, 2, "FARGATE", 0, 4)
    tasks = [
        heartbeat(running=1),
        heartbeat(running=0, age=60),  # stale
        heartbeat(running=0, batches=()),  # an older image than the batch's task definition
        heartbeat(running=0)._replace(stopping=True),  # SIGTERM received
        heartbeat(running=2),  # full
    ]
    assert PoolTask.from_item(tasks[0].to_item()) == tasks[0]
    slots = warm_slots(pool, tasks, "attendance-import", NOW)
    assert (slots.free_slots, slots.tasks) == (1, 2)


def pooled(**changes: Any) -> BatchSpec:
    spec = parse_catalog(catalog_with()).get("attendance-import")
    assert spec is not None
    return spec._replace(**changes)


FREE = WarmSlots(pool="attendance", free_slots=3, tasks=2, max_run_seconds=90)


@pytest.mark.parametrize("batch_class", ["interactive", "standard", "bulk"])
def test_a_free_warm_slot_goes_first_with_the_ecs_chain_behind(batch_class: str) -> None:
    catalog = parse_catalog(catalog_with())
    spec = pooled(launch_class=catalog.launch_classes[batch_class], expected_run_seconds=20)
    plan = plan_launch(spec, warm=FREE)
    assert plan.strategy == WARM and plan.capacity_provider == "attendance"
    assert "FARGATE" in plan.fallbacks and WARM not in plan.fallbacks
    assert "3 warm slots free" in plan.reason and "pool cost already paid" in plan.reason
    assert plan.inputs["warm"] == FREE.to_dict()


@pytest.mark.parametrize(
    ("changes", "warm", "previous", "note"),
    [
        pytest.param({}, FREE._replace(free_slots=0), None, "no free slot", id="pool full"),
        pytest.param({}, None, None, "no heartbeat read", id="pool unknown"),
        pytest.param({"expected_run_seconds": 300}, FREE, None, "too long for pool", id="long run"),
        pytest.param({}, FREE, NOT_PICKED_UP, "not warm again", id="after not picked up"),
        pytest.param({}, FREE, POOL_TASK_STOPPED, "not warm again", id="after a pool task stopped"),
    ],
)
def test_no_warm_slot_walks_to_the_ecs_chain_at_once(
    changes: dict[str, Any], warm: WarmSlots | None, previous: str | None, note: str
) -> None:
    spec = pooled(**({"expected_run_seconds": 20} | changes))
    plan = plan_launch(spec, warm=warm, previous_stop_code=previous)
    assert plan.strategy != WARM and WARM not in plan.fallbacks
    assert note in plan.reason


def test_a_measured_long_run_keeps_a_batch_off_the_pool() -> None:
    history = {"FARGATE": HistorySummary(strategy="FARGATE", attempts=20, run_p95=120, start_p50=48)}
    plan = plan_launch(pooled(), warm=FREE, history=history)
    assert plan.strategy != WARM


def test_a_batch_without_a_pool_never_goes_warm() -> None:
    spec = pooled(pool=None, expected_run_seconds=20)
    assert plan_launch(spec, warm=FREE).strategy != WARM
