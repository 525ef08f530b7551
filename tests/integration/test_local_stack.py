"""The embedded local stack end to end, across process boundaries: `batchgate local up` runs in its own
process (its endpoint, function hosts and tasks in theirs), and the tests talk to it over HTTP as an
application and an operator would, reading the job table and the logs it points at.

The stack runs with the packaged catalog except report-export's timeout, lowered to a few seconds, and a
retry rule for attendance-import's exit code 75 with a one-second back-off. Timeouts are enforced by the
template's scheduled sweep (run every second here) or, while the template has none, by the local
watchdog: either way the task is stopped with a reason naming the timeout.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from batchgate.adapters.history_table import HistoryTable
from batchgate.domain.jobs import JobStatus, job_id_for

from tests.integration.conftest import LOCAL_STACK_GROUP
from tests.integration.local_stack import (
    BATCHGATE,
    JOB_SECONDS,
    ROOT,
    TIMEOUT_SECONDS,
    Stack,
)

pytestmark = [pytest.mark.integration, LOCAL_STACK_GROUP]


def test_a_batch_runs_and_succeeds(stack: Stack) -> None:
    job = stack.wait_for(stack.submit("payroll-calculation", ["2026-11", "acme"], "it-success"))

    assert job.status is JobStatus.SUCCEEDED
    attempt = job.attempt
    assert attempt is not None
    assert (attempt.exit_code, attempt.stop_code, attempt.strategy) == (
        0,
        "EssentialContainerExited",
        "FARGATE",
    )
    assert {"created", "pull_started", "pull_stopped", "started", "stopped"} <= set(attempt.timeline)
    assert attempt.event_version == 5  # PROVISIONING, PENDING, RUNNING, DEPROVISIONING, STOPPED


def test_a_non_zero_exit_fails_the_job_with_its_exit_code(stack: Stack) -> None:
    job = stack.wait_for(stack.submit("payroll-calculation", ["fail"], "it-exit-3"))

    assert job.status is JobStatus.FAILED
    assert job.attempt is not None and job.attempt.exit_code == 3
    assert job.reason is not None and job.reason.startswith("exit code 3")


def test_bad_input_is_rejected_with_the_reason(stack: Stack) -> None:
    unknown = {
        "schema_version": 1,
        "batch": "payroll-calc",
        "arguments": ["2026-11"],
        "idempotency_key": "it-bad",
    }
    stack.send_raw(json.dumps(unknown))
    not_json = stack.send_raw('{"schema_version": 1, "batch": ')

    rejected = stack.wait_for(job_id_for("payroll-calc", "it-bad"))
    garbled = stack.wait_for(job_id_for("-", not_json))

    assert rejected.status is JobStatus.REJECTED and garbled.status is JobStatus.REJECTED
    assert rejected.reason is not None and "payroll-calc" in rejected.reason
    assert garbled.reason and garbled.raw_message == '{"schema_version": 1, "batch": '
    assert not rejected.attempts and not garbled.attempts


def test_a_duplicate_delivery_starts_one_task(stack: Stack) -> None:
    # A batch that runs on ECS (attendance-import's duplicates are the warm lane's: tests/test_worker.py).
    message = {"schema_version": 1, "batch": "payroll-calculation", "arguments": ["2026-11"]}
    body = json.dumps({**message, "idempotency_key": "it-duplicate"})
    # One SendMessageBatch: both copies usually reach the same dispatch invocation, concurrently.
    stack.sqs.send_message_batch(
        QueueUrl=stack.state["queue_url"],
        Entries=[{"Id": "first", "MessageBody": body}, {"Id": "second", "MessageBody": body}],
    )
    job_id = job_id_for("payroll-calculation", "it-duplicate")

    job = stack.wait_for(job_id)

    assert job.status is JobStatus.SUCCEEDED
    assert len(job.attempts) == 1
    tasks = stack.ecs.list_tasks(cluster=stack.state["cluster"], startedBy=job_id, desiredStatus="STOPPED")
    assert len(tasks["taskArns"]) == 1


def test_stop_task_kills_the_process_and_the_job_records_user_initiated(stack: Stack) -> None:
    job_id = stack.submit("report-export", ["slow", "2026-11"], "it-stop")
    running = stack.wait_for(job_id, {JobStatus.RUNNING})
    assert running.attempt is not None and running.attempt.task_arn

    stack.ecs.stop_task(
        cluster=stack.state["cluster"], task=running.attempt.task_arn, reason="stopped by the test"
    )
    job = stack.wait_for(job_id)

    attempt = job.attempt
    assert attempt is not None
    assert (attempt.stop_code, attempt.stopped_reason, attempt.exit_code) == (
        "UserInitiated",
        "stopped by the test",
        143,
    )
    assert stack.log_lines(job)[-1] == "reports: SIGTERM received, export abandoned"
    assert not processes_of(job_id), "the task's process is still running"


def test_a_task_past_its_timeout_is_stopped(stack: Stack) -> None:
    job_id = stack.submit("report-export", ["slow"], "it-timeout")
    job = stack.wait_for(job_id)
    stopped = stack.wait_until(
        job_id, lambda job: job.attempt is not None and job.attempt.last_status == "STOPPED"
    )

    attempt = stopped.attempt
    assert attempt is not None and attempt.stopped_reason
    # TIMED_OUT when the sweep stopped it; FAILED (stop code UserInitiated) with the local watchdog.
    assert job.status in (JobStatus.TIMED_OUT, JobStatus.FAILED)
    assert f"timeout of {TIMEOUT_SECONDS} s" in attempt.stopped_reason
    assert (attempt.stop_code, attempt.exit_code) == ("UserInitiated", 143)
    assert {"started", "stopped"} <= set(attempt.timeline)
    assert not processes_of(job_id)


def test_a_retryable_exit_gets_another_attempt(stack: Stack) -> None:
    job = stack.wait_for(stack.submit("attendance-import", ["uploads/flaky.csv"], "it-retry"))

    assert job.status is JobStatus.SUCCEEDED
    assert [attempt.exit_code for attempt in job.attempts] == [75, 0]
    first, second = job.attempts
    # Each attempt ran on its own, with its own log stream (its own ECS task's, or on the warm pool,
    # where both may share a pool task, the attempt's own).
    assert first.log_stream != second.log_stream
    assert stack.log_lines(job, first)[-1] == "attendance: uploads/flaky.csv: storage busy, try again later"


def attendance_history(stack: Stack) -> tuple[int, int]:
    """attendance-import's finished attempts in the history table, all strategies: (observed, failed)."""
    client = stack.client("dynamodb")
    [name] = [name for name in client.list_tables()["TableNames"] if name.endswith("HistoryTable")]
    histories = HistoryTable(name, client, cache_seconds=0).summaries("attendance-import").values()
    observed = sum(summary.observed for summary in histories)
    failed = sum(round(summary.observed * (1 - (summary.success_rate or 0))) for summary in histories)
    return observed, failed


