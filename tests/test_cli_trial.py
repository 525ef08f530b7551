"""The `batchgate` CLI as a new user met it: results alone on stdout, closed pipes, AWS CLI habits, typos
in batch names, and what each listing leaves out."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shlex
import sys
from importlib import resources
from typing import Any

import pytest
from batchgate.adapters.telemetry import logger as service_logger
from batchgate.domain.jobs import Job, JobStatus, job_id_for
from batchgate.ops import logs as logs_module
from batchgate.ops.cli import AppContext, cli

from tests.cli_support import LOG_GROUP, USER, CliHarness, harness, listed_job

__all__ = ["harness"]  # the fixture, imported for pytest


class _ProcessStdout:
    """The process's stdout as the Powertools handler holds it in a real run of the command (a test
    runner swaps sys.stdout per command)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def service_logs_on_stdout() -> Any:
    handler = service_logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(_ProcessStdout())
    yield
    if previous is not None:
        handler.setStream(previous)


# --- 1. nothing but the result on stdout ---------------------------------------------------------------


def test_cancel_json_is_the_only_thing_on_stdout(harness: CliHarness, service_logs_on_stdout: Any) -> None:
    harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "payroll-2026-11-acme")
    [job_id] = harness.dispatch_queued()
    result = harness.run("cancel", job_id, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "CANCELLED"
    assert '"message":"job cancelled"' in result.stderr
    # The Lambda functions' handler is left writing where it did.
    assert isinstance(service_logger.registered_handler, logging.StreamHandler)
    assert isinstance(service_logger.registered_handler.stream, _ProcessStdout)


# --- 2. a job of several attempts ----------------------------------------------------------------------


def three_attempt_job() -> Job:
    """Attempt 1 failed to start, attempt 2 lost its Spot capacity, attempt 3 succeeded."""
    base = listed_job(1, JobStatus.SUCCEEDED)
    [done] = base.attempts
    first = done._replace(number=1, exit_code=None, stop_code="TaskFailedToStart", stopped_reason="no ENI")
    second = done._replace(number=2, strategy="FARGATE_SPOT", exit_code=143, stop_code="SpotInterruption")
    return base._replace(attempts=(first, second, done._replace(number=3)))


def test_show_says_which_attempt_followed_and_the_rule_that_caused_it(harness: CliHarness) -> None:
    job = harness.add(three_attempt_job())
    document = harness.json("show", job.job_id)
    first, second, third = document["attempts"]
    assert "Attempt 1 was followed by attempt 2." in first["outcome"]["explanations"]
    assert "Attempt 2 was followed by attempt 3." in second["outcome"]["explanations"]
    infrastructure = "RETRY when stop code is SpotInterruption or TaskFailedToStart or TerminationNotice"
    assert first["retried_by"] == f"default rule {infrastructure} (exit code -, stop code TaskFailedToStart)"
    assert (
        second["retried_by"] == f"default rule {infrastructure} (exit code 143, stop code SpotInterruption)"
    )
    assert third["retried_by"] is None
    text = harness.ok("show", job.job_id).stdout
    assert f"retried  by the default rule {infrastructure} (exit code -, stop code TaskFailedToStart)" in text
    assert text.count("retried  by the") == 2


def test_show_names_the_batchs_own_retry_rule(
    harness: CliHarness, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = json.loads(resources.files("batchgate").joinpath("catalog.json").read_text())
    catalog["batches"]["payroll-calculation"]["retry"] = {"rules": [{"action": "RETRY", "exit_codes": [143]}]}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    monkeypatch.setenv("BATCHGATE_CATALOG", str(path))
    job = harness.add(three_attempt_job())
    second = harness.json("show", job.job_id)["attempts"][1]
    assert (
        second["retried_by"]
        == "batch rule RETRY when exit code is 143 (exit code 143, stop code SpotInterruption)"
    )


# --- 3. a closed pipe, Ctrl-C --------------------------------------------------------------------------


class _ClosedPipe(io.TextIOBase):
    """stdout after `| head -1` has read its line and exited: every write fails with EPIPE."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def run_into_closed_pipe(harness: CliHarness, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, str]:
    """The command as the console script runs it (click's standalone mode: its exit code and what it
    writes to stderr), its stdout a closed pipe."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    monkeypatch.setattr(sys, "stderr", stderr)
    context = AppContext(clock=lambda: harness.now, user=USER)
    with pytest.raises(SystemExit) as exited:
        cli.main([*harness.target_args(), *args], obj=context, prog_name="batchgate")
    return exited.value.code, stderr.getvalue()


@pytest.mark.parametrize("command", ["show", "logs"])
def test_a_closed_pipe_is_not_an_error(
    harness: CliHarness, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    job = harness.add(listed_job(1, JobStatus.FAILED))
    attempt = job.attempts[0]._replace(log_group=LOG_GROUP, log_stream="batch/payroll/1")
    job = harness.add(listed_job(2, JobStatus.SUCCEEDED)._replace(attempts=(attempt,)))
    harness.write_logs("batch/payroll/1", "line 1", "line 2")
    code, stderr = run_into_closed_pipe(harness, monkeypatch, command, job.job_id)
    assert code == 0
    assert stderr == ""


def test_ctrl_c_while_following_logs_exits_130(harness: CliHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    job = harness.add(listed_job(1, JobStatus.RUNNING))

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(logs_module, "pause", interrupted)
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    context = AppContext(clock=lambda: harness.now, user=USER)
    with pytest.raises(SystemExit) as exited:
        cli.main([*harness.target_args(), "logs", job.job_id, "--follow"], obj=context, prog_name="batchgate")
    assert exited.value.code == 130
    assert "Aborted" not in stderr.getvalue()


# --- 4. AWS CLI habits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["jobs"], ["stats"], ["dlq", "list"], ["show", "JOB"], ["logs", "JOB"]])
def test_output_json_is_json_and_table_is_the_human_output(harness: CliHarness, command: list[str]) -> None:
    attempt = listed_job(1).attempts[0]._replace(log_group=LOG_GROUP, log_stream="batch/payroll/1")
    job = harness.add(listed_job(1)._replace(attempts=(attempt,)))
    harness.write_logs("batch/payroll/1", "line 1")
    arguments = [job.job_id if word == "JOB" else word for word in command]
    with_json = harness.ok(*arguments, "--json")
    assert harness.ok(*arguments, "--output", "json").stdout == with_json.stdout
    human = harness.ok(*arguments).stdout
    assert human != with_json.stdout
    assert harness.ok(*arguments, "--output", "table").stdout == human
    assert harness.ok(*arguments, "--output", "TEXT").stdout == human


def test_output_contradicting_json_is_a_usage_error(harness: CliHarness) -> None:
    result = harness.run("jobs", "--json", "--output", "text")
    assert result.exit_code == 2 and "--json and --output text contradict" in result.stderr


def test_jobs_all_follows_next_to_the_end(harness: CliHarness) -> None:
    for number in range(1, 8):
        harness.add(listed_job(number, JobStatus.SUCCEEDED if number % 2 else JobStatus.FAILED))
    document = harness.json("jobs", "--limit", "2", "--all")
    assert len(document["jobs"]) == 7 and document["next"] is None
    assert [job["queued"] for job in document["jobs"]] == sorted(
        (job["queued"] for job in document["jobs"]), reverse=True
    )
    text = harness.ok("jobs", "--limit", "2", "--all").stdout
    assert "more jobs" not in text and text.count("  payroll-calculation  ") == 7


# --- 5. a batch name the catalog does not know ---------------------------------------------------------


@pytest.mark.parametrize("command", [["jobs"], ["stats"], ["show"], ["logs"]])
def test_a_batch_not_in_the_catalog_is_a_usage_error_naming_the_nearest(
    harness: CliHarness, command: list[str]
) -> None:
    harness.add(listed_job(1))
    result = harness.run(*command, "--batch", "payroll-calculaton")
    assert result.exit_code == 2, result.stdout
    assert "'payroll-calculaton' is not a batch of the catalog; did you mean payroll-calculation?" in (
        result.stderr
    )
    assert result.stdout == ""
    nothing_near = harness.run(*command, "--batch", "nosuch")
    assert nothing_near.exit_code == 2
    assert "its batches: attendance-import, payroll-calculation, report-export" in nothing_near.stderr


def test_a_real_batch_without_jobs_still_says_so(harness: CliHarness) -> None:
    for command in ("jobs", "stats"):
        result = harness.run(command, "--batch", "attendance-import")
        assert result.exit_code == 0 and result.stdout.startswith("No jobs found")


# --- 6. show --batch --at: how far the job found is ----------------------------------------------------


def test_show_at_says_how_far_the_job_found_is_and_refuses_past_within(harness: CliHarness) -> None:
    harness.add(listed_job(1, minutes_ago=18 * 24 * 60))  # queued 18 days before NOW
    at = ["show", "--batch", "payroll-calculation", "--at", "2026-11-28T12:00:00Z"]
    refused = harness.run(*at)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "queued 18d 00h earlier, more than --within 1d 00h" in refused.stderr
    wider = harness.run(*at, "--within", "30d")
    assert wider.exit_code == 0
    assert "queued 18d 00h before it" in wider.stderr
    assert harness.run(*at, "--within", "any", "--json").exit_code == 0
    assert harness.run(*at, "--within", "2026-11-01").exit_code == 2


def test_show_at_near_the_time_says_how_far_too(harness: CliHarness) -> None:
    harness.add(listed_job(130))  # 09:50
    result = harness.run("show", "--batch", "payroll-calculation", "--at", "2026-11-28T10:00:00Z", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["job_id"] == listed_job(130).job_id
    assert (
        "the latest job of batch payroll-calculation at or before 2026-11-28T10:00:00.000Z, queued 10m 00s"
        in (result.stderr)
    )


# --- 7. jobs: reasons, not-ok, comma lists -------------------------------------------------------------


def test_jobs_shows_a_shortened_reason(harness: CliHarness) -> None:
    reason = "exit code 137; EssentialContainerExited; Essential container in task exited (OutOfMemoryError)"
    job = harness.add(listed_job(1, JobStatus.FAILED)._replace(reason=reason))
    [row] = harness.json("jobs")["jobs"]
    assert row["reason"] == reason
    text = harness.ok("jobs").stdout
    assert "REASON" in text.splitlines()[0]
    [line] = [line for line in text.splitlines() if job.job_id in line]
    assert line.rstrip().endswith("exit code 137; EssentialContainerExited; Essent\u2026")


def test_jobs_status_not_ok_and_comma_lists(harness: CliHarness) -> None:
    for number, status in enumerate(
        (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.REJECTED, JobStatus.CANCELLED),
        start=1,
    ):
        harness.add(listed_job(number, status))

    def statuses(*options: str) -> list[str]:
        return [row["status"] for row in harness.json("jobs", *options)["jobs"]]

    assert statuses("--status", "not-ok") == ["FAILED", "TIMED_OUT", "REJECTED", "CANCELLED"]
    assert statuses("--status", "failed,TIMED_OUT") == ["FAILED", "TIMED_OUT"]
    assert statuses("--status", "FAILED", "--status", "cancelled") == ["FAILED", "CANCELLED"]
    by_batch = statuses("--batch", "payroll-calculation", "--status", "not-ok")
    assert by_batch == ["FAILED", "TIMED_OUT", "REJECTED", "CANCELLED"]
    wrong = harness.run("jobs", "--status", "FAILED,broken")
    assert wrong.exit_code == 2 and "'broken' is not a status" in wrong.stderr and "not-ok" in wrong.stderr


# --- 8. stats: every end status, and a legend ----------------------------------------------------------


def test_stats_has_a_column_per_end_status_and_explains_the_no_strategy_row(harness: CliHarness) -> None:
    harness.add(listed_job(1, JobStatus.SUCCEEDED))
    harness.add(listed_job(2, JobStatus.FAILED))
    harness.add(listed_job(3, JobStatus.TIMED_OUT))
    harness.add(listed_job(4, JobStatus.CANCELLED)._replace(attempts=(), plan=None))
    harness.add(listed_job(5, JobStatus.REJECTED))
    document = harness.json("stats")
    names = ("jobs", "succeeded", "failed", "timed_out", "cancelled", "rejected")
    counts = {row["strategy"]: [row[name] for name in names] for row in document["rows"]}
    assert counts == {"FARGATE": [3, 1, 1, 1, 0, 0], "-": [2, 0, 0, 0, 1, 1]}
    human = harness.ok("stats").stdout
    header = human.splitlines()[0]
    for column in ("OK", "FAILED", "TIMED OUT", "CANCELLED", "REJECTED", "RUNNING"):
        assert column in header
    no_strategy = next(line for line in human.splitlines() if "  -  " in line)
    assert no_strategy.split()[2:8] == ["2", "0", "0", "0", "1", "1"]
    assert "strategy -: jobs that never had an attempt" in human
    assert "SUCCESS: OK / (OK + FAILED + TIMED OUT)" in human


# --- 9. retry of a job that succeeded ------------------------------------------------------------------


def test_retry_of_a_succeeded_job_needs_force(harness: CliHarness) -> None:
    done = harness.add(listed_job(1, JobStatus.SUCCEEDED))
    refused = harness.run("retry", done.job_id)
    assert refused.exit_code == 1
    assert f"job {done.job_id} SUCCEEDED: retrying it runs the batch again" in refused.stderr
    assert "--force" in refused.stderr
    assert harness.queued_bodies() == []
    forced = harness.json("retry", done.job_id, "--force")
    assert forced["retry_of"] == done.job_id
    [body] = harness.queued_bodies()
    assert body["idempotency_key"] == f"retry-of:{done.job_id}:1"


# --- 10. submit's hint points at the same stack --------------------------------------------------------


def test_submit_hint_carries_the_target_options_and_works_pasted(harness: CliHarness) -> None:
    result = harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "hint")
    [hint] = [line for line in result.stdout.splitlines() if line.startswith("follow it with: ")]
    words = shlex.split(hint.removeprefix("follow it with: "))
    assert words[:3] == ["batchgate", "show", job_id_for("payroll-calculation", "hint")]
    assert words[3:] == harness.target_args()
    harness.dispatch_queued()
    assert harness.run(*words[1:], target=False).exit_code == 0


# --- 12. whatif on a CSV with the wrong columns --------------------------------------------------------


def test_whatif_names_the_files_columns_and_the_expected_ones(harness: CliHarness, tmp_path: Any) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("name,queued,seconds\nx,2026-11-01T00:00:00Z,10\n")
    result = harness.run("whatif", "--trace", str(path), "--no-plots")
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert "missing column batch, submitted_at, cpu, memory, run_seconds, exit_code" in result.stderr
    assert "the file's columns: name, queued, seconds" in result.stderr
    assert "expected: batch, submitted_at, cpu, memory, run_seconds, exit_code (optional: " in result.stderr


# --- 11. dlq redrive on the local stack ----------------------------------------------------------------


def test_dlq_redrive_on_the_local_stack_sends_track_events_to_the_track_hosts_queue(
    harness: CliHarness, tmp_path: Any
) -> None:
    """The local stack's state names the queue its track host reads (EventBridge's target there):
    redrive needs no --track-function, which the local stack could not invoke anyway."""
    sqs = harness.sqs
    host_queue = sqs.create_queue(QueueName="batchgate-local-TrackFunction-ecs")["QueueUrl"]
    state = tmp_path / "local.json"
    state.write_text(
        json.dumps(
            {
                "region": "us-east-1",
                "table_name": harness.stack.settings.table_name,
                "queue_url": harness.queue_url,
                "dlq_urls": {
                    "jobs": harness.jobs_dlq_url,
                    "track": harness.track_dlq_url,
                    "history": harness.history_dlq_url,
                },
                "event_queues": {"track": host_queue},
                "pid": os.getpid(),
            }
        )
    )
    event = {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {"lastStatus": "RUNNING"}}
    record = {"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": event}
    sqs.send_message(QueueUrl=harness.track_dlq_url, MessageBody=json.dumps(record))
    history_letter = sqs.send_message(QueueUrl=harness.history_dlq_url, MessageBody="{}")["MessageId"]
    result = harness.run(
        "--local", "--local-state", str(state), "dlq", "redrive", "--yes", "--json", target=False
    )
    assert result.exit_code == 0, result.stderr
    results = {entry["queue"]: entry for entry in json.loads(result.stdout)["results"]}
    assert {name: entry["moved"] for name, entry in results.items()} == {"jobs": 0, "track": 1}
    assert results["track"]["destination"] == host_queue
    assert "history DLQ: left out (the local stack cannot invoke the history function" in result.stderr
    [delivered] = sqs.receive_message(QueueUrl=host_queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(delivered["Body"]) == event
    assert sqs.receive_message(QueueUrl=harness.track_dlq_url).get("Messages", []) == []
    kept = sqs.receive_message(QueueUrl=harness.history_dlq_url)["Messages"]
    assert [message["MessageId"] for message in kept] == [history_letter]
