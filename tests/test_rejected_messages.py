"""Rejected messages: environment values never kept in what is stored, logged or published of them, and
a corrected message with the same idempotency key makes the REJECTED job anew instead of being dropped."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.telemetry import logger
from batchgate.domain.corrections import MAX_REJECTIONS_KEPT, corrected
from batchgate.domain.job_events import job_state_change
from batchgate.domain.jobs import Job, JobStatus, job_id_for
from batchgate.domain.masking import CUT_MARK, ENVIRONMENT_MASK, masked_message
from batchgate.services.dispatch import DispatchResult
from batchgate.services.history_feed import HistoryFeed, JobChange

from tests.conftest import Stack, create_history_table, event_fixture, job_stream_records
from tests.test_dispatch import PAYROLL, PAYROLL_JOB, CreatedJobs
from tests.test_track import dispatched_job

SECRET = "s3cr3t-env-value"
KEY = "payroll-2026-11-acme"


def payroll(**fields: Any) -> str:
    document: dict[str, Any] = {
        "schema_version": 1,
        "batch": "payroll-calculation",
        "arguments": ["2026-11"],
        "idempotency_key": KEY,
    }
    document.update(fields)
    return json.dumps(document)


@pytest.fixture
def dispatch_log() -> Iterator[io.StringIO]:
    """What dispatch logs (Powertools writes to the handler's stream)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    written = io.StringIO()
    previous = handler.setStream(written)
    try:
        yield written
    finally:
        handler.setStream(previous)


# --- environment values -------------------------------------------------------------------------------


def test_a_rejected_message_keeps_its_environment_names_and_none_of_its_values(
    stack: Stack, dispatch_log: io.StringIO
) -> None:
    body = payroll(arguments=["a b"], environment={"LOG_LEVEL": SECRET})
    assert stack.dispatcher().dispatch("m-1", body) is DispatchResult.REJECTED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.REJECTED
    assert job.raw_message is not None
    assert json.loads(job.raw_message)["environment"] == {"LOG_LEVEL": ENVIRONMENT_MASK}
    assert json.loads(job.raw_message)["arguments"] == ["a b"]  # what ops need to see why
    assert SECRET not in json.dumps(job.to_item())
    assert "message rejected" in dispatch_log.getvalue() and SECRET not in dispatch_log.getvalue()


def test_a_non_string_environment_value_never_reaches_the_reason_or_the_log(
    stack: Stack, dispatch_log: io.StringIO
) -> None:
    # fastjsonschema's error carries the value; the reason used to quote it: "(got 918273645)".
    body = payroll(environment={"LOG_LEVEL": 918273645})
    assert stack.dispatcher().dispatch("m-1", body) is DispatchResult.REJECTED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.reason is not None
    assert job.reason == (
        "field 'environment.LOG_LEVEL' must be string (got integer; environment values are not shown)"
    )
    assert "918273645" not in json.dumps(job.to_item())
    assert "918273645" not in dispatch_log.getvalue()


@pytest.mark.parametrize("environment", ["TOKEN=" + SECRET, [SECRET], {"LOG_LEVEL": {"v": SECRET}}])
def test_an_environment_of_the_wrong_shape_is_named_by_its_type_only(stack: Stack, environment: Any) -> None:
    assert stack.dispatcher().dispatch("m-1", payroll(environment=environment)) is DispatchResult.REJECTED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and "environment values are not shown" in (job.reason or "")
    assert SECRET not in json.dumps(job.to_item())


def test_a_body_that_is_not_json_is_kept_only_up_to_its_environment(stack: Stack) -> None:
    body = payroll(arguments=["2026-11"], environment={"LOG_LEVEL": SECRET})[:-1]  # cut: not JSON
    assert stack.dispatcher().dispatch("m-1", body) is DispatchResult.REJECTED
    job = stack.table.get(job_id_for("-", "m-1"))
    assert job is not None and job.raw_message is not None
    assert job.raw_message.endswith(CUT_MARK) and SECRET not in job.raw_message
    assert '"arguments": ["2026-11"]' in job.raw_message


@pytest.mark.parametrize(
    "body",
    [
        '{"schema_version": 1, "\\u0065nvironment": {"A": "' + SECRET + '"}}',  # an escaped key
        '[{"environment": {"A": "' + SECRET + '"}}]',  # anywhere in the document
        '{"environment": {"A": "x"}, "environment": {"A": "' + SECRET + '"}}',  # a repeated key
        '{"ENVIRONMENT": "' + SECRET + '", "environment": {"A": "' + SECRET,  # cut short
        '{"schema_version": 1, "Environment": {"A": "' + SECRET + '"}}',  # an unknown field's case
    ],
)
def test_masking_finds_environment_values_however_they_are_written(body: str) -> None:
    assert SECRET not in masked_message(body)


def test_a_body_without_environment_is_kept_as_received() -> None:
    body = '{ "schema_version": 1,  "batch": "payroll-calculation" }'
    assert masked_message(body) == body


def test_the_events_of_a_rejected_job_carry_no_environment_value(stack: Stack) -> None:
    for message_id, body in (
        ("m-1", payroll(arguments=["a b"], environment={"LOG_LEVEL": SECRET})),
        ("m-2", payroll(idempotency_key="k-2", environment={"LOG_LEVEL": 918273645})),
    ):
        assert stack.dispatcher().dispatch(message_id, body) is DispatchResult.REJECTED
    events = [
        job_state_change(change.before, change.after, "us-east-1")
        for change in map(JobChange.from_record, job_stream_records())
    ]
    published = [event.entry("default") for event in events if event is not None]
    assert [json.loads(entry["Detail"])["status"] for entry in published] == ["REJECTED", "REJECTED"]
    assert all(SECRET not in entry["Detail"] and "918273645" not in entry["Detail"] for entry in published)


# --- a corrected message ------------------------------------------------------------------------------


def test_a_corrected_message_makes_the_rejected_job_anew(stack: Stack) -> None:
    dispatcher = stack.dispatcher()
    assert dispatcher.dispatch("m-bad", payroll(arguments=["a b"])) is DispatchResult.REJECTED
    rejected = stack.table.get(PAYROLL_JOB)
    assert rejected is not None and rejected.status is JobStatus.REJECTED

    assert dispatcher.dispatch("m-good", PAYROLL) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED
    assert job.message_id == "m-good" and job.arguments == ("2026-11",) and job.reason is None
    assert job.raw_message is None and job.environment == {"LOG_LEVEL": "DEBUG"}
    assert [r.message_id for r in job.rejections] == ["m-bad"]
    assert job.rejections[0].reason == rejected.reason
    assert job.rejections[0].received_at == rejected.created_at
    assert job.rejections[0].raw_message == rejected.raw_message
    assert len(stack.tasks_started_by(PAYROLL_JOB)) == 1
    assert Job.from_item(job.to_item()) == job

    # A duplicate of the accepted job is still a duplicate; the rejected message again changes nothing.
    assert dispatcher.dispatch("m-again", PAYROLL) is DispatchResult.DUPLICATE
    assert dispatcher.dispatch("m-bad", payroll(arguments=["a b"])) is DispatchResult.REJECTED
    assert stack.table.query(status="REJECTED").jobs == []
    assert len(stack.tasks_started_by(PAYROLL_JOB)) == 1


def test_a_redelivered_valid_message_rejected_at_its_deadline_stays_rejected(stack: Stack) -> None:
    dispatcher = stack.dispatcher()
    late = payroll(deadline="2020-01-01T00:00:00Z")
    assert dispatcher.dispatch("m-1", late) is DispatchResult.REJECTED
    assert dispatcher.dispatch("m-1", late) is DispatchResult.DUPLICATE
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.REJECTED and job.rejections == ()
    # A new message with the key (a later deadline, or none) is the correction.
    assert dispatcher.dispatch("m-2", payroll()) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED
    assert [r.message_id for r in job.rejections] == ["m-1"]
    assert "deadline" in (job.rejections[0].reason or "")


def test_two_concurrent_corrections_launch_once(stack: Stack) -> None:
    table = CreatedJobs(stack.table)
    dispatcher = replace(stack.dispatcher(), table=table)
    assert dispatcher.dispatch("m-bad", payroll(arguments=["a b"])) is DispatchResult.REJECTED
    assert dispatcher.dispatch("m-good-1", PAYROLL) is DispatchResult.DISPATCHED
    # The second correction read the job while it was still REJECTED: its conditional write fails,
    # the job it reads again is no longer REJECTED, and it launches nothing.
    table.stale_reads = True
    assert dispatcher.dispatch("m-good-2", payroll(arguments=["2026-12"])) is DispatchResult.DUPLICATE
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.message_id == "m-good-1" and job.arguments == ("2026-11",)
    assert [r.message_id for r in job.rejections] == ["m-bad"]
    assert len(stack.tasks_started_by(PAYROLL_JOB)) == 1


def test_only_a_rejected_job_is_made_anew_and_its_rejections_stay_few() -> None:
    rejected = Job(
        job_id=PAYROLL_JOB,
        batch="payroll-calculation",
        status=JobStatus.REJECTED,
        created_at="2026-11-28T10:00:00.000Z",
        updated_at="2026-11-28T10:00:00.100Z",
        expires_at=1,
        message_id="m-0",
        reason="bad",
        revision=3,
    )
    submitted = rejected._replace(status=JobStatus.SUBMITTED, message_id="m-1", reason=None, revision=1)
    # Stored before dispatch masked raw messages: the rejection kept is masked all the same.
    rejected = rejected._replace(raw_message=json.dumps({"environment": {"A": SECRET}}))
    kept = corrected(rejected, submitted)
    assert kept is not None and kept.rejections[0].raw_message == '{"environment": {"A": "***"}}'
    assert corrected(rejected._replace(status=JobStatus.SUBMITTED), submitted) is None
    assert corrected(rejected, submitted._replace(message_id="m-0")) is None  # the same message
    many = rejected._replace(rejections=corrected(rejected, submitted).rejections * 20)  # type: ignore[union-attr]
    made = corrected(many, submitted)
    assert made is not None and made.revision == 3 and made.status is JobStatus.SUBMITTED
    assert len(made.rejections) == MAX_REJECTIONS_KEPT


def test_the_stream_of_a_corrected_job_publishes_its_previous_status_and_folds_its_attempt_once(
    stack: Stack,
) -> None:
    assert stack.dispatcher().dispatch("m-0", payroll(arguments=["a b"])) is DispatchResult.REJECTED
    dispatched_job(stack)  # "m-1", the corrected message: launched
    tracker = stack.tracker()
    for name in ("task-pending.json", "task-running.json", "task-stopped-exit-0.json"):
        tracker.track(event_fixture(name))
    records = job_stream_records()

    changes = [JobChange.from_record(record) for record in records]
    details = [
        event.detail
        for change in changes
        if (event := job_state_change(change.before, change.after, "us-east-1")) is not None
    ]
    assert [(d["previous_status"], d["status"]) for d in details] == [
        (None, "REJECTED"),
        ("REJECTED", "SUBMITTED"),
        ("SUBMITTED", "DISPATCHING"),
        ("DISPATCHING", "DISPATCHED"),
        ("DISPATCHED", "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert len({d["event_id"] for d in details}) == len(details)

    client = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(client, "batchgate-test-history")
    fold = HistoryFeed(HistoryTable("batchgate-test-history", client)).in_order()
    assert sum(fold(record) for record in records) == 1  # the one attempt that ran; the rejection none
