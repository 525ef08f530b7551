"""The sweep benchmark's in-memory AWS and its report, at a few jobs and no latency (`make bench` runs
it at 8,000 jobs; tests/reliability/test_sweep_passes.py tests the sweep's passes themselves)."""

from __future__ import annotations

from batchgate.domain.catalog import load_catalog

from bench.sweep_scale import report, sweep_once


def test_the_benchmark_sweeps_its_world_timeouts_first_and_reports_it() -> None:
    catalog = load_catalog()
    runs = [
        sweep_once(
            name,
            catalog=catalog,
            per_status=3,
            threads=threads,
            remaining_seconds=None,
            run_seconds=3600,
            latency=(0.0, 0.0),
        )
        for name, threads in [("serial", 1), ("concurrent", 4)]
    ]
    for run in runs:
        assert run.jobs == 24
        counts = (run.report.examined, run.report.timed_out, run.report.reconciled, run.report.stuck)
        assert counts == (24, 3, 3, 9) and run.report.deferred == 0 and run.report.errors == 0
        assert run.timeouts_first and run.timeouts_done_at is not None and run.first_other_at is not None
        # 8 statuses read (a query and a BatchGetItem each), 2 DescribeTasks, 3 StopTask, 15 writes.
        assert run.requests == 16 + 2 + 3 + 15
    text = report([*runs, *reversed(runs)])  # the small and the large worlds alike here
    assert "| sweep: 24 active jobs, every timeout enforced before anything is reconciled | yes |" in text
    assert text.count("| PASS |") >= 2
