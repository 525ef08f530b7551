"""Fallback along the plan's chain when RunTask reports no capacity, and the launch-rate governor in
dispatch. moto never returns RunTask `failures`, so RunTask answers are scripted here; a scripted success
starts a real moto task, so the number of tasks per job can be counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchgate.dispatch import Dispatcher, DispatchResult, RetryLater
from batchgate.ecs import EcsTasks
from batchgate.jobs import Job, JobStatus, client_token, job_id_for
from batchgate.launch_governor import LaunchGovernor
from batchgate.queue_backoff import QueueBackoff, queue_url
from botocore.exceptions import ClientError

from tests.conftest import LambdaContextStub, Stack, sqs_event

CP = "cp-ec2"
ATTENDANCE = json.dumps(
    {
        "schema_version": 1,
        "batch": "attendance-import",
        "arguments": ["uploads/a.csv"],
        "idempotency_key": "att-1",
    }
)
ATTENDANCE_JOB = job_id_for("attendance-import", "att-1")
REPORT = json.dumps(
    {"schema_version": 1, "batch": "report-export", "arguments": ["monthly"], "idempotency_key": "rep-1"}
)
REPORT_JOB = job_id_for("report-export", "rep-1")
NO_MEMORY = {"reason": "RESOURCE:MEMORY", "arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/x"}
NO_CPU = {"reason": "RESOURCE:CPU"}
NO_SPOT = {
    "reason": "Capacity is unavailable at this time. "
    "Please try again later or in a different availability zone"
}
FAKE_EC2_TASK = "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/00000000000000000000000000000ec2"


class ScriptedEcsClient:
    """The moto ECS client whose RunTask answers follow a script: a failures list, an exception, or
    "ok" (a real moto task; for the EC2 capacity provider, which moto cannot place, a made-up ARN)."""

    def __init__(self, client: Any, script: list[Any]) -> None:
        self._client = client
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []

    def run_task(self, **request: Any) -> Any:
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if step == "ok":
            if request["capacityProviderStrategy"][0]["capacityProvider"] == CP:
                return {"tasks": [{"taskArn": FAKE_EC2_TASK}], "failures": []}
            return self._client.run_task(**request)
        return {"tasks": [], "failures": list(step)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def tokens(self) -> list[str]:
        return [request["clientToken"] for request in self.requests]

    @property
    def providers(self) -> list[str]:
        return [request["capacityProviderStrategy"][0]["capacityProvider"] for request in self.requests]


def dispatcher(stack: Stack, script: list[Any], **changes: Any) -> tuple[Dispatcher, ScriptedEcsClient]:
    client = ScriptedEcsClient(stack.ecs_client, script)
    base = Dispatcher(
        catalog=stack.catalog,
        table=stack.table,
        ecs=EcsTasks(stack.settings.cluster, client),  # type: ignore[arg-type]
        settings=replace(stack.settings, ec2_capacity_provider=CP),
    )
    return replace(base, **changes), client


def stored(stack: Stack, job_id: str) -> Job:
    job = stack.table.get(job_id)
    assert job is not None
    return job


def test_no_ec2_capacity_falls_back_to_fargate_in_the_same_dispatch(stack: Stack) -> None:
    dispatch, ecs = dispatcher(stack, [[NO_MEMORY], "ok"])
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DISPATCHED
    assert ecs.providers == [CP, "FARGATE"]
    assert ecs.tokens == [client_token(ATTENDANCE_JOB, 1), client_token(ATTENDANCE_JOB, 1, 1)]
    assert ecs.tokens[1] == f"{ATTENDANCE_JOB}-1.1" and len(ecs.tokens[1]) <= 64
    job = stored(stack, ATTENDANCE_JOB)
    attempt = job.attempt
    assert attempt is not None and job.status is JobStatus.DISPATCHED and job.attempt_number == 1
    assert (attempt.strategy, attempt.capacity_provider, attempt.launch_try) == ("FARGATE", "FARGATE", 1)
    assert attempt.tries == (
        {
            "try": 0,
            "strategy": "EC2",
            "capacity_provider": CP,
            "client_token": f"{ATTENDANCE_JOB}-1",
            "failures": [NO_MEMORY],
            "error": "RunTask failures: RESOURCE:MEMORY",
        },
    )
    assert stack.tasks_started_by(ATTENDANCE_JOB) == [attempt.task_arn]
    assert job.plan is not None and job.plan.chain == ("EC2", "FARGATE")


def test_spot_shortage_falls_back_to_on_demand(stack: Stack) -> None:
    dispatch, ecs = dispatcher(stack, [[NO_SPOT], "ok"])
    assert dispatch.dispatch("m-1", REPORT) is DispatchResult.DISPATCHED
    assert ecs.providers == ["FARGATE_SPOT", "FARGATE"]
    attempt = stored(stack, REPORT_JOB).attempt
    assert (
        attempt is not None
        and attempt.strategy == "FARGATE"
        and attempt.tries[0]["strategy"] == "FARGATE_SPOT"
    )
    assert len(stack.tasks_started_by(REPORT_JOB)) == 1


def test_record_returns_to_the_queue_only_when_the_chain_is_exhausted(stack: Stack) -> None:
    dispatch, ecs = dispatcher(stack, [[NO_CPU], [NO_MEMORY]])
    with pytest.raises(RetryLater, match="no capacity") as raised:
        dispatch.dispatch("m-1", ATTENDANCE)
    assert not raised.value.throttled
    assert ecs.providers == [CP, "FARGATE"]  # each try once, the whole chain walked
    attempt = stored(stack, ATTENDANCE_JOB).attempt
    assert attempt is not None and attempt.task_arn is None
    assert [(t["try"], t["strategy"], t["failures"]) for t in attempt.tries] == [
        (0, "EC2", [NO_CPU]),
        (1, "FARGATE", [NO_MEMORY]),
    ]
    # Redelivered: the last try is repeated with its own token (ECS would return its task if it had
    # started one), not the whole chain again, and not a second attempt.
    ecs.script = ["ok"]
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DISPATCHED
    assert ecs.tokens[2] == ecs.tokens[1] == f"{ATTENDANCE_JOB}-1.1"
    job = stored(stack, ATTENDANCE_JOB)
    assert job.attempt_number == 1 and job.attempt is not None and len(job.attempt.tries) == 2
    assert len(stack.tasks_started_by(ATTENDANCE_JOB)) == 1


def test_a_permanent_error_on_a_fallback_fails_the_job(stack: Stack) -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "RunTask")
    dispatch, ecs = dispatcher(stack, [[NO_MEMORY], denied])
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.FAILED
    job = stored(stack, ATTENDANCE_JOB)
    assert job.status is JobStatus.FAILED and "AccessDenied" in (job.reason or "")
    assert len(ecs.requests) == 2


def test_a_plan_without_fallbacks_goes_straight_back_to_the_queue(stack: Stack) -> None:
    dispatch, ecs = dispatcher(stack, [[NO_MEMORY]])
    payroll = json.dumps({"schema_version": 1, "batch": "payroll-calculation", "arguments": ["2026-11"]})
    dispatch = replace(dispatch, settings=replace(dispatch.settings, ec2_capacity_provider=None))
    with pytest.raises(RetryLater):
        dispatch.dispatch("m-1", payroll)
    assert ecs.providers == ["FARGATE"]


def test_throttling_is_marked_for_back_off(stack: Stack) -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")
    dispatch, _ = dispatcher(stack, [throttled])
    with pytest.raises(RetryLater) as raised:
        dispatch.dispatch("m-1", ATTENDANCE)
    assert raised.value.throttled


def test_governor_defers_the_launch_without_calling_run_task(stack: Stack) -> None:
    now = [0.0]
    governor = LaunchGovernor(
        calls_per_second=1,
        fargate_per_second=1,
        fargate_burst=1,
        max_wait=0.5,
        clock=lambda: now[0],
        sleep=lambda _: None,
    )
    dispatch, ecs = dispatcher(stack, ["ok"], governor=governor)
    assert dispatch.dispatch("m-1", REPORT) is DispatchResult.DISPATCHED
    second = json.dumps({"schema_version": 1, "batch": "report-export", "arguments": ["weekly"]})
    with pytest.raises(RetryLater, match="launch rate") as raised:
        dispatch.dispatch("m-2", second)
    assert raised.value.throttled and raised.value.delay_seconds > 0.5
    assert len(ecs.requests) == 1  # the deferred launch never reached ECS
    # Its job is safe: the attempt is written and the record comes back later.
    job = stored(stack, job_id_for("report-export", "m-2"))
    assert job.status is JobStatus.DISPATCHING and job.attempt is not None and job.attempt.task_arn is None


def test_handler_delays_a_throttled_record_with_back_off(
    stack: Stack, load_handler: Callable[[str], ModuleType]
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="batchgate-jobs", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.send_message(QueueUrl=url, MessageBody=ATTENDANCE)
    received = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"][0]
    app = load_handler("dispatch")
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")
    scripted, _ = dispatcher(stack, [throttled])
    setattr(app, "dispatcher", scripted)  # noqa: B010
    setattr(app, "backoff", QueueBackoff(scripted.strategy_settings, sqs, rand=lambda: 1.0))  # noqa: B010
    # A second record that succeeds: a batch whose every record fails is an error in Powertools.
    event = sqs_event(ATTENDANCE, "{bad", message_ids=[received["MessageId"], "m-bad"])
    record = event["Records"][0]
    record.update(eventSourceARN=arn, receiptHandle=received["ReceiptHandle"])
    record["attributes"]["ApproximateReceiveCount"] = "3"
    response = app.handler(event, LambdaContextStub())
    assert response == {"batchItemFailures": [{"itemIdentifier": received["MessageId"]}]}
    # Visibility 0 would show it again at once: the back-off (2 s * 2**2 = 8 s here) hides it.
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    assert queue_url(sqs, arn) == url


def test_queue_url_needs_an_sqs_arn() -> None:
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        queue_url(boto3.client("sqs", region_name="us-east-1"), "arn:aws:sns:us-east-1:123456789012:topic")
