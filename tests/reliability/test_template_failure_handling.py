"""template.yaml's failure handling: the sweep's schedule and permissions, and the alarms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain.catalog import load_catalog
from batchgate.ops.pool_template import logical_name
from batchgate.services import sweep
from cfnlint.decode.cfn_yaml import load as load_cfn_yaml  # type: ignore[import-untyped]

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
# Each catalog pool has three alarms of its own (tests/test_template.py checks them): its work queue's
# oldest offer, its work dead-letter queue, and its heartbeats.
POOL_IDS = {f"Pool{logical_name(name)}" for name in load_catalog().pools}
ALARM_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(load_cfn_yaml(str(TEMPLATE))))
    found: dict[str, Any] = loaded["Resources"]
    return found


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_dead_letter_queue_alarms_on_any_message(resources: dict[str, Any]) -> None:
    watched = {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms(resources).values()
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    queues = {
        name for name, r in resources.items() if r["Type"] == "AWS::SQS::Queue" and "DeadLetter" in name
    }
    pool_queues = {f"{pool}DeadLetterQueue" for pool in POOL_IDS}
    assert pool_queues
    assert (
        watched
        == queues
        == {
            "JobsDeadLetterQueue",
            "TrackDeadLetterQueue",
            "HistoryDeadLetterQueue",
            "JobEventsDeadLetterQueue",
            *pool_queues,
        }
    )


def test_every_function_alarms_on_errors(resources: dict[str, Any]) -> None:
    functions = {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    watched = {
        a["Dimensions"][0]["Value"]["Ref"]
        for a in alarms(resources).values()
        if a.get("MetricName") == "Errors"
    }
    assert (
        watched
        == functions
        == {"DispatchFunction", "TrackFunction", "HistoryFunction", "SweepFunction", "JobEventsFunction"}
    )


def test_stuck_jobs_alarm_watches_the_metric_the_sweep_emits(resources: dict[str, Any]) -> None:
    [stuck] = [a for a in alarms(resources).values() if a.get("MetricName") == "StuckJobs"]
    assert stuck["Namespace"] == "Batchgate"  # POWERTOOLS_METRICS_NAMESPACE
    assert stuck["Dimensions"] == [{"Name": "service", "Value": "batchgate"}]
    assert stuck["TreatMissingData"] == "breaching"  # a sweep that stopped running is an alarm too
    assert 'count("StuckJobs"' in Path(sweep.__file__).read_text()


def test_alarms_fire_above_zero_and_notify_the_optional_topic(resources: dict[str, Any]) -> None:
    found = alarms(resources)
    # Four functions' errors, three DLQs and StuckJobs; the job events function's errors and DLQ; per
    # pool its work queue's age, its DLQ and its heartbeats.
    assert len(found) == 8 + 2 + 3 * len(POOL_IDS)
    for name, alarm in found.items():
        if not name.startswith(tuple(POOL_IDS)) or name.endswith("DeadLetterQueueAlarm"):
            assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold", name
        assert alarm["AlarmActions"] == ALARM_ACTIONS and alarm["OKActions"] == ALARM_ACTIONS, name
        assert alarm["AlarmDescription"], name


def test_the_sweep_runs_on_a_schedule_with_cluster_scoped_permissions(resources: dict[str, Any]) -> None:
    function = resources["SweepFunction"]["Properties"]
    assert function["CodeUri"] == "functions/sweep/"
    [event] = function["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == {"Ref": "SweepSchedule"}
    assert function["Role"] == {"Fn::GetAtt": ["SweepFunctionRole", "Arn"]}
    statements = resources["SweepFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    ecs = [s for s in statements if any(str(a).startswith("ecs:") for a in _actions(s))]
    # Timeouts (StopTask) and missed events (DescribeTasks); relaunches go through the jobs queue.
    assert {a for s in ecs for a in _actions(s)} == {"ecs:DescribeTasks", "ecs:StopTask"}
    for statement in ecs:
        assert statement["Condition"] == {"ArnEquals": {"ecs:cluster": {"Ref": "ClusterArn"}}}
    assert not any("dynamodb:Scan" in _actions(s) for s in statements)


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]
