"""The schedules' part of template.yaml (batchgate.ops.schedule_template): one Scheduler schedule per
catalog schedule, on time, to the jobs queue, with its own retries and a dead-letter queue that raises an
alarm; the missed-run alarm; the notification rule's pattern for missed runs."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from batchgate.domain.catalog import load_catalog, parse_catalog
from batchgate.domain.messages import parse_submit_message
from batchgate.domain.scheduled_runs import SlotReport, slot_report
from batchgate.domain.schedules import SCHEDULED_TIME_ATTRIBUTE
from batchgate.ops import schedule_template
from batchgate.ops.local.filters import matches, parse_patterns
from batchgate.ops.pool_template import PoolTemplateError
from batchgate.ops.template import load_template as load_rendered

from tests.test_pool_template import packaged_document
from tests.test_template import CATALOG, TEMPLATE, load_template, properties

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_schedules_sections_are_what_the_catalog_generates() -> None:
    """Drift: the catalog's schedules and template.yaml's generated section say the same."""
    stale = schedule_template.stale_sections(TEMPLATE.read_text(), load_catalog(CATALOG))
    assert not stale, (
        f"template.yaml's sections {', '.join(stale)} differ from the catalog's schedules: "
        f"run {schedule_template.WRITE_COMMAND}"
    )


def test_the_check_command_fails_on_drift_and_write_fixes_it(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.read_text().replace("cron(0 22 L * ? *)", "cron(0 23 L * ? *)"))
    lines: list[str] = []
    assert schedule_template.main(["--template", str(path)], lines.append) == 1
    assert "out of date in resources" in lines[-1]
    assert schedule_template.main(["--template", str(path), "--write"], lines.append) == 0
    assert path.read_text() == TEMPLATE.read_text()


@pytest.mark.parametrize("name", sorted(load_catalog(CATALOG).schedules))
def test_each_schedule_runs_on_time_into_the_jobs_queue_with_its_own_retries_and_dlq(
    template: dict[str, Any], name: str
) -> None:
    spec = load_catalog(CATALOG).schedules[name]
    resource = template["Resources"][schedule_template.schedule_logical_id(name)]
    assert resource["Type"] == "AWS::Scheduler::Schedule"
    found = resource["Properties"]
    assert found["Name"] == name
    assert found["GroupName"] == {"Ref": "ScheduleGroup"}
    assert found["ScheduleExpression"] == spec.expression.deployed
    assert found["ScheduleExpressionTimezone"] == spec.timezone
    assert found["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert found["State"] == "ENABLED"
    target = found["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}
    assert set(target["RetryPolicy"]) == {"MaximumEventAgeInSeconds", "MaximumRetryAttempts"}
    # The input is the slot's submit message once Scheduler fills in the slot's time: the key names it.
    slot = "2026-11-30T13:00:00Z"
    body = target["Input"].replace(SCHEDULED_TIME_ATTRIBUTE, slot)
    message = parse_submit_message(body, load_catalog(CATALOG))
    assert message.idempotency_key == f"schedule:{name}:{slot}"
    assert message.tenant == spec.tenant
    assert "tenant" in json.loads(body) if spec.tenant else "tenant" not in json.loads(body)


def test_the_stack_owns_the_schedule_group(template: dict[str, Any]) -> None:
    group = template["Resources"]["ScheduleGroup"]
    assert group["Type"] == "AWS::Scheduler::ScheduleGroup"
    assert group["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-schedules"}


def test_schedulers_role_sends_to_the_jobs_queue_and_its_dlq_only(template: dict[str, Any]) -> None:
    role = properties(template, "SchedulerRole")
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    [policy] = role["Policies"]
    grants = {
        json.dumps(statement["Resource"], sort_keys=True): statement["Action"]
        for statement in policy["PolicyDocument"]["Statement"]
    }
    assert grants == {
        json.dumps({"Fn::GetAtt": ["JobsQueue", "Arn"]}): "sqs:SendMessage",
        json.dumps({"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}): "sqs:SendMessage",
    }


def test_undelivered_slots_land_in_a_dlq_that_raises_an_alarm(template: dict[str, Any]) -> None:
    queue = properties(template, "ScheduleDeadLetterQueue")
    assert queue["SqsManagedSseEnabled"] is True
    assert "FifoQueue" not in queue  # Scheduler's DLQ must be a standard queue
    alarm = properties(template, "ScheduleDeadLetterQueueAlarm")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible",
        0,
        "GreaterThanThreshold",
    )
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def test_missed_runs_raise_an_alarm(template: dict[str, Any]) -> None:
    alarm = properties(template, "MissedScheduledRunsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Batchgate", "MissedScheduledRuns")
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert "AlarmActions" in alarm


def report_event(kind: str) -> dict[str, Any]:
    schedule = load_catalog(CATALOG).schedules["payroll-month-close"]
    slot = datetime(2026, 11, 30, 13, tzinfo=UTC)
    found = SlotReport(kind=kind, schedule=schedule, slot=slot, job_id=schedule.job_id(slot), reason="why")
    entry = found.entry("default", slot)
    return {
        "source": entry["Source"],
        "detail-type": entry["DetailType"],
        "detail": json.loads(entry["Detail"]),
    }


def test_missed_runs_have_their_own_notification_rule_and_late_starts_none(template: dict[str, Any]) -> None:
    missed_rule = properties(template, "ScheduledRunNotificationRule")
    job_rule = properties(template, "JobNotificationRule")
    assert template["Resources"]["ScheduledRunNotificationRule"]["Condition"] == "HasJobNotificationTopic"
    assert missed_rule["Targets"][0]["Arn"] == job_rule["Targets"][0]["Arn"]
    [missed] = parse_patterns([json.dumps(missed_rule["EventPattern"])])
    [jobs] = parse_patterns([json.dumps(job_rule["EventPattern"])])
    assert matches(report_event("MISSED"), missed)
    assert not matches(report_event("LATE"), missed)
    assert not matches(report_event("MISSED"), jobs)  # one message per missed run, not two


def test_a_missed_runs_notification_is_readable_text_naming_the_slot_and_the_commands(
    template: dict[str, Any], aws: None
) -> None:
    """Through moto's EventBridge: the rule's pattern and input transformer, the topic replaced by a queue."""
    found = properties(template, "ScheduledRunNotificationRule")
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="missed", EventPattern=json.dumps(found["EventPattern"]))
    transformer = found["Targets"][0]["InputTransformer"]
    events.put_targets(Rule="missed", Targets=[{"Id": "topic", "Arn": arn, "InputTransformer": transformer}])
    schedule = load_catalog(CATALOG).schedules["payroll-month-close"]
    slot = datetime(2026, 11, 30, 13, tzinfo=UTC)
    for report in (
        slot_report(schedule, slot, None, slot + timedelta(hours=1), 900),
        SlotReport(kind="LATE", schedule=schedule, slot=slot, job_id=schedule.job_id(slot), reason="late"),
    ):
        assert report is not None
        response = events.put_events(Entries=[report.entry("default", slot)])  # type: ignore[list-item]
        assert response["FailedEntryCount"] == 0

    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    text = json.loads(message["Body"])
    assert text.startswith(f"batchgate: scheduled run payroll-month-close of batch {schedule.batch} (tenant ")
    assert f"for 2026-11-30T13:00:00Z did not start (no job {schedule.job_id(slot)})." in text
    assert "batchgate schedules run payroll-month-close --slot 2026-11-30T13:00:00Z" in text
    assert text.endswith("Details: batchgate schedules --schedule payroll-month-close")
    assert "{" not in text and "\n" not in text


def test_a_rate_is_rendered_as_its_cron_and_a_catalog_without_schedules_renders_none(tmp_path: Path) -> None:
    document = copy.deepcopy(packaged_document())
    document["schedules"] = {
        "quarter-hourly": {
            "batch": "report-export",
            "expression": "rate(15 minutes)",
            "timezone": "UTC",
            "arguments": ["headcount"],
        }
    }
    path = tmp_path / "template.yaml"
    path.write_text(schedule_template.rewrite(TEMPLATE.read_text(), parse_catalog(document)))
    rendered = load_rendered(path)["Resources"]
    assert rendered["ScheduleQuarterHourly"]["Properties"]["ScheduleExpression"] == "cron(0/15 * * * ? *)"
    assert "SchedulePayrollMonthClose" not in rendered
    del document["schedules"]
    path.write_text(schedule_template.rewrite(TEMPLATE.read_text(), parse_catalog(document)))
    kinds = [resource["Type"] for resource in load_rendered(path)["Resources"].values()]
    assert "AWS::Scheduler::Schedule" not in kinds
    assert "AWS::Scheduler::ScheduleGroup" in kinds


def test_schedules_whose_logical_ids_collide_are_refused() -> None:
    document = copy.deepcopy(packaged_document())
    schedule = {"batch": "report-export", "expression": "rate(1 hour)", "timezone": "UTC", "arguments": ["x"]}
    document["schedules"] = {"day-1": schedule, "day1": schedule}
    with pytest.raises(
        PoolTemplateError, match="schedules 'day-1' and 'day1' have the same logical id ScheduleDay1"
    ):
        schedule_template.rewrite(TEMPLATE.read_text(), parse_catalog(document))