def test_finished_attempts_reach_the_history_through_the_job_tables_stream(stack: Stack) -> None:
    observed, failed = attendance_history(stack)
    job = stack.wait_for(stack.submit("attendance-import", ["uploads/flaky.csv"], "it-history"))
    assert [attempt.exit_code for attempt in job.attempts] == [75, 0]

    # The history function folds both attempts in, from the stream of the job's writes: one failure,
    # one success (other tests of this stack may add theirs meanwhile).
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        now_observed, now_failed = attendance_history(stack)
        if now_observed >= observed + 2 and now_failed >= failed + 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"history of attendance-import: {attendance_history(stack)}, was {(observed, failed)}")


def test_logs_are_in_the_stream_the_job_points_at(stack: Stack) -> None:
    job = stack.wait_for(stack.submit("payroll-calculation", ["2026-12", "globex"], "it-logs"))
    attempt = job.attempt
    assert attempt is not None and attempt.task_arn

    task_id = attempt.task_arn.rsplit("/", 1)[-1]
    assert (attempt.log_group, attempt.log_stream) == ("/ecs/batchgate-payroll", f"batch/payroll/{task_id}")
    assert stack.log_lines(job) == [
        f"payroll 2026-12: 1 company (job {job.job_id})",
        "payroll 2026-12: globex: 42 employees calculated",
        "payroll 2026-12: done",
    ]
    # The ops CLI, in its own process, finds them from the job id alone.
    result = subprocess.run(
        [BATCHGATE, "--local", "--local-state", str(stack.state_path), "logs", job.job_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "payroll 2026-12: done" in result.stdout


def test_an_event_track_cannot_apply_lands_in_the_track_dlq(stack: Stack) -> None:
    """Track raises for a task whose job does not exist; after Lambda's retries the event goes to the
    template's on-failure destination as a destination record."""
    detail = {
        "clusterArn": stack.state["cluster"],
        "startedBy": "bg-payroll-calculation-00000000000000000000",
        "taskArn": stack.state["cluster"].replace(":cluster/", ":task/") + "/0123",
        "lastStatus": "RUNNING",
        "version": 1,
    }
    stack.events.put_events(
        Entries=[{"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json.dumps(detail)}]
    )
    dlq = stack.state["dlq_urls"]["track"]
    deadline = time.monotonic() + JOB_SECONDS
    messages: list[Any] = []
    while not messages and time.monotonic() < deadline:
        messages = stack.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])

    assert messages, "nothing reached the track dead-letter queue"
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["detail"]["startedBy"] == detail["startedBy"]
    assert record["responsePayload"]["errorType"] == "JobNotFound"


def test_dlq_redrive_sends_track_events_to_the_local_track_host(stack: Stack) -> None:
    """`dlq redrive` with no extra option: the track DLQ's event goes to the queue the track host reads;
    the host invokes track, which fails again for a job that does not exist, so the event comes back
    to the DLQ after Lambda's retries: proof that it was delivered and run."""
    started_by = "bg-payroll-calculation-11111111111111111111"
    event = {
        "source": "aws.ecs",
        "detail-type": "ECS Task State Change",
        "detail": {
            "clusterArn": stack.state["cluster"],
            "startedBy": started_by,
            "taskArn": stack.state["cluster"].replace(":cluster/", ":task/") + "/4567",
            "lastStatus": "RUNNING",
            "version": 1,
        },
    }
    dlq = stack.state["dlq_urls"]["track"]
    stack.sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(event))
    result = subprocess.run(
        [BATCHGATE, "--local", "--local-state", str(stack.state_path), "dlq", "redrive", "--yes", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    track = next(entry for entry in json.loads(result.stdout)["results"] if entry["queue"] == "track")
    assert track["moved"] >= 1 and track["failed"] == []
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        for message in stack.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", []):
            record = json.loads(message["Body"])
            payload = record.get("requestPayload") if isinstance(record, dict) else None
            if isinstance(payload, dict) and payload["detail"]["startedBy"] == started_by:
                assert record["responsePayload"]["errorType"] == "JobNotFound"
                return
    pytest.fail("the redriven event never reached the track host")


def test_the_demo_passes() -> None:
    """`make run`: the demo's own checks of every job, in a fresh stack."""
    result = subprocess.run(
        [BATCHGATE, "local", "demo", "--start-profile", "none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout
    # The final table names each demo job: the duplicate delivery kept as one job, why one was REJECTED.
    summary = result.stdout[result.stdout.index("demo jobs") :]
    assert "2x: 1 job" in summary
    assert "unknown batch 'payroll-calc'" in summary
    # The failing job's notification, as the template's rule sent it to the local topic.
    assert "payroll-calculation (tenant acme) ended FAILED after attempt 1" in " ".join(result.stdout.split())


def processes_of(job_id: str) -> list[int]:
    """Local processes whose environment names the job (Linux /proc; empty elsewhere)."""
    marker = f"BATCHGATE_JOB_ID={job_id}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_up_writes_a_sam_env_vars_file_for_the_running_stack(stack: Stack) -> None:
    environment = json.loads(Path(stack.state["sam_env_file"]).read_text())
    assert {"DispatchFunction", "TrackFunction", "HistoryFunction", "SweepFunction"} <= set(environment)
    track = environment["TrackFunction"]
    assert track["JOB_TABLE_NAME"] == stack.state["table_name"]
    assert track["ECS_CLUSTER"] == stack.state["cluster"]
    assert track["JOBS_QUEUE_URL"] == stack.state["queue_url"]
    assert track["AWS_ENDPOINT_URL"] == stack.state["endpoint_url"]
    assert track["AWS_REGION"] == track["AWS_DEFAULT_REGION"] == stack.state["region"]


def _schedules_cli(stack: Stack, *arguments: str) -> Any:
    result = subprocess.run(
        [BATCHGATE, "--local", "--local-state", str(stack.state_path), "schedules", *arguments, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_schedules_slot_run_by_hand_twice_is_one_job_with_the_slots_arguments(stack: Stack) -> None:
    """The month close of October (22:00 Tokyo on the 31st): the slot's message, its argument resolved
    by dispatch in Tokyo time; sent twice, one job and one task."""
    first = _schedules_cli(stack, "run", "payroll-month-close", "--slot", "2026-10-31T22:00")
    second = _schedules_cli(stack, "run", "payroll-month-close", "--slot", "2026-10-31T13:00:00Z")
    assert first["job_id"] == second["job_id"]
    job = stack.wait_for(first["job_id"])
    assert job.status is JobStatus.SUCCEEDED and job.arguments == ("2026-10",)
    assert job.scheduled_time == "2026-10-31T13:00:00.000Z"
    tasks = stack.ecs.list_tasks(
        cluster=stack.state["cluster"], startedBy=job.job_id, desiredStatus="STOPPED"
    )
    assert len(tasks["taskArns"]) == 1
    listed = _schedules_cli(stack, "--schedule", "payroll-month-close", "--last", "50")["schedules"][0]
    states = {slot["scheduled_time"]: (slot["state"], slot["job_id"]) for slot in listed["recent"]}
    assert states["2026-10-31T13:00:00Z"] == ("SUCCEEDED", job.job_id)
