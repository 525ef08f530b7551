"""The local stack's pure parts: template intrinsics and creation order, Lambda's SQS record shape and
partial batch responses, and the task state change events the executor publishes (which the track
code must read exactly as it reads the real ones in events/)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from batchgate.domain.task_events import TaskStateChange
from batchgate.ops.local import poller as poller_module
from batchgate.ops.local.cloudwatch import LogShipper
from batchgate.ops.local.endpoint import LocalAws, export_line
from batchgate.ops.local.executor import ContainerDefinition, ContainerProcess, StartDelays
from batchgate.ops.local.functions import INTERPRETER_VARIABLES, WaitingRuntimes
from batchgate.ops.local.intrinsics import Intrinsics, TemplateError, dependencies
from batchgate.ops.local.poller import (
    PollResult,
    SqsPoller,
    StopRequest,
    failed_message_ids,
    lambda_record,
)
from batchgate.ops.local.resources import (
    ResourceBuilder,
    SqsEventSource,
    StreamEventSource,
    creation_order,
    parameter_values,
    translate,
)
from batchgate.ops.local.stack import LocalStack, StackOptions
from batchgate.ops.local.task_state import TaskState
from batchgate.ops.stack_outputs import LocalState
from batchgate.ops.template import load_template

from tests.conftest import ROOT, event_fixture

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/batchgate-local"


def intrinsics() -> Intrinsics:
    return Intrinsics(
        parameters={"Subnets": ["subnet-1", "subnet-2"], "Level": "INFO", "AWS::Region": "us-east-1"},
        conditions={"IsInfo": {"Fn::Equals": [{"Ref": "Level"}, "INFO"]}},
        refs={"JobTable": "jobs"},
        attributes={"JobTable": {"Arn": "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"}},
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Ref": "JobTable"}, "jobs"),
        ({"Fn::Join": [",", {"Ref": "Subnets"}]}, "subnet-1,subnet-2"),
        (
            {"Fn::Sub": "${JobTable.Arn}/index/*"},
            "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/index/*",
        ),
        (
            {"Fn::Sub": ["${Name}-${AWS::Region}-${!Literal}", {"Name": {"Ref": "JobTable"}}]},
            "jobs-us-east-1-${Literal}",
        ),
        ({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}, "b"),
        ({"Fn::If": ["IsInfo", "yes", "no"]}, "yes"),
        ({"Key": {"Ref": "AWS::NoValue"}, "Other": 1}, {"Other": 1}),
        ([{"Ref": "AWS::NoValue"}, "kept"], ["kept"]),
    ],
)
def test_intrinsics_resolve(value: Any, expected: Any) -> None:
    assert intrinsics().resolve(value) == expected


def test_an_unknown_reference_is_an_error() -> None:
    with pytest.raises(TemplateError, match="NotCreated"):
        intrinsics().resolve({"Fn::GetAtt": ["NotCreated", "Arn"]})


def test_dependencies_and_creation_order() -> None:
    resources: dict[str, dict[str, Any]] = {
        "Policy": {"Properties": {"Queues": [{"Ref": "Queue"}], "Rule": {"Fn::Sub": "${Rule.Arn}"}}},
        "Rule": {"Properties": {"Target": {"Fn::GetAtt": "Queue.Arn"}}},
        "Queue": {"Properties": {"Name": {"Ref": "Level"}}},
    }
    assert dependencies(resources["Policy"]["Properties"], {"Level": "x"}) == {"Queue", "Rule"}
    assert creation_order(resources, {"Level": "x"}) == ["Queue", "Rule", "Policy"]
    with pytest.raises(TemplateError, match="circular"):
        creation_order({"A": {"DependsOn": "B"}, "B": {"DependsOn": "A"}}, {})


def test_parameter_values_use_defaults_and_lists() -> None:
    template = {
        "Parameters": {
            "Subnets": {"Type": "List<AWS::EC2::Subnet::Id>"},
            "Names": {"Type": "CommaDelimitedList", "Default": "a,b"},
            "Size": {"Type": "Number", "Default": 10},
        }
    }
    assert parameter_values(template, {"Subnets": ["s-1"]}) == {
        "Subnets": ["s-1"],
        "Names": ["a", "b"],
        "Size": "10",
    }
    with pytest.raises(TemplateError, match="Subnets"):
        parameter_values(template, {})


SOURCE = SqsEventSource(
    function="DispatchFunction",
    queue_url="http://127.0.0.1:1/123456789012/jobs",
    queue_arn="arn:aws:sqs:us-east-1:123456789012:jobs",
    batch_size=10,
    window_seconds=0,
    report_item_failures=True,
    max_concurrency=None,
)


def test_sqs_records_have_lambdas_shape() -> None:
    message: Any = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {"Kind": {"DataType": "String", "StringValue": "submit"}},
    }
    record = lambda_record(message, SOURCE, "us-east-1")

    fixture = event_fixture("sqs-submit-batch.json")["Records"][0]
    assert set(record) == set(fixture)
    assert record["messageAttributes"]["Kind"] == {
        "stringValue": "submit",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),  # invalid: the whole batch
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        (None, set()),
    ],
)
def test_partial_batch_responses(response: Any, failed: set[str]) -> None:
    assert failed_message_ids(response, ["a", "b"], report_item_failures=True) == failed
    assert failed_message_ids(response, ["a", "b"], report_item_failures=False) == set()


def described_task(capacity_provider: str = "FARGATE_SPOT") -> dict[str, Any]:
    """A task as the local endpoint's DescribeTasks returns it."""
    return {
        "taskArn": f"{CLUSTER.replace(':cluster/', ':task/')}/0f1e2d3c",
        "clusterArn": CLUSTER,
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/batchgate-reports:1",
        "capacityProviderName": capacity_provider,
        "launchType": "",
        "startedBy": "bg-report-export-0123456789abcdef0123",
        "group": "family:batchgate-reports",
        "overrides": {
            "cpu": "256",
            "memory": "512",
            "containerOverrides": [
                {
                    "name": "reports",
                    "command": ["python", "-m", "reports.export", "headcount"],
                    "environment": [{"name": "BATCHGATE_ATTEMPT", "value": "1"}],
                }
            ],
        },
        "attachments": [
            {"id": "a-1", "type": "ElasticNetworkInterface", "status": "ATTACHED", "details": []}
        ],
    }


