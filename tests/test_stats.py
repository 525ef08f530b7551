"""stats: percentiles, billed seconds, cost estimates and per batch/strategy rows, by hand."""

from __future__ import annotations

import pytest
from batchgate.domain import pricing
from batchgate.domain.catalog import PoolSpec
from batchgate.domain.jobs import Attempt, Job, JobStatus, job_id_for
from batchgate.ops import stats

from tests.test_jobs import make_job

PAYROLL_SIZE = pricing.TaskSize(cpu=1024, memory=2048)  # 1 vCPU, 2 GB


def attempt(
    *,
    strategy: str = "FARGATE",
    pull_started: str | None = "2026-11-28T10:00:10.000Z",
    started: str | None = "2026-11-28T10:00:20.000Z",
    stopped: str | None = "2026-11-28T10:10:10.000Z",
    created: str = "2026-11-28T10:00:05.000Z",
    number: int = 1,
) -> Attempt:
    timeline = {"created": created}
    for key, value in (("pull_started", pull_started), ("started", started), ("stopped", stopped)):
        if value is not None:
            timeline[key] = value
    return Attempt(
        number=number,
        strategy=strategy,
        capacity_provider=strategy,
        dispatched_at="2026-11-28T10:00:01.000Z",
        task_arn=f"arn:aws:ecs:us-east-1:1:task/c/t{number}",
        last_status="STOPPED" if stopped else "RUNNING",
        timeline=timeline,
    )


def job(status: JobStatus, *attempts: Attempt, batch: str = "payroll-calculation", key: str = "k") -> Job:
    return make_job(job_id=job_id_for(batch, key), batch=batch, status=status, attempts=attempts)


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert stats.percentile([4, 1, 3, 2], 0.50) == 2.5
    assert stats.percentile(range(1, 21), 0.95) == pytest.approx(19.05)
    assert stats.percentile([10.0], 0.95) == 10.0
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([1, 2, 3], 0.0) == 1 and stats.percentile([1, 2, 3], 1.0) == 3
    with pytest.raises(ValueError, match="fraction"):
        stats.percentile([1], 95)


def test_billed_seconds_run_from_pull_start_to_stop_rounded_up_with_a_one_minute_minimum() -> None:
    assert stats.billed_seconds(attempt()) == 600  # 10:00:10 -> 10:10:10
    short = attempt(pull_started="2026-11-28T10:00:10.000Z", stopped="2026-11-28T10:00:40.000Z")
    assert stats.billed_seconds(short) == 60  # 30 s billed as the one-minute minimum
    fraction = attempt(pull_started="2026-11-28T10:00:10.000Z", stopped="2026-11-28T10:01:40.200Z")
    assert stats.billed_seconds(fraction) == 91  # 90.2 s, per second: rounded up
    no_pull = attempt(
        pull_started=None, started="2026-11-28T10:00:20.000Z", stopped="2026-11-28T10:02:20.000Z"
    )
    assert stats.billed_seconds(no_pull) == 120  # falls back to the container start
    assert stats.billed_seconds(attempt(stopped=None)) is None


def test_cost_of_an_on_demand_attempt_in_us_east_1() -> None:
    # 1 vCPU * 0.04048 + 2 GB * 0.004445 = 0.04937 USD per hour; 600 s = 1/6 h -> 0.008228333...
    cost = stats.attempt_cost(attempt(), PAYROLL_SIZE, "us-east-1")
    assert cost == pytest.approx(0.04937 / 6)


def test_cost_has_a_one_minute_minimum() -> None:
    short = attempt(stopped="2026-11-28T10:00:40.000Z")
    # 60 s of 0.04937/h = 0.000822833...
    assert stats.attempt_cost(short, PAYROLL_SIZE, "us-east-1") == pytest.approx(0.04937 / 60)


def test_cost_in_tokyo_and_on_spot() -> None:
    # ap-northeast-1: 0.05056 + 2 * 0.005536 = 0.061632 per hour; 600 s -> 0.010272
    assert stats.attempt_cost(attempt(), PAYROLL_SIZE, "ap-northeast-1") == pytest.approx(0.010272)
    # Spot: 70% below on-demand -> 0.3 * 0.04937 / 6 = 0.0024685
    spot = attempt(strategy="FARGATE_SPOT")
    assert stats.attempt_cost(spot, PAYROLL_SIZE, "us-east-1") == pytest.approx(0.0024685)


