"""Notifications: the template's rule picks the job events of jobs that ended FAILED, TIMED_OUT or REJECTED
and its input transformer turns each into readable text for the SNS topic; no code of ours in between."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from batchgate.domain.job_events import JOB_EVENT_SOURCE, JOB_STATE_CHANGE, job_state_change
from batchgate.domain.jobs import JobStatus
from batchgate.ops.local.filters import matches, parse_patterns

from tests.test_job_events import failed, job
from tests.test_template import load_template, properties, resolve_refs

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def rule(template: dict[str, Any]) -> dict[str, Any]:
    resource = template["Resources"]["JobNotificationRule"]
    assert resource["Condition"] == "HasJobNotificationTopic"
    found: dict[str, Any] = properties(template, "JobNotificationRule")
    return found


def event_of(status: JobStatus, reason: str | None = "exit code 3: payroll run failed") -> dict[str, Any]:
    """The job event as a rule sees it (EventBridge's envelope around the detail we put)."""
    before = job(JobStatus.PENDING if status is JobStatus.RUNNING else JobStatus.RUNNING)
    change = job_state_change(before, failed(before)._replace(status=status, reason=reason), REGION)
    assert change is not None
    entry = change.entry("default")
    return {
        "version": "0",
        "id": "6f8a",
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": "123456789012",
        "time": "2026-11-28T10:15:05Z",
        "region": REGION,
        "resources": [],
        "detail": json.loads(entry["Detail"]),
    }


def test_the_rule_is_there_only_with_a_topic_and_sits_on_the_job_event_bus(template: dict[str, Any]) -> None:
    assert template["Conditions"]["HasJobNotificationTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "JobNotificationTopicArn"}, ""]}]
    }
    assert template["Parameters"]["JobNotificationTopicArn"]["Default"] == ""
    found = rule(template)
    assert found["EventBusName"] == {"Ref": "JobEventBusName"}
    [target] = found["Targets"]
    assert target["Arn"] == {"Ref": "JobNotificationTopicArn"}


@pytest.mark.parametrize("status", list(JobStatus))
def test_the_pattern_matches_jobs_that_ended_badly_and_nothing_else(
    template: dict[str, Any], status: JobStatus
) -> None:
    [pattern] = parse_patterns([json.dumps(rule(template)["EventPattern"])])
    notified = status in (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.REJECTED)
    assert matches(event_of(status), pattern) is notified
    assert not matches({**event_of(JobStatus.FAILED), "source": "aws.ecs"}, pattern)
    assert not matches({**event_of(JobStatus.FAILED), "detail-type": "ECS Task State Change"}, pattern)


def test_the_message_is_readable_text_with_the_show_command_and_the_log_link(
    template: dict[str, Any], aws: None
) -> None:
    """Through moto's EventBridge: the template's pattern and input transformer, the topic replaced by
    a queue (moto's rules deliver to SQS, and what a queue gets is what SNS would publish)."""
    found = rule(template)
    transformer = resolve_refs(found["Targets"][0]["InputTransformer"], {})
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="notify", EventPattern=json.dumps(found["EventPattern"]))
    events.put_targets(Rule="notify", Targets=[{"Id": "topic", "Arn": arn, "InputTransformer": transformer}])
    before = job()
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        change = job_state_change(before, failed(before)._replace(status=status), REGION)
        assert change is not None
        response = events.put_events(Entries=[change.entry("default")])  # type: ignore[list-item]
        assert response["FailedEntryCount"] == 0

    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    text = json.loads(message["Body"])  # one JSON string: the text SNS publishes
    assert (JOB_EVENT_SOURCE, JOB_STATE_CHANGE) == ("batchgate", "Batchgate Job State Change")
    assert text.startswith("batchgate: job bg-payroll-calculation-1 of batch payroll-calculation (tenant ")
    assert "ended FAILED after attempt 1. Why: exit code 3: payroll run failed." in text
    assert "Details: batchgate show bg-payroll-calculation-1 ." in text
    assert text.endswith(
        "Logs: https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups"
        "/log-group/$252Fecs$252Fbatchgate-payroll/log-events/batch$252Fpayroll$252F0123"
    )
    assert "{" not in text and "\n" not in text  # text, not the event's JSON