def test_published_events_read_like_the_real_ones() -> None:
    state = TaskState(task=described_task(), container="reports", image="reports:local", region="us-east-1")
    entries = [
        state.change("PROVISIONING", "createdAt"),
        state.change("PENDING", "connectivityAt", "pullStartedAt"),
        state.change("RUNNING", "pullStoppedAt", "startedAt"),
    ]
    state.exit_code, state.stop_code, state.stopped_reason = 0, "EssentialContainerExited", "exited"
    state.desired_status = "STOPPED"
    entries += [
        state.change("DEPROVISIONING", "stoppingAt", "executionStoppedAt"),
        state.change("STOPPED", "stoppedAt"),
    ]

    events = [
        {"detail-type": entry["DetailType"], "source": entry["Source"], "detail": json.loads(entry["Detail"])}
        for entry in entries
    ]
    changes = [TaskStateChange.from_event(event) for event in events]

    assert [change.version for change in changes] == [1, 2, 3, 4, 5]
    assert [change.last_status for change in changes] == [
        "PROVISIONING",
        "PENDING",
        "RUNNING",
        "DEPROVISIONING",
        "STOPPED",
    ]
    last = changes[-1]
    assert (last.attempt, last.strategy, last.launch_type, last.stop_code) == (
        1,
        "FARGATE_SPOT",
        "FARGATE",
        "EssentialContainerExited",
    )
    container = last.container("reports")
    assert container is not None and container.exit_code == 0
    phases = {"created", "connectivity", "pull_started", "pull_stopped", "started", "stopping", "stopped"}
    assert set(last.timestamps) == {*phases, "execution_stopped"}
    # Every field of a real STOPPED event is there (and the same fields of its container).
    real = event_fixture("task-stopped-exit-1.json")["detail"]
    assert set(real) <= set(events[-1]["detail"])
    assert set(real["containers"][0]) - {"imageDigest"} <= set(events[-1]["detail"]["containers"][0])


def test_container_definition_and_log_stream() -> None:
    definition = ContainerDefinition.from_task_definition(
        {
            "containerDefinitions": [
                {
                    "name": "reports",
                    "image": "reports:local",
                    "command": ["python", "-m", "reports.export"],
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": "/ecs/batchgate-reports",
                            "awslogs-stream-prefix": "batch",
                        },
                    },
                }
            ]
        }
    )
    assert definition.log_stream("0f1e2d3c") == "batch/reports/0f1e2d3c"
    assert definition.log_group == "/ecs/batchgate-reports"


