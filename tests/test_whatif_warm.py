"""whatif's adaptive-warm policy: plan_launch with a simulated warm pool (slots, schedule in its time zone,
overflow to ECS, boot per run mode, Spot interruptions), the pool's bill over its scheduled hours, and
its settings; by hand on tiny traces."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain import strategy
from batchgate.domain.catalog import BatchSpec, Catalog, load_catalog, parse_catalog
from batchgate.domain.jobs import LaunchPlan
from batchgate.domain.pools import WarmSlots
from batchgate.domain.strategy_settings import FARGATE, WARM
from batchgate.domain.warm import POOL_TASK_STOPPED
from batchgate.ops.whatif.model import DEFAULT_WHATIF_SETTINGS, WHATIF_POOL, WhatIfSettings
from batchgate.ops.whatif.outcome import PolicyOutcome, summarize
from batchgate.ops.whatif.policies import AdaptiveWarm, warm_assignments
from batchgate.ops.whatif.replay import JobRun, replay_with_pools
from batchgate.ops.whatif.trace import TraceJob, make_trace
from batchgate.ops.whatif.warm_pool import DailyTime, WarmPoolRun, task_counts

DAY0 = 1_793_836_800.0  # 2026-11-05 00:00 UTC, a Thursday: the tiny traces' window is this one day
HOUR = 3600.0
# No spread, no container overhead, no Spot at all: the arithmetic below is exact. The pool: 2 tasks of
# 2 slots, 07:00-19:00 UTC, ready 55 s (Spot start) after it opens.
EXACT = replace(
    DEFAULT_WHATIF_SETTINGS,
    start_spread=0.0,
    container_overhead_seconds=0.0,
    spot_interruption_rate=0.0,
    warm_spot_interruptions_per_task_hour=0.0,
)


def catalog_without_pools() -> Catalog:
    """The packaged catalog with its pools taken out: the replay's own pool (warm_* settings) serves."""
    document = json.loads(
        (Path(__file__).resolve().parents[1] / "layers/batchgate/batchgate/catalog.json").read_text()
    )
    document.pop("pools", None)
    for batch in document["batches"].values():
        for field in ("pool", "run_mode", "preload"):
            batch.pop(field, None)
    return parse_catalog(document)


def short(at: float, run: float = 15.0, batch: str = "attendance-import") -> TraceJob:
    return TraceJob(batch=batch, submitted_at=DAY0 + at, cpu=512, memory=1024, run_seconds=run)


def replay_warm(settings: WhatIfSettings, *jobs: TraceJob) -> tuple[list[JobRun], list[WarmPoolRun]]:
    trace = make_trace(jobs, source="hand")
    return replay_with_pools(trace, AdaptiveWarm(catalog_without_pools(), settings, trace.jobs), settings)


# --- planning: the dispatcher's plan_launch, with the pool's slots ---------------------------------------


def test_the_warm_policy_plans_every_launch_with_plan_launch_and_the_pools_free_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = strategy.plan_launch
    calls: list[dict[str, Any]] = []

    def spy(spec: BatchSpec, **options: Any) -> LaunchPlan:
        calls.append({"spec": spec, **options})
        return real(spec, **options)

    monkeypatch.setattr(strategy, "plan_launch", spy)
    runs, _ = replay_warm(EXACT, short(8 * HOUR), short(8 * HOUR + 1))
    assert [call["warm"] for call in calls] == [
        WarmSlots(WHATIF_POOL, free_slots=4, tasks=2, max_run_seconds=90.0),
        WarmSlots(WHATIF_POOL, free_slots=3, tasks=2, max_run_seconds=90.0),
    ]
    assert all(call["spec"].pool == WHATIF_POOL and call["capacity"] is None for call in calls)
    assert [run.strategy for run in runs] == [WARM, WARM]
    # Submit -> dispatch (1 s) -> claim (0.3 s); the job's own 15 s plus the app's boot (command mode).
    assert runs[0].start_latency == pytest.approx(1.0 + 0.3)
    assert runs[0].turnaround == pytest.approx(1.0 + 0.3 + 1.5 + 15)
    assert runs[0].cost_usd == 0.0  # the pool is paid as the pool's line


def test_a_full_pool_overflows_to_the_plans_next_strategy_at_once() -> None:
    runs, _ = replay_warm(EXACT, *(short(8 * HOUR + second) for second in range(5)))
    assert [run.strategy for run in runs] == [WARM, WARM, WARM, WARM, FARGATE]
    assert all(run.queueing_delay == 0 for run in runs)  # never a wait for a slot
    assert runs[4].start_latency == pytest.approx(50.0)


def test_the_pool_is_closed_outside_its_window_in_the_schedules_time_zone() -> None:
    # 09:00-18:00 in Tokyo is 00:00-09:00 UTC.
    tokyo = replace(
        EXACT,
        warm_timezone="Asia/Tokyo",
        warm_window_start="cron(0 9 ? * MON-FRI *)",
        warm_window_end="cron(0 18 ? * MON-FRI *)",
    )
    runs, (pool,) = replay_warm(tokyo, short(0.5 * HOUR), short(8.5 * HOUR), short(10 * HOUR))
    assert [run.strategy for run in runs] == [WARM, WARM, FARGATE]
    assert [(life.launched_at - DAY0, life.stops_at - DAY0) for life in pool.lives] == [(0.0, 9 * HOUR)] * 2
    # Before its tasks are ready (Spot start, 55 s after 09:00 JST) the pool has no slot: ECS.
    early, _ = replay_warm(tokyo, short(30))
    assert early[0].strategy == FARGATE


