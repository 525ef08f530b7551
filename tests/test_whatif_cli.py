"""`batchgate whatif`: a trace file or the job table in, the comparison out as a table, JSON, a markdown
report and plots; usage and configuration mistakes exit 2, nothing to replay exits 1."""

from __future__ import annotations

import json
from pathlib import Path

from batchgate.domain.jobs import JobStatus, parse_iso
from batchgate.ops.cli import cli
from batchgate.ops.whatif.policies import POLICY_NAMES
from click.testing import CliRunner, Result

from tests.cli_support import CliHarness, harness, listed_job

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "traces" / "hr-saas-month.csv"
TINY = (
    "batch,submitted_at,cpu,memory,run_seconds,exit_code\n"
    "payroll-calculation,2026-11-05T09:00:00Z,1024,2048,15,0\n"
    "payroll-calculation,2026-11-05T09:00:05Z,1024,2048,240,0\n"
)

__all__ = ["harness"]  # the fixture, imported for pytest


def run(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, ["whatif", *args], catch_exceptions=False)


def test_help_names_the_inputs_and_the_exit_code() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--trace", "--since", "--set", "--out", "--json"):
        assert option in result.stdout
    assert "Exit 1 when there is no job to replay" in result.stdout


def test_a_trace_file_as_json(tmp_path: Path) -> None:
    trace = tmp_path / "tiny.csv"
    trace.write_text(TINY)
    result = run("--trace", str(trace), "--json", "--set", "start_spread=0")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert [policy["policy"] for policy in document["policies"]] == list(POLICY_NAMES)
    fargate = next(policy for policy in document["policies"] if policy["policy"] == "fargate")
    # Fargate's default start, 50 s, for both jobs; nothing waits.
    assert fargate["start_p50_seconds"] == 50.0 and fargate["jobs_waited"] == 0
    assert document["settings"]["start_spread"] == 0.0 and document["window"]["jobs"] == 2
    warm = next(policy for policy in document["policies"] if policy["policy"] == "adaptive-warm")
    assert warm["label"] == "adaptive + warm pool" and "warm_pool_window_usd" in warm
    assert document["settings"]["warm_capacity_provider"] == "FARGATE_SPOT"
    assert document["files"] == []


def test_the_sample_month_writes_the_report_and_the_plots(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run("--trace", str(SAMPLE), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    labels = ("dedicated server", "EC2 fleet of 2", "all Fargate", "all Fargate Spot", "adaptive", "warm")
    for label in labels:
        assert label in result.stdout
    assert "30.00 days" in result.stdout
    report = (out / "report.md").read_text()
    assert "| POLICY | COST/MONTH |" in report and "(start-latency-cdf.png)" in report
    assert (out / "start-latency-cdf.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "cost-vs-latency.png").read_bytes()[:4] == b"\x89PNG"


def test_no_plots_writes_the_report_alone(tmp_path: Path) -> None:
    trace = tmp_path / "tiny.csv"
    trace.write_text(TINY)
    result = run("--trace", str(trace), "--out", str(tmp_path / "out"), "--no-plots")
    assert result.exit_code == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["report.md"]


def test_usage_and_configuration_mistakes_exit_2(tmp_path: Path) -> None:
    trace = tmp_path / "tiny.csv"
    trace.write_text(TINY)
    unknown = run("--trace", str(trace), "--set", "fleet=3")
    assert unknown.exit_code == 2 and "unknown setting 'fleet'" in unknown.stderr
    zone = run("--trace", str(trace), "--set", "warm_timezone=Tokyo")
    assert zone.exit_code == 2 and "warm_timezone 'Tokyo' is not an IANA time zone" in zone.stderr
    malformed = run("--trace", str(trace), "--set", "fleet")
    assert malformed.exit_code == 2 and "is not NAME=VALUE" in malformed.stderr
    both = run("--trace", str(trace), "--since", "7d")
    assert both.exit_code == 2 and "--since reads the job table" in both.stderr
    missing = run("--trace", str(tmp_path / "none.csv"))
    assert missing.exit_code == 2 and "cannot be read" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    assert run("--trace", str(broken)).exit_code == 2


def test_the_job_table_as_input_uses_its_measured_start_latency(harness: CliHarness) -> None:
    # Jobs ran on Fargate with a 20 s start (created -> started) and a 100 s run.
    for number in range(1, 6):
        harness.add(listed_job(number))
    document = harness.json("whatif", "--since", "1h", "--set", "start_spread=0")
    assert document["source"] == f"job table {harness.stack.settings.table_name}"
    assert document["measured_start_p50_seconds"] == {"FARGATE": 20.0}
    assert document["window"]["jobs"] == 5
    fargate = next(policy for policy in document["policies"] if policy["policy"] == "fargate")
    assert fargate["start_p50_seconds"] == 20.0
    # Run times measured in containers: no container overhead added; 1 h window scaled to 30 days.
    assert document["settings"]["container_overhead_seconds"] == 0.0
    dedicated = next(policy for policy in document["policies"] if policy["policy"] == "dedicated")
    assert dedicated["cost_month_usd"] == round(0.384 * 24 * 30, 2)


def test_max_jobs_replays_the_newest_jobs_over_their_own_span(harness: CliHarness) -> None:
    for number in range(1, 7):  # the two newest failed
        harness.add(listed_job(number, JobStatus.FAILED if number <= 2 else JobStatus.SUCCEEDED))
    document = harness.json("whatif", "--since", "1h", "--max-jobs", "3", "--set", "start_spread=0")
    assert document["window"]["jobs"] == 3
    assert document["window"]["start"] == parse_iso(listed_job(3).created_at).timestamp()
    assert any(
        "only the newest 3 jobs" in note and "the replay window starts at 2026-11-28T11:57:00.000Z" in note
        for note in document["notes"]
    )


def test_an_empty_window_has_nothing_to_replay(harness: CliHarness) -> None:
    result = harness.run("whatif", "--since", "1h")
    assert result.exit_code == 1 and "no job to replay" in result.stderr
