from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks, LaunchOutcome
from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import Job, JobStatus, client_token, iso, job_id_for, utc_now
from batchgate.domain.messages import parse_submit_message
from batchgate.services.dispatch import DispatchResult, RetryLater, run_task_request
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber

from tests.conftest import LambdaContextStub, Stack, event_fixture, sqs_event

PAYROLL = json.dumps(
    {
        "schema_version": 1,
        "batch": "payroll-calculation",
        "arguments": ["2026-11"],
        "environment": {"LOG_LEVEL": "DEBUG"},
        "idempotency_key": "payroll-2026-11-acme",
    }
)
PAYROLL_JOB = job_id_for("payroll-calculation", "payroll-2026-11-acme")


class FlakyEcsClient:
    """The moto ECS client with RunTask recorded, and failing once with `fail_first` if given
    (moto neither dedupes clientToken nor fails)."""

    def __init__(self, client: Any, fail_first: Exception | None) -> None:
        self._client = client
        self.fail_first = fail_first
        self.requests: list[dict[str, Any]] = []

    def run_task(self, **request: Any) -> Any:
        self.requests.append(request)
        if self.fail_first is not None:
            error, self.fail_first = self.fail_first, None
            raise error
        return self._client.run_task(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RecordingEcs(EcsTasks):
    """The real adapter over a FlakyEcsClient."""

    def __init__(self, stack: Stack, fail_first: Exception | None = None) -> None:
        self.flaky = FlakyEcsClient(stack.ecs_client, fail_first)
        super().__init__(stack.settings.cluster, self.flaky)  # type: ignore[arg-type]

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.flaky.requests


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")


def test_good_message_creates_job_and_starts_one_task(stack: Stack) -> None:
    result = stack.dispatcher().dispatch("m-1", PAYROLL)
    assert result is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED
    assert job.plan is not None and "launch class standard" in job.plan.reason
    attempt = job.attempt
    assert attempt is not None and attempt.number == 1 and attempt.task_arn
    assert stack.tasks_started_by(PAYROLL_JOB) == [attempt.task_arn]
    task = stack.ecs_client.describe_tasks(cluster=stack.settings.cluster, tasks=[attempt.task_arn])["tasks"][
        0
    ]
    override = task["overrides"]["containerOverrides"][0]
    assert override["command"] == ["python", "-m", "payroll.calculate", "2026-11"]
    environment = {variable["name"]: variable["value"] for variable in override["environment"]}
    assert environment["BATCHGATE_JOB_ID"] == PAYROLL_JOB
    assert environment["BATCHGATE_ATTEMPT"] == "1"
    assert environment["LOG_LEVEL"] == "DEBUG"


def test_first_attempt_costs_three_writes_and_no_read(stack: Stack) -> None:
    """Create, begin the attempt, record the task: each write starts from the job dispatch holds."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    operations: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: operations.append(model.name))
    dispatcher = replace(stack.dispatcher(), table=JobTable(stack.settings.table_name, client))
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    assert operations == ["PutItem", "PutItem", "PutItem"]
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED and job.revision == 3


def test_run_task_request_carries_token_tags_and_strategy(stack: Stack) -> None:
    stack.dispatcher().dispatch("m-1", PAYROLL)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None
    spec = stack.catalog.get("payroll-calculation")
    assert spec is not None
    request = run_task_request(job, spec, job.attempt, stack.settings)
    assert request["startedBy"] == PAYROLL_JOB
    assert request["clientToken"] == client_token(PAYROLL_JOB, 1)
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1}]
    assert {"key": "batchgate:job-id", "value": PAYROLL_JOB} in request["tags"]
    assert request["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == list(stack.settings.subnets)
    assert len(json.dumps(request["overrides"])) <= 8192


def test_duplicate_delivery_launches_once(stack: Stack) -> None:
    dispatcher = stack.dispatcher()
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DUPLICATE
    # Same idempotency key in a different SQS message: still the same job.
    assert dispatcher.dispatch("m-2", PAYROLL) is DispatchResult.DUPLICATE
    assert len(stack.tasks_started_by(PAYROLL_JOB)) == 1


def test_throttled_run_task_returns_record_and_retry_reuses_the_token(stack: Stack) -> None:
    ecs = RecordingEcs(stack, fail_first=throttled())
    dispatcher = stack.dispatcher(ecs)
    with pytest.raises(RetryLater, match="ThrottlingException"):
        dispatcher.dispatch("m-1", PAYROLL)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHING
    assert job.attempt is not None and "ThrottlingException" in (job.attempt.error or "")
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    assert [request["clientToken"] for request in ecs.requests] == [client_token(PAYROLL_JOB, 1)] * 2
    assert ecs.requests[0] == ecs.requests[1]  # same parameters, so ECS would dedupe by token
    assert len(stack.tasks_started_by(PAYROLL_JOB)) == 1


def test_run_task_timeout_is_retryable(stack: Stack) -> None:
    ecs = RecordingEcs(stack, fail_first=ReadTimeoutError(endpoint_url="https://ecs"))
    with pytest.raises(RetryLater, match="did not answer"):
        stack.dispatcher(ecs).dispatch("m-1", PAYROLL)


def test_permanent_run_task_error_fails_the_job_with_the_reason(stack: Stack) -> None:
    ecs = RecordingEcs(
        stack,
        fail_first=ClientError(
            {"Error": {"Code": "InvalidParameterException", "Message": "No Fargate configuration"}}, "RunTask"
        ),
    )
    assert stack.dispatcher(ecs).dispatch("m-1", PAYROLL) is DispatchResult.FAILED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.reason == "RunTask InvalidParameterException: No Fargate configuration"
    # Redelivery of the same message does not try again.
    assert stack.dispatcher().dispatch("m-1", PAYROLL) is DispatchResult.DUPLICATE


def stubbed_ecs(stack: Stack, responses: list[dict[str, Any]]) -> tuple[EcsTasks, Stubber]:
    client = stack.ecs_client
    stubber = Stubber(client)
    for response in responses:
        stubber.add_response("run_task", response)
    stubber.activate()
    return EcsTasks(stack.settings.cluster, client), stubber


def test_capacity_failures_are_recorded_and_retried_with_the_same_token(stack: Stack) -> None:
    task_arn = "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/0123456789abcdef0123456789abcdef"
    ecs, stubber = stubbed_ecs(
        stack,
        [
            {"tasks": [], "failures": [{"reason": "RESOURCE:MEMORY", "arn": "arn:x"}]},
        ],
    )
    # The redelivery first looks for a task of this attempt by startedBy (running, then stopped).
    stubber.add_response("list_tasks", {"taskArns": []})
    stubber.add_response("list_tasks", {"taskArns": []})
    stubber.add_response("run_task", {"tasks": [{"taskArn": task_arn}], "failures": []})
    dispatcher = stack.dispatcher(ecs)
    with pytest.raises(RetryLater, match="RESOURCE:MEMORY"):
        dispatcher.dispatch("m-1", PAYROLL)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None
    assert job.attempt.launch_failures == ({"reason": "RESOURCE:MEMORY", "arn": "arn:x"},)
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None and job.attempt.task_arn == task_arn
    assert job.attempt_number == 1  # the same attempt, not a second launch
    stubber.assert_no_pending_responses()


def test_permanent_failures_in_the_response_fail_the_job(stack: Stack) -> None:
    ecs, _ = stubbed_ecs(stack, [{"tasks": [], "failures": [{"reason": "MISSING", "detail": "no instance"}]}])
    assert stack.dispatcher(ecs).dispatch("m-1", PAYROLL) is DispatchResult.FAILED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.reason == "RunTask failures: MISSING (no instance)"


@pytest.mark.parametrize(
    ("body", "reason_fragment"),
    [
        ("{not json", "JSON"),
        (json.dumps({"schema_version": 1, "batch": "no-such-batch"}), "no-such-batch"),
        (json.dumps({"schema_version": 2, "batch": "payroll-calculation", "arguments": ["x"]}), "version"),
        (json.dumps({"schema_version": 1, "batch": "payroll-calculation", "arguments": ["a b"]}), "argument"),
        ("x" * 9000, "bytes"),
    ],
)
def test_bad_messages_end_rejected_with_a_reason(stack: Stack, body: str, reason_fragment: str) -> None:
    assert stack.dispatcher().dispatch("m-bad", body) is DispatchResult.REJECTED
    page = stack.table.query(status="REJECTED")
    assert len(page.jobs) == 1
    job = page.jobs[0]
    assert reason_fragment.lower() in (job.reason or "").lower()
    assert job.message_id == "m-bad" and job.raw_message == body[:2048]
    assert stack.ecs_client.list_tasks(cluster=stack.settings.cluster)["taskArns"] == []
    # Redelivered, it is not recorded twice.
    assert stack.dispatcher().dispatch("m-bad", body) is DispatchResult.REJECTED
    assert len(stack.table.query(status="REJECTED").jobs) == 1


def test_rejected_message_is_keyed_by_its_idempotency_key(stack: Stack) -> None:
    body = json.dumps(
        {"schema_version": 1, "batch": "payroll-calculation", "arguments": [], "idempotency_key": "k-9"}
    )
    stack.dispatcher().dispatch("m-1", body)
    job = stack.table.get(job_id_for("payroll-calculation", "k-9"))
    assert job is not None and job.status is JobStatus.REJECTED and job.idempotency_key == "k-9"


def test_a_lone_surrogate_escape_ends_rejected_instead_of_failing_every_delivery(stack: Stack) -> None:
    # JSON's "\ud83d" alone decodes to a string no UTF-8 encoder takes: the job id hash, DynamoDB and
    # the log all encode it, so before the fix the record failed on each delivery until dead-lettered.
    body = (
        '{"schema_version": 1, "batch": "payroll-calculation", "arguments": ["2026-11"], '
        '"idempotency_key": "k-\\ud83d"}'
    )
    assert stack.dispatcher().dispatch("m-1", body) is DispatchResult.REJECTED
    job = stack.table.get(job_id_for("payroll-calculation", "k-\ufffd"))
    assert job is not None and job.status is JobStatus.REJECTED
    assert "lone UTF-16 surrogate" in (job.reason or "")
    assert job.raw_message == body  # the escape as sent: the body itself is plain ASCII here


def test_a_rejected_job_keeps_the_arguments_it_was_sent_with(stack: Stack) -> None:
    body = json.dumps({"schema_version": 1, "batch": "payroll-calculaton", "arguments": ["2026-11", 7]})
    assert stack.dispatcher().dispatch("m-typo", body) is DispatchResult.REJECTED
    job = stack.table.get(job_id_for("payroll-calculaton", "m-typo"))
    assert job is not None and job.status is JobStatus.REJECTED
    assert job.arguments == ("2026-11", "7")  # what ops see in `batchgate show`, not "-"


def test_passed_deadline_rejects_without_launching(stack: Stack) -> None:
    body = json.dumps(
        {
            "schema_version": 1,
            "batch": "report-export",
            "arguments": ["monthly"],
            "deadline": "2020-01-01T00:00:00Z",
        }
    )
    assert stack.dispatcher().dispatch("m-1", body) is DispatchResult.REJECTED
    job = stack.table.get(job_id_for("report-export", "m-1"))
    assert job is not None and job.status is JobStatus.REJECTED and "deadline" in (job.reason or "")
    assert stack.ecs_client.list_tasks(cluster=stack.settings.cluster)["taskArns"] == []


def test_handler_processes_the_sample_batch_with_partial_failures(
    stack: Stack, load_handler: Callable[[str], ModuleType]
) -> None:
    app = load_handler("dispatch")
    event = event_fixture("sqs-submit-batch.json")
    response = app.handler(event, LambdaContextStub())
    assert response == {"batchItemFailures": []}
    statuses = {
        job.status for status in ("DISPATCHED", "REJECTED") for job in stack.table.iterate(status=status)
    }
    assert statuses == {JobStatus.DISPATCHED, JobStatus.REJECTED}
    recorded = {job.message_id for s in ("DISPATCHED", "REJECTED") for job in stack.table.iterate(status=s)}
    assert recorded == {record["messageId"] for record in event["Records"]}


def test_handler_reports_only_the_records_to_retry(
    stack: Stack, load_handler: Callable[[str], ModuleType]
) -> None:
    app = load_handler("dispatch")
    vars(app)["dispatcher"] = stack.dispatcher(RecordingEcs(stack, fail_first=throttled()))
    event = sqs_event(PAYROLL, "{bad", message_ids=["m-payroll", "m-bad"])
    response = app.handler(event, LambdaContextStub())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-payroll"}]}
    rejected = stack.table.get(job_id_for("-", "m-bad"))
    assert rejected is not None and rejected.status is JobStatus.REJECTED


def test_the_job_keeps_the_send_time_of_the_delivery_that_created_it(
    stack: Stack, load_handler: Callable[[str], ModuleType]
) -> None:
    app = load_handler("dispatch")
    vars(app)["dispatcher"] = stack.dispatcher()
    event = sqs_event(PAYROLL, "{bad", message_ids=["m-payroll", "m-bad"])
    assert event["Records"][0]["attributes"]["SentTimestamp"] == "1795859998100"
    assert app.handler(event, LambdaContextStub()) == {"batchItemFailures": []}
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.submitted_at == "2026-11-28T09:59:58.100Z"
    rejected = stack.table.get(job_id_for("-", "m-bad"))
    assert rejected is not None and rejected.submitted_at == "2026-11-28T09:59:58.100Z"
    # A redelivery (or a later copy with the same key) is not a new submit: the first send time stays.
    event["Records"][0]["attributes"]["SentTimestamp"] = "1795860058100"
    assert app.handler(event, LambdaContextStub()) == {"batchItemFailures": []}
    again = stack.table.get(PAYROLL_JOB)
    assert again is not None and again.submitted_at == "2026-11-28T09:59:58.100Z"


def test_a_record_without_a_readable_send_time_still_dispatches(stack: Stack) -> None:
    assert stack.dispatcher().dispatch("m-1", PAYROLL, "not-a-number") is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED and job.submitted_at is None


def test_an_item_stored_without_a_send_time_reads_as_none(stack: Stack) -> None:
    assert stack.dispatcher().dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.submitted_at is None and "submitted_at" not in job.to_item()
    assert Job.from_item(job.to_item()) == job


def test_bad_message_reusing_a_taken_idempotency_key_is_still_recorded(stack: Stack) -> None:
    assert stack.dispatcher().dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    bad = json.dumps(
        {
            "schema_version": 1,
            "batch": "payroll-calculation",
            "arguments": ["a b"],
            "idempotency_key": "payroll-2026-11-acme",
        }
    )
    for _ in range(2):  # redelivered: recorded once
        assert stack.dispatcher().dispatch("m-2", bad) is DispatchResult.REJECTED
    rejected = stack.table.query(status="REJECTED").jobs
    assert len(rejected) == 1
    assert rejected[0].job_id == job_id_for("payroll-calculation", "m-2")
    assert f"already used by job {PAYROLL_JOB}" in (rejected[0].reason or "")
    original = stack.table.get(PAYROLL_JOB)
    assert original is not None and original.status is JobStatus.DISPATCHED


class CreatedJobs(JobTable):
    """The stack's table, keeping each job as `create` first stored it: what a delivery that read the
    job before another delivery's writes holds."""

    def __init__(self, table: JobTable) -> None:
        super().__init__(table.table_name, table._client)
        self.created: dict[str, Job] = {}
        self.stale_reads = False

    def create(self, job: Job) -> Job | None:
        stored = super().create(job)
        if stored is not None:
            self.created[stored.job_id] = stored
        return stored

    def get(self, job_id: str) -> Job | None:
        if self.stale_reads and job_id in self.created:
            return self.created.pop(job_id)  # once: the conditional write that follows re-reads
        return super().get(job_id)


def test_a_passed_deadline_never_rejects_a_launch_another_delivery_began(stack: Stack) -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    body = json.dumps(
        {"schema_version": 1, "batch": "report-export", "arguments": ["monthly"], "deadline": iso(deadline)}
    )
    table = CreatedJobs(stack.table)
    before, after = deadline - timedelta(seconds=1), deadline + timedelta(seconds=1)
    first = replace(stack.dispatcher(), table=table, clock=lambda: before)
    assert first.dispatch("m-1", body) is DispatchResult.DISPATCHED
    # A redelivery past the deadline that read the job while it was still SUBMITTED.
    table.stale_reads = True
    assert replace(first, clock=lambda: after).dispatch("m-1", body) is DispatchResult.DUPLICATE
    job = stack.table.get(job_id_for("report-export", "m-1"))
    assert job is not None and job.status is JobStatus.DISPATCHED
    assert len(stack.ecs_client.list_tasks(cluster=stack.settings.cluster)["taskArns"]) == 1


def test_the_deadline_is_the_jobs_not_a_later_message_with_its_key(stack: Stack) -> None:
    first = {
        "schema_version": 1,
        "batch": "report-export",
        "arguments": ["monthly"],
        "idempotency_key": "r-1",
    }
    late = {**first, "deadline": "2020-01-01T00:00:00Z"}
    table = CreatedJobs(stack.table)
    dispatcher = replace(stack.dispatcher(), table=table)
    job_id = job_id_for("report-export", "r-1")
    # The first message's job exists, SUBMITTED (its delivery stopped before the launch began).
    table.create(
        dispatcher._new_job(job_id, "m-1", parse_submit_message(json.dumps(first), stack.catalog), utc_now())
    )
    assert dispatcher.dispatch("m-2", json.dumps(late)) is DispatchResult.DISPATCHED
    job = stack.table.get(job_id)
    assert job is not None and job.status is JobStatus.DISPATCHED and job.deadline is None


def test_a_second_task_for_one_attempt_is_stopped_and_the_first_kept(stack: Stack) -> None:
    ecs = RecordingEcs(stack)
    dispatcher = stack.dispatcher(ecs)
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None and job.attempt.task_arn is not None
    kept = job.attempt.task_arn
    # Another delivery's RunTask (another try of the chain, another token) started a second task.
    second = stack.ecs_client.run_task(**{**ecs.requests[0], "clientToken": f"{PAYROLL_JOB}-1.1"})["tasks"][
        0
    ]["taskArn"]
    result = dispatcher._record_outcome(job, job.attempt, LaunchOutcome(task_arn=second), utc_now())
    assert result is DispatchResult.DUPLICATE
    stored = stack.table.get(PAYROLL_JOB)
    assert stored is not None and stored.attempt is not None and stored.attempt.task_arn == kept
    described = stack.ecs_client.describe_tasks(cluster=stack.settings.cluster, tasks=[second])["tasks"][0]
    assert described["desiredStatus"] == "STOPPED"
    assert f"already runs as task {kept}" in described["stoppedReason"]