def test_a_schedule_window_is_read_in_its_zone_and_days() -> None:
    spec = replace(
        DEFAULT_WHATIF_SETTINGS, warm_timezone="Asia/Tokyo", warm_window_start="cron(0 9 ? * MON-FRI *)"
    ).warm_pool_spec()
    # Saturday 2026-11-07 and Sunday (UTC): closed; Monday 09:00 JST is Monday 00:00 UTC.
    saturday = DAY0 + 2 * 86400
    counts = task_counts(spec, saturday, saturday + 3 * 86400)
    assert [(begin - saturday, tasks) for begin, _, tasks in counts] == [
        (0.0, 0),
        (2 * 86400 + 0 * HOUR, 2),  # Mon 09:00 JST = Mon 00:00 UTC
        (2 * 86400 + 10 * HOUR, 0),  # 19:00 JST = 10:00 UTC
    ]
    assert DailyTime.parse("cron(30 8 ? * 2-6 *)").days == frozenset({"MON", "TUE", "WED", "THU", "FRI"})


# --- the pool's bill ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "architecture", "hourly"),
    [
        ("FARGATE", "X86_64", 0.04048 + 2 * 0.004445),
        ("FARGATE", "ARM64", 0.03238 + 2 * 0.00356),
        ("FARGATE_SPOT", "X86_64", (0.04048 + 2 * 0.004445) * 0.3),
        ("FARGATE_SPOT", "ARM64", (0.03238 + 2 * 0.00356) * 0.3),
    ],
)
def test_the_pool_is_billed_for_its_scheduled_hours(provider: str, architecture: str, hourly: float) -> None:
    settings = replace(EXACT, warm_capacity_provider=provider, warm_architecture=architecture)
    trace = make_trace([short(8 * HOUR)], source="hand")
    policy = AdaptiveWarm(catalog_without_pools(), settings, trace.jobs)
    runs, pools = replay_with_pools(trace, policy, settings)
    outcome: PolicyOutcome = summarize(policy, runs, trace, settings, pools)
    # Two tasks 07:00-19:00 (one weekday), each billed from its image pull (10 s after launch) to stop.
    assert outcome.warm_usd == pytest.approx(2 * hourly * (12 * HOUR - 10) / 3600)
    assert outcome.fixed_usd == 0.0  # no EC2 instance by default
    assert outcome.window_usd == pytest.approx(outcome.warm_usd)


# --- boot, per run mode ---------------------------------------------------------------------------------


def test_command_mode_boots_the_app_per_job_and_preload_once_per_task_start() -> None:
    command, (command_pool,) = replay_warm(EXACT, short(8 * HOUR))
    preload, (preload_pool,) = replay_warm(replace(EXACT, warm_run_mode="preload"), short(8 * HOUR))
    assert command[0].turnaround - command[0].start_latency == pytest.approx(15 + 1.5)
    assert preload[0].turnaround - preload[0].start_latency == pytest.approx(15)
    # The preload parent imports once, before the task's slots open.
    assert command_pool.lives[0].ready_at - command_pool.lives[0].launched_at == pytest.approx(55)
    assert preload_pool.lives[0].ready_at - preload_pool.lives[0].launched_at == pytest.approx(55 + 1.5)


# --- Spot interruptions of pool tasks -------------------------------------------------------------------


def test_a_job_on_an_interrupted_pool_task_is_retried_on_ecs() -> None:
    # Interruptions every ~2 minutes, no grace: jobs running on an interrupted task are stopped.
    stormy = replace(EXACT, warm_spot_interruptions_per_task_hour=30.0, warm_stop_grace_seconds=0.0)
    jobs = [short(8 * HOUR + 600 * index, run=80) for index in range(20)]
    runs, (pool,) = replay_warm(stormy, *jobs)
    assert pool.interruptions() > 0
    cut = [run for run in runs if run.attempts[0].strategy == WARM and run.attempts[0].interrupted]
    assert cut, "some job ran on a task that was interrupted"
    for run in cut:
        assert [attempt.strategy for attempt in run.attempts] == [WARM, FARGATE]
        assert run.attempts[1].launched_at == run.attempts[0].stopped_at
    # With the stop timeout's grace, an 80 s job finishes on its interrupted task.
    graceful, _ = replay_warm(replace(stormy, warm_stop_grace_seconds=120.0), *jobs)
    assert all(len(run.attempts) == 1 for run in graceful)


