"""template.yaml and samconfig.toml against what the package, the docs and AWS expect of them.

In-process and offline: the template is read with cfn-lint's YAML loader (it understands the short
intrinsic tags) and translated with aws-sam-translator, so that the IAM checks also see what SAM adds.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import layer_build
import pytest
from batchgate.adapters import history_table as history
from batchgate.adapters import job_table as table
from batchgate.domain.catalog import load_catalog
from batchgate.domain.jobs import JOB_ID_PREFIX, job_id_for
from batchgate.domain.pools import PoolTask
from batchgate.ops import pool_template
from batchgate.ops.stack_outputs import OUTPUTS
from batchgate.services import settings as settings_module
from batchgate.services.settings import Settings
from cfnlint.decode.cfn_yaml import load as load_cfn_yaml  # type: ignore[import-untyped]
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from tests.test_layer_build import locked_pins

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
CONTRACTS = ROOT / "docs" / "contracts-internal.md"
CATALOG = ROOT / "layers" / "batchgate" / "batchgate" / "catalog.json"
LAYER_REQUIREMENTS = ROOT / "layers" / "batchgate" / "requirements.txt"
ENV_JSON = ROOT / "events" / "env.json"
EVENTS = ROOT / "events"

FUNCTIONS = ("DispatchFunction", "TrackFunction", "HistoryFunction", "SweepFunction", "JobEventsFunction")
# The functions that read the job table's stream (and only it).
STREAM_READERS = ("HistoryFunction", "JobEventsFunction")
DEPLOY_ENVIRONMENTS = ("default", "dev", "prod")
REGION = "us-east-1"
# AWS: the queue's visibility timeout should be at least six times the function's timeout.
VISIBILITY_FACTOR = 6
# The bindings of the environment variables batchgate.services.settings reads (docs/contracts-internal.md).
ENVIRONMENT_BINDINGS: dict[str, Any] = {
    "JOB_TABLE_NAME": {"Ref": "JobTable"},
    "HISTORY_TABLE_NAME": {"Ref": "HistoryTable"},
    "JOBS_QUEUE_URL": {"Ref": "JobsQueue"},
    "ECS_CLUSTER": {"Ref": "ClusterArn"},
    "ECS_SUBNETS": {"Fn::Join": [",", {"Ref": "Subnets"}]},
    "ECS_SECURITY_GROUPS": {"Fn::Join": [",", {"Ref": "SecurityGroups"}]},
    "ECS_ASSIGN_PUBLIC_IP": {"Ref": "AssignPublicIp"},
    "EC2_CAPACITY_PROVIDER": {"Ref": "Ec2CapacityProvider"},
    "DISPATCH_CONCURRENCY": {"Ref": "DispatchConcurrency"},
    "DISPATCH_MAX_CONCURRENCY": {"Ref": "DispatchMaxConcurrency"},
    "JOB_RETENTION_DAYS": {"Ref": "JobRetentionDays"},
    "EVENT_BUS_NAME": {"Ref": "JobEventBusName"},
    "POWERTOOLS_SERVICE_NAME": "batchgate",
    "POWERTOOLS_METRICS_NAMESPACE": "Batchgate",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    "POOL_TABLE_NAME": {"Ref": "PoolTable"},
    "POOL_QUEUE_URLS": {"Fn::Sub": "attendance=${PoolAttendanceQueue}"},
    "POOL_SERVICE_PREFIX": {"Fn::Sub": "${AWS::StackName}-pool-"},
}
OUR_CLUSTER = {"ArnEquals": {"ecs:cluster": {"Ref": "ClusterArn"}}}
METRICS_NAMESPACE_ONLY = {"StringEquals": {"cloudwatch:namespace": "Batchgate"}}
# The only actions a statement may grant on Resource "*", each because AWS authorises nothing narrower
# for what batchgate does with it, and the condition that holds it narrower where one exists (None: no
# condition key applies). Everything else names its resources.
WILDCARD_ONLY_ACTIONS: dict[str, dict[str, Any] | None] = {
    # No resource-level permissions (track: a task's log options; the worker: a batch's image).
    "ecs:DescribeTaskDefinition": None,
    # No resource-level permissions (the stream event source mappings find the job table's stream).
    "dynamodb:ListStreams": None,
    # Scoped to container instances only: listing a cluster's tasks by startedBy is authorised on "*",
    # held to our cluster by its ecs:cluster condition.
    "ecs:ListTasks": OUR_CLUSTER,
    # The worker's metrics: authorised on "*" for custom namespaces, held to batchgate's namespace.
    "cloudwatch:PutMetricData": METRICS_NAMESPACE_ONLY,
}
# The AWS resource type each referenced parameter or resource stands for in a policy.
REFERENCED_RESOURCE_TYPES = {
    "ClusterArn": "cluster",
    "TaskDefinitionArns": "task-definition",
    "PassRoleArns": "role",
    "JobTable": "table",
    "HistoryTable": "table",
    "JobsQueue": "queue",
    "JobsDeadLetterQueue": "queue",
    "TrackDeadLetterQueue": "queue",
    "HistoryDeadLetterQueue": "queue",
    "JobEventsDeadLetterQueue": "queue",
    "JobEventsTapQueue": "queue",
    "PoolTable": "table",
    "ScheduleTable": "table",
    "ScheduleDeadLetterQueue": "queue",
    **{
        f"Pool{pool_template.logical_name(name)}{suffix}": "queue"
        for name in load_catalog(CATALOG).pools
        for suffix in ("Queue", "DeadLetterQueue")
    },
    # A log group's Arn ends in ":*": its log streams.
    **{
        f"Pool{pool_template.logical_name(name)}JobLogGroup": "log-stream"
        for name in load_catalog(CATALOG).pools
    },
    **{f"{function}LogGroup": "log-stream" for function in FUNCTIONS},
}
SUB_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:[a-z0-9-]+:(?:\$\{AWS::Region\}|[a-z0-9-]*):(?:\$\{AWS::AccountId\}|[0-9]*)"
    r":(?P<type>[a-z-]+)[/:]"
)
SUB_ATTRIBUTE_PATH = re.compile(r"^\$\{[A-Za-z0-9]+\.Arn\}/(?P<type>[a-z-]+)/")


def plain(value: Any) -> Any:
    """cfn-lint's node classes and SAM's output as plain JSON values."""
    return json.loads(json.dumps(value))


def load_template() -> dict[str, Any]:
    loaded: dict[str, Any] = plain(load_cfn_yaml(str(TEMPLATE)))
    return loaded


# SAM resolves AWS managed policy names (in a function's Policies) through IAM. Offline it gets them
# from this map instead, so that nothing calls AWS and a managed policy named by mistake still shows in
# the translated roles (where the IAM tests refuse it).
MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/{path}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/AWSLambdaBasicExecutionRole",
        "AWSLambdaSQSQueueExecutionRole": "service-role/AWSLambdaSQSQueueExecutionRole",
        "AWSLambdaDynamoDBExecutionRole": "service-role/AWSLambdaDynamoDBExecutionRole",
        "AWSLambdaVPCAccessExecutionRole": "service-role/AWSLambdaVPCAccessExecutionRole",
        "AWSXrayWriteOnlyAccess": "AWSXrayWriteOnlyAccess",
        "AWSXRayDaemonWriteAccess": "AWSXRayDaemonWriteAccess",
        "AmazonDynamoDBFullAccess": "AmazonDynamoDBFullAccess",
        "AmazonSQSFullAccess": "AmazonSQSFullAccess",
        "AmazonECS_FullAccess": "AmazonECS_FullAccess",
        "CloudWatchLogsFullAccess": "CloudWatchLogsFullAccess",
    }.items()
}


class RecordingPolicyLoader:
    """Stands in for SAM's ManagedPolicyLoader (which asks IAM): a static map; counts how often SAM
    needs it."""

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> dict[str, str]:
        self.calls += 1
        return dict(MANAGED_POLICIES)


def translate(template: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The CloudFormation template SAM makes of ours, and how many managed policy look-ups it needed."""
    sam = copy.deepcopy(template)
    for resource in sam["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):  # local paths: sam package would upload them
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://batchgate-artifacts/{key}.zip"
    loader = RecordingPolicyLoader()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        translated: dict[str, Any] = plain(transform(sam, {}, loader))
    return translated, loader.calls


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@functools.cache
def translated_template() -> dict[str, Any]:
    """template.yaml as SAM translates it, once per session (read it, never change it)."""
    return translate(load_template())[0]


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translated_template()


@pytest.fixture(params=["template.yaml", "translated"])
def iam_document(request: pytest.FixtureRequest, template: dict[str, Any]) -> dict[str, Any]:
    """Both the template as written and as SAM translates it (with the roles SAM generates)."""
    if request.param == "translated":
        document: dict[str, Any] = request.getfixturevalue("translated")
        return document
    return template


def resource(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"][logical_id]
    return found


def properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = resource(template, logical_id)["Properties"]
    return found


def function_setting(template: dict[str, Any], function: str, key: str) -> Any:
    """A function property, falling back to Globals as SAM does."""
    own = properties(template, function)
    if key in own:
        return own[key]
    return template.get("Globals", {}).get("Function", {}).get(key)


def function_environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    """Globals' environment variables merged with the function's own."""
    variables: dict[str, Any] = {}
    variables.update(
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    variables.update(properties(template, function).get("Environment", {}).get("Variables", {}))
    return variables


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM statement anywhere in a template (role policies, queue policies, trust policies)."""
    if isinstance(node, dict):
        if "Statement" in node:
            for statement in as_list(node["Statement"]):
                if isinstance(statement, dict) and "Effect" in statement:
                    yield statement
        for value in node.values():
            yield from policy_statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from policy_statements(item)


def actions_of(statement: dict[str, Any]) -> list[str]:
    return [str(action) for action in as_list(statement.get("Action", []))]


def function_role(template: dict[str, Any], function: str) -> str:
    """The logical id of the function's own role (never one SAM generates, which would carry AWS
    managed policies: AWSLambdaBasicExecutionRole, the event sources' execution roles)."""
    function_properties = properties(template, function)
    assert "Policies" not in function_properties, function
    role = function_properties["Role"]
    assert set(role) == {"Fn::GetAtt"} and role["Fn::GetAtt"][1] == "Arn", (function, role)
    logical_id: str = role["Fn::GetAtt"][0]
    assert resource(template, logical_id)["Type"] == "AWS::IAM::Role", function
    return logical_id


def role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The statements of a role's inline policies."""
    return [
        statement
        for policy in properties(template, role).get("Policies", [])
        for statement in as_list(policy["PolicyDocument"]["Statement"])
    ]


def function_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    return role_statements(template, function_role(template, function))


def statements_with(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [statement for statement in statements if action in actions_of(statement)]


# --- AWS's list of actions and resource types (shipped with cfn-lint) ---------------------------------

POLICY_DATA: dict[str, Any] = json.loads(
    resources.files("cfnlint.data.AdditionalSpecs").joinpath("Policies.json").read_text()
)


def action_resource_types(action: str) -> list[str]:
    """The resource types AWS lets a policy scope `action` to (empty: the action needs Resource "*")."""
    service, _, name = action.partition(":")
    entry = POLICY_DATA.get(service.lower(), {}).get("Actions", {}).get(name.lower())
    assert entry is not None, f"{action} is not an action AWS knows"
    types: list[str] = entry.get("Resources", [])
    return types


def resource_type(value: Any) -> str:
    """The AWS resource type a policy Resource entry names."""
    if isinstance(value, dict) and "Ref" in value:
        return REFERENCED_RESOURCE_TYPES[value["Ref"]]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return "stream" if attribute == "StreamArn" else REFERENCED_RESOURCE_TYPES[logical_id]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
        match = SUB_ARN.match(text) or SUB_ATTRIBUTE_PATH.match(text)
        assert match, f"cannot tell the resource type of {text}"
        return match["type"]
    raise AssertionError(f"unexpected policy resource {value!r}")


# --- queues and the dispatch function -----------------------------------------------------------------


def test_queues_are_encrypted(template: dict[str, Any]) -> None:
    for queue in ("JobsQueue", "JobsDeadLetterQueue", "TrackDeadLetterQueue", "HistoryDeadLetterQueue"):
        queue_properties = properties(template, queue)
        assert queue_properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue_properties


def test_jobs_queue_redrives_to_its_dlq_after_max_receive_count(template: dict[str, Any]) -> None:
    redrive = properties(template, "JobsQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 5
    assert properties(template, "JobsDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert properties(template, "TrackDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert properties(template, "HistoryDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_visibility_timeout_is_at_least_six_dispatch_timeouts(template: dict[str, Any]) -> None:
    dispatch_timeout = function_setting(template, "DispatchFunction", "Timeout")
    visibility = properties(template, "JobsQueue")["VisibilityTimeout"]
    assert isinstance(dispatch_timeout, int) and isinstance(visibility, int)
    assert visibility >= VISIBILITY_FACTOR * dispatch_timeout


def test_dispatch_reads_the_jobs_queue_with_partial_batch_failures(template: dict[str, Any]) -> None:
    events = properties(template, "DispatchFunction")["Events"]
    assert len(events) == 1
    (event,) = events.values()
    assert event["Type"] == "SQS"
    sqs = event["Properties"]
    assert sqs["Queue"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["BatchSize"] == {"Ref": "DispatchBatchSize"}
    assert sqs["MaximumBatchingWindowInSeconds"] == {"Ref": "DispatchBatchingWindowSeconds"}
    assert sqs["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "DispatchMaxConcurrency"}}
    parameters = template["Parameters"]
    assert parameters["DispatchBatchSize"]["Default"] == 10
    # 0: a warm job (docs/warm-lane.md) must not wait up to a second before its offer is sent.
    assert parameters["DispatchBatchingWindowSeconds"]["Default"] == 0
    assert parameters["DispatchMaxConcurrency"]["Default"] == 5
    assert parameters["DispatchMaxConcurrency"]["MinValue"] >= 2  # the lowest maximum concurrency SQS allows


# --- the task state change rule and the track function ------------------------------------------------


def track_event(template: dict[str, Any]) -> dict[str, Any]:
    events = properties(template, "TrackFunction")["Events"]
    assert len(events) == 1
    (event,) = events.values()
    assert event["Type"] == "EventBridgeRule"
    found: dict[str, Any] = event["Properties"]
    return found


def test_rule_only_matches_task_changes_of_our_cluster_started_by_batchgate(template: dict[str, Any]) -> None:
    pattern = track_event(template)["Pattern"]
    assert pattern["source"] == ["aws.ecs"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["clusterArn"] == [{"Ref": "ClusterArn"}]
    # Our tasks: started by batchgate (startedBy = job id), or run by a warm pool's service.
    assert pattern["detail"]["$or"] == [
        {"startedBy": [{"prefix": JOB_ID_PREFIX}]},
        {"group": [{"prefix": {"Fn::Sub": "service:${AWS::StackName}-pool-"}}]},
    ]
    prefix = function_environment(template, "TrackFunction")["POOL_SERVICE_PREFIX"]
    assert {"Fn::Sub": "service:" + prefix["Fn::Sub"]} == pattern["detail"]["$or"][1]["group"][0]["prefix"]


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching for what the rule uses: nested fields, exact values and prefixes."""
    for key, expected in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in expected):
                return False
            continue
        if key not in event:
            return False
        if isinstance(expected, dict):
            if not isinstance(event[key], dict) or not matches(expected, event[key]):
                return False
        elif not any(value_matches(rule, event[key]) for rule in expected):
            return False
    return True


def value_matches(rule: Any, value: Any) -> bool:
    if isinstance(rule, dict):
        assert set(rule) == {"prefix"}, f"pattern operator not handled here: {rule}"
        return isinstance(value, str) and value.startswith(rule["prefix"])
    return bool(rule == value)


def resolve_refs(node: Any, values: dict[str, str]) -> Any:
    """`node` with every {"Ref": parameter} and plain {"Fn::Sub": "...${parameter}..."} resolved."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return values[node["Ref"]]
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda match: values[match[1]], node["Fn::Sub"])
        return {key: resolve_refs(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_refs(item, values) for item in node]
    return node


def test_rule_delivers_the_sample_task_events_and_no_others(template: dict[str, Any]) -> None:
    """The sample events (events/, from the dev cluster) are what the deployed dev rule delivers."""
    parameters = {**deploy_parameters("default"), "AWS::StackName": "batchgate-dev"}
    pattern = resolve_refs(track_event(template)["Pattern"], parameters)
    # A pool task's events (task-pool-stopped.json) have no bg- startedBy: the rule's pool-service
    # pattern matches them (docs/warm-lane.md), not this one.
    ours = sorted(
        path
        for path in EVENTS.glob("task-*.json")
        if path.name not in ("task-not-ours.json", "task-pool-stopped.json")
    )
    assert ours
    for path in ours:
        event = json.loads(path.read_text())
        assert matches(pattern, event), path.name
        elsewhere = copy.deepcopy(event)
        elsewhere["detail"]["clusterArn"] = parameters["ClusterArn"].rsplit("/", 1)[0] + "/another-cluster"
        assert not matches(pattern, elsewhere), path.name
        unstarted = copy.deepcopy(event)
        del unstarted["detail"]["startedBy"]
        assert not matches(pattern, unstarted), path.name
    assert not matches(pattern, json.loads((EVENTS / "task-not-ours.json").read_text()))


def test_undeliverable_task_events_go_to_the_track_dlq(template: dict[str, Any]) -> None:
    event = track_event(template)
    assert event["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["TrackDeadLetterQueue", "Arn"]}}
    assert set(event["RetryPolicy"]) == {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"}


def test_failed_track_invocations_go_to_the_track_dlq(template: dict[str, Any]) -> None:
    config = properties(template, "TrackFunction")["EventInvokeConfig"]
    assert "MaximumRetryAttempts" in config and "MaximumEventAgeInSeconds" in config
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["TrackDeadLetterQueue", "Arn"]},
    }


def test_only_the_rule_may_send_to_the_track_dlq(translated: dict[str, Any]) -> None:
    """Checked after translation: the rule is a resource SAM generates, the policy names it."""
    rules = {
        name: body
        for name, body in translated["Resources"].items()
        if body["Type"] == "AWS::Events::Rule"
        and any(
            target["Arn"] == {"Fn::GetAtt": ["TrackFunction", "Arn"]}
            for target in body["Properties"]["Targets"]
        )
    }
    assert len(rules) == 1
    ((rule_id, rule),) = rules.items()
    (target,) = rule["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["TrackDeadLetterQueue", "Arn"]}}
    policy = properties(translated, "TrackDeadLetterQueuePolicy")
    assert policy["Queues"] == [{"Ref": "TrackDeadLetterQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert actions_of(statement) == ["sqs:SendMessage"]
    assert statement["Resource"] == {"Fn::GetAtt": ["TrackDeadLetterQueue", "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}


def test_track_role_may_send_its_failures_to_the_track_dlq(translated: dict[str, Any]) -> None:
    role = properties(translated, "TrackFunctionRole")
    sends = statements_with(list(policy_statements(role)), "sqs:SendMessage")
    # The on-failure destination (added by SAM) and the jobs queue for next attempts
    # (batchgate.domain.relaunch).
    assert sorted(json.dumps(statement["Resource"]) for statement in sends) == sorted(
        json.dumps({"Fn::GetAtt": [queue, "Arn"]}) for queue in ("TrackDeadLetterQueue", "JobsQueue")
    )


def history_event(template: dict[str, Any]) -> dict[str, Any]:
    assert "Events" not in properties(template, "HistoryFunction")
    mapping = resource(template, "HistoryFunctionJobChanges")
    assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
    found: dict[str, Any] = mapping["Properties"]
    assert found["FunctionName"] == {"Ref": "HistoryFunction"}
    return found


def test_the_history_function_reads_the_job_tables_stream_in_order(template: dict[str, Any]) -> None:
    stream = history_event(template)
    assert properties(template, "JobTable")["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert stream["EventSourceArn"] == {"Fn::GetAtt": ["JobTable", "StreamArn"]}
    # batchgate.services.history_feed folds in stream order and reports the first failure and all after it:
    # Lambda must resume at it, one batch per shard at a time.
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["ParallelizationFactor"] == 1
    assert stream["StartingPosition"] == "TRIM_HORIZON"
    assert stream["BatchSize"] <= 10000 and stream["MaximumBatchingWindowInSeconds"] <= 300


def test_records_the_history_function_keeps_failing_on_are_named_in_its_dlq(template: dict[str, Any]) -> None:
    stream = history_event(template)
    assert stream["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["HistoryDeadLetterQueue", "Arn"]}}
    }
    # Bounded: a record that keeps failing holds its shard back for at most this long.
    assert 0 <= stream["MaximumRetryAttempts"] <= 10000
    assert 60 <= stream["MaximumRecordAgeInSeconds"] <= 86400  # the stream keeps records 24 hours


def test_the_history_function_is_invoked_for_modified_jobs_only(template: dict[str, Any]) -> None:
    [pattern] = [
        json.loads(entry["Pattern"]) for entry in history_event(template)["FilterCriteria"]["Filters"]
    ]
    sample = json.loads((EVENTS / "job-stream-attempt-stopped.json").read_text())["Records"]
    assert all(matches(pattern, record) for record in sample)
    assert not matches(pattern, {**sample[0], "eventName": "INSERT"})
    assert not matches(pattern, {**sample[0], "eventName": "REMOVE"})


def test_history_role_reads_only_the_job_tables_stream(translated: dict[str, Any]) -> None:
    role = properties(translated, "HistoryFunctionRole")
    assert not any("DynamoDB" in arn for arn in role["ManagedPolicyArns"])  # no stream-wide read policy
    statements = list(policy_statements(role))
    sends = statements_with(statements, "sqs:SendMessage")
    assert [statement["Resource"] for statement in sends] == [
        {"Fn::GetAtt": ["HistoryDeadLetterQueue", "Arn"]}
    ]
    for action in ("dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"):
        [statement] = statements_with(statements, action)
        assert statement["Resource"] == {"Fn::GetAtt": ["JobTable", "StreamArn"]}


# --- the job events function (docs/events.md) ----------------------------------------------------------


def job_events_mapping(template: dict[str, Any]) -> dict[str, Any]:
    assert "Events" not in properties(template, "JobEventsFunction")
    mapping = resource(template, "JobEventsFunctionJobChanges")
    assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
    found: dict[str, Any] = mapping["Properties"]
    assert found["FunctionName"] == {"Ref": "JobEventsFunction"}
    return found


def test_the_job_events_function_reads_the_job_tables_stream_in_order(template: dict[str, Any]) -> None:
    stream = job_events_mapping(template)
    assert stream["EventSourceArn"] == {"Fn::GetAtt": ["JobTable", "StreamArn"]}
    # batchgate.services.job_events reports the first refused record and every later one: Lambda must
    # resume there, one batch per shard at a time, or a job's events could be put out of order.
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["ParallelizationFactor"] == 1
    assert stream["StartingPosition"] == "TRIM_HORIZON"
    assert stream["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["JobEventsDeadLetterQueue", "Arn"]}}
    }
    assert 0 <= stream["MaximumRetryAttempts"] <= 10000
    assert 60 <= stream["MaximumRecordAgeInSeconds"] <= 86400


def test_the_job_events_function_gets_new_and_modified_jobs_only(template: dict[str, Any]) -> None:
    [pattern] = [
        json.loads(entry["Pattern"]) for entry in job_events_mapping(template)["FilterCriteria"]["Filters"]
    ]
    sample = json.loads((EVENTS / "job-stream-status-change.json").read_text())["Records"]
    assert all(matches(pattern, record) for record in sample)
    assert matches(pattern, {**sample[0], "eventName": "INSERT"})
    assert not matches(pattern, {**sample[0], "eventName": "REMOVE"})  # TTL expiries: no status change


def test_job_events_role_puts_on_the_chosen_bus_only_and_reads_only_the_job_stream(
    translated: dict[str, Any],
) -> None:
    role = properties(translated, "JobEventsFunctionRole")
    assert not any("DynamoDB" in arn for arn in role["ManagedPolicyArns"])
    statements = list(policy_statements(role))
    [put] = statements_with(statements, "events:PutEvents")
    assert actions_of(put) == ["events:PutEvents"]
    bus = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${JobEventBusName}"
    assert put["Resource"] == {"Fn::Sub": bus}
    sends = statements_with(statements, "sqs:SendMessage")
    assert [statement["Resource"] for statement in sends] == [
        {"Fn::GetAtt": ["JobEventsDeadLetterQueue", "Arn"]}
    ]
    for action in ("dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"):
        [statement] = statements_with(statements, action)
        assert statement["Resource"] == {"Fn::GetAtt": ["JobTable", "StreamArn"]}
    allowed = {action for statement in statements for action in actions_of(statement)}
    assert not {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"} & allowed


def test_the_job_event_bus_is_a_parameter_defaulting_to_the_default_bus(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["JobEventBusName"]
    assert parameter["Default"] == "default"
    assert re.match(parameter["AllowedPattern"], "default")
    assert re.match(parameter["AllowedPattern"], "batchgate-events")
    assert not re.match(parameter["AllowedPattern"], "arn:aws:events:us-east-1:123456789012:event-bus/x y")


def test_lost_job_events_and_function_errors_raise_alarms(template: dict[str, Any]) -> None:
    dlq = properties(template, "JobEventsDeadLetterQueueAlarm")
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobEventsDeadLetterQueue", "QueueName"]}}
    ]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    errors = properties(template, "JobEventsErrorsAlarm")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "JobEventsFunction"}}]
    for alarm in (dlq, errors):
        assert alarm["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


# --- the job table ------------------------------------------------------------------------------------


def test_table_keys_indexes_and_ttl_are_the_packages(template: dict[str, Any]) -> None:
    job_table = properties(template, "JobTable")
    assert job_table["KeySchema"] == [{"AttributeName": table.KEY_ATTRIBUTE, "KeyType": "HASH"}]
    indexes = {index["IndexName"]: index for index in job_table["GlobalSecondaryIndexes"]}
    assert set(indexes) == set(table.INDEXES)
    for name, (hash_key, range_key) in table.INDEXES.items():
        assert indexes[name]["KeySchema"] == [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ]
        assert indexes[name]["Projection"] == {
            "ProjectionType": "INCLUDE",
            "NonKeyAttributes": list(table.PROJECTIONS[name]),
        }
        # What changes on every write never enters an index: it would rewrite the entry each time.
        assert not {"updated_at", "revision", "timeline", "attempts"} & set(table.PROJECTIONS[name])
        assert range_key == table.SORT_ATTRIBUTE
    key_attributes = {table.KEY_ATTRIBUTE} | {key for keys in table.INDEXES.values() for key in keys}
    assert {
        item["AttributeName"]: item["AttributeType"] for item in job_table["AttributeDefinitions"]
    } == dict.fromkeys(key_attributes, "S")
    assert job_table["TimeToLiveSpecification"] == {"AttributeName": table.TTL_ATTRIBUTE, "Enabled": True}


def test_table_is_on_demand_backed_up_encrypted_and_retained(template: dict[str, Any]) -> None:
    job_table = properties(template, "JobTable")
    assert job_table["BillingMode"] == "PAY_PER_REQUEST"
    assert job_table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert job_table["SSESpecification"]["SSEEnabled"] is True
    assert resource(template, "JobTable")["DeletionPolicy"] == "Retain"
    assert resource(template, "JobTable")["UpdateReplacePolicy"] == "Retain"


def test_history_table_keys_are_the_packages(template: dict[str, Any]) -> None:
    history_table = properties(template, "HistoryTable")
    assert history_table["KeySchema"] == [
        {"AttributeName": history.HASH_ATTRIBUTE, "KeyType": "HASH"},
        {"AttributeName": history.RANGE_ATTRIBUTE, "KeyType": "RANGE"},
    ]
    assert history_table["BillingMode"] == "PAY_PER_REQUEST"
    assert history_table["SSESpecification"]["SSEEnabled"] is True
    assert "GlobalSecondaryIndexes" not in history_table  # read by key only, never scanned


# --- IAM ----------------------------------------------------------------------------------------------


def test_translation_needs_no_managed_policy_look_up(template: dict[str, Any]) -> None:
    assert translate(template)[1] == 0


def test_no_statement_allows_a_wildcard_action(iam_document: dict[str, Any]) -> None:
    statements = list(policy_statements(iam_document))
    assert statements_with(statements, "ecs:RunTask"), "the walk must find the functions' policies"
    for statement in statements:
        assert "NotAction" not in statement, statement
        for action in actions_of(statement):
            assert "*" not in action, statement


def test_wildcard_resources_only_on_actions_aws_cannot_scope(iam_document: dict[str, Any]) -> None:
    wildcard_actions = set()
    for statement in policy_statements(iam_document):
        assert "NotResource" not in statement, statement
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        assert as_list(statement["Resource"]) == ["*"], statement  # "*" next to an ARN hides the ARN
        for action in actions_of(statement):
            assert action in WILDCARD_ONLY_ACTIONS, f'{action} on "*": name its resources'
            assert statement.get("Condition") == WILDCARD_ONLY_ACTIONS[action], statement
            wildcard_actions.add(action)
    assert wildcard_actions == set(WILDCARD_ONLY_ACTIONS)


def test_the_wildcard_allow_list_holds_only_actions_aws_cannot_scope() -> None:
    """AWS's own list of actions and resource types (cfn-lint's copy) agrees with each entry's reason."""
    assert action_resource_types("ecs:DescribeTaskDefinition") == []
    assert action_resource_types("dynamodb:ListStreams") == []
    # ListTasks can be scoped only to the container instance it is asked about, which batchgate never gives.
    assert action_resource_types("ecs:ListTasks") == ["container-instance"]
    # PutMetricData's only resource type is a dataset (CloudWatch's own), not a custom namespace.
    assert action_resource_types("cloudwatch:PutMetricData") == ["dataset"]
    for scoped in (
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:RunTask",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
    ):
        assert action_resource_types(scoped), scoped


def test_scoped_resources_are_of_the_types_their_actions_act_on(iam_document: dict[str, Any]) -> None:
    """The resource ARNs name the types AWS authorises each action on (e.g. ecs:ListTasks on container
    instances), so that no statement is silently useless."""
    for statement in policy_statements(iam_document):
        scoped = [value for value in as_list(statement.get("Resource", [])) if value != "*"]
        if not scoped:
            continue
        given = {resource_type(value) for value in scoped}
        for action in actions_of(statement):
            assert given & set(action_resource_types(action)), f"{action} on {given}"
        for kind in given:
            assert any(kind in action_resource_types(action) for action in actions_of(statement)), kind


def test_run_task_only_for_our_task_definitions_in_our_cluster(template: dict[str, Any]) -> None:
    statements = statements_with(function_statements(template, "DispatchFunction"), "ecs:RunTask")
    assert statements
    for statement in statements:
        assert statement["Resource"] == {"Ref": "TaskDefinitionArns"}
        assert statement["Condition"] == {"ArnEquals": {"ecs:cluster": {"Ref": "ClusterArn"}}}


@pytest.mark.parametrize(
    ("parameter", "accepted", "refused"),
    [
        (
            "TaskDefinitionArns",
            [
                "arn:aws:ecs:us-east-1:123456789012:task-definition/batchgate-payroll:*",
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/batchgate_reports:12",
                "arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/payroll:*",
            ],
            [
                "*",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/*",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/*:*",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/batchgate-*:*",
                "arn:aws:ecs:us-east-1:*:task-definition/batchgate-payroll:*",
                "arn:aws:ecs:*:123456789012:task-definition/batchgate-payroll:*",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/batchgate-payroll",
                "arn:aws:ecs:us-east-1:123456789012:task-definition/batchgate-payroll:0",
                "arn:aws:iam::123456789012:role/batchgate-payroll",
                "batchgate-payroll:*",
                "",
            ],
        ),
        (
            "PassRoleArns",
            [
                "arn:aws:iam::123456789012:role/batchgate-dev-task",
                "arn:aws:iam::123456789012:role/service-role/batchgate-dev-task-execution",
                "arn:aws-us-gov:iam::123456789012:role/batchgate.task+x=y,z@w_v-u",
            ],
            [
                "*",
                "arn:aws:iam::123456789012:role/*",
                "arn:aws:iam::123456789012:role/batchgate-*",
                "arn:aws:iam::*:role/batchgate-dev-task",
                "arn:aws:iam::123456789012:user/batchgate",
                "batchgate-dev-task",
                "",
            ],
        ),
    ],
)
def test_what_dispatch_may_run_and_pass_is_named_by_full_arns(
    template: dict[str, Any], parameter: str, accepted: list[str], refused: list[str]
) -> None:
    """CloudFormation matches AllowedPattern against each value of a CommaDelimitedList: no "*", no
    family or role name patterns, no other account or region wildcards."""
    spec = template["Parameters"][parameter]
    assert spec["Type"] == "CommaDelimitedList" and "Default" not in spec
    assert spec["ConstraintDescription"]
    for value in accepted:
        assert re.fullmatch(spec["AllowedPattern"], value), value
    for value in refused:
        assert not re.fullmatch(spec["AllowedPattern"], value), value


def test_tags_only_on_tasks_being_started(template: dict[str, Any]) -> None:
    statements = statements_with(function_statements(template, "DispatchFunction"), "ecs:TagResource")
    assert statements
    for statement in statements:
        assert as_list(statement["Condition"]["StringEquals"]["ecs:CreateAction"]) == ["RunTask"]
        assert {resource_type(value) for value in as_list(statement["Resource"])} == {"task"}


def test_task_reads_are_limited_to_our_cluster(template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        statements = function_statements(template, function)
        for action in (
            "ecs:DescribeTasks",
            "ecs:ListTasks",
            "ecs:StopTask",
            "ecs:DescribeContainerInstances",
        ):
            for statement in statements_with(statements, action):
                assert statement["Condition"] == OUR_CLUSTER, statement
        for statement in statements_with(statements, "ecs:ListContainerInstances"):
            assert statement["Resource"] == {"Ref": "ClusterArn"}


def test_pass_role_only_to_ecs_tasks_for_the_given_roles(iam_document: dict[str, Any]) -> None:
    statements = statements_with(list(policy_statements(iam_document)), "iam:PassRole")
    assert statements
    for statement in statements:
        assert statement["Resource"] == {"Ref": "PassRoleArns"}
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_table_access_is_the_stack_tables_only(template: dict[str, Any]) -> None:
    job_table = [{"Fn::GetAtt": ["JobTable", "Arn"]}]
    job_indexes = [{"Fn::Sub": "${JobTable.Arn}/index/*"}]
    history_table = [{"Fn::GetAtt": ["HistoryTable", "Arn"]}]
    job_stream = [{"Fn::GetAtt": ["JobTable", "StreamArn"]}]
    pool_table = [{"Fn::GetAtt": ["PoolTable", "Arn"]}]
    schedule_table = [{"Fn::GetAtt": ["ScheduleTable", "Arn"]}]
    for function in FUNCTIONS:
        for statement in function_statements(template, function):
            if any(action.startswith("dynamodb:") for action in actions_of(statement)):
                assert all(action.startswith("dynamodb:") for action in actions_of(statement))
                if actions_of(statement) == ["dynamodb:ListStreams"]:
                    continue  # lists stream ARNs only; reading one needs the statement on job_stream
                readable = (
                    (history_table, job_stream)
                    if function in STREAM_READERS
                    else (job_table, job_indexes, history_table, pool_table, schedule_table)
                )
                assert as_list(statement["Resource"]) in readable, statement

    # Dispatch only reads the history, track never touches it, the history function folds into it.
    def history_actions(function: str) -> list[str]:
        return [
            action
            for statement in function_statements(template, function)
            if as_list(statement["Resource"]) == history_table
            for action in actions_of(statement)
        ]

    assert history_actions("DispatchFunction") == ["dynamodb:Query"]
    assert history_actions("TrackFunction") == []
    assert history_actions("HistoryFunction") == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert history_actions("JobEventsFunction") == []

    # The pools' heartbeats: dispatch queries a pool's items, track and the sweep read one; only the
    # workers write them.
    def pool_actions(function: str) -> list[str]:
        return [
            action
            for statement in function_statements(template, function)
            if as_list(statement["Resource"]) == pool_table
            for action in actions_of(statement)
        ]

    assert pool_actions("DispatchFunction") == ["dynamodb:Query"]
    assert pool_actions("TrackFunction") == ["dynamodb:GetItem"]
    assert pool_actions("SweepFunction") == ["dynamodb:GetItem"]
    assert pool_actions("HistoryFunction") == []

    # The reported slots (docs/schedules.md): the sweep only.
    for function in FUNCTIONS:
        schedule_actions = [
            action
            for statement in function_statements(template, function)
            if as_list(statement["Resource"]) == schedule_table
            for action in actions_of(statement)
        ]
        expected = (
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"]
            if function == "SweepFunction"
            else []
        )
        assert schedule_actions == expected, function


# --- functions, layer, environment, outputs -----------------------------------------------------------


def test_functions_share_runtime_tracing_and_the_package_layer(template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        assert function_setting(template, function, "Runtime") == "python3.12"
        assert function_setting(template, function, "Architectures") == [{"Ref": "Architecture"}]
        assert function_setting(template, function, "Tracing") == "Active"
        assert function_setting(template, function, "Layers") == [{"Ref": "BatchgateLayer"}]
        assert function_setting(template, function, "Handler") == "app.handler"
        code = ROOT / function_setting(template, function, "CodeUri") / "app.py"
        assert "def handler(" in code.read_text(), code


def test_functions_log_to_groups_with_a_retention(template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        group = function_setting(template, function, "LoggingConfig")["LogGroup"]
        assert set(group) == {"Ref"}, function
        assert resource(template, group["Ref"])["Type"] == "AWS::Logs::LogGroup"
        assert properties(template, group["Ref"])["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_architecture_is_a_parameter_the_layer_build_knows(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["Architecture"]
    assert parameter["Type"] == "String"
    assert parameter["AllowedValues"] == list(layer_build.PLATFORMS) == ["arm64", "x86_64"]
    # Deployed stacks keep arm64; the layer's Makefile builds for it when nothing says otherwise.
    assert parameter["Default"] == layer_build.DEFAULT_ARCHITECTURE == "arm64"
    makefile = (ROOT / "layers" / "batchgate" / "Makefile").read_text()
    assert re.findall(r"^BATCHGATE_LAYER_ARCHITECTURE \?= (\S+)$", makefile, re.M) == [parameter["Default"]]
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert any("Architecture" in group["Parameters"] for group in groups)


def test_layer_is_built_from_the_package_with_its_requirements(template: dict[str, Any]) -> None:
    layer = resource(template, "BatchgateLayer")
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"].rstrip("/") == "layers/batchgate"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    # The layer's Makefile runs layer_build.py, which installs wheels for the layer's architecture.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers" / "batchgate" / "Makefile").read_text()
    assert re.search(
        r"^build-BatchgateLayer:\n"
        r"\tpython3\.12 layer_build\.py \"\$\(ARTIFACTS_DIR\)\" \"\$\(BATCHGATE_LAYER_ARCHITECTURE\)\"$",
        makefile,
        re.M,
    )
    # Built for the functions' architecture, whichever the Architecture parameter names.
    assert (
        layer["Properties"]["CompatibleArchitectures"]
        == [layer["Metadata"]["BuildArchitecture"]]
        == [{"Ref": "Architecture"}]
    )
    for function in FUNCTIONS:
        assert function_setting(template, function, "Architectures") == [{"Ref": "Architecture"}], function
    assert (ROOT / "layers" / "batchgate" / "batchgate" / "__init__.py").is_file()
    # What the layer asks for (requirements.in; requirements.txt locks it with everything it pulls in).
    requirements = [
        line
        for line in LAYER_REQUIREMENTS.with_suffix(".in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # boto3 and botocore are pinned together: the tracer's aws-xray-sdk pulls in botocore, which
    # would otherwise shadow the runtime's with a version its boto3 was not released with.
    locked = locked_pins(ROOT / "requirements.lock")
    assert requirements == [
        f"aws-lambda-powertools[tracer,validation]=={locked['aws-lambda-powertools'][0]}",
        f"boto3=={locked['boto3'][0]}",
        f"botocore=={locked['botocore'][0]}",
    ]


def contract_variables() -> list[str]:
    """The environment variables docs/contracts-internal.md lists (first column of its table)."""
    names: list[str] = []
    for line in CONTRACTS.read_text().splitlines():
        match = re.match(r"^\|\s*([A-Z][A-Z0-9_]*(?:\s*/\s*[A-Z][A-Z0-9_]*)*)\s*\|", line)
        if match:
            names.extend(name.strip() for name in match[1].split("/"))
    return names


def settings_variables() -> set[str]:
    """The environment variables batchgate.services.settings reads (the docs may lag behind the code)."""
    source = Path(settings_module.__file__ or "").read_text()
    return set(re.findall(r"""env(?:\.get\(|\[)["']([A-Z][A-Z0-9_]*)["']""", source))


def test_functions_get_every_variable_the_package_reads(template: dict[str, Any]) -> None:
    variables = contract_variables() + sorted(settings_variables())
    assert {"JOB_TABLE_NAME", "ECS_CLUSTER", "POWERTOOLS_SERVICE_NAME"} <= set(variables)
    assert {"JOB_TABLE_NAME", "ECS_SUBNETS"} <= settings_variables()
    for function in FUNCTIONS:
        environment = function_environment(template, function)
        assert set(variables) <= set(environment), (function, set(variables) - set(environment))
        for name, binding in ENVIRONMENT_BINDINGS.items():
            assert environment[name] == binding, (function, name)


def test_env_json_sets_only_declared_variables_and_all_the_contract(template: dict[str, Any]) -> None:
    """`sam local invoke --env-vars` silently ignores a variable the template does not declare."""
    env_json = json.loads(ENV_JSON.read_text())
    assert set(env_json) == set(FUNCTIONS)
    sample_cluster = json.loads((EVENTS / "task-running.json").read_text())["detail"]["clusterArn"]
    for function in FUNCTIONS:
        values = env_json[function]
        assert set(values) <= set(function_environment(template, function)), function
        assert set(contract_variables()) | settings_variables() <= set(values), function
        assert all(isinstance(value, str) for value in values.values())
        settings = Settings.from_environment(values)
        assert settings.cluster == sample_cluster  # the sample events come from this cluster
        assert settings.subnets and settings.security_groups


def test_outputs_are_described_and_known_to_the_cli(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    required = {
        "JobsQueueUrl",
        "JobsQueueArn",
        "JobTableName",
        "JobsDeadLetterQueueUrl",
        "TrackDeadLetterQueueUrl",
        "DispatchFunctionName",
        "TrackFunctionName",
    }
    assert required <= set(outputs)
    # Every resource the CLI looks up in the stack's outputs (batchgate.ops.stack_outputs) is there.
    for cli_name in set(OUTPUTS.values()):
        assert any(key in outputs for key, name in OUTPUTS.items() if name == cli_name), cli_name
    for name, output in outputs.items():
        assert output.get("Description"), name


# --- the warm pools (generated from the catalog's pools by batchgate.ops.pool_template) ---------------

POOLS = load_catalog(CATALOG).pools
CLUSTER_NAME = {"Fn::Select": [1, {"Fn::Split": ["/", {"Ref": "ClusterArn"}]}]}


def test_the_pools_sections_are_what_the_catalog_generates() -> None:
    """Drift: the catalog's pools and template.yaml's generated sections say the same."""
    text = TEMPLATE.read_text()
    stale = pool_template.stale_sections(text, load_catalog(CATALOG))
    assert not stale, (
        f"template.yaml's sections {', '.join(stale)} differ from the catalog's pools: "
        f"run {pool_template.WRITE_COMMAND}"
    )


def test_the_packaged_catalog_has_a_sample_pool() -> None:
    assert set(POOLS) == {"attendance"}


def pool_id(name: str, suffix: str) -> str:
    return f"Pool{pool_template.logical_name(name)}{suffix}"


@pytest.mark.parametrize("name", sorted(POOLS))
def test_each_pool_takes_its_image_as_a_parameter(template: dict[str, Any], name: str) -> None:
    parameter = template["Parameters"][pool_id(name, "Image")]
    assert parameter["Type"] == "String" and "Default" not in parameter
    pattern = parameter["AllowedPattern"]
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    for image in (f"{registry}/attendance:2024.06.1-warm", f"{registry}/hr/attendance@sha256:{'a' * 64}"):
        assert re.fullmatch(pattern, image), image
    for image in (f"{registry}/attendance", "attendance:latest", f"{registry}/attendance@sha256:abc", ""):
        assert not re.fullmatch(pattern, image), image
    role = template["Parameters"]["PoolExecutionRoleArn"]
    assert re.fullmatch(role["AllowedPattern"], "arn:aws:iam::123456789012:role/batchgate-dev-task-execution")


@pytest.mark.parametrize("name", sorted(POOLS))
def test_each_pool_has_a_work_queue_with_a_dlq_and_log_groups(template: dict[str, Any], name: str) -> None:
    queue = properties(template, pool_id(name, "Queue"))
    assert queue["QueueName"] == {"Fn::Sub": f"${{AWS::StackName}}-pool-{name}"}
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [pool_id(name, "DeadLetterQueue"), "Arn"]},
        "maxReceiveCount": pool_template.OFFER_MAX_RECEIVE_COUNT,
    }
    # A worker deletes an offer right after its claim: the timeout only has to outlast any offer.
    assert max(pool.offer_seconds for pool in POOLS.values()) <= queue["VisibilityTimeout"] <= 60
    assert properties(template, pool_id(name, "DeadLetterQueue"))["MessageRetentionPeriod"] == 14 * 24 * 3600
    for group in ("JobLogGroup", "WorkerLogGroup"):
        assert resource(template, pool_id(name, group))["Type"] == "AWS::Logs::LogGroup"
        assert properties(template, pool_id(name, group))["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_each_pool_runs_the_worker_in_its_batches_image(template: dict[str, Any], name: str) -> None:
    pool = POOLS[name]
    definition = properties(template, pool_id(name, "TaskDefinition"))
    assert (definition["Cpu"], definition["Memory"]) == (str(pool.cpu), str(pool.memory))
    assert definition["RuntimePlatform"] == {
        "CpuArchitecture": pool.architecture,
        "OperatingSystemFamily": "LINUX",
    }
    assert definition["NetworkMode"] == "awsvpc"
    assert definition["RequiresCompatibilities"] == ["FARGATE"]
    assert definition["ExecutionRoleArn"] == {"Ref": "PoolExecutionRoleArn"}
    assert definition["TaskRoleArn"] == {"Fn::GetAtt": [pool_id(name, "TaskRole"), "Arn"]}
    (container,) = definition["ContainerDefinitions"]
    assert container["Name"] == pool.container
    assert container["Image"] == {"Ref": pool_id(name, "Image")}
    assert container["EntryPoint"] + container["Command"] == ["python", "-m", "batchgate.worker"]
    assert container["StopTimeout"] == 120
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment == {
        "BATCHGATE_POOL": name,
        "JOB_TABLE_NAME": {"Ref": "JobTable"},
        "POOL_TABLE_NAME": {"Ref": "PoolTable"},
        "POOL_QUEUE_URL": {"Ref": pool_id(name, "Queue")},
        "JOBS_QUEUE_URL": {"Ref": "JobsQueue"},
        "POOL_LOG_GROUP": {"Ref": pool_id(name, "JobLogGroup")},
    }
    logging = container["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["awslogs-group"] == {"Ref": pool_id(name, "WorkerLogGroup")}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_each_pool_is_a_service_that_keeps_running_jobs(template: dict[str, Any], name: str) -> None:
    pool = POOLS[name]
    service = properties(template, pool_id(name, "Service"))
    assert service["ServiceName"] == {"Fn::Sub": f"${{AWS::StackName}}-pool-{name}"}
    assert service["Cluster"] == {"Ref": "ClusterArn"}
    assert service["TaskDefinition"] == {"Ref": pool_id(name, "TaskDefinition")}
    assert service["DesiredCount"] == pool.min_tasks
    assert service["CapacityProviderStrategy"] == [{"CapacityProvider": pool.capacity_provider, "Weight": 1}]
    assert service["NetworkConfiguration"] == {
        "AwsvpcConfiguration": {
            "Subnets": {"Ref": "Subnets"},
            "SecurityGroups": {"Ref": "SecurityGroups"},
            "AssignPublicIp": {"Ref": "AssignPublicIp"},
        }
    }
    deployment = service["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100 and deployment["MaximumPercent"] > 100
    assert service["AvailabilityZoneRebalancing"] in ("ENABLED", "DISABLED")  # stated, not defaulted


@pytest.mark.parametrize("name", sorted(POOLS))
def test_each_pool_scales_on_its_schedule_and_busy_slots(template: dict[str, Any], name: str) -> None:
    pool = POOLS[name]
    target = properties(template, pool_id(name, "ScalableTarget"))
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["ResourceId"] == {
        "Fn::Sub": [
            f"service/${{ClusterName}}/${{{pool_id(name, 'Service')}.Name}}",
            {"ClusterName": CLUSTER_NAME},
        ]
    }
    assert target["MinCapacity"] == pool.min_tasks
    # Outside every window: at most min_tasks (0 closes the pool at night).
    assert target["MaxCapacity"] == (pool.min_tasks if pool.windows else pool.max_tasks)
    actions = target.get("ScheduledActions", [])
    assert len(actions) == 2 * len(pool.windows)
    for window, (start, end) in zip(pool.windows, zip(actions[::2], actions[1::2], strict=True), strict=True):
        assert start["Timezone"] == end["Timezone"] == pool.timezone == "Europe/London"
        assert (start["Schedule"], end["Schedule"]) == (window.start, window.end)
        # Both bounds at each edge: lowering the minimum alone never scales in.
        assert start["ScalableTargetAction"] == {"MinCapacity": window.tasks, "MaxCapacity": pool.max_tasks}
        assert end["ScalableTargetAction"] == {"MinCapacity": pool.min_tasks, "MaxCapacity": pool.min_tasks}
    assert actions[1]["ScalableTargetAction"]["MaxCapacity"] == 0  # the sample pool closes at night
    policy = properties(template, pool_id(name, "BusyRatioScaling"))
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": pool_id(name, "ScalableTarget")}
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == pool.target_busy_ratio
    assert tracking["CustomizedMetricSpecification"] == {
        "Namespace": "Batchgate",
        "MetricName": "PoolBusyRatio",
        "Dimensions": [{"Name": "Pool", "Value": name}],
        "Statistic": "Average",
    }


def alarm_notifies_the_topic(alarm: dict[str, Any]) -> bool:
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    return bool(alarm["AlarmActions"] == notify and alarm["OKActions"] == notify)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_each_pool_has_alarms_an_empty_pool_does_not_raise(template: dict[str, Any], name: str) -> None:
    age = properties(template, pool_id(name, "OfferAgeAlarm"))
    assert (age["Namespace"], age["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [pool_id(name, "Queue"), "QueueName"]}}
    ]
    dlq = properties(template, pool_id(name, "DeadLetterQueueAlarm"))
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["Dimensions"][0]["Value"] == {"Fn::GetAtt": [pool_id(name, "DeadLetterQueue"), "QueueName"]}
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    beats = properties(template, pool_id(name, "HeartbeatsAlarm"))
    metrics = {metric["Id"]: metric for metric in beats["Metrics"]}
    heartbeats = metrics["beats"]["MetricStat"]
    assert heartbeats["Metric"] == {
        "Namespace": "Batchgate",
        "MetricName": "PoolHeartbeats",
        "Dimensions": [{"Name": "Pool", "Value": name}],
    }
    assert heartbeats["Stat"] == "Sum"
    # Gated on running tasks: ECS publishes a service's CPUUtilization only while it runs tasks.
    tasks = metrics["tasks"]["MetricStat"]
    assert tasks["Metric"]["Namespace"] == "AWS/ECS"
    assert tasks["Metric"]["Dimensions"] == [
        {"Name": "ClusterName", "Value": CLUSTER_NAME},
        {"Name": "ServiceName", "Value": {"Fn::Sub": f"${{AWS::StackName}}-pool-{name}"}},
    ]
    [returned] = [metric for metric in beats["Metrics"] if metric.get("ReturnData", True)]
    assert returned["Expression"] == "IF(FILL(tasks, 0) > 0 AND FILL(beats, 0) == 0, 1, 0)"
    assert beats["TreatMissingData"] == "notBreaching"  # no tasks, no heartbeats: a pool closed at night
    for alarm in (age, dlq, beats):
        assert alarm_notifies_the_topic(alarm)


def evaluate_silent(tasks: float | None, beats: float | None) -> float:
    """The heartbeat alarm's expression for one period (None: no data point)."""
    running = tasks if tasks is not None else 0
    heard = beats if beats is not None else 0
    return 1.0 if running > 0 and heard == 0 else 0.0


def test_the_heartbeat_alarm_breaches_only_for_running_silent_pools() -> None:
    assert evaluate_silent(tasks=2, beats=0) == 1.0
    assert evaluate_silent(tasks=2, beats=None) == 1.0
    assert evaluate_silent(tasks=2, beats=24) == 0.0
    assert evaluate_silent(tasks=None, beats=None) == 0.0  # a pool at zero tasks


def worker_statements(template: dict[str, Any], name: str) -> list[dict[str, Any]]:
    role = properties(template, pool_id(name, "TaskRole"))
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert [statement["Principal"] for statement in trust] == [{"Service": "ecs-tasks.amazonaws.com"}]
    return [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("name", sorted(POOLS))
def test_the_worker_role_allows_exactly_what_the_worker_does(template: dict[str, Any], name: str) -> None:
    grants = {
        (tuple(actions_of(statement)), json.dumps(statement["Resource"], sort_keys=True)): statement.get(
            "Condition"
        )
        for statement in worker_statements(template, name)
    }
    job_ids = [f"bg-{batch.name}-{'?' * 20}" for batch in load_catalog(CATALOG).batches_of(name)]
    assert job_ids == ["bg-attendance-import-????????????????????"]

    def arn(logical_id: str) -> str:
        return json.dumps({"Fn::GetAtt": [logical_id, "Arn"]})

    tasks = {
        "Fn::Sub": [
            "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${ClusterName}/*",
            {"ClusterName": CLUSTER_NAME},
        ]
    }
    assert grants == {
        (
            ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"),
            arn(pool_id(name, "Queue")),
        ): None,
        (("sqs:SendMessage",), arn("JobsQueue")): None,
        (("dynamodb:GetItem", "dynamodb:PutItem"), arn("JobTable")): {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": job_ids}
        },
        (("dynamodb:PutItem", "dynamodb:DeleteItem"), arn("PoolTable")): {
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [name]}
        },
        (("logs:CreateLogStream", "logs:PutLogEvents"), arn(pool_id(name, "JobLogGroup"))): None,
        (("ecs:UpdateTaskProtection",), json.dumps(tasks, sort_keys=True)): OUR_CLUSTER,
        (("cloudwatch:PutMetricData",), '"*"'): METRICS_NAMESPACE_ONLY,
        (("ecs:DescribeTaskDefinition",), '"*"'): None,
    }


def test_a_batchs_job_id_pattern_matches_its_jobs_and_no_other_batchs() -> None:
    catalog = load_catalog(CATALOG)
    [pattern] = pool_template.leading_key_patterns(catalog, "attendance")
    assert fnmatch.fnmatchcase(job_id_for("attendance-import", "message-1"), pattern)
    # "attendance-import-x" would share the prefix: the fixed digest length keeps its ids out.
    assert not fnmatch.fnmatchcase(job_id_for("attendance-import-x", "message-1"), pattern)
    assert not fnmatch.fnmatchcase(job_id_for("attendance", "message-1"), pattern)
    assert not fnmatch.fnmatchcase(job_id_for("payroll-calculation", "message-1"), pattern)


def test_the_pool_table_is_the_adapters(template: dict[str, Any]) -> None:
    pool_table = properties(template, "PoolTable")
    assert pool_table["KeySchema"] == [
        {"AttributeName": "pool", "KeyType": "HASH"},
        {"AttributeName": "task_arn", "KeyType": "RANGE"},
    ]
    assert pool_table["BillingMode"] == "PAY_PER_REQUEST"
    assert pool_table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # The heartbeat item (batchgate.domain.pools.PoolTask.to_item) carries the keys and the TTL.
    assert {"pool", "task_arn", "expires_at"} <= set(PoolTask._fields)


def test_dispatch_may_offer_to_every_pool_queue_and_no_function_receives_from_them(
    template: dict[str, Any],
) -> None:
    [offers] = [
        statement
        for statement in function_statements(template, "DispatchFunction")
        if statement.get("Sid") == "OfferWarmAttempts"
    ]
    assert actions_of(offers) == ["sqs:SendMessage"]
    assert offers["Resource"] == [{"Fn::GetAtt": [pool_id(name, "Queue"), "Arn"]} for name in sorted(POOLS)]
    queues = {json.dumps({"Fn::GetAtt": [pool_id(name, "Queue"), "Arn"]}) for name in POOLS}
    for function in FUNCTIONS:
        for statement in function_statements(template, function):
            if queues & {json.dumps(value) for value in as_list(statement["Resource"])}:
                assert actions_of(statement) == ["sqs:SendMessage"], (function, statement)


def test_the_rule_delivers_a_pool_tasks_events_of_this_stack_only(template: dict[str, Any]) -> None:
    parameters = {**deploy_parameters("default"), "AWS::StackName": "batchgate-dev"}
    pattern = resolve_refs(track_event(template)["Pattern"], parameters)
    event = json.loads((EVENTS / "task-stopped-exit-0.json").read_text())
    del event["detail"]["startedBy"]
    event["detail"]["group"] = "service:batchgate-dev-pool-attendance"
    assert matches(pattern, event)
    for group in (
        "service:batchgate-prod-pool-attendance",
        "service:batchgate-dev-api",
        "family:batchgate-dev-pool-x",
    ):
        assert not matches(pattern, {**event, "detail": {**event["detail"], "group": group}}), group


def test_the_local_endpoint_routes_a_pool_tasks_events_with_the_rules_pattern(
    aws: None, template: dict[str, Any]
) -> None:
    """The local stack's EventBridge (moto) matches the rule's $or and prefixes as AWS does."""
    parameters = {**deploy_parameters("default"), "AWS::StackName": "batchgate-dev"}
    pattern = resolve_refs(track_event(template)["Pattern"], parameters)
    events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="delivered")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="tasks", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="tasks", Targets=[{"Id": "queue", "Arn": queue_arn}])
    sample = json.loads((EVENTS / "task-stopped-exit-0.json").read_text())
    pool_task = copy.deepcopy(sample)
    del pool_task["detail"]["startedBy"]
    pool_task["detail"]["group"] = "service:batchgate-dev-pool-attendance"
    other = copy.deepcopy(pool_task)
    other["detail"]["group"] = "service:batchgate-dev-api"
    for event in (sample, pool_task, other):
        events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event.get("resources", []),
                }
            ]
        )
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    groups = sorted(json.loads(message["Body"])["detail"].get("group", "") for message in received)
    assert groups == sorted([sample["detail"].get("group", ""), "service:batchgate-dev-pool-attendance"])


def test_the_cli_finds_the_pool_table_and_queues_in_the_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["PoolTableName"]["Value"] == {"Ref": "PoolTable"}
    assert outputs["PoolQueueUrls"]["Value"] == ENVIRONMENT_BINDINGS["POOL_QUEUE_URLS"]
    assert outputs["PoolDeadLetterQueueUrls"]["Value"] == {
        "Fn::Sub": "attendance=${PoolAttendanceDeadLetterQueue}"
    }
    assert {OUTPUTS[key] for key in ("PoolTableName", "PoolQueueUrls", "PoolDeadLetterQueueUrls")} == {
        "pool_table_name",
        "pool_queue_urls",
        "pool_dlq_urls",
    }


@pytest.mark.parametrize("environment", DEPLOY_ENVIRONMENTS)
def test_samconfig_gives_every_pool_an_image_and_at_least_two_subnets(environment: str) -> None:
    parameters = deploy_parameters(environment)
    assert {pool_id(name, "Image") for name in POOLS} | {"PoolExecutionRoleArn"} <= set(parameters)
    # The pools' services spread over the subnets' zones (the zones themselves are not visible here).
    assert len(set(parameters["Subnets"].split(","))) >= 2


# --- samconfig.toml -----------------------------------------------------------------------------------


def samconfig() -> dict[str, Any]:
    return tomllib.loads(SAMCONFIG.read_text())


def deploy_parameters(environment: str) -> dict[str, str]:
    """parameter_overrides of an environment's deploy section, as SAM CLI reads them."""
    overrides = samconfig()[environment]["deploy"]["parameters"]["parameter_overrides"]
    parsed: dict[str, str] = {}
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            parsed[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        return parsed
    for item in as_list(overrides):
        key, separator, value = str(item).partition("=")
        assert separator, item
        parsed[key] = value
    return parsed


def test_samconfig_environments_differ_only_in_what_they_deploy() -> None:
    config = samconfig()
    assert str(config["version"]) == "0.1"
    assert config["default"]["build"]["parameters"] == {"cached": True, "parallel": True}
    assert config["default"]["validate"]["parameters"]["lint"] is True
    assert config["default"]["local_invoke"]["parameters"]["env_vars"] == "events/env.json"
    deploys = {name: config[name]["deploy"]["parameters"] for name in DEPLOY_ENVIRONMENTS}
    assert deploys["dev"] == deploys["default"]
    assert set(deploys["dev"]) == set(deploys["prod"])
    assert deploys["dev"]["stack_name"] != deploys["prod"]["stack_name"]
    for name, deploy in deploys.items():
        assert deploy["region"] == REGION
        assert deploy["resolve_s3"] is True
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        # The CLI (batchgate.ops.stack_outputs) finds the stack by the global or the deploy stack_name.
        assert config[name]["global"]["parameters"]["stack_name"] == deploy["stack_name"]


@pytest.mark.parametrize("environment", DEPLOY_ENVIRONMENTS)
def test_samconfig_parameters_satisfy_the_template(template: dict[str, Any], environment: str) -> None:
    given = deploy_parameters(environment)
    declared = template["Parameters"]
    assert set(given) <= set(declared)
    assert {name for name, spec in declared.items() if "Default" not in spec} <= set(given)
    for name, value in given.items():
        spec = declared[name]
        values = value.split(",") if spec["Type"].startswith(("List<", "CommaDelimitedList")) else [value]
        for item in values:
            assert item and item != "*", (name, value)
            if "AllowedValues" in spec:
                assert item in map(str, spec["AllowedValues"]), (name, item)
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], item), (name, item)
            if spec["Type"] == "Number":
                assert (
                    spec.get("MinValue", float("-inf")) <= float(item) <= spec.get("MaxValue", float("inf"))
                )
            if spec["Type"] == "List<AWS::EC2::Subnet::Id>":
                assert re.fullmatch(r"subnet-[0-9a-f]{8,17}", item), item
            if spec["Type"] == "List<AWS::EC2::SecurityGroup::Id>":
                assert re.fullmatch(r"sg-[0-9a-f]{8,17}", item), item


@pytest.mark.parametrize("environment", DEPLOY_ENVIRONMENTS)
def test_task_definition_arns_cover_exactly_the_catalog(environment: str) -> None:
    if not CATALOG.is_file():
        pytest.skip("no catalog.json yet")
    families = {spec["task_definition"] for spec in json.loads(CATALOG.read_text())["batches"].values()}
    assert families
    parameters = deploy_parameters(environment)
    patterns = parameters["TaskDefinitionArns"].split(",")
    arn_prefix = parameters["ClusterArn"].split(":cluster/")[0]  # arn:<partition>:ecs:<region>:<account>
    for family in sorted(families):
        revision = f"{arn_prefix}:task-definition/{family}:42"
        assert any(fnmatch.fnmatchcase(revision, pattern) for pattern in patterns), (environment, family)
    # Least privilege: every pattern names one catalog family (any revision), nothing broader.
    named = set()
    for pattern in patterns:
        match = re.fullmatch(
            rf"{re.escape(arn_prefix)}:task-definition/([A-Za-z0-9_-]+):(\*|[0-9]+)", pattern
        )
        assert match, (environment, pattern)
        named.add(match[1])
    assert named == families, environment
