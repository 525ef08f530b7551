from __future__ import annotations

from typing import Any

import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks, LaunchOutcome, PermanentLaunchError, RetryableLaunchError
from batchgate.domain.jobs import MAX_STORED_TEXT
from botocore.stub import Stubber

from tests.conftest import Stack


def failing(stack: Stack, code: str, status: int = 400) -> EcsTasks:
    client = stack.ecs_client
    stubber = Stubber(client)
    stubber.add_client_error(
        "run_task", service_error_code=code, service_message="boom", http_status_code=status
    )
    stubber.activate()
    return EcsTasks(stack.settings.cluster, client)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 400, RetryableLaunchError),
        ("ServerException", 500, RetryableLaunchError),
        ("SomethingNew", 503, RetryableLaunchError),
        ("InvalidParameterException", 400, PermanentLaunchError),
        ("AccessDeniedException", 400, PermanentLaunchError),
        ("ClusterNotFoundException", 400, PermanentLaunchError),
    ],
)
def test_run_task_errors_are_classified(
    stack: Stack, code: str, status: int, expected: type[Exception]
) -> None:
    with pytest.raises(expected, match=code):
        failing(stack, code, status).run_task({"taskDefinition": "x", "cluster": stack.settings.cluster})


@pytest.mark.parametrize(
    ("failures", "transient"),
    [
        ([{"reason": "RESOURCE:MEMORY"}], True),
        ([{"reason": "RESOURCE:CPU"}, {"reason": "AGENT"}], True),
        ([{"reason": "Capacity is unavailable at this time. Please try again later"}], True),
        ([{"reason": "MISSING"}], False),
        ([{"reason": "RESOURCE:MEMORY"}, {"reason": "ATTRIBUTE"}], False),
        ([], False),
    ],
)
def test_failure_classification(failures: list[dict[str, str]], transient: bool) -> None:
    assert LaunchOutcome(None, tuple(failures)).failures_are_transient is transient


def test_log_pointer_follows_the_awslogs_configuration(stack: Stack) -> None:
    definition: dict[str, Any] = stack.ecs_client.describe_task_definition(taskDefinition="batchgate-reports")
    arn = definition["taskDefinition"]["taskDefinitionArn"]
    ecs = EcsTasks(stack.settings.cluster, stack.ecs_client)
    pointer = ecs.log_pointer(arn, "reports", "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/abc123")
    assert pointer is not None
    assert (pointer.group, pointer.stream) == ("/ecs/batchgate-reports", "batch/reports/abc123")
    assert ecs.log_pointer(arn, "no-such-container", "arn:x/abc") is None


def test_task_definition_is_read_once_per_container(stack: Stack) -> None:
    arn = stack.ecs_client.describe_task_definition(taskDefinition="batchgate-reports")["taskDefinition"][
        "taskDefinitionArn"
    ]
    ecs = EcsTasks(stack.settings.cluster, stack.ecs_client)
    ecs.log_pointer(arn, "reports", "arn:x/1")
    with Stubber(stack.ecs_client):  # any further call would fail: the stubber has no responses
        assert ecs.log_pointer(arn, "reports", "arn:x/2") is not None


LONG = "x" * 5000


def test_aws_texts_are_cut_to_what_a_job_stores() -> None:
    client = boto3.client("ecs", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error("run_task", service_error_code="InvalidParameterException", service_message=LONG)
    stubber.add_response(
        "run_task", {"tasks": [], "failures": [{"arn": "a", "reason": LONG, "detail": LONG}] * 3}
    )
    tasks = EcsTasks("cluster", client)
    with stubber:
        with pytest.raises(PermanentLaunchError) as refused:
            tasks.run_task({"taskDefinition": "x"})
        outcome = tasks.run_task({"taskDefinition": "x"})
    assert len(refused.value.reason) == MAX_STORED_TEXT and refused.value.reason.endswith("…")
    assert len(str(refused.value)) == MAX_STORED_TEXT
    assert all(len(value) <= MAX_STORED_TEXT for failure in outcome.failures for value in failure.values())
    assert len(outcome.failure_summary()) == MAX_STORED_TEXT