def test_no_estimate_for_ec2_or_a_running_task_and_nothing_for_a_task_that_never_pulled() -> None:
    assert stats.attempt_cost(attempt(strategy="EC2"), PAYROLL_SIZE, "us-east-1") is None
    assert stats.attempt_cost(attempt(stopped=None), PAYROLL_SIZE, "us-east-1") is None
    never = attempt(pull_started=None, started=None)
    assert stats.attempt_cost(never, PAYROLL_SIZE, "us-east-1") == 0.0
    assert stats.attempt_cost(attempt(), None, "us-east-1") is None


def test_summarize_groups_by_batch_and_last_strategy() -> None:
    # Start latencies (created -> started) are 15, 25, 35 s; run times (started -> stopped) 590, 60, 30 s.
    ok_1 = job(JobStatus.SUCCEEDED, attempt(), key="a")
    ok_2 = job(
        JobStatus.SUCCEEDED,
        attempt(
            created="2026-11-28T10:00:00.000Z",
            pull_started="2026-11-28T10:00:05.000Z",
            started="2026-11-28T10:00:25.000Z",
            stopped="2026-11-28T10:01:25.000Z",
        ),
        key="b",
    )
    failed = job(
        JobStatus.FAILED,
        attempt(
            created="2026-11-28T10:00:00.000Z",
            pull_started="2026-11-28T10:00:05.000Z",
            started="2026-11-28T10:00:35.000Z",
            stopped="2026-11-28T10:01:05.000Z",
        ),
        key="c",
    )
    # Interrupted on Spot, then succeeded on FARGATE: counts under FARGATE, both attempts cost.
    retried = job(
        JobStatus.SUCCEEDED,
        attempt(strategy="FARGATE_SPOT", number=1, stopped="2026-11-28T10:00:40.000Z"),
        attempt(strategy="FARGATE", number=2),
        key="d",
    )
    spot = job(JobStatus.RUNNING, attempt(strategy="FARGATE_SPOT", stopped=None), key="e")
    rejected = make_job(job_id="bg-x", batch="report-export", status=JobStatus.REJECTED)
    rows = stats.summarize(
        [ok_1, ok_2, failed, retried, spot, rejected], {"payroll-calculation": PAYROLL_SIZE}, "us-east-1"
    )
    assert [(row.batch, row.strategy) for row in rows] == [
        ("payroll-calculation", "FARGATE"),
        ("payroll-calculation", "FARGATE_SPOT"),
        ("report-export", "-"),
    ]
    fargate, spot_row, report = rows
    assert (fargate.jobs, fargate.attempts, fargate.succeeded, fargate.failed) == (4, 5, 3, 1)
    assert fargate.success_rate == 0.75
    data = fargate.to_dict()
    # start latencies [15, 25, 35, 15] -> sorted [15, 15, 25, 35]: p50 = 20, p95 = 25 + 0.85 * 10 = 33.5
    assert data["start_latency_p50_seconds"] == 20.0
    assert data["start_latency_p95_seconds"] == pytest.approx(33.5)
    # run times [590, 60, 30, 590] -> [30, 60, 590, 590]: p50 = 325, p95 = 590
    assert data["run_time_p50_seconds"] == 325.0
    assert data["run_time_p95_seconds"] == 590.0
    # billed: 600 + 80 + 60 + (spot 30 s -> 60 s at 30%) + 600 seconds at 0.04937 USD/h
    hourly = 0.04937
    expected = hourly * (600 + 80 + 60 + 600) / 3600 + hourly * 0.3 * 60 / 3600
    assert data["estimated_cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert fargate.cost_complete
    assert (spot_row.jobs, spot_row.in_progress, spot_row.success_rate, spot_row.cost_complete) == (
        1,
        1,
        None,
        False,
    )
    assert (report.jobs, report.rejected, report.attempts, report.success_rate) == (1, 1, 0, None)


def test_the_plans_recorded_size_wins_over_the_catalogs() -> None:
    from batchgate.domain.jobs import LaunchPlan

    bigger = LaunchPlan("FARGATE", "FARGATE", "launch class standard", cpu=2048, memory=4096)
    sized = make_job(status=JobStatus.SUCCEEDED, attempts=(attempt(),), plan=bigger)
    assert stats.size_of(sized, {"payroll-calculation": PAYROLL_SIZE}) == pricing.TaskSize(2048, 4096)
    [row] = stats.summarize([sized], {"payroll-calculation": PAYROLL_SIZE}, "us-east-1")
    # 2 vCPU * 0.04048 + 4 GB * 0.004445 = 0.09874 USD/h for 600 s
    assert row.to_dict()["estimated_cost_usd"] == pytest.approx(0.09874 / 6, abs=1e-6)
    unsized = make_job(status=JobStatus.SUCCEEDED, plan=LaunchPlan("FARGATE", "FARGATE", "r"))
    assert stats.size_of(unsized, {"payroll-calculation": PAYROLL_SIZE}) == PAYROLL_SIZE


# --- WARM attempts: their share of a pool task --------------------------------------------------------


def warm_pool(capacity_provider: str = "FARGATE", architecture: str = "X86_64") -> PoolSpec:
    return PoolSpec(
        name="attendance",
        task_definition="batchgate-attendance",
        container="attendance",
        cpu=1024,
        memory=2048,
        slots=2,
        capacity_provider=capacity_provider,
        min_tasks=0,
        max_tasks=4,
        architecture=architecture,
    )


def warm_attempt(started: str | None = "2026-11-28T10:00:20.000Z", stopped: str | None = None) -> Attempt:
    base = attempt(strategy="WARM", pull_started=None, started=started, stopped=stopped)
    return Attempt(
        number=base.number,
        strategy="WARM",
        capacity_provider="attendance",
        dispatched_at=base.dispatched_at,
        task_arn="arn:aws:ecs:us-east-1:1:task/c/pool-task",
        last_status=base.last_status if started else "STOPPED",
        timeline=base.timeline,
        slot=1,
    )


def test_a_warm_attempt_is_charged_its_run_times_share_of_its_pool_task() -> None:
    ran_36_s = warm_attempt(stopped="2026-11-28T10:00:56.000Z")
    pools = {"attendance": warm_pool()}
    cost = stats.attempt_cost(ran_36_s, PAYROLL_SIZE, "us-east-1", pools)
    # Task: 1 vCPU x $0.04048 + 2 GB x $0.004445 = $0.04937/h; 36 s of one of its 2 slots, no minimum.
    assert cost == pytest.approx(0.04937 * 36 / 3600 / 2)
    arm_spot_pool = {"attendance": warm_pool("FARGATE_SPOT", "ARM64")}
    arm_spot = stats.attempt_cost(ran_36_s, PAYROLL_SIZE, "us-east-1", arm_spot_pool)
    assert arm_spot == pytest.approx((0.03238 + 2 * 0.00356) * 0.3 * 36 / 3600 / 2)


def test_no_warm_estimate_without_its_pool_or_while_running_and_an_unclaimed_offer_costs_nothing() -> None:
    finished = warm_attempt(stopped="2026-11-28T10:00:56.000Z")
    assert stats.attempt_cost(finished, PAYROLL_SIZE, "us-east-1", {}) is None
    assert stats.attempt_cost(warm_attempt(), PAYROLL_SIZE, "us-east-1", {"attendance": warm_pool()}) is None
    unclaimed = warm_attempt(started=None)
    assert stats.attempt_cost(unclaimed, PAYROLL_SIZE, "us-east-1", {"attendance": warm_pool()}) == 0.0


def test_summarize_charges_the_warm_share_to_the_job_that_used_the_pool() -> None:
    warm_then_nothing = job(JobStatus.SUCCEEDED, warm_attempt(stopped="2026-11-28T10:00:56.000Z"))
    [row] = stats.summarize([warm_then_nothing], {}, "us-east-1", {"attendance": warm_pool()})
    assert row.strategy == "WARM" and row.cost_complete
    assert row.cost == pytest.approx(0.04937 * 36 / 3600 / 2)
