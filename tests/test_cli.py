"""The `batchgate` CLI end to end against moto: every command, human and --json output, empty results,
unknown jobs, pagination and exit codes."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from batchgate.domain.jobs import JobStatus, job_id_for
from batchgate.domain.messages import SubmitMessage
from batchgate.domain.pricing import TaskSize
from batchgate.domain.relaunch import KIND_ATTRIBUTE, RETRY_KIND, Relaunch
from batchgate.ops import logs as logs_module
from batchgate.ops.cli import BatchgateGroup, cli
from batchgate.ops.dead_letters import JOBS, DeadLetterQueue, DeadLetters, RedriveStopped
from batchgate.ops.job_search import DEFAULT_QUERY_BUDGET
from batchgate.ops.whatif.trace import trace_from_jobs
from batchgate.services.dispatch import DispatchResult
from botocore.exceptions import ClientError
from click.testing import CliRunner

from tests.cli_support import LOG_GROUP, NOW, USER, CliHarness, harness, listed_job
from tests.conftest import REGION, event_fixture

__all__ = ["harness"]  # the fixture, imported for pytest

PAYROLL_JOB = job_id_for("payroll-calculation", "payroll-2026-11-acme")
EXIT_1_TASK = event_fixture("task-stopped-exit-1.json")["detail"]["taskArn"]
EXIT_1_STREAM = f"batch/payroll/{EXIT_1_TASK.rsplit('/', 1)[-1]}"


def failed_payroll_job(harness: CliHarness) -> str:
    """The payroll job submitted through the CLI, dispatched at 11:20:00Z and stopped with exit code 1."""
    harness.ok(
        "submit",
        "payroll-calculation",
        "2026-11",
        "--idempotency-key",
        "payroll-2026-11-acme",
        "--env",
        "LOG_LEVEL=INFO",
    )
    at = NOW.replace(hour=11, minute=20)
    assert harness.dispatch_queued(task_arn=EXIT_1_TASK, at=at) == [PAYROLL_JOB]
    harness.track("task-stopped-exit-1.json")
    return PAYROLL_JOB


# --- help and usage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["submit"],
        ["jobs"],
        ["show"],
        ["logs"],
        ["stats"],
        ["whatif"],
        ["cancel"],
        ["retry"],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "redrive"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")
    assert "--json" in result.stdout or command in ([], ["dlq"])


def test_group_help_lists_commands_and_exit_codes() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["--help"])
    for name in ("submit", "jobs", "show", "logs", "stats", "cancel", "retry", "dlq"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.MULTILINE), name
    assert "Exit codes: 0 ok; 1 job not found" in result.stdout
    assert "--stack" in result.stdout and "--config-env" in result.stdout and "--local" in result.stdout


def test_optional_command_groups_load_only_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = {"again": ("batchgate.ops.cli.jobs", "jobs"), "absent": ("batchgate.no_such_module", "group")}
    monkeypatch.setattr(BatchgateGroup, "lazy_commands", lazy)
    runner = CliRunner(mix_stderr=False)
    listing = runner.invoke(cli, ["--help"]).stdout
    assert re.search(r"^\s+again\s", listing, re.MULTILINE)
    assert "absent" not in listing
    assert runner.invoke(cli, ["again", "--help"]).stdout.startswith("Usage: cli again")
    missing = runner.invoke(cli, ["absent"])
    assert missing.exit_code == 2 and "No such command 'absent'" in missing.stderr


def test_unknown_option_is_a_usage_error(harness: CliHarness) -> None:
    result = harness.run("jobs", "--colour", "red")
    assert result.exit_code == 2
    assert "No such option: --colour" in result.stderr


def test_no_stack_at_all_is_a_configuration_error(harness: CliHarness) -> None:
    result = harness.run("jobs", target=False)
    assert result.exit_code == 2
    assert "no stack given" in result.stderr and "--table" in result.stderr


# --- submit -------------------------------------------------------------------------------------------


def test_submit_with_a_key_prints_the_job_id_and_sends_the_apps_message(harness: CliHarness) -> None:
    result = harness.ok(
        "submit",
        "payroll-calculation",
        "2026-11",
        "acme",
        "--idempotency-key",
        "payroll-2026-11-acme",
        "--env",
        "LOG_LEVEL=DEBUG",
        "--priority",
        "5",
        "--strategy",
        "FARGATE",
    )
    assert result.stdout.splitlines()[0] == PAYROLL_JOB
    [body] = harness.queued_bodies()
    body.pop("id")
    expected = SubmitMessage(
        batch="payroll-calculation",
        arguments=("2026-11", "acme"),
        environment={"LOG_LEVEL": "DEBUG"},
        idempotency_key="payroll-2026-11-acme",
        priority=5,
        strategy="FARGATE",
    )
    assert body == json.loads(expected.to_json())


def test_submit_without_a_key_prints_the_id_derived_from_the_message_id(harness: CliHarness) -> None:
    document = harness.json("submit", "report-export", "headcount", "--deadline", "6h")
    assert document["job_id_from"] == "message_id"
    assert document["job_id"] == job_id_for("report-export", document["message_id"])
    # The job dispatch creates for that message has exactly the printed id.
    assert harness.dispatch_queued() == [document["job_id"]]
    job = harness.stack.table.get(document["job_id"])
    assert job is not None and job.message_id == document["message_id"]
    assert job.deadline == "2026-11-28T18:00:00.000Z" and job.arguments == ("headcount",)


def test_submit_human_output_explains_a_derived_id(harness: CliHarness) -> None:
    result = harness.ok("submit", "report-export", "headcount")
    assert "derived from the SQS message id" in result.stdout
    assert result.stdout.splitlines()[0].startswith("bg-report-export-")


def test_submit_refuses_what_dispatch_would_reject(harness: CliHarness) -> None:
    result = harness.run("submit", "payrol", "2026-11")
    assert result.exit_code == 2
    assert "dispatch would reject this job" in result.stderr and "payrol" in result.stderr
    assert harness.queued_bodies() == []
    bad_env = harness.run("submit", "payroll-calculation", "2026-11", "--env", "NOEQUALS")
    assert bad_env.exit_code == 2 and "NAME=VALUE" in bad_env.stderr
    past = harness.run("submit", "payroll-calculation", "2026-11", "--deadline", "2026-11-28T11:00:00Z")
    assert past.exit_code == 2 and "2026-11-28T11:00:00.000Z has already passed" in past.stderr
    assert harness.queued_bodies() == []


# --- jobs ---------------------------------------------------------------------------------------------


def test_jobs_on_an_empty_table(harness: CliHarness) -> None:
    assert harness.json("jobs") == {"jobs": [], "next": None}
    result = harness.ok("jobs", "--status", "failed", "--batch", "payroll-calculation")
    assert result.stdout.strip() == "No jobs found with status FAILED of batch payroll-calculation."


def test_jobs_lists_newest_first_with_the_columns(harness: CliHarness) -> None:
    harness.add(listed_job(1, JobStatus.FAILED))
    harness.add(listed_job(2, JobStatus.SUCCEEDED, batch="report-export"))
    harness.add(listed_job(3, JobStatus.RUNNING))
    document = harness.json("jobs")
    assert [row["job_id"] for row in document["jobs"]] == [
        listed_job(1).job_id,
        listed_job(2, batch="report-export").job_id,
        listed_job(3).job_id,
    ]
    first = document["jobs"][0]
    assert first["status"] == "FAILED" and first["exit_code"] == 1 and first["strategy"] == "FARGATE"
    assert first["start_latency_seconds"] == 20.0 and first["run_time_seconds"] == 100.0
    assert first["queued"] == "2026-11-28T11:59:00.000Z"
    # Still running: queued 11:57:00, started 22 s later, so it has run 2 min 38 s at 12:00.
    assert document["jobs"][2]["run_time_seconds"] == 158.0 and document["jobs"][2]["exit_code"] is None
    human = harness.ok("jobs").stdout
    lines = human.splitlines()
    assert lines[0].split() == [
        "JOB",
        "ID",
        "BATCH",
        "STATUS",
        "STRATEGY",
        "QUEUED",
        "(UTC)",
        "START",
        "RUN",
        "EXIT",
        "REASON",
    ]
    assert lines[1].split() == [
        listed_job(1).job_id,
        "payroll-calculation",
        "FAILED",
        "FARGATE",
        "2026-11-28",
        "11:59:00Z",
        "20s",
        "1m",
        "40s",
        "1",
        "-",
    ]
    assert "more jobs" not in human


def test_jobs_paginates_beyond_one_page_without_gaps_or_repeats(harness: CliHarness) -> None:
    statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNING]
    for number in range(1, 31):
        harness.add(listed_job(number, statuses[number % 3]))
    expected = [listed_job(number).job_id for number in range(1, 31)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        args = ["jobs", "--limit", "10", *(["--next", token] if token else [])]
        document = harness.json(*args)
        pages += 1
        assert len(document["jobs"]) == 10
        seen.extend(row["job_id"] for row in document["jobs"])
        token = document["next"]
        if token is None:
            break
    assert pages == 3
    assert seen == expected  # newest first across all status partitions, each job once


def test_jobs_human_output_prints_the_next_token(harness: CliHarness) -> None:
    for number in range(1, 13):
        harness.add(listed_job(number, JobStatus.FAILED))
    first = harness.ok("jobs", "--status", "FAILED", "--limit", "10")
    match = re.search(r"repeat the command with --next (\S+)", first.stdout)
    assert match is not None
    second = harness.ok("jobs", "--status", "FAILED", "--limit", "10", "--next", match.group(1))
    assert listed_job(11).job_id in second.stdout and listed_job(12).job_id in second.stdout
    assert listed_job(10).job_id not in second.stdout
    assert "more jobs" not in second.stdout


def test_jobs_filters_by_status_batch_and_time(harness: CliHarness) -> None:
    for number in range(1, 21):
        batch = "report-export" if number % 2 else "payroll-calculation"
        status = JobStatus.FAILED if number % 4 == 0 else JobStatus.SUCCEEDED
        harness.add(listed_job(number, status, batch=batch, minutes_ago=number * 10))
    failed_payroll = harness.json(
        "jobs", "--batch", "payroll-calculation", "--status", "FAILED", "--limit", "2"
    )
    ids = [row["job_id"] for row in failed_payroll["jobs"]]
    assert ids == [
        listed_job(4, batch="payroll-calculation").job_id,
        listed_job(8, batch="payroll-calculation").job_id,
    ]
    rest = harness.json(
        "jobs",
        "--batch",
        "payroll-calculation",
        "--status",
        "FAILED",
        "--limit",
        "2",
        "--next",
        failed_payroll["next"],
    )
    assert [row["job_id"] for row in rest["jobs"]] == [
        listed_job(12, batch="payroll-calculation").job_id,
        listed_job(16, batch="payroll-calculation").job_id,
    ]
    # Jobs 1..5 were queued 10..50 minutes ago; --since 55m keeps them, --until 25m drops 1 and 2.
    window = harness.json("jobs", "--since", "55m", "--until", "25m")
    assert [row["job_id"] for row in window["jobs"]] == [
        listed_job(n, batch="report-export" if n % 2 else "payroll-calculation").job_id for n in (3, 4, 5)
    ]
    several = harness.json("jobs", "--status", "FAILED", "--status", "succeeded", "--since", "35m")
    assert len(several["jobs"]) == 3
    # The same status in two spellings lists each job once, and names the status once.
    repeated = harness.json("jobs", "--status", "failed", "--status", "FAILED", "--batch", "report-export")
    assert [row["job_id"] for row in repeated["jobs"]] == []
    failed = harness.json("jobs", "--status", "failed", "--status", "FAILED")
    assert [row["job_id"] for row in failed["jobs"]] == [
        listed_job(n, batch="payroll-calculation").job_id for n in (4, 8, 12, 16, 20)
    ]
    none = harness.ok("jobs", "--status", "failed", "--status", "FAILED", "--batch", "report-export")
    assert none.stdout.strip() == "No jobs found with status FAILED of batch report-export."


def test_jobs_says_when_a_page_stopped_before_finding_a_match(harness: CliHarness) -> None:
    # A batch + status page reads the status's jobs newest first and skips the other batches'; with
    # --limit 1, one job per query, its query budget ends before it reaches the batch's FAILED job.
    failed = harness.add(listed_job(1, JobStatus.FAILED, minutes_ago=100))
    for number in range(2, 2 + DEFAULT_QUERY_BUDGET + 2):
        harness.add(listed_job(number, JobStatus.FAILED, batch="report-export", minutes_ago=number % 90))
    args = ["jobs", "--batch", "payroll-calculation", "--status", "FAILED", "--limit", "1"]
    document = harness.json(*args)
    assert document["jobs"] == [] and document["next"] is not None
    human = harness.ok(*args).stdout
    assert "among the jobs read so far" in human and f"--next {document['next']}" in human
    assert "No jobs found with status FAILED of batch payroll-calculation." not in human
    rest = harness.json(*args, "--next", document["next"])
    assert [row["job_id"] for row in rest["jobs"]] == [failed.job_id] and rest["next"] is None


def test_jobs_refuses_a_token_of_another_search_and_a_bad_time(harness: CliHarness) -> None:
    for number in range(1, 4):
        harness.add(listed_job(number, JobStatus.FAILED))
    token = harness.json("jobs", "--status", "FAILED", "--limit", "1")["next"]
    other = harness.run("jobs", "--status", "SUCCEEDED", "--limit", "1", "--next", token)
    assert other.exit_code == 2 and "other filters" in other.stderr
    damaged = harness.run("jobs", "--next", "not-a-token!")
    assert damaged.exit_code == 2 and "damaged" in damaged.stderr
    bad_time = harness.run("jobs", "--since", "yesterday-ish")
    assert bad_time.exit_code == 2 and "use a duration such as" in bad_time.stderr
    too_far = harness.run("jobs", "--since", "1000000d")
    assert too_far.exit_code == 2 and "'1000000d' reaches beyond the years 1 to 9999" in too_far.stderr
    no_batch = harness.run("jobs", "--batch", "", "--status", "FAILED")
    assert no_batch.exit_code == 2 and "give a batch name" in no_batch.stderr


# --- show ---------------------------------------------------------------------------------------------


def test_show_explains_a_failed_job_with_phases_and_log_link(harness: CliHarness) -> None:
    job_id = failed_payroll_job(harness)
    result = harness.run("show", job_id)
    assert result.exit_code == 1  # the job failed
    out = result.stdout
    assert out.splitlines()[0] == f"{job_id}  FAILED"
    assert "arguments        2026-11" in out
    assert "environment      LOG_LEVEL=*** (values masked: --reveal-env shows them)" in out
    stored = harness.stack.table.get(job_id)
    assert stored is not None and stored.plan is not None and stored.plan.reason
    assert f"strategy         FARGATE - {stored.plan.reason}" in out
    assert (
        "What happened: FAILED: exit code 1; EssentialContainerExited; Essential container in task exited"
        in out
    )
    assert "The batch's command failed (exit code 1): its logs say why." in out
    phases = [
        line.split()[:2] for line in out.splitlines() if line.startswith("  ") and "2026-11-28T11:2" in line
    ]
    assert [phase[0] for phase in phases] == [
        "received",
        "dispatched",
        "task",
        "image",
        "image",
        "started",
        "stopping",
        "stopped",
    ]
    assert re.search(r"image pulled\s+2026-11-28T11:20:26.113Z\s+14s\s+pulling the container image", out)
    assert "start latency 26s | time to start 29s | run time 2m 25s | exit code 1" in out
    assert f"logs  {LOG_GROUP}  {EXIT_1_STREAM}" in out
    assert (
        "#logsV2:log-groups/log-group/$252Fecs$252Fbatchgate-payroll/log-events/batch$252Fpayroll$252F" in out
    )


def test_show_json_has_the_full_job(harness: CliHarness) -> None:
    job_id = failed_payroll_job(harness)
    document = harness.json("show", job_id, exit_code=1)
    assert document["job_id"] == job_id and document["status"] == "FAILED"
    assert document["arguments"] == ["2026-11"] and document["environment"] == {"LOG_LEVEL": "***"}
    assert document["strategy"] == "FARGATE"
    [attempt] = document["attempts"]
    assert attempt["task_arn"] == EXIT_1_TASK
    assert attempt["start_latency_seconds"] == pytest.approx(25.928)
    assert attempt["run_time_seconds"] == pytest.approx(144.534)
    assert (
        attempt["outcome"]["exit_code"] == 1 and attempt["outcome"]["stop_code"] == "EssentialContainerExited"
    )
    assert [p["phase"] for p in attempt["phases"]][:3] == ["queued", "dispatched", "created"]
    # Stored without the send time of its message: shown from its receipt, as before.
    assert document["submitted_at"] is None and document["queue_wait_seconds"] is None
    assert attempt["phases"][2]["seconds_since_previous"] == pytest.approx(3.019)
    assert attempt["log_group"] == LOG_GROUP and attempt["log_stream"] == EXIT_1_STREAM
    assert attempt["log_console_url"].startswith(
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#logsV2:"
    )


def test_show_jobs_and_stats_count_the_start_from_the_send(harness: CliHarness) -> None:
    listed = listed_job(1)  # received 11:59:00, task created +2 s, started +22 s
    job = harness.add(listed._replace(submitted_at="2026-11-28T11:58:58.500Z"))
    document = harness.json("show", job.job_id)
    assert document["submitted_at"] == "2026-11-28T11:58:58.500Z"
    assert document["created_at"] == "2026-11-28T11:59:00.000Z"
    assert document["queue_wait_seconds"] == pytest.approx(1.5)
    [attempt] = document["attempts"]
    assert [p["phase"] for p in attempt["phases"]][:3] == ["submitted", "queued", "dispatched"]
    assert attempt["phases"][1]["seconds_since_previous"] == pytest.approx(1.5)
    assert attempt["phases"][1]["spent_on"] == "waiting in the jobs queue"
    assert attempt["start_latency_seconds"] == pytest.approx(23.5)
    assert attempt["time_to_start_seconds"] == pytest.approx(23.5)
    out = harness.ok("show", job.job_id).stdout
    assert "submitted        2026-11-28T11:58:58.500Z" in out
    assert "received         2026-11-28T11:59:00.000Z (queue wait 1.5s)" in out
    assert "dispatched       2026-11-28T11:59:01.000Z" in out
    assert re.search(r"received\s+2026-11-28T11:59:00.000Z\s+1.5s\s+waiting in the jobs queue", out)
    assert "start latency 24s | time to start 24s" in out
    [row] = harness.json("jobs")["jobs"]
    assert row["start_latency_seconds"] == pytest.approx(23.5)
    [stats] = harness.json("stats")["rows"]
    assert stats["start_latency_p50_seconds"] == pytest.approx(23.5)
    trace = trace_from_jobs([job], {job.batch: TaskSize(1024, 2048)}, (0.0, 2e9), "table")
    [traced] = trace.jobs
    assert traced.start_seconds == pytest.approx(23.5)
    assert traced.submitted_at == pytest.approx(NOW.timestamp() - 61.5)


def test_show_a_succeeded_or_running_job_exits_0(harness: CliHarness) -> None:
    done = harness.add(listed_job(1, JobStatus.SUCCEEDED))
    running = harness.add(listed_job(2, JobStatus.RUNNING))
    assert "What happened: SUCCEEDED: exit code 0" in harness.ok("show", done.job_id).stdout
    assert harness.json("show", running.job_id)["outcome"]["explanations"] == [
        "The batch's command is running."
    ]


def test_show_unknown_job(harness: CliHarness) -> None:
    result = harness.run("show", "bg-payroll-calculation-00000000000000000000")
    assert result.exit_code == 1
    assert "no job bg-payroll-calculation-00000000000000000000 in the job table" in result.stderr
    assert result.stdout == ""
    json_result = harness.run("show", "bg-nope", "--json")
    assert json_result.exit_code == 1 and json_result.stdout == ""


@pytest.mark.parametrize("command", ["show", "logs", "cancel", "retry"])
def test_a_job_id_that_cannot_name_a_job_is_a_usage_error(harness: CliHarness, command: str) -> None:
    for job_id in ("", "payroll-calculation", "bg-" + "0" * 200):
        result = harness.run(command, job_id)
        assert result.exit_code == 2, (job_id, result.stderr)
        assert f"{job_id!r} is not a job id" in result.stderr and "AWS" not in result.stderr


def test_show_finds_a_job_by_batch_and_key_or_time(harness: CliHarness) -> None:
    for number in (10, 70, 130):  # queued 10, 70 and 130 minutes before 12:00
        harness.add(listed_job(number, JobStatus.SUCCEEDED))
    by_key = harness.json("show", "--batch", "payroll-calculation", "--key", "listed-70")
    assert by_key["job_id"] == listed_job(70).job_id
    latest = harness.json("show", "--batch", "payroll-calculation")
    assert latest["job_id"] == listed_job(10).job_id
    last_night = harness.json("show", "--batch", "payroll-calculation", "--at", "2026-11-28T10:00:00Z")
    assert last_night["job_id"] == listed_job(130).job_id  # queued 09:50, the latest at or before 10:00
    none = harness.run("show", "--batch", "payroll-calculation", "--at", "2026-11-01")
    assert none.exit_code == 1 and "no job of batch payroll-calculation queued at or before" in none.stderr
    assert harness.run("show").exit_code == 2
    assert harness.run("show", "bg-x", "--batch", "payroll-calculation").exit_code == 2


def test_target_options_are_accepted_after_the_command_too(harness: CliHarness) -> None:
    job = harness.add(listed_job(1, JobStatus.SUCCEEDED))
    result = harness.run(
        "show", job.job_id, "--table", harness.stack.settings.table_name, "--region", REGION, target=False
    )
    assert result.exit_code == 0, result.stderr
    wrong = harness.run("show", job.job_id, "--table", "no-such-table", "--region", REGION, target=False)
    assert wrong.exit_code == 3 and "ResourceNotFoundException" in wrong.stderr


# --- logs ---------------------------------------------------------------------------------------------


def test_logs_prints_the_attempts_log_stream(harness: CliHarness) -> None:
    job_id = failed_payroll_job(harness)
    harness.write_logs(EXIT_1_STREAM, "starting payroll 2026-11", "[ERROR] company acme: no bank account")
    result = harness.ok("logs", job_id)
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "starting payroll 2026-11",
        "[ERROR] company acme: no bank account",
    ]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", lines[0])
    events = [json.loads(line) for line in harness.run("logs", job_id, "--json").stdout.splitlines()]
    assert [event["message"] for event in events] == [
        "starting payroll 2026-11",
        "[ERROR] company acme: no bank account",
    ]
    grep = harness.ok("logs", job_id, "--grep", "ERROR", "--attempt", "1")
    assert grep.stdout.count("\n") == 1 and "no bank account" in grep.stdout


def test_logs_when_there_are_none(harness: CliHarness) -> None:
    job_id = failed_payroll_job(harness)
    gone = harness.run("logs", job_id)  # the pointer is recorded but the stream was never created
    assert gone.exit_code == 1
    assert f"log stream {EXIT_1_STREAM} in log group {LOG_GROUP} does not exist" in gone.stderr
    no_attempt = harness.run("logs", job_id, "--attempt", "2")
    assert no_attempt.exit_code == 1 and "has no attempt 2 (it has 1)" in no_attempt.stderr
    submitted = harness.add(listed_job(5, JobStatus.SUBMITTED))
    waiting = harness.run("logs", submitted.job_id)
    assert waiting.exit_code == 1 and "has no attempt yet" in waiting.stderr
    assert harness.run("logs", "bg-unknown").exit_code == 1
    harness.write_logs(EXIT_1_STREAM)  # exists, but empty
    empty = harness.run("logs", job_id)
    assert empty.exit_code == 0 and empty.stdout == "" and "no log events" in empty.stderr


def test_logs_follow_prints_new_lines_until_the_job_ends(
    harness: CliHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "payroll-2026-11-acme")
    harness.dispatch_queued(task_arn=EXIT_1_TASK, at=NOW.replace(hour=11, minute=20))
    running = event_fixture("task-running.json")
    running["detail"]["taskArn"] = EXIT_1_TASK
    definition = harness.stack.ecs_client.describe_task_definition(taskDefinition="batchgate-payroll")
    running["detail"]["taskDefinitionArn"] = definition["taskDefinition"]["taskDefinitionArn"]
    harness.stack.tracker().track(running)
    harness.write_logs(EXIT_1_STREAM, "line 1")
    waits: list[float] = []

    def next_poll(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            harness.write_logs(EXIT_1_STREAM, "line 2")
        else:
            harness.write_logs(EXIT_1_STREAM, "line 3")
            harness.track("task-stopped-exit-1.json")

    monkeypatch.setattr(logs_module, "pause", next_poll)
    result = harness.run("logs", PAYROLL_JOB, "--follow", "--interval", "0.5")
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == ["line 1", "line 2", "line 3"]
    assert waits == [0.5, 0.5]
    assert result.exit_code == 1  # the job ended FAILED
    assert f"job {PAYROLL_JOB} ended FAILED" in result.stderr


# --- stats --------------------------------------------------------------------------------------------


def test_stats_per_batch_and_strategy(harness: CliHarness) -> None:
    for number in range(1, 5):
        harness.add(listed_job(number, JobStatus.SUCCEEDED if number != 4 else JobStatus.FAILED))
    harness.add(listed_job(5, JobStatus.REJECTED, batch="report-export"))
    harness.add(listed_job(9000, JobStatus.SUCCEEDED, minutes_ago=8 * 24 * 60))  # outside the 7-day window
    document = harness.json("stats")
    assert document["jobs"] == 5 and document["region"] == REGION
    payroll, report = document["rows"]
    assert (payroll["batch"], payroll["strategy"], payroll["jobs"]) == ("payroll-calculation", "FARGATE", 4)
    assert payroll["success_rate"] == 0.75
    assert payroll["start_latency_p50_seconds"] == 20.0 and payroll["run_time_p95_seconds"] == 100.0
    # Each job billed 112 s (pull start +10 s -> stop +122 s) of 1 vCPU and 2 GB at 0.04937 USD/h.
    assert payroll["estimated_cost_usd"] == pytest.approx(4 * 112 * 0.04937 / 3600, abs=1e-6)
    assert (report["batch"], report["strategy"], report["rejected"], report["success_rate"]) == (
        "report-export",
        "-",
        1,
        None,
    )
    human = harness.ok("stats", "--batch", "payroll-calculation").stdout
    row = next(line for line in human.splitlines() if line.startswith("payroll-calculation"))
    assert row.split() == [
        "payroll-calculation",
        "FARGATE",
        "4",
        "3",
        "1",
        "0",
        "0",
        "0",
        "0",
        "75.0%",
        "20s",
        "20s",
        "1m",
        "40s",
        "1m",
        "40s",
        "$0.0061",
    ]
    assert "report-export" not in human
    assert "costs are estimates" in human


def test_stats_max_jobs_keeps_the_newest_jobs_of_every_status(harness: CliHarness) -> None:
    for number in range(1, 7):  # the two newest failed
        harness.add(listed_job(number, JobStatus.FAILED if number <= 2 else JobStatus.SUCCEEDED))
    document = harness.json("stats", "--max-jobs", "3")
    [row] = document["rows"]
    assert (row["jobs"], row["succeeded"], row["failed"]) == (3, 1, 2)
    assert document["jobs"] == 3 and document["truncated"] is True
    note = (
        "only the newest 3 jobs (--max-jobs), queued 2026-11-28T11:57:00.000Z or later: older jobs of "
        "the window, queued 2026-11-28T11:56:00.000Z or earlier, are left out"
    )
    assert note in document["notes"]
    assert note in " ".join(harness.ok("stats", "--max-jobs", "3").stdout.split())
    assert harness.json("stats", "--max-jobs", "6")["truncated"] is False


def test_stats_with_no_jobs(harness: CliHarness) -> None:
    assert harness.json("stats", "--since", "1d")["rows"] == []
    assert harness.ok("stats").stdout.startswith("No jobs found queued since 2026-11-21T12:00:00.000Z")


# --- cancel and retry ---------------------------------------------------------------------------------


def test_cancel_stops_the_task_and_marks_the_job(harness: CliHarness) -> None:
    harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "payroll-2026-11-acme")
    [job_id] = harness.dispatch_queued()  # a real (moto) task
    job = harness.stack.table.get(job_id)
    assert job is not None and job.attempt is not None and job.attempt.task_arn
    task_arn = job.attempt.task_arn
    document = harness.json("cancel", job_id)
    reason = f"batchgate: cancelled by {USER}"
    assert document == {
        "job_id": job_id,
        "status": "CANCELLED",
        "reason": reason,
        "task_arn": task_arn,
        "stopped_by": "ecs",
        "was_already_cancelled": False,
    }
    cluster = harness.stack.settings.cluster
    task = harness.stack.ecs_client.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"] == reason
    stored = harness.stack.table.get(job_id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
    assert stored.updated_at == "2026-11-28T12:00:00.000Z"
    again = harness.ok("cancel", job_id)
    assert f"asked ECS again to stop task {task_arn}" in again.stdout


def test_cancel_before_dispatch_means_it_never_launches(harness: CliHarness) -> None:
    harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "payroll-2026-11-acme")
    harness.add(listed_job(1, JobStatus.SUBMITTED, job_id=PAYROLL_JOB))
    result = harness.ok("cancel", PAYROLL_JOB)
    assert "CANCELLED" in result.stdout and "dispatch will not launch it" in result.stdout
    bodies = harness.queued_bodies()
    assert len(bodies) == 1
    message_id = bodies[0].pop("id")
    assert harness.stack.dispatcher().dispatch(message_id, json.dumps(bodies[0])) is DispatchResult.DUPLICATE
    assert harness.stack.tasks_started_by(PAYROLL_JOB) == []


def test_cancel_refuses_ended_and_unknown_jobs(harness: CliHarness) -> None:
    done = harness.add(listed_job(1, JobStatus.SUCCEEDED))
    result = harness.run("cancel", done.job_id)
    assert result.exit_code == 1 and "already ended SUCCEEDED" in result.stderr
    assert harness.run("cancel", "bg-unknown").exit_code == 1


def test_retry_submits_the_same_job_again_linked_to_the_original(harness: CliHarness) -> None:
    job_id = failed_payroll_job(harness)
    document = harness.json("retry", job_id)
    expected_key = f"retry-of:{job_id}:1"
    assert document["idempotency_key"] == expected_key
    assert document["job_id"] == job_id_for("payroll-calculation", expected_key)
    [body] = harness.queued_bodies()
    assert body["batch"] == "payroll-calculation" and body["arguments"] == ["2026-11"]
    assert body["environment"] == {"LOG_LEVEL": "INFO"} and body["idempotency_key"] == expected_key
    # Once that retry exists, the next one gets the next number.
    harness.add(listed_job(1, JobStatus.FAILED, job_id=document["job_id"]))
    second = harness.ok("retry", job_id)
    assert second.stdout.splitlines()[0] == job_id_for("payroll-calculation", f"retry-of:{job_id}:2")


def test_retry_refuses_jobs_that_have_not_ended_rejected_and_unknown(harness: CliHarness) -> None:
    running = harness.add(listed_job(1, JobStatus.RUNNING))
    result = harness.run("retry", running.job_id)
    assert result.exit_code == 1
    assert "is RUNNING: only a job that has ended can be retried" in result.stderr
    rejected = harness.add(listed_job(2, JobStatus.REJECTED))
    assert "fix the message" in harness.run("retry", rejected.job_id).stderr
    assert harness.run("retry", "bg-unknown").exit_code == 1
    assert harness.queued_bodies() == []


# --- dead-letter queues -------------------------------------------------------------------------------


def test_dlq_list_when_empty(harness: CliHarness) -> None:
    document = harness.json("dlq", "list")
    assert [(queue["queue"], queue["messages"]) for queue in document["queues"]] == [
        ("jobs", []),
        ("track", []),
        ("history", []),
    ]
    human = harness.ok("dlq", "list").stdout
    assert human.count("empty") == 3


def put_dead_letters(harness: CliHarness) -> tuple[str, str]:
    sqs = harness.sqs
    submit = json.dumps({"schema_version": 1, "batch": "report-export", "arguments": ["headcount"]})
    jobs_message = sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody=submit)["MessageId"]
    event = event_fixture("task-running.json")
    track_message = sqs.send_message(
        QueueUrl=harness.track_dlq_url,
        MessageBody=json.dumps(event),
        MessageAttributes={
            "ErrorCode": {"DataType": "String", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": "Task timed out after 30.00 seconds"},
        },
    )["MessageId"]
    return jobs_message, track_message


def test_dlq_list_peeks_without_removing(harness: CliHarness) -> None:
    jobs_message, track_message = put_dead_letters(harness)
    document = harness.json("dlq", "list")
    jobs_queue, track_queue, history_queue = document["queues"]
    [letter] = jobs_queue["messages"]
    assert letter["message_id"] == jobs_message
    assert letter["summary"]["batch"] == "report-export"
    assert letter["summary"]["job_id"] == job_id_for("report-export", jobs_message)
    [event] = track_queue["messages"]
    assert event["message_id"] == track_message
    assert event["summary"]["job_id"] == PAYROLL_JOB and event["summary"]["last_status"] == "RUNNING"
    assert event["summary"]["error"]["ErrorMessage"] == "Task timed out after 30.00 seconds"
    assert history_queue["queue"] == "history" and history_queue["messages"] == []
    # Still there, and visible again at once.
    again = harness.json("dlq", "list", "--queue", "jobs")
    assert [m["message_id"] for m in again["queues"][0]["messages"]] == [jobs_message]
    human = harness.ok("dlq", "list").stdout
    assert "batch report-export" in human and "Task timed out after 30.00 seconds" in human


def test_dlq_list_names_the_job_and_attempt_of_a_relaunch_message(harness: CliHarness) -> None:
    job = harness.add(listed_job(1, JobStatus.RETRYING))
    relaunch = Relaunch(job.job_id, 2)
    kind = {KIND_ATTRIBUTE: {"DataType": "String", "StringValue": RETRY_KIND}}
    sqs = harness.sqs
    sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody=relaunch.body(), MessageAttributes=kind)
    sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody='{"job_id": "x"}', MessageAttributes=kind)
    letters = harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"]
    summaries = sorted((letter["summary"] for letter in letters), key=lambda summary: "note" in summary)
    assert summaries[0] == {"kind": "relaunch", "job_id": job.job_id, "attempt": 2}
    assert summaries[1]["kind"] == "relaunch" and summaries[1]["job_id"] is None
    assert "not a relaunch batchgate wrote: relaunch message has no valid job_id" in summaries[1]["note"]
    human = harness.ok("dlq", "list", "--queue", "jobs").stdout
    row = next(line for line in human.splitlines() if job.job_id in line)
    assert row.rstrip().endswith(f"{job.job_id}  relaunch of attempt 2")


def test_dlq_redrive_sends_submit_messages_back_keeping_their_job(harness: CliHarness) -> None:
    jobs_message, _ = put_dead_letters(harness)
    document = harness.json("dlq", "redrive", "--queue", "jobs", "--yes")
    [result] = document["results"]
    assert result["moved"] == 1 and result["failed"] == [] and result["destination"] == harness.queue_url
    assert harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"] == []
    [body] = harness.queued_bodies()
    new_message_id = body.pop("id")
    assert new_message_id != jobs_message
    assert body["idempotency_key"] == jobs_message  # so the job id stays the one of the original message
    assert job_id_for(body["batch"], body["idempotency_key"]) == job_id_for("report-export", jobs_message)


def without_option(arguments: list[str], option: str) -> list[str]:
    """The harness's target options less one option and its value."""
    at = arguments.index(option)
    return arguments[:at] + arguments[at + 2 :]


