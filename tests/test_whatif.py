"""whatif: the replay's cost and queueing arithmetic on tiny traces computed by hand, the adaptive policy
planning with the dispatcher's own plan_launch, and the qualitative picture on the sample month."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from batchgate.adapters.ec2_capacity import CapacitySnapshot
from batchgate.domain import strategy
from batchgate.domain.catalog import BatchSpec, Catalog, load_catalog
from batchgate.domain.jobs import LaunchPlan
from batchgate.domain.strategy_settings import EC2, FARGATE, FARGATE_SPOT
from batchgate.ops.whatif import sample_trace
from batchgate.ops.whatif.model import DEDICATED, DEFAULT_WHATIF_SETTINGS, WhatIfSettings
from batchgate.ops.whatif.outcome import PolicyOutcome, compare, summarize
from batchgate.ops.whatif.policies import (
    Adaptive,
    AllFargate,
    AllFargateSpot,
    DedicatedServer,
    FixedEc2Fleet,
    Policy,
)
from batchgate.ops.whatif.replay import JobRun, replay
from batchgate.ops.whatif.report import markdown, notes
from batchgate.ops.whatif.trace import Trace, TraceError, TraceJob, load_trace, make_trace, write_trace_csv
from batchgate.services import dispatch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "traces" / "hr-saas-month.csv"
DAY0 = 1_793_836_800.0  # 2026-11-05 00:00 UTC: the tiny traces' window is this one day
# Fargate us-east-1: 1 vCPU x $0.04048 + 2 GB x $0.004445 = $0.04937 per hour.
PAYROLL_HOURLY = 0.04937
# Every random spread off, no container overhead: the arithmetic below is exact.
EXACT = replace(DEFAULT_WHATIF_SETTINGS, start_spread=0.0, container_overhead_seconds=0.0)


def job(
    at: float, run: float, batch: str = "payroll-calculation", cpu: int = 1024, memory: int = 2048
) -> TraceJob:
    return TraceJob(batch=batch, submitted_at=DAY0 + at, cpu=cpu, memory=memory, run_seconds=run)


def run_all(policy: Policy, settings: WhatIfSettings, *jobs: TraceJob) -> tuple[Trace, list[JobRun]]:
    trace = make_trace(jobs, source="hand")
    return trace, replay(trace, policy, settings)


# --- cost and queueing, by hand -----------------------------------------------------------------------


def test_fargate_bills_from_image_pull_start_with_a_one_minute_minimum() -> None:
    settings = replace(EXACT, start_fargate_seconds=50.0, fargate_provisioning_seconds=10.0)
    trace, (short, long) = run_all(AllFargate(), settings, job(0, 5), job(100, 100))
    # Short: launched at 0, pull starts at 10, started at 50, stops at 55: 45 s billed as 60 s.
    assert short.attempts[0].started_at - DAY0 == 50 and short.attempts[0].stopped_at - DAY0 == 55
    assert short.cost_usd == pytest.approx(PAYROLL_HOURLY * 60 / 3600)
    # Long: pull at 110, stop at 100 + 50 + 100 = 250: 140 s billed.
    assert long.cost_usd == pytest.approx(PAYROLL_HOURLY * 140 / 3600)
    assert short.start_latency == 50 and short.queueing_delay == 0
    outcome = summarize(AllFargate(), [short, long], trace, settings)
    assert outcome.fixed_usd == 0 and outcome.task_usd == pytest.approx(PAYROLL_HOURLY * 200 / 3600)
    # The window is one day: a month of 30 days costs 30 times as much.
    assert outcome.month_factor == pytest.approx(30) and outcome.month_usd == pytest.approx(
        outcome.task_usd * 30
    )


def test_a_one_slot_server_makes_the_second_job_wait_for_the_first() -> None:
    settings = replace(EXACT, dedicated_max_jobs=1, start_dedicated_seconds=2.0, dedicated_hour_usd=0.5)
    trace, (first, second) = run_all(DedicatedServer(), settings, job(0, 30), job(10, 5))
    # First: launched 0, running at 2, done at 32. Second, submitted at 10: waits until 32 (22 s),
    # running at 34 (24 s after submission), done at 39.
    assert (first.queueing_delay, first.start_latency, first.turnaround) == (0, 2, 32)
    assert (second.queueing_delay, second.start_latency, second.turnaround) == (22, 24, 29)
    outcome = summarize(DedicatedServer(), [first, second], trace, settings)
    assert outcome.waited == 1 and outcome.task_usd == 0
    assert outcome.fixed_usd == pytest.approx(0.5 * 24)  # paid around the clock for the day
    assert outcome.single_points_of_failure == 1


def test_a_full_ec2_fleet_queues_first_come_first_served() -> None:
    settings = replace(EXACT, ec2_fleet_instances=1, tasks_per_instance=2, start_ec2_seconds=15.0)
    trace, runs = run_all(FixedEc2Fleet(settings), settings, job(0, 10), job(0, 10), job(0, 10), job(1, 10))
    # Two slots: jobs 1 and 2 hold them from 0 to 25 (15 s start + 10 s run). Job 3 waits 25 s; job 4,
    # submitted at 1, waits behind it for the other slot freed at 25: 24 s.
    assert [run.queueing_delay for run in runs] == [0, 0, 25, 24]
    assert [run.start_latency for run in runs] == [15, 15, 40, 39]
    outcome = summarize(FixedEc2Fleet(settings), runs, trace, settings)
    assert outcome.waited == 2 and outcome.runs == {EC2: 4}
    assert outcome.fixed_usd == pytest.approx(0.096 * 24)  # one m5.large for the day
    assert outcome.single_points_of_failure == 1  # a fleet of one instance


def test_instance_memory_limits_a_fleet_before_its_task_cap() -> None:
    settings = replace(EXACT, ec2_fleet_instances=1, tasks_per_instance=10)
    # An m5.large has 8 GB: two 4 GB tasks fill it, the third waits for the first to end at 15 + 60.
    big = [job(0, 60, cpu=512, memory=4096) for _ in range(3)]
    _, runs = run_all(FixedEc2Fleet(settings), settings, *big)
    assert [run.queueing_delay for run in runs] == [0, 0, 75]


def test_a_job_too_big_for_the_server_never_runs_and_blocks_no_one() -> None:
    settings = replace(EXACT, dedicated_memory_gb=1.0)
    trace, runs = run_all(
        DedicatedServer(), settings, job(0, 10, memory=2048), job(1, 10, cpu=256, memory=512)
    )
    assert not runs[0].ran and runs[1].ran and runs[1].queueing_delay == 0
    outcome = summarize(DedicatedServer(), runs, trace, settings)
    assert outcome.not_run == 1 and outcome.jobs == 1
    assert any("never ran" in note for note in notes(trace, [outcome], {}))


def test_an_interrupted_spot_task_runs_again_on_demand_and_both_are_billed() -> None:
    settings = replace(EXACT, spot_interruption_rate=1.0, start_spot_seconds=55.0, start_fargate_seconds=50.0)
    _, (run,) = run_all(AllFargateSpot(), settings, job(0, 600))
    spot, on_demand = run.attempts
    assert (spot.strategy, spot.interrupted, on_demand.strategy, on_demand.interrupted) == (
        FARGATE_SPOT,
        True,
        FARGATE,
        False,
    )
    # Interrupted somewhere in its 600 s run; the on-demand attempt launches at that moment.
    assert spot.started_at - DAY0 == 55 and 55 <= spot.stopped_at - DAY0 <= 655
    assert on_demand.launched_at == spot.stopped_at
    assert run.start_latency == pytest.approx(spot.stopped_at - DAY0 + 50)
    spot_billed = max(60, -(-(spot.stopped_at - DAY0 - 10) // 1))  # pull at 10 s, whole seconds
    assert spot.cost_usd == pytest.approx(PAYROLL_HOURLY * 0.3 * spot_billed / 3600)
    assert on_demand.cost_usd == pytest.approx(PAYROLL_HOURLY * (600 + 40) / 3600)


def test_the_spot_discount_setting_prices_spot() -> None:
    cheap = DEFAULT_WHATIF_SETTINGS.with_overrides(
        {
            "spot_discount": "0.5",
            "spot_interruption_rate": "0",
            "start_spread": "0",
            "container_overhead_seconds": "0",
        }
    )
    _, (run,) = run_all(AllFargateSpot(), cheap, job(0, 600))
    # Pull at 10 s, stop at 55 + 600: 645 s at half the on-demand price.
    assert run.cost_usd == pytest.approx(PAYROLL_HOURLY * 0.5 * 645 / 3600)


def test_the_same_seed_replays_the_same_month() -> None:
    jobs = [job(60.0 * index, 30) for index in range(20)]
    settings = replace(DEFAULT_WHATIF_SETTINGS, spot_interruption_rate=0.5)
    _, first = run_all(AllFargateSpot(), settings, *jobs)
    _, again = run_all(AllFargateSpot(), settings, *jobs)
    _, other = run_all(AllFargateSpot(), replace(settings, seed=8), *jobs)
    assert first == again
    assert [run.attempts for run in first] != [run.attempts for run in other]


# --- settings -----------------------------------------------------------------------------------------


def test_overrides_reach_the_model_and_the_engine_and_name_their_mistakes() -> None:
    settings = DEFAULT_WHATIF_SETTINGS.with_overrides({"ec2_fleet_instances": "3", "short_run_seconds": "90"})
    assert settings.ec2_fleet_instances == 3 and settings.engine.short_run_seconds == 90.0
    with pytest.raises(ValueError, match="unknown setting 'fleet'"):
        DEFAULT_WHATIF_SETTINGS.with_overrides({"fleet": "3"})
    with pytest.raises(ValueError, match="expected int"):
        DEFAULT_WHATIF_SETTINGS.with_overrides({"tasks_per_instance": "two"})
    with pytest.raises(ValueError, match="spot_interruption_rate"):
        DEFAULT_WHATIF_SETTINGS.with_overrides({"spot_interruption_rate": "2"})


def test_measured_start_latency_replaces_the_defaults_unless_set() -> None:
    measured = {EC2: 12.0, FARGATE: 41.0}
    settings = DEFAULT_WHATIF_SETTINGS.with_measured_starts(measured, keep=frozenset({"start_ec2_seconds"}))
    assert settings.start_fargate_seconds == 41.0
    assert settings.start_ec2_seconds == DEFAULT_WHATIF_SETTINGS.start_ec2_seconds
    assert settings.start_spot_seconds == DEFAULT_WHATIF_SETTINGS.start_spot_seconds


# --- trace files ----------------------------------------------------------------------------------------


def test_csv_and_json_lines_traces_read_the_same(tmp_path: Path) -> None:
    jobs = [
        TraceJob("payroll-calculation", DAY0 + 3600, 1024, 2048, 240.5, 0, 0, FARGATE, 48.0),
        TraceJob("leave-balance-sync", DAY0 + 7200, 256, 512, 12.0, 1),
    ]
    csv_path = tmp_path / "trace.csv"
    write_trace_csv(jobs, csv_path)
    lines = [
        {
            "batch": "payroll-calculation",
            "submitted_at": "2026-11-05T01:00:00Z",
            "cpu": 1024,
            "memory": 2048,
            "run_seconds": 240.5,
            "exit_code": 0,
            "strategy": FARGATE,
            "start_seconds": 48,
        },
        {
            "batch": "leave-balance-sync",
            "submitted_at": DAY0 + 7200,
            "cpu": 256,
            "memory": 512,
            "run_seconds": 12,
            "exit_code": 1,
        },
    ]
    jsonl_path = tmp_path / "trace.jsonl"
    jsonl_path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    from_csv, from_jsonl = load_trace(csv_path), load_trace(jsonl_path)
    assert from_csv.jobs == from_jsonl.jobs == tuple(jobs)
    assert (from_csv.window_start, from_csv.window_end) == (DAY0, DAY0 + 86400)  # whole days
    assert from_csv.measured_start_p50() == {FARGATE: 48.0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("batch,submitted_at,cpu\nx,1,1\n", "missing column memory"),
        (
            "batch,submitted_at,cpu,memory,run_seconds,exit_code\nx,yesterday,256,512,10,0\n",
            ":2: submitted_at",
        ),
        ("batch,submitted_at,cpu,memory,run_seconds,exit_code\nx,1,256,512,-1,0\n", "must not be negative"),
        ("batch,submitted_at,cpu,memory,run_seconds,exit_code\nx,1,256,512,ten,0\n", "run_seconds 'ten'"),
        ("batch,submitted_at,cpu,memory,run_seconds,exit_code\n", "no jobs"),
    ],
)
def test_a_bad_trace_names_the_line_and_the_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


# --- the adaptive policy: the dispatcher's plan_launch ----------------------------------------------------


def test_the_adaptive_policy_and_the_dispatcher_share_one_plan_launch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = strategy.plan_launch
    assert vars(dispatch)["plan_launch"] is vars(strategy)["plan_launch"]  # dispatch imports this very one
    calls: list[dict[str, Any]] = []

    def spy(spec: BatchSpec, **options: Any) -> LaunchPlan:
        calls.append({"spec": spec, **options})
        return real(spec, **options)

    monkeypatch.setattr(strategy, "plan_launch", spy)
    catalog = load_catalog()
    settings = replace(EXACT, adaptive_ec2_instances=1, spot_interruption_rate=0.0)
    jobs = [job(0, 12, batch="attendance-import", cpu=512, memory=1024) for _ in range(3)]
    _, runs = run_all(Adaptive(catalog, settings), settings, *jobs)
    assert len(calls) == 3
    # The catalog's entry (interactive: EC2 first) at the trace's size, and the fleet's free capacity:
    # two task slots of one m5.large, taken one after the other.
    assert all(
        call["spec"].launch_class is catalog.batches["attendance-import"].launch_class for call in calls
    )
    snapshots = [call["capacity"] for call in calls]
    assert all(isinstance(snapshot, CapacitySnapshot) for snapshot in snapshots)
    assert [snapshot.slots(512, 1024) for snapshot in snapshots] == [4, 3, 0]
    assert all(call["settings"] is settings.engine for call in calls)
    # Where each one ran is what its plan said: EC2 while a slot was free, then Fargate.
    assert [run.strategy for run in runs] == [EC2, EC2, FARGATE]


@pytest.mark.parametrize("chosen", [FARGATE_SPOT, FARGATE, EC2])
def test_the_plans_strategy_decides_where_a_job_runs(monkeypatch: pytest.MonkeyPatch, chosen: str) -> None:
    def fixed(spec: BatchSpec, **options: Any) -> LaunchPlan:
        return LaunchPlan(strategy=chosen, capacity_provider=chosen, reason="test", fallbacks=(FARGATE,))

    monkeypatch.setattr(strategy, "plan_launch", fixed)
    settings = replace(EXACT, spot_interruption_rate=0.0, adaptive_ec2_instances=1)
    _, runs = run_all(Adaptive(load_catalog(), settings), settings, job(0, 12), job(1000, 12))
    assert [run.strategy for run in runs] == [chosen, chosen]


def test_the_adaptive_policy_learns_history_as_the_track_lambda_records_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = strategy.plan_launch
    seen: list[dict[str, Any]] = []

    def spy(spec: BatchSpec, **options: Any) -> LaunchPlan:
        seen.append(dict(options["history"]))
        return real(spec, **options)

    monkeypatch.setattr(strategy, "plan_launch", spy)
    settings = replace(EXACT, adaptive_ec2_instances=1)
    # A batch not in the catalog: the default launch class (standard, balanced). Cold, its run time is
    # the balanced default (300 s, not short): Fargate. Once enough 12 s runs are measured, it is short
    # and starts faster on warm EC2.
    jobs = [job(600.0 * index, 12, batch="leave-balance-sync", cpu=256, memory=512) for index in range(6)]
    _, runs = run_all(Adaptive(load_catalog(), settings), settings, *jobs)
    assert seen[0] == {}
    third = seen[3][FARGATE]
    assert third.attempts == pytest.approx(3, rel=0.01) and third.run_p95 == pytest.approx(12, rel=0.15)
    # The switch comes once the (decayed) count reaches min_samples, as in dispatch.
    where = [run.strategy for run in runs]
    switch = where.index(EC2)
    assert where == [FARGATE] * switch + [EC2] * (len(where) - switch)
    assert seen[switch][FARGATE].attempts >= settings.engine.min_samples > seen[switch - 1][FARGATE].attempts


def test_an_unknown_default_launch_class_is_refused() -> None:
    with pytest.raises(ValueError, match="default_launch_class 'express'"):
        Adaptive(load_catalog(), replace(DEFAULT_WHATIF_SETTINGS, default_launch_class="express"))


# --- the sample month -------------------------------------------------------------------------------------


def test_the_shipped_sample_is_what_the_generator_writes(tmp_path: Path) -> None:
    generated = tmp_path / "month.csv"
    assert sample_trace.main([str(generated)]) == 0
    assert generated.read_bytes() == SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def month() -> dict[str, PolicyOutcome]:
    catalog: Catalog = load_catalog()
    return {
        outcome.name: outcome for outcome in compare(load_trace(SAMPLE), catalog, DEFAULT_WHATIF_SETTINGS)
    }


def test_the_sample_is_an_hr_saas_month() -> None:
    trace = load_trace(SAMPLE)
    assert 1000 < len(trace.jobs) < 5000 and trace.window_seconds == 30 * 86400
    short = [job for job in trace.jobs if 10 <= job.run_seconds <= 20]
    assert len(short) > 0.7 * len(trace.jobs)
    assert any(job.run_seconds >= 120 for job in trace.jobs)
    by_day: dict[int, int] = {}
    for item in trace.jobs:
        day = int((item.submitted_at - trace.window_start) // 86400)
        by_day[day] = by_day.get(day, 0) + 1
    assert max(by_day, key=lambda day: by_day[day]) >= 26  # the busiest day is at the month's end


def test_the_dedicated_server_starts_fastest_but_is_a_single_point_of_failure(
    month: dict[str, PolicyOutcome],
) -> None:
    dedicated = month["dedicated"]
    on_ecs = {name: other for name, other in month.items() if name not in ("dedicated", "adaptive-warm")}
    assert all(dedicated.start_p50 < other.start_p50 for other in on_ecs.values())
    assert dedicated.single_points_of_failure == 1
    assert all(other.single_points_of_failure == 0 for name, other in month.items() if name != "dedicated")
    # ~10-20 s from submission to done for a short batch.
    assert dedicated.short_turnaround_p50 is not None and 10 <= dedicated.short_turnaround_p50 <= 20


def test_fargate_starts_in_about_50_s_and_a_short_batch_takes_about_90_s(
    month: dict[str, PolicyOutcome],
) -> None:
    fargate = month["fargate"]
    assert 45 <= fargate.start_p50 <= 55 and fargate.waited == 0
    assert fargate.short_turnaround_p50 is not None and 80 <= fargate.short_turnaround_p50 <= 100
    spot = month["fargate-spot"]
    assert spot.task_usd < fargate.task_usd and spot.interruptions > 0


def test_the_fixed_ec2_fleet_starts_in_about_15_s_and_queues_at_peaks(
    month: dict[str, PolicyOutcome],
) -> None:
    fleet = month["ec2-fleet"]
    assert 12 <= fleet.start_p50 <= 18
    assert fleet.short_turnaround_p50 is not None and 45 <= fleet.short_turnaround_p50 <= 70
    assert fleet.waited > 0 and fleet.queueing_p95 > 0
    assert fleet.start_p95 > month["dedicated"].start_p95


def test_the_adaptive_policy_starts_short_batches_faster_than_fargate_for_less_than_always_on_capacity(
    month: dict[str, PolicyOutcome],
) -> None:
    adaptive, fargate = month["adaptive"], month["fargate"]
    assert adaptive.short_start_p50 is not None and fargate.short_start_p50 is not None
    assert adaptive.short_start_p50 < fargate.short_start_p50 / 2
    assert adaptive.waited == 0  # EC2 full: Fargate, never a queue
    assert set(adaptive.runs) >= {EC2, FARGATE}
    assert adaptive.month_usd < month["ec2-fleet"].month_usd < month["dedicated"].month_usd
    assert fargate.month_usd < adaptive.month_usd


def test_the_report_shows_every_policy_and_the_window(month: dict[str, PolicyOutcome]) -> None:
    trace = load_trace(SAMPLE)
    text = markdown(trace, list(month.values()), DEFAULT_WHATIF_SETTINGS, plots=["start-latency-cdf.png"])
    for outcome in month.values():
        assert f"| {outcome.label} | ${outcome.month_usd:,.2f} |" in text
    assert "30.00 days" in text and "![Start latency per policy (CDF)](start-latency-cdf.png)" in text
    assert "| `tasks_per_instance` | 2 |" in text


def test_plots_are_pngs(month: dict[str, PolicyOutcome], tmp_path: Path) -> None:
    from batchgate.ops.whatif.plots import write_plots

    names = write_plots(list(month.values()), tmp_path)
    assert names == ["start-latency-cdf.png", "cost-vs-latency.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dedicated_runs_carry_no_container_overhead() -> None:
    settings = replace(DEFAULT_WHATIF_SETTINGS, start_spread=0.0)
    _, (on_server,) = run_all(DedicatedServer(), settings, job(0, 15))
    _, (on_fargate,) = run_all(AllFargate(), settings, job(0, 15))
    assert on_server.strategy == DEDICATED and on_server.turnaround == pytest.approx(1.5 + 15)
    assert on_fargate.turnaround == pytest.approx(50 + 15 + 25)  # start + work + container overhead


def test_the_warm_pool_finishes_short_batches_near_the_servers_time_for_a_fraction_of_its_cost(
    month: dict[str, PolicyOutcome],
) -> None:
    warm, dedicated = month["adaptive-warm"], month["dedicated"]
    assert warm.short_turnaround_p50 is not None and dedicated.short_turnaround_p50 is not None
    assert warm.short_turnaround_p50 <= 1.25 * dedicated.short_turnaround_p50
    assert warm.short_start_p50 is not None and warm.short_start_p50 <= 2.0
    assert warm.month_usd <= dedicated.month_usd / 4 and warm.fixed_usd == 0.0 and warm.warm_usd > 0
    assert warm.single_points_of_failure == 0 and warm.waited == 0
    assert warm.runs["WARM"] > warm.runs["FARGATE"]