def test_start_delays_by_strategy() -> None:
    delays = StartDelays.profile("production", scale=0.1)
    assert delays.for_provider("FARGATE") == pytest.approx(5.0)
    assert delays.for_provider("my-ec2-provider") == pytest.approx(1.5)
    assert StartDelays.profile("none").for_provider("FARGATE_SPOT") == 0.0
    with pytest.raises(ValueError, match="unknown start profile"):
        StartDelays.profile("fast")


def test_the_poller_deletes_what_succeeded_and_failures_reach_the_dlq(aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "1", "RedrivePolicy": redrive})[
        "QueueUrl"
    ]
    source = replace(SOURCE, queue_url=url, queue_arn="arn:aws:sqs:us-east-1:123456789012:jobs")
    invocations: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        bodies = [record["body"] for record in event["Records"]]
        invocations.append(bodies)
        failed = [record["messageId"] for record in event["Records"] if record["body"] == "bad"]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    poller = SqsPoller(sqs, source, invoke, "us-east-1")
    for body in ("good", "bad"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    assert poller.poll_once() == PollResult(received=2, failed=1)
    time.sleep(1.1)  # the failed record comes back after the visibility timeout
    assert poller.poll_once() == PollResult(received=1, failed=1)
    time.sleep(1.1)
    assert poller.poll_once() == PollResult(received=0, failed=0)  # moved to the DLQ instead

    assert sorted(invocations[0]) == ["bad", "good"] and invocations[1] == ["bad"]
    assert [message["Body"] for message in sqs.receive_message(QueueUrl=dlq)["Messages"]] == ["bad"]


def test_a_raising_handler_leaves_the_whole_batch(aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    poller = SqsPoller(sqs, replace(SOURCE, queue_url=url), lambda event: 1 / 0, "us-east-1")
    sqs.send_message(QueueUrl=url, MessageBody="one")

    result = poller.poll_once()

    assert (result.received, result.failed) == (1, 1) and result.error and "ZeroDivisionError" in result.error
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def ended(pid: int, seconds: float = 10.0) -> bool:
    """The process is gone or a zombie within `seconds` (a SIGKILL takes effect when it is next scheduled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_commands_background_job_ends_with_it(aws: None, tmp_path: Path) -> None:
    """A container ends with its main process: what the command left running goes too, and its output
    is complete at once (the background job held it open, and the task's end waited for the reader's
    timeout)."""
    logs = boto3.client("logs", region_name="us-east-1")
    shipper = LogShipper(logs, "/ecs/shell", "batch/shell/1")
    shipper.open()
    command = ["sh", "-c", "sleep 30 & echo $! > background; echo started"]
    process = ContainerProcess(command, {"PATH": os.environ["PATH"]}, tmp_path, shipper)

    assert process.wait(30) == 0
    assert process.stop(grace_seconds=2) == 0
    process.close()
    shipper.flush()

    assert not process._reader.is_alive()  # the output ended with the task
    assert ended(int((tmp_path / "background").read_text()))
    events = logs.get_log_events(logGroupName="/ecs/shell", logStreamName="batch/shell/1")["events"]
    assert [event["message"] for event in events] == ["started"]


def test_a_waiting_runtime_is_not_given_a_function_with_interpreter_variables_of_its_own() -> None:
    """PYTHON* variables count only as the interpreter starts: such a function gets a new process. A
    runtime no host took ends with the stack's start."""
    waiting = WaitingRuntimes({"PATH": os.environ["PATH"]})
    waiting.start(1)
    [runtime] = waiting._waiting

    assert waiting.take({**INTERPRETER_VARIABLES, "PYTHONPATH": "/opt/lib"}) is None
    assert waiting.take({"PYTHONUNBUFFERED": "1"}) is None
    assert runtime.poll() is None  # still waiting
    waiting.close()

    assert runtime.poll() is not None


@pytest.fixture
def stop_on_sigusr1() -> Iterator[StopRequest]:
    """A host's stop request, with SIGUSR1 standing in for the SIGTERM the stack sends a host."""
    stop = StopRequest()
    previous = signal.signal(signal.SIGUSR1, stop.request)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_stop_request_ends_a_hosts_wait_for_messages_at_once(
    aws: None, stop_on_sigusr1: StopRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poller_module, "LONG_POLL_SECONDS", 20)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    poller = SqsPoller(sqs, replace(SOURCE, queue_url=url), lambda event: None, "us-east-1")
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    started = time.monotonic()

    poller.run(stop_on_sigusr1)

    assert stop_on_sigusr1.is_set()
    assert time.monotonic() - started < 10  # not the rest of the 20 s long poll


def test_a_stop_request_during_an_invocation_lets_it_finish(aws: None, stop_on_sigusr1: StopRequest) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="one")
    finished: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # the stop arrives while the handler runs
        time.sleep(0.1)
        finished.append([record["body"] for record in event["Records"]])

    SqsPoller(sqs, replace(SOURCE, queue_url=url), invoke, "us-east-1").run(stop_on_sigusr1)

    assert finished == [["one"]]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "0",
    )  # deleted, as an invocation that succeeded