def test_dlq_redrive_moves_nothing_while_a_destination_is_unknown(harness: CliHarness) -> None:
    jobs_message, track_message = put_dead_letters(harness)
    target = without_option(harness.target_args(), "--track-function")
    result = harness.run(*target, "dlq", "redrive", "--yes", target=False)
    assert result.exit_code == 2 and "track function" in result.stderr
    listed = harness.json("dlq", "list")["queues"]
    assert [[m["message_id"] for m in queue["messages"]] for queue in listed] == [
        [jobs_message],
        [track_message],
        [],
    ]
    assert harness.queued_bodies() == []


def test_dlq_redrive_stopped_by_an_aws_error_says_what_it_moved(harness: CliHarness) -> None:
    put_dead_letters(harness)
    harness.sqs.delete_queue(QueueUrl=harness.track_dlq_url)  # jobs goes first, then track fails
    result = harness.run("dlq", "redrive", "--yes", "--json")
    assert result.exit_code == 3 and result.stdout == ""
    assert f"before the error, jobs: moved 1 to {harness.queue_url}" in result.stderr
    assert "AWS ReceiveMessage failed" in result.stderr
    assert len(harness.queued_bodies()) == 1


def test_a_redrive_stopped_midway_returns_what_it_moved(
    harness: CliHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = harness.sqs
    for key in ("a", "b"):
        body = {"schema_version": 1, "batch": "report-export", "arguments": [], "idempotency_key": key}
        sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody=json.dumps(body))
    delete = sqs.delete_message
    deletes: list[str] = []

    def delete_once(**request: Any) -> Any:
        deletes.append(request["ReceiptHandle"])
        if len(deletes) > 1:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteMessage")
        return delete(**request)

    monkeypatch.setattr(sqs, "delete_message", delete_once)
    with pytest.raises(RedriveStopped) as stopped:
        DeadLetters(sqs).redrive_to_queue(DeadLetterQueue(JOBS, harness.jobs_dlq_url), harness.queue_url, 10)
    assert len(stopped.value.result.moved) == 1 and stopped.value.result.queue == JOBS
    assert isinstance(stopped.value.error, ClientError)


