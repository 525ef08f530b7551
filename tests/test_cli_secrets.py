"""Environment values in the CLI: masked by `show` (human and --json) and `dlq list --json` unless
--reveal-env; a corrected job shows the rejection it replaced."""

from __future__ import annotations

import json

from batchgate.domain.jobs import JobStatus
from batchgate.services.dispatch import DispatchResult

from tests.cli_support import CliHarness, harness, listed_job
from tests.conftest import event_fixture
from tests.test_dispatch import PAYROLL, PAYROLL_JOB

__all__ = ["harness"]  # the fixture, imported for pytest

SECRET = "s3cr3t-env-value"


def test_show_masks_environment_values_unless_revealed(harness: CliHarness) -> None:
    job = harness.add(listed_job(1)._replace(environment={"API_TOKEN": SECRET, "LOG_LEVEL": "DEBUG"}))
    human = harness.ok("show", job.job_id).stdout
    assert "API_TOKEN=*** LOG_LEVEL=***" in human and SECRET not in human
    document = harness.json("show", job.job_id)
    assert document["environment"] == {"API_TOKEN": "***", "LOG_LEVEL": "***"}
    assert SECRET not in json.dumps(document)

    assert f"API_TOKEN={SECRET} LOG_LEVEL=DEBUG" in harness.ok("show", job.job_id, "--reveal-env").stdout
    revealed = harness.json("show", job.job_id, "--reveal-env")
    assert revealed["environment"] == {"API_TOKEN": SECRET, "LOG_LEVEL": "DEBUG"}


def test_a_raw_message_stored_with_environment_values_is_shown_masked(harness: CliHarness) -> None:
    raw = json.dumps(
        {"schema_version": 1, "batch": "payroll-calculation", "environment": {"API_TOKEN": SECRET}}
    )
    job = harness.add(listed_job(2, JobStatus.REJECTED)._replace(reason="bad", raw_message=raw))
    human = harness.run("show", job.job_id).stdout
    assert '"environment": {"API_TOKEN": "***"}' in human and SECRET not in human
    document = harness.json("show", job.job_id, exit_code=1)
    assert json.loads(document["raw_message"])["environment"] == {"API_TOKEN": "***"}
    assert harness.json("show", job.job_id, "--reveal-env", exit_code=1)["raw_message"] == raw


def test_show_keeps_the_rejection_a_corrected_message_replaced(harness: CliHarness) -> None:
    bad = json.dumps(
        {
            "schema_version": 1,
            "batch": "payroll-calculation",
            "arguments": ["a b"],
            "environment": {"LOG_LEVEL": SECRET},
            "idempotency_key": "payroll-2026-11-acme",
        }
    )
    dispatcher = harness.stack.dispatcher()
    assert dispatcher.dispatch("m-bad", bad) is DispatchResult.REJECTED
    assert dispatcher.dispatch("m-good", PAYROLL) is DispatchResult.DISPATCHED
    human = harness.ok("show", PAYROLL_JOB).stdout
    assert "earlier: message m-bad received" in human and "was REJECTED: batch payroll-calculation" in human
    assert SECRET not in human
    [rejection] = harness.json("show", PAYROLL_JOB)["rejections"]
    assert rejection["message_id"] == "m-bad" and "argument" in rejection["reason"]
    assert json.loads(rejection["raw_message"])["environment"] == {"LOG_LEVEL": "***"}


def test_dlq_list_masks_the_environment_of_a_dead_letter_unless_revealed(harness: CliHarness) -> None:
    body = json.dumps({"schema_version": 1, "batch": "report-export", "environment": {"API_TOKEN": SECRET}})
    harness.sqs.send_message(QueueUrl=harness.jobs_dlq_url, MessageBody=body)
    [letter] = harness.json("dlq", "list", "--queue", "jobs")["queues"][0]["messages"]
    assert json.loads(letter["body"])["environment"] == {"API_TOKEN": "***"}
    [letter] = harness.json("dlq", "list", "--queue", "jobs", "--reveal-env")["queues"][0]["messages"]
    assert letter["body"] == body


def test_dlq_list_masks_the_environment_overrides_of_a_task_event(harness: CliHarness) -> None:
    event = event_fixture("task-running.json")
    override = event["detail"]["overrides"]["containerOverrides"][0]
    override["environment"] = [{"name": "API_TOKEN", "value": SECRET}]
    harness.sqs.send_message(QueueUrl=harness.track_dlq_url, MessageBody=json.dumps(event))
    [letter] = harness.json("dlq", "list", "--queue", "track")["queues"][0]["messages"]
    assert SECRET not in letter["body"]
    assert json.loads(letter["body"])["detail"]["overrides"]["containerOverrides"][0]["environment"] == "***"
