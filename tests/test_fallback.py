"""Fallback along the plan's chain when RunTask reports no capacity, and the launch-rate governor in
dispatch. moto never returns RunTask `failures`, so RunTask answers are scripted here; a scripted success
starts a real moto task, so the number of tasks per job can be counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import Job, JobStatus, client_token, job_id_for
from batchgate.domain.relaunch import KIND_ATTRIBUTE, RETRY_KIND, Relaunch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS
from batchgate.services.dispatch import Dispatcher, DispatchResult, RetryLater
from batchgate.services.launch_deferral import LaunchDeferral
from batchgate.services.launch_governor import LaunchGovernor
from botocore.exceptions import ClientError

from tests.conftest import LambdaContextStub, RecordingSqs, Stack, sqs_event

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
JOBS_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/batchgate-jobs"
T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


def throttling() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")


def deferring_to(sqs: Any, queue_url: str = JOBS_QUEUE) -> LaunchDeferral:
    """Deferral onto `queue_url` through `sqs`, with the back-off's jitter at its ceiling."""
    return LaunchDeferral(JobsQueue(queue_url, sqs), DEFAULT_STRATEGY_SETTINGS, rand=lambda: 1.0)


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
        settings=stack.settings._replace(ec2_capacity_provider=CP),
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
    dispatch = replace(dispatch, settings=dispatch.settings._replace(ec2_capacity_provider=None))
    with pytest.raises(RetryLater):
        dispatch.dispatch("m-1", payroll)
    assert ecs.providers == ["FARGATE"]


def test_throttling_without_a_jobs_queue_returns_the_record(stack: Stack) -> None:
    dispatch, _ = dispatcher(stack, [throttling()])
    with pytest.raises(RetryLater) as raised:
        dispatch.dispatch("m-1", ATTENDANCE)
    assert raised.value.throttled and raised.value.resume == Relaunch(ATTENDANCE_JOB, 1)


def test_a_throttled_launch_is_put_back_as_a_delayed_relaunch_of_its_attempt(stack: Stack) -> None:
    sqs = RecordingSqs()
    dispatch, _ = dispatcher(stack, [throttling()], deferral=deferring_to(sqs))
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DEFERRED
    assert sqs.relaunches() == [(Relaunch(ATTENDANCE_JOB, 1, deferrals=1), 2)]  # base 2 s * 2**0
    assert sqs.sent[0]["QueueUrl"] == JOBS_QUEUE
    assert sqs.sent[0]["MessageAttributes"][KIND_ATTRIBUTE]["StringValue"] == RETRY_KIND
    job = stored(stack, ATTENDANCE_JOB)
    assert job.status is JobStatus.DISPATCHING and job.attempt is not None and job.attempt.task_arn is None


def test_throttling_longer_than_the_queue_allows_receives_still_launches_the_job_once(stack: Stack) -> None:
    """Each deferral is a new message (its receive count starts again), so throttling that outlasts
    MaxReceiveCount returns never sends the job to the dead-letter queue; the back-off keeps growing."""
    throttled_times = 8
    sqs = RecordingSqs()
    now = [T0]
    dispatch, ecs = dispatcher(
        stack,
        [throttling() for _ in range(throttled_times)] + ["ok"],
        deferral=deferring_to(sqs),
        clock=lambda: now[0],
    )
    assert dispatch.dispatch("m-1", ATTENDANCE) is DispatchResult.DEFERRED
    for _ in range(throttled_times - 1):
        now[0] += timedelta(seconds=sqs.relaunches()[-1][1])  # each relaunch arrives after its delay
        assert dispatch.relaunch(sqs.sent[-1]["MessageBody"]) is DispatchResult.DEFERRED
    now[0] += timedelta(seconds=sqs.relaunches()[-1][1])
    assert dispatch.relaunch(sqs.sent[-1]["MessageBody"]) is DispatchResult.DISPATCHED
    relaunches = sqs.relaunches()
    assert [relaunch.deferrals for relaunch, _ in relaunches] == list(range(1, throttled_times + 1))
    assert [delay for _, delay in relaunches] == [2, 4, 8, 16, 32, 64, 128, 256]
    assert {relaunch.attempt for relaunch, _ in relaunches} == {1}
    assert set(ecs.tokens) == {client_token(ATTENDANCE_JOB, 1)}  # one attempt, one token throughout
    job = stored(stack, ATTENDANCE_JOB)
    assert job.status is JobStatus.DISPATCHED and job.attempt_number == 1
    assert job.attempt is not None and job.attempt.task_arn == FAKE_EC2_TASK
    assert job.attempt.deferrals == throttled_times  # counted on the attempt, not in the messages
    assert len(ecs.requests) == throttled_times + 1


def test_a_deferral_that_cannot_be_sent_returns_the_record(stack: Stack) -> None:
    unavailable = ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "SendMessage"
    )
    sqs = RecordingSqs(fail=[unavailable])
    dispatch, _ = dispatcher(stack, [throttling()], deferral=deferring_to(sqs))
    with pytest.raises(RetryLater, match="Rate exceeded"):
        dispatch.dispatch("m-1", ATTENDANCE)
    assert sqs.sent == []


def test_other_retryable_errors_are_not_deferred(stack: Stack) -> None:
    sqs = RecordingSqs()
    dispatch, _ = dispatcher(stack, [[NO_CPU], [NO_MEMORY]], deferral=deferring_to(sqs))
    with pytest.raises(RetryLater, match="no capacity") as raised:
        dispatch.dispatch("m-1", ATTENDANCE)
    assert not raised.value.throttled and sqs.sent == []


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
    assert raised.value.resume == Relaunch(job_id_for("report-export", "m-2"), 1)
    assert raised.value.delay_seconds > 0.5
    assert len(ecs.requests) == 1  # the deferred launch never reached ECS
    # Its job is safe: the attempt is written and the record comes back later.
    job = stored(stack, job_id_for("report-export", "m-2"))
    assert job.status is JobStatus.DISPATCHING and job.attempt is not None and job.attempt.task_arn is None


def test_handler_reports_a_deferred_record_done_and_the_relaunch_waits_on_the_queue(
    stack: Stack, load_handler: Callable[[str], ModuleType]
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="batchgate-jobs")["QueueUrl"]
    app = load_handler("dispatch")
    scripted, _ = dispatcher(stack, [throttling()], deferral=deferring_to(sqs, url))
    setattr(app, "dispatcher", scripted)  # noqa: B010
    response = app.handler(sqs_event(ATTENDANCE, message_ids=["m-throttled"]), LambdaContextStub())
    # Done, not failed: the record is deleted, so its receives are not spent; the relaunch carries it.
    assert response == {"batchItemFailures": []}
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert stored(stack, ATTENDANCE_JOB).status is JobStatus.DISPATCHING
