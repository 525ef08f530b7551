"""The job events tap (template parameter JobEventsTap), `batchgate events`, and the local stack's
notification topic: the endpoint's delivery to a rule's SNS target, and the demo's check of the
notification text."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from batchgate.domain.job_events import job_state_change
from batchgate.domain.jobs import JobStatus
from batchgate.ops.event_tail import EventFilter, QueueTail, event_line, notification_text
from batchgate.ops.local.demo_notifications import notification_problems
from batchgate.ops.local.filters import matches, parse_patterns
from batchgate.ops.local.notifications import LocalTopic, event_parameters
from batchgate.ops.local.sns_targets import delivering_to_topics, render_input
from batchgate.ops.stack_outputs import OUTPUTS, LocalState
from moto.events.models import Rule

from tests.cli_support import CliHarness, harness
from tests.test_job_events import failed, job
from tests.test_job_notifications import event_of
from tests.test_template import load_template, properties, resolve_refs

__all__ = ["harness"]  # the fixture, imported for pytest

REGION = "us-east-1"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def notification_target(template: dict[str, Any], arn: str) -> dict[str, Any]:
    rule = properties(template, "JobNotificationRule")
    transformer = resolve_refs(rule["Targets"][0]["InputTransformer"], {})
    return {"Id": "topic", "Arn": arn, "InputTransformer": transformer}


# --- the tap in the template ------------------------------------------------------------------------


def test_the_tap_is_optional_and_takes_every_job_event(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["JobEventsTap"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("false", ["true", "false"])
    assert template["Conditions"]["HasJobEventsTap"] == {"Fn::Equals": [{"Ref": "JobEventsTap"}, "true"]}
    for logical_id in ("JobEventsTapQueue", "JobEventsTapRule", "JobEventsTapQueuePolicy"):
        assert template["Resources"][logical_id]["Condition"] == "HasJobEventsTap"
    assert template["Outputs"]["JobEventsTapQueueUrl"]["Condition"] == "HasJobEventsTap"
    assert OUTPUTS["JobEventsTapQueueUrl"] == "events_queue_url"
    rule = properties(template, "JobEventsTapRule")
    assert rule["EventBusName"] == {"Ref": "JobEventBusName"}
    assert rule["Targets"] == [
        {"Id": "JobEventsTapQueue", "Arn": {"Fn::GetAtt": ["JobEventsTapQueue", "Arn"]}}
    ]
    [pattern] = parse_patterns([json.dumps(rule["EventPattern"])])
    assert all(matches(event_of(status), pattern) for status in JobStatus)
    assert not matches({**event_of(JobStatus.FAILED), "source": "aws.ecs"}, pattern)
    [statement] = properties(template, "JobEventsTapQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["JobEventsTapRule", "Arn"]}}
    }


# --- the endpoint's SNS targets ---------------------------------------------------------------------


def test_render_input_escapes_strings_and_writes_null(template: dict[str, Any]) -> None:
    target = notification_target(template, "arn:aws:sns:us-east-1:123456789012:t")
    event = event_of(JobStatus.FAILED, reason='exit code 3: "payroll" timed out\\ here')
    text = render_input(target, event)
    assert 'Why: exit code 3: "payroll" timed out\\ here. Details' in text  # the reason as it was
    assert "(tenant null)" in text
    assert render_input({"Id": "x", "Arn": "a"}, {"detail": {"a": 1}}) == '{"detail": {"a": 1}}'
    object_template = {"InputTemplate": '{"job": <job>}', "InputPathsMap": {"job": "$.detail.job_id"}}
    assert render_input({"InputTransformer": object_template}, event) == '{"job": bg-payroll-calculation-1}'


@pytest.fixture
def topic_and_queue(aws: None) -> tuple[str, str]:
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="notifications")["TopicArn"]
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, url


def test_a_rule_delivers_to_its_sns_topic_on_the_endpoint(
    template: dict[str, Any], topic_and_queue: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto alone fails the PutEvents of a rule with an SNS target; patched as the local endpoint is,
    the template's notification rule publishes its text to the topic, and the rule's other targets
    (here a queue) still get the event."""
    topic, notifications = topic_and_queue
    monkeypatch.setattr(Rule, "send_to_targets", delivering_to_topics(Rule.send_to_targets))
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    copy_url = sqs.create_queue(QueueName="copy")["QueueUrl"]
    copy_arn = sqs.get_queue_attributes(QueueUrl=copy_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = properties(template, "JobNotificationRule")
    events.put_rule(Name="notify", EventPattern=json.dumps(rule["EventPattern"]))
    events.put_targets(
        Rule="notify",
        Targets=[notification_target(template, topic), {"Id": "copy", "Arn": copy_arn}],  # type: ignore[list-item]
    )
    before = job()._replace(tenant="acme")
    quoted = failed(before)._replace(reason='exit code 3: "timeout" reading the "export"')
    for after in (failed(before)._replace(status=JobStatus.SUCCEEDED), quoted):
        change = job_state_change(before, after, REGION)
        assert change is not None
        response = events.put_events(Entries=[change.entry("default")])  # type: ignore[list-item]
        assert response["FailedEntryCount"] == 0
    [message] = sqs.receive_message(QueueUrl=notifications, MaxNumberOfMessages=10)["Messages"]
    assert message["Body"].startswith(
        "batchgate: job bg-payroll-calculation-1 of batch payroll-calculation (tenant acme) ended FAILED"
    )
    assert 'Why: exit code 3: "timeout" reading the "export". Details: batchgate show' in message["Body"]
    [copied] = sqs.receive_message(QueueUrl=copy_url, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(copied["Body"])["detail"]["status"] == "FAILED"


# --- the local stack's parameters and state ---------------------------------------------------------


def test_the_local_stack_turns_the_tap_on_and_names_its_topic_unless_told_otherwise() -> None:
    topic = LocalTopic("arn:aws:sns:us-east-1:123456789012:batchgate-local-notifications", "http://q")
    assert event_parameters({}, topic) == {"JobEventsTap": "true", "JobNotificationTopicArn": topic.topic_arn}
    assert event_parameters({"JobEventsTap": "false"}, None) == {}
    state = LocalState.from_dict({"events_queue_url": "http://e", "notification_queue_url": "http://n"})
    assert state.resources() == {"events_queue_url": "http://e", "notification_queue_url": "http://n"}


# --- reading the tap --------------------------------------------------------------------------------


def tap(harness: CliHarness) -> str:
    """A queue with the template's tap rule on moto's default bus."""
    template = load_template()
    sqs, events = harness.sqs, boto3.client("events", region_name=REGION)
    url = sqs.create_queue(QueueName="tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = properties(template, "JobEventsTapRule")
    events.put_rule(Name="tap", EventPattern=json.dumps(rule["EventPattern"]))
    events.put_targets(Rule="tap", Targets=[{"Id": "tap", "Arn": arn}])
    return str(url)


def put_life(tenant: str | None, job_id: str) -> None:
    """A job's RUNNING and FAILED events on the default bus, the FAILED one twice (a redelivery)."""
    events = boto3.client("events", region_name=REGION)
    running = job(JobStatus.RUNNING, job_id=job_id)._replace(tenant=tenant)
    pending = running._replace(status=JobStatus.PENDING, revision=3)
    for before, after in ((pending, running), (running, failed(running)), (running, failed(running))):
        change = job_state_change(before, after, REGION)
        assert change is not None
        events.put_events(Entries=[change.entry("default")])  # type: ignore[list-item]


def test_events_prints_each_event_once_and_takes_it_off_the_tap(harness: CliHarness) -> None:
    url = tap(harness)
    put_life("acme", "bg-payroll-calculation-1")
    put_life(None, "bg-payroll-calculation-2")
    lines = harness.ok("events", "--events-queue-url", url, "--tenant", "acme").stdout.splitlines()
    assert lines == [
        "2026-11-28T10:00:27.600Z  bg-payroll-calculation-1  payroll-calculation  tenant acme  "
        "PENDING -> RUNNING  attempt 1",
        "2026-11-28T10:15:05.617Z  bg-payroll-calculation-1  payroll-calculation  tenant acme  "
        "RUNNING -> FAILED  attempt 1  exit 3  - exit code 3: payroll run failed",
    ]
    assert harness.ok("events", "--events-queue-url", url).stdout == ""  # read, filtered or not: gone
    put_life(None, "bg-payroll-calculation-3")
    documents = [
        json.loads(line)
        for line in harness.ok("events", "--events-queue-url", url, "--json").stdout.splitlines()
    ]
    assert [(d["detail"]["status"], d["detail"]["tenant"]) for d in documents] == [
        ("RUNNING", None),
        ("FAILED", None),
    ]
    followed = harness.ok("events", "--events-queue-url", url, "--follow", "--for", "0")
    assert followed.exit_code == 0 and followed.stdout == ""


def test_events_needs_a_tap_and_names_how_to_get_one(harness: CliHarness) -> None:
    result = harness.run("events")
    assert result.exit_code == 2
    assert "JobEventsTap=true" in result.stderr and "--events-queue-url" in result.stderr


def test_a_tail_hands_each_notification_on_once_as_text(harness: CliHarness) -> None:
    url = harness.sqs.create_queue(QueueName="notifications")["QueueUrl"]
    harness.sqs.send_message(
        QueueUrl=url, MessageBody="batchgate: job bg-x of batch b (tenant acme) ended FAILED"
    )
    state = LocalState(notification_queue_url=url)
    assert state.resources()["notification_queue_url"] == url
    assert notification_text('"quoted text"') == "quoted text" and notification_text("plain") == "plain"
    tail = QueueTail(harness.sqs, url)
    assert tail.receive(0) == ["batchgate: job bg-x of batch b (tenant acme) ended FAILED"]
    assert tail.receive(0) == []


def test_event_filter_and_line() -> None:
    event = event_of(JobStatus.FAILED)
    assert EventFilter(batch="payroll-calculation", job_id="bg-payroll-calculation-1").keeps(event["detail"])
    assert not EventFilter(tenant="acme").keeps(event["detail"])
    assert "no tenant  RUNNING -> FAILED  attempt 1  exit 3" in event_line(event)


# --- the demo's check -------------------------------------------------------------------------------


def test_the_demo_checks_what_the_notification_says(template: dict[str, Any]) -> None:
    before = job()._replace(tenant="acme")
    ended = failed(before)
    text = render_input(
        notification_target(template, "arn:aws:sns:us-east-1:1:t"), event_of_job(before, ended)
    )
    assert notification_problems(ended, text) == []
    assert notification_problems(ended, text.replace("(tenant acme)", "(tenant null)")) == [
        "the notification lacks its tenant ('(tenant acme)')"
    ]


def event_of_job(before: Any, after: Any) -> dict[str, Any]:
    change = job_state_change(before, after, REGION)
    assert change is not None
    entry = change.entry("default")
    return {
        "source": entry["Source"],
        "detail-type": entry["DetailType"],
        "detail": json.loads(entry["Detail"]),
    }


def test_what_a_task_said_is_shown_never_obeyed() -> None:
    event = event_of(JobStatus.FAILED, reason="exit 3\x1b]52;c;cm0gLXJmIH4=\x07 and\nmore")
    line = event_line(event)
    assert "\x1b" not in line and "\n" not in line
    assert "exit 3\\x1b]52;c;cm0gLXJmIH4=\\x07 and\\nmore" in line
    assert notification_text(json.dumps("ended FAILED. Why: \x1b[2J")) == "ended FAILED. Why: \\x1b[2J"