class InProcessAws(LocalAws):
    """The local stack's clients against moto in this process (mock_aws) rather than its server."""

    def __init__(self, region: str = "us-east-1") -> None:
        super().__init__("", region)

    def _client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region)  # type: ignore[call-overload]


ENVIRONMENT_PARAMETERS: dict[str, str | list[str]] = {
    "ClusterArn": CLUSTER,
    "Subnets": ["subnet-1"],
    "SecurityGroups": ["sg-1"],
    "TaskDefinitionArns": ["arn:aws:ecs:us-east-1:123456789012:task-definition/batchgate-reports:*"],
    "PassRoleArns": ["arn:aws:iam::123456789012:role/batchgate-local-task"],
    "PoolExecutionRoleArn": "arn:aws:iam::123456789012:role/batchgate-local-task",
    "PoolAttendanceImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/batchgate-attendance:local",
}


def test_the_templates_job_table_stream_feeds_the_history_function(aws: None) -> None:
    template_path = ROOT / "template.yaml"
    parameters = parameter_values(load_template(template_path), ENVIRONMENT_PARAMETERS)
    translated = translate(template_path, parameters, "us-east-1")

    resources = ResourceBuilder(InProcessAws(), ROOT, "batchgate-local").build(translated, parameters)

    dlq_url = resources.refs["HistoryDeadLetterQueue"]
    # The job events function reads the same stream (tests/test_job_events.py checks its mapping).
    assert sorted(source.function for source in resources.stream_sources) == [
        "HistoryFunction",
        "JobEventsFunction",
    ]
    history_sources = [source for source in resources.stream_sources if source.function == "HistoryFunction"]
    assert history_sources == [
        StreamEventSource(
            function="HistoryFunction",
            stream_arn=resources.attributes["JobTable"]["StreamArn"],
            starting_position="TRIM_HORIZON",
            batch_size=100,
            window_seconds=1.0,
            report_item_failures=True,
            max_retry_attempts=10,
            max_record_age_seconds=21600,
            filter_patterns=('{"eventName": ["MODIFY"]}',),
            on_failure_arn=resources.attributes["HistoryDeadLetterQueue"]["Arn"],
            on_failure_url=dlq_url,
        )
    ]
    assert history_sources[0].stream_arn.startswith(resources.attributes["JobTable"]["Arn"] + "/stream/")
    assert not [item for item in resources.skipped if item.resource_type == "AWS::Lambda::EventSourceMapping"]
    assert [source.function for source in resources.sqs_sources] == ["DispatchFunction"]

    stack = LocalStack(StackOptions(root=ROOT))
    try:
        stack.resources = resources
        state = stack.state()
    finally:
        stack.stop()
    assert state["dlq_urls"]["history"] == dlq_url
    assert LocalState.from_dict(state).resources()["history_dlq_url"] == dlq_url


