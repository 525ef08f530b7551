"""Fixtures for the `batchgate` CLI tests: the moto stack of conftest plus the queues and log groups the
CLI reads, and a runner that points the CLI at them with a fixed clock."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.domain.jobs import Attempt, Job, JobStatus, LaunchPlan, iso, job_id_for
from batchgate.ops.cli import AppContext, cli
from batchgate.services.dispatch import DispatchResult
from botocore.stub import Stubber
from click.testing import CliRunner, Result

from tests.conftest import MOTO, REGION, Stack, event_fixture

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
USER = "ops-tester"
LOG_GROUP = "/ecs/batchgate-payroll"


@dataclass
class CliHarness:
    stack: Stack
    queue_url: str
    jobs_dlq_url: str
    track_dlq_url: str
    history_dlq_url: str
    # The client that made the queues: the test's own reads and writes share it.
    sqs: Any
    track_function: str = "batchgate-test-track"
    history_function: str = "batchgate-test-history"
    now: datetime = NOW
    extra: list[str] = field(default_factory=list)

    @functools.cached_property
    def logs(self) -> Any:
        return boto3.client("logs", region_name=REGION)

    def target_args(self) -> list[str]:
        return [
            "--region",
            REGION,
            "--table",
            self.stack.settings.table_name,
            "--queue-url",
            self.queue_url,
            "--jobs-dlq-url",
            self.jobs_dlq_url,
            "--track-dlq-url",
            self.track_dlq_url,
            "--track-function",
            self.track_function,
            "--history-dlq-url",
            self.history_dlq_url,
            "--history-function",
            self.history_function,
            *self.extra,
        ]

    def run(self, *args: str, input: str | None = None, target: bool = True) -> Result:
        """The CLI with `args`; with `target`, pointed at the harness's resources through the test's
        boto3 session (without, the CLI finds its target and makes its session as for a user)."""
        runner = CliRunner(mix_stderr=False)
        context = AppContext(clock=lambda: self.now, user=USER, boto_session=MOTO.session if target else None)
        arguments = [*(self.target_args() if target else []), *args]
        return runner.invoke(cli, arguments, obj=context, input=input, catch_exceptions=False)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, exit_code: int = 0) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)

    # --- putting jobs in the table ------------------------------------------------------------------

    def add(self, job: Job) -> Job:
        stored = self.stack.table.create(job)
        assert stored is not None
        return stored

    def queued_bodies(self) -> list[dict[str, Any]]:
        """Every message now on the jobs queue (received, so they are hidden for the rest of the test)."""
        bodies: list[dict[str, Any]] = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            bodies.extend({"id": m["MessageId"], **json.loads(m["Body"])} for m in messages)

    def dispatch_queued(self, task_arn: str | None = None, at: datetime = NOW) -> list[str]:
        """Dispatch every queued message as the dispatch function would; with `task_arn`, RunTask
        answers with that task (so that the sample task events apply to it)."""
        job_ids = []
        for body in self.queued_bodies():
            message_id = body.pop("id")
            ecs = EcsTasks(self.stack.settings.cluster, self.stack.ecs_client)
            dispatcher = replace(self.stack.dispatcher(ecs), clock=lambda: at)
            if task_arn is None:
                assert dispatcher.dispatch(message_id, json.dumps(body)) is DispatchResult.DISPATCHED
            else:
                with Stubber(self.stack.ecs_client) as stubber:
                    stubber.add_response("run_task", {"tasks": [{"taskArn": task_arn}], "failures": []})
                    assert dispatcher.dispatch(message_id, json.dumps(body)) is DispatchResult.DISPATCHED
            job_ids.append(job_id_for(body["batch"], body.get("idempotency_key") or message_id))
        return job_ids

    def track(self, *fixtures: str) -> None:
        """Apply sample task events, pointed at the task definition registered in moto (so that the
        tracker records the awslogs location)."""
        definition = self.stack.ecs_client.describe_task_definition(taskDefinition="batchgate-payroll")
        for name in fixtures:
            event = event_fixture(name)
            event["detail"]["taskDefinitionArn"] = definition["taskDefinition"]["taskDefinitionArn"]
            self.stack.tracker().track(event)

    def write_logs(self, stream: str, *lines: str) -> None:
        logs = self.logs
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        if not lines:
            return
        start = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": start + index, "message": line} for index, line in enumerate(lines)],
        )


def listed_job(
    number: int,
    status: JobStatus = JobStatus.SUCCEEDED,
    batch: str = "payroll-calculation",
    minutes_ago: int | None = None,
    job_id: str | None = None,
) -> Job:
    """A job queued `minutes_ago` (default: `number`) minutes before NOW, with one finished attempt whose
    start latency is 20 s and run time 100 s."""
    ago = number if minutes_ago is None else minutes_ago
    queued = NOW.timestamp() - ago * 60
    created = _iso(queued)
    attempts: tuple[Attempt, ...] = ()
    if status not in (JobStatus.SUBMITTED, JobStatus.REJECTED):
        stopped = status.is_terminal
        timeline = {
            "created": _iso(queued + 2),
            "pull_started": _iso(queued + 10),
            "pull_stopped": _iso(queued + 20),
            "started": _iso(queued + 22),
        }
        if stopped:
            timeline["stopped"] = _iso(queued + 122)
        attempts = (
            Attempt(
                number=1,
                strategy="FARGATE",
                capacity_provider="FARGATE",
                dispatched_at=_iso(queued + 1),
                task_arn=f"arn:aws:ecs:{REGION}:123456789012:task/batchgate-dev/{number:032x}",
                last_status="STOPPED" if stopped else "RUNNING",
                timeline=timeline,
                exit_code=(0 if status is JobStatus.SUCCEEDED else 1) if stopped else None,
            ),
        )
    return Job(
        job_id=job_id or job_id_for(batch, f"listed-{number}"),
        batch=batch,
        status=status,
        created_at=created,
        updated_at=created,
        expires_at=int(NOW.timestamp()) + 86400,
        message_id=f"m-{number}",
        arguments=("2026-11",),
        idempotency_key=f"listed-{number}",
        plan=LaunchPlan("FARGATE", "FARGATE", "launch class standard: FARGATE (catalog default)")
        if attempts
        else None,
        attempts=attempts,
    )


def _iso(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, tz=UTC))


@pytest.fixture
def harness(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> CliHarness:
    """The CLI pointed at the moto stack through explicit resources (no CloudFormation look-up), with
    the jobs queue and its DLQ, the track and history DLQs, and no samconfig.toml or local state in the
    way."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCHGATE_LOCAL_STATE", str(tmp_path / "no-local-state.json"))
    for name in ("BATCHGATE_ENDPOINT_URL", "AWS_ENDPOINT_URL", "BATCHGATE_STACK", "BATCHGATE_CONFIG_ENV"):
        monkeypatch.delenv(name, raising=False)
    sqs = boto3.client("sqs", region_name=REGION)
    jobs_dlq = sqs.create_queue(QueueName="batchgate-test-jobs-dlq")["QueueUrl"]
    jobs_dlq_arn = sqs.get_queue_attributes(QueueUrl=jobs_dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue = sqs.create_queue(
        QueueName="batchgate-test-jobs",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": jobs_dlq_arn, "maxReceiveCount": 3})},
    )["QueueUrl"]
    track_dlq = sqs.create_queue(QueueName="batchgate-test-track-dlq")["QueueUrl"]
    history_dlq = sqs.create_queue(QueueName="batchgate-test-history-dlq")["QueueUrl"]
    return CliHarness(
        stack=stack,
        queue_url=queue,
        jobs_dlq_url=jobs_dlq,
        track_dlq_url=track_dlq,
        history_dlq_url=history_dlq,
        sqs=sqs,
    )