def test_dlq_redrive_asks_first(harness: CliHarness) -> None:
    put_dead_letters(harness)
    declined = harness.run("dlq", "redrive", "--queue", "jobs", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.stderr
    assert len(harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"]) == 1


def test_dlq_redrive_invokes_the_track_function_with_each_event(
    harness: CliHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.config import default_user_config

    monkeypatch.setitem(default_user_config, "lambda", {"use_docker": False})
    invoked: list[Any] = []
    original = LambdaSimpleBackend.invoke

    def recording(self: Any, function_name: str, *rest: Any) -> Any:
        body, headers = rest[1], rest[2]
        invoked.append((function_name, json.loads(body), headers.get("X-Amz-Invocation-Type")))
        return original(self, function_name, *rest)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", recording)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="track", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=harness.track_function,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    put_dead_letters(harness)
    stopped = event_fixture("task-stopped-exit-1.json")
    record = {  # what the function's on-failure destination sends after the last retry
        "version": "1.0",
        "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": stopped,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": "ConcurrentUpdateError", "errorMessage": PAYROLL_JOB},
    }
    harness.sqs.send_message(QueueUrl=harness.track_dlq_url, MessageBody=json.dumps(record))
    listed = harness.json("dlq", "list", "--queue", "track")["queues"][0]["messages"]
    by_status = {letter["summary"]["last_status"]: letter["summary"] for letter in listed}
    assert by_status["STOPPED"]["job_id"] == PAYROLL_JOB
    assert by_status["STOPPED"]["error"] == {
        "errorType": "ConcurrentUpdateError",
        "errorMessage": PAYROLL_JOB,
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    result = harness.ok("dlq", "redrive", "--queue", "track", "--yes")
    assert result.stdout.strip() == f"track: moved 2 to {harness.track_function}"
    # Each event is sent as the event itself, whichever shape it arrived in.
    assert sorted(invoked, key=lambda call: call[1]["detail"]["version"]) == [
        (harness.track_function, event_fixture("task-running.json"), "Event"),
        (harness.track_function, stopped, "Event"),
    ]
    assert harness.json("dlq", "list", "--queue", "track")["queues"][0]["messages"] == []
    # The jobs DLQ was not touched.
    assert len(harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"]) == 1


def test_logs_follow_waits_for_a_job_just_submitted(
    harness: CliHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "payroll-2026-11-acme")
    harness.write_logs(EXIT_1_STREAM, "only line")
    polls: list[float] = []

    def dispatch_then_finish(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:  # the first wait: dispatch creates the job and the task runs to its end
            harness.dispatch_queued(task_arn=EXIT_1_TASK, at=NOW.replace(hour=11, minute=20))
            harness.track("task-stopped-exit-1.json")

    monkeypatch.setattr(logs_module, "pause", dispatch_then_finish)
    result = harness.run("logs", PAYROLL_JOB, "--follow", "--interval", "1")
    assert f"waiting up to 60s for job {PAYROLL_JOB} to be dispatched" in result.stderr
    # (dispatch and track ran inside this command here, and their JSON logs went to the same stdout)
    printed = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if not line.startswith("{")]
    assert printed == ["only line"]
    assert polls == [1.0] and result.exit_code == 1
    never = harness.run("logs", "bg-payroll-calculation-00000000000000000000", "--follow", "--wait", "2")
    assert never.exit_code == 1 and "no job bg-payroll-calculation-00000000000000000000" in never.stderr
    assert polls == [1.0, 2.0]  # --wait 2: one poll of the default 2 s interval, then gives up