def test_the_retry_after_a_stopped_pool_task_is_planned_with_its_stop_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = strategy.plan_launch
    codes: list[str | None] = []

    def spy(spec: BatchSpec, **options: Any) -> LaunchPlan:
        codes.append(options["previous_stop_code"])
        return real(spec, **options)

    monkeypatch.setattr(strategy, "plan_launch", spy)
    stormy = replace(EXACT, warm_spot_interruptions_per_task_hour=30.0, warm_stop_grace_seconds=0.0)
    replay_warm(stormy, *(short(8 * HOUR + 600 * index, run=80) for index in range(20)))
    assert POOL_TASK_STOPPED in codes


# --- which batches go warm ------------------------------------------------------------------------------


def test_short_batches_go_to_the_pool_by_their_measured_run_time_and_catalog_pools_always() -> None:
    catalog = catalog_without_pools()
    jobs = [
        short(0, run=15),
        short(1, run=14, batch="leave-balance-sync"),
        short(2, run=240, batch="report-export"),
        short(3, run=200, batch="payroll-calculation"),
    ]
    assert warm_assignments(catalog, DEFAULT_WHATIF_SETTINGS, jobs) == {
        "attendance-import": WHATIF_POOL,
        "leave-balance-sync": WHATIF_POOL,
    }
    assert warm_assignments(catalog, replace(DEFAULT_WHATIF_SETTINGS, warm_batches="catalog"), jobs) == {}
    named = replace(DEFAULT_WHATIF_SETTINGS, warm_batches="report-export")
    assert warm_assignments(catalog, named, jobs) == {"report-export": WHATIF_POOL}
    # A batch whose catalog entry names a pool always uses that pool (the packaged attendance pool).
    packaged = load_catalog()
    assert warm_assignments(packaged, DEFAULT_WHATIF_SETTINGS, jobs)["attendance-import"] == "attendance"


# --- settings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("warm_capacity_provider", "EC2", "warm_capacity_provider must be one of FARGATE, FARGATE_SPOT"),
        ("warm_architecture", "SPARC", "warm_architecture must be one of ARM64, X86_64"),
        ("warm_run_mode", "fork", "warm_run_mode must be one of command, preload"),
        ("warm_timezone", "Mars/Olympus", "warm_timezone 'Mars/Olympus' is not an IANA time zone"),
        ("warm_window_start", "cron(0 9 1 * ? *)", "warm_window_start: .*cron\\(M H \\? \\* DAYS \\*\\)"),
        ("warm_window_end", "cron(0 25 ? * MON-FRI *)", "warm_window_end: .*hour 0-23"),
        ("warm_slots", "0", "warm_slots must be from 1 to 16"),
        ("warm_slots", "two", "setting warm_slots='two': expected int"),
        ("warm_memory", "512", "warm_cpu 1024 with warm_memory 512 is not a valid Fargate task size"),
        ("warm_max_run_seconds", "300", "warm_max_run_seconds must be from 1 to 110"),
        ("warm_stop_grace_seconds", "-1", "warm_stop_grace_seconds must not be negative"),
        ("warm_availability_zones", "0", "warm_availability_zones must be at least 1"),
    ],
)
def test_bad_warm_settings_are_refused_with_the_setting_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DEFAULT_WHATIF_SETTINGS.with_overrides({name: value})


def test_good_warm_settings_reach_the_pool() -> None:
    settings = DEFAULT_WHATIF_SETTINGS.with_overrides(
        {"warm_pool_tasks": "3", "warm_capacity_provider": "FARGATE", "warm_architecture": "X86_64"}
    )
    spec = settings.warm_pool_spec()
    assert (spec.windows[0].tasks, spec.capacity_provider, spec.architecture) == (3, "FARGATE", "X86_64")


def test_a_pool_of_one_task_is_a_single_point_of_failure() -> None:
    trace = make_trace([short(8 * HOUR)], source="hand")
    one = replace(EXACT, warm_pool_tasks=1)
    assert AdaptiveWarm(catalog_without_pools(), one, trace.jobs).single_points_of_failure(one)[0] == 1
    one_zone = replace(EXACT, warm_availability_zones=1)
    assert (
        AdaptiveWarm(catalog_without_pools(), one_zone, trace.jobs).single_points_of_failure(one_zone)[0] == 1
    )
    assert AdaptiveWarm(catalog_without_pools(), EXACT, trace.jobs).single_points_of_failure(EXACT)[0] == 0


def test_plots_draw_the_warm_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from batchgate.ops.whatif.outcome import compare
    from batchgate.ops.whatif.plots import write_plots
    from matplotlib.axes import Axes

    labels: list[str] = []
    real_step, real_annotate = Axes.step, Axes.annotate

    def step(self: Axes, *args: Any, **kwargs: Any) -> Any:
        labels.append(kwargs["label"])
        return real_step(self, *args, **kwargs)

    def annotate(self: Axes, text: str, *args: Any, **kwargs: Any) -> Any:
        labels.append(text)
        return real_annotate(self, text, *args, **kwargs)

    monkeypatch.setattr(Axes, "step", step)
    monkeypatch.setattr(Axes, "annotate", annotate)
    outcomes = compare(make_trace([short(8 * HOUR)], source="hand"), catalog_without_pools(), EXACT)
    write_plots(outcomes, tmp_path)
    assert labels.count("adaptive + warm pool") == 2  # the CDF's line and the cost plot's point