def test_the_templates_pools_get_their_queues_table_and_log_groups_locally(aws: None) -> None:
    """What a pool needs from the stack exists locally; what runs and scales its workers (ECS, Application
    Auto Scaling) is skipped by name, with the reason."""
    template_path = ROOT / "template.yaml"
    parameters = parameter_values(load_template(template_path), ENVIRONMENT_PARAMETERS)
    translated = translate(template_path, parameters, "us-east-1")
    local = InProcessAws()

    resources = ResourceBuilder(local, ROOT, "batchgate-local").build(translated, parameters)

    sqs = local.sqs()
    queue_url = resources.refs["PoolAttendanceQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == resources.attributes["PoolAttendanceDeadLetterQueue"]["Arn"]
    assert queue_url.endswith("/batchgate-local-pool-attendance")
    table = local.dynamodb().describe_table(TableName=resources.refs["PoolTable"])["Table"]
    assert [key["AttributeName"] for key in table["KeySchema"]] == ["pool", "task_arn"]
    groups = {group["logGroupName"] for group in local.logs().describe_log_groups()["logGroups"]}
    assert {
        resources.refs["PoolAttendanceJobLogGroup"],
        resources.refs["PoolAttendanceWorkerLogGroup"],
    } <= groups
    alarms = {alarm["AlarmName"] for alarm in local.cloudwatch().describe_alarms()["MetricAlarms"]}
    assert resources.refs["PoolAttendanceHeartbeatsAlarm"] in alarms
    skipped = {item.logical_id: item.resource_type for item in resources.skipped}
    assert {
        name: skipped.get(name)
        for name in (
            "PoolAttendanceTaskDefinition",
            "PoolAttendanceService",
            "PoolAttendanceScalableTarget",
            "PoolAttendanceBusyRatioScaling",
        )
    } == {
        "PoolAttendanceTaskDefinition": "AWS::ECS::TaskDefinition",
        "PoolAttendanceService": "AWS::ECS::Service",
        "PoolAttendanceScalableTarget": "AWS::ApplicationAutoScaling::ScalableTarget",
        "PoolAttendanceBusyRatioScaling": "AWS::ApplicationAutoScaling::ScalingPolicy",
    }
    assert not [item for item in resources.skipped if "not supported" in item.reason]
    for function in resources.functions.values():
        assert function.environment["POOL_QUEUE_URLS"] == f"attendance={queue_url}"
        assert function.environment["POOL_TABLE_NAME"] == resources.refs["PoolTable"]
        assert function.environment["POOL_SERVICE_PREFIX"] == "batchgate-local-pool-"

    stack = LocalStack(StackOptions(root=ROOT))
    try:
        stack.resources = resources
        state = stack.state()
    finally:
        stack.stop()
    found = LocalState.from_dict(state).resources()
    assert found["pool_table_name"] == resources.refs["PoolTable"]
    assert found["pool_queue_urls"] == f"attendance={queue_url}"


def stream_mapping_template(pattern: str, stream: bool = True) -> dict[str, Any]:
    """A table, a function and a mapping of the table's stream to it, as CloudFormation."""
    table: dict[str, Any] = {
        "TableName": "jobs",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        table["StreamSpecification"] = {"StreamViewType": "NEW_IMAGE"}
    return {
        "Resources": {
            "Jobs": {"Type": "AWS::DynamoDB::Table", "Properties": table},
            "Fold": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fold"}},
            "FoldJobs": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {
                    "FunctionName": {"Ref": "Fold"},
                    "EventSourceArn": {"Fn::GetAtt": ["Jobs", "StreamArn"]},
                    "StartingPosition": "LATEST",
                    "FilterCriteria": {"Filters": [{"Pattern": pattern}]},
                },
            },
        }
    }


def test_a_stream_mapping_takes_lambdas_defaults(aws: None) -> None:
    template = stream_mapping_template('{"eventName": ["INSERT", "MODIFY"]}')

    resources = ResourceBuilder(InProcessAws(), ROOT, "local").build(template, {})

    [source] = resources.stream_sources
    assert (source.function, source.starting_position, source.batch_size, source.window_seconds) == (
        "Fold",
        "LATEST",
        100,
        0.0,
    )
    assert (source.max_retry_attempts, source.max_record_age_seconds, source.report_item_failures) == (
        -1,
        -1,
        False,
    )
    assert (source.on_failure_arn, source.on_failure_url) == (None, None)


@pytest.mark.parametrize(
    ("pattern", "stream", "reason"),
    [
        ('{"eventName": [{"prefix": "MOD"}]}', True, "only nested keys and value lists run locally"),
        ('{"eventName": ["MODIFY"]}', False, "only SQS queues and DynamoDB table streams"),
    ],
)
def test_a_stream_mapping_that_cannot_run_locally_is_skipped(
    aws: None, pattern: str, stream: bool, reason: str
) -> None:
    resources = ResourceBuilder(InProcessAws(), ROOT, "local").build(
        stream_mapping_template(pattern, stream), {}
    )

    assert resources.stream_sources == []
    [skipped] = [item for item in resources.skipped if item.logical_id == "FoldJobs"]
    assert reason in skipped.reason


def test_the_printed_sdk_environment_names_the_region_for_every_sdk() -> None:
    line = export_line("http://127.0.0.1:4566", "ap-northeast-1")
    assert line.startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:4566 ")
    # boto3 and the AWS CLI read AWS_DEFAULT_REGION; the JavaScript SDK v3 only AWS_REGION.
    assert "AWS_DEFAULT_REGION=ap-northeast-1" in line and "AWS_REGION=ap-northeast-1" in line
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "AWS_REGION=us-east-1" in readme
