"""Each role grants exactly what its code calls, as CloudFormation deploys it (the translated template).

For every Lambda function and every warm pool's task role: the AWS operations its code can call (read
from the source by tests.aws_operations, through the adapters the handler or the worker reaches), with
the resource each adapter acts on (ADAPTER_GRANTS), plus what Lambda does with the role on the
function's behalf (its log group, its event sources, its destinations, read from the template), must be
the role's statements: a call without a grant, or a grant no code makes, fails and names it.

Adding a call: an adapter method calling a new operation needs its line in ADAPTER_GRANTS (the test
says which) and the grant in the role of each function that reaches it (the test says which).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain.catalog import load_catalog
from batchgate.ops import pool_template

from tests.aws_operations import AdapterCall, CodeIndex, adapter_calls, handler_calls, package_calls
from tests.test_template import (
    CATALOG,
    as_list,
    function_role,
    load_template,
    properties,
    role_statements,
    translate,
    translated_template,
)

Grant = tuple[str, str]  # (action, resource as the roles name it: see resource_label)

# The Lambda functions and their code (functions/<dir>/app.py).
FUNCTION_CODE = {
    "DispatchFunction": "dispatch",
    "TrackFunction": "track",
    "HistoryFunction": "history",
    "SweepFunction": "sweep",
    "JobEventsFunction": "events",
}
POOLS = sorted(load_catalog(CATALOG).pools)
# The only AWS managed policy a role may carry: X-Ray's write-only one (Tracing: Active), as SAM would
# attach it (AWSXrayWriteOnlyAccess, its older name, exists in the aws partition only).
XRAY_WRITE_ONLY = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"}

TASKS = "task/${ClusterName}/*"
CONTAINER_INSTANCES = "container-instance/${ClusterName}/*"
POOL_QUEUES = "every pool's work queue"
OWN_POOL = "Pool{pool}"
# What each adapter's operation acts on, named as the roles name it (resource_label). The one table to
# extend when an adapter calls a new operation or a new adapter appears. "{pool}" is the pool's logical
# name in a pool's task role; POOL_QUEUES stands for every pool's work queue.
ADAPTER_GRANTS: dict[tuple[str, str], set[str]] = {
    ("JobTable", "dynamodb:GetItem"): {"JobTable"},
    ("JobTable", "dynamodb:PutItem"): {"JobTable"},
    ("JobTable", "dynamodb:BatchGetItem"): {"JobTable"},
    # Always through an index (jobs-by-status, jobs-by-batch), never the table itself.
    ("JobTable", "dynamodb:Query"): {"JobTable/index/*"},
    ("HistoryTable", "dynamodb:GetItem"): {"HistoryTable"},
    ("HistoryTable", "dynamodb:PutItem"): {"HistoryTable"},
    ("HistoryTable", "dynamodb:Query"): {"HistoryTable"},
    # A batch's max_running slots: one item of the job table per limited batch (`slots#<batch>`).
    ("BatchSlotTable", "dynamodb:GetItem"): {"JobTable"},
    ("BatchSlotTable", "dynamodb:PutItem"): {"JobTable"},
    ("PoolTable", "dynamodb:GetItem"): {"PoolTable"},
    ("PoolTable", "dynamodb:Query"): {"PoolTable"},
    ("PoolTable", "dynamodb:PutItem"): {"PoolTable"},
    ("PoolTable", "dynamodb:DeleteItem"): {"PoolTable"},
    ("EcsTasks", "ecs:RunTask"): {"TaskDefinitionArns"},
    # Tasks by startedBy: authorised on "*" only (ecs:cluster condition, tests.test_template).
    ("EcsTasks", "ecs:ListTasks"): {"*"},
    ("EcsTasks", "ecs:DescribeTasks"): {TASKS},
    ("EcsTasks", "ecs:StopTask"): {TASKS},
    ("EcsTasks", "ecs:DescribeTaskDefinition"): {"*"},
    ("TaskDefinitionImages", "ecs:DescribeTaskDefinition"): {"*"},
    ("Ec2Capacity", "ecs:ListContainerInstances"): {"ClusterArn"},
    ("Ec2Capacity", "ecs:DescribeContainerInstances"): {CONTAINER_INSTANCES},
    ("JobsQueue", "sqs:SendMessage"): {"JobsQueue"},
    ("PoolQueues", "sqs:SendMessage"): {POOL_QUEUES},
    ("PoolWorkQueue", "sqs:ReceiveMessage"): {OWN_POOL + "Queue"},
    ("PoolWorkQueue", "sqs:DeleteMessage"): {OWN_POOL + "Queue"},
    ("PoolWorkQueue", "sqs:ChangeMessageVisibility"): {OWN_POOL + "Queue"},
    ("EventBus", "events:PutEvents"): {"event-bus/${JobEventBusName}"},
    ("LogStreamWriter", "logs:CreateLogStream"): {OWN_POOL + "JobLogGroup"},
    ("LogStreamWriter", "logs:PutLogEvents"): {OWN_POOL + "JobLogGroup"},
    ("PoolMetrics", "cloudwatch:PutMetricData"): {"*"},
}
# Authorised together with an operation, never called on their own.
IMPLIED_GRANTS: dict[str, set[Grant]] = {
    # RunTask passes the task definition's roles, and tags the task it starts.
    "ecs:RunTask": {("iam:PassRole", "PassRoleArns"), ("ecs:TagResource", TASKS)},
}
# Calls made outside boto3: the ECS agent's task-protection endpoint (batchgate.adapters.ecs_agent)
# calls UpdateTaskProtection with the task's role.
WORKER_AGENT_GRANTS: set[Grant] = {("ecs:UpdateTaskProtection", TASKS)}

ARN_PREFIX = re.compile(r"^arn:\$\{AWS::Partition\}:[a-z0-9-]+:\$\{AWS::Region\}:\$\{AWS::AccountId\}:")


def resource_label(value: Any) -> str:
    """A policy Resource as this test names it: a logical id (JobTable, TaskDefinitionArns), a stream
    (JobTable.StreamArn), an index path (JobTable/index/*), an ARN's resource part (task/${ClusterName}/*)."""
    if value == "*":
        return "*"
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return str(logical_id) if attribute == "Arn" else f"{logical_id}.{attribute}"
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
        text = re.sub(r"^\$\{([A-Za-z0-9]+)\.Arn\}", r"\1", ARN_PREFIX.sub("", str(text)))
        return text
    raise AssertionError(f"unexpected policy resource {value!r}")


def statement_grants(statements: list[dict[str, Any]]) -> set[Grant]:
    grants = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        for action in as_list(statement["Action"]):
            for value in as_list(statement["Resource"]):
                grants.add((str(action), resource_label(value)))
    return grants


def code_grants(calls: set[AdapterCall], pool: str | None = None) -> set[Grant]:
    """The grants `calls` need: each adapter operation on its resources, with what it implies."""
    unknown = sorted(
        f"{call.adapter} {call.action}" for call in calls if (call.adapter, call.action) not in ADAPTER_GRANTS
    )
    assert not unknown, f"add what these calls act on to ADAPTER_GRANTS: {unknown}"
    queues = {f"Pool{pool_template.logical_name(name)}Queue" for name in POOLS}
    grants: set[Grant] = set()
    for call in calls:
        for label in ADAPTER_GRANTS[(call.adapter, call.action)]:
            if label == POOL_QUEUES:
                grants.update((call.action, queue) for queue in queues)
            elif "{pool}" in label:
                assert pool is not None, f"{call.adapter} {call.action}: a pool's own resource outside a pool"
                grants.add((call.action, label.format(pool=pool)))
            else:
                grants.add((call.action, label))
        grants.update(IMPLIED_GRANTS.get(call.action, set()))
    return grants


def lambda_grants(template: dict[str, Any], function: str) -> set[Grant]:
    """What Lambda does with the function's role itself: its logs, its event sources, its destinations."""
    function_properties = properties(template, function)
    group = resource_label(function_properties["LoggingConfig"]["LogGroup"])
    grants: set[Grant] = {("logs:CreateLogStream", group), ("logs:PutLogEvents", group)}
    sources = [
        event["Properties"]["Queue"]
        for event in function_properties.get("Events", {}).values()
        if event["Type"] == "SQS"
    ]
    destinations = [
        target["Destination"]
        for target in function_properties.get("EventInvokeConfig", {}).get("DestinationConfig", {}).values()
    ]
    for mapping in template["Resources"].values():
        if mapping["Type"] == "AWS::Lambda::EventSourceMapping" and mapping["Properties"]["FunctionName"] == {
            "Ref": function
        }:
            sources.append(mapping["Properties"]["EventSourceArn"])
            destinations.extend(
                target["Destination"]
                for target in mapping["Properties"].get("DestinationConfig", {}).values()
            )
    for source in sources:
        label = resource_label(source)
        if label.endswith(".StreamArn"):
            reads = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")
            grants.update((action, label) for action in reads)
            grants.add(("dynamodb:ListStreams", "*"))
        else:
            grants.update(
                (action, label)
                for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
            )
    for destination in destinations:
        label = resource_label(destination)
        assert template["Resources"][label]["Type"] == "AWS::SQS::Queue", destination
        grants.add(("sqs:SendMessage", label))
    return grants


@cache
def written_template() -> dict[str, Any]:
    """template.yaml as written (SAM's events and the event source mappings), read once."""
    return load_template()


@cache
def function_code_grants(function: str) -> frozenset[Grant]:
    return frozenset(code_grants(handler_calls(FUNCTION_CODE[function])))


@cache
def worker_calls() -> frozenset[AdapterCall]:
    return frozenset(package_calls("batchgate.worker"))


def differences(owner: str, needed: set[Grant], granted: set[Grant]) -> Iterator[str]:
    for action, label in sorted(needed - granted):
        yield f"{owner} needs {action} on {label}, which its role does not grant"
    for action, label in sorted(granted - needed):
        yield f"{owner}'s role grants {action} on {label}, which no code of it calls"


@pytest.mark.parametrize("function", sorted(FUNCTION_CODE))
def test_a_functions_role_grants_exactly_what_its_code_calls(function: str) -> None:
    translated = translated_template()
    needed = set(function_code_grants(function)) | lambda_grants(written_template(), function)
    granted = statement_grants(role_statements(translated, function_role(translated, function)))
    assert not list(differences(function, needed, granted))


@pytest.mark.parametrize("pool", POOLS)
def test_a_pools_task_role_grants_exactly_what_the_worker_calls(pool: str) -> None:
    logical = pool_template.logical_name(pool)
    needed = code_grants(set(worker_calls()), logical) | WORKER_AGENT_GRANTS
    granted = statement_grants(role_statements(translated_template(), f"Pool{logical}TaskRole"))
    assert not list(differences(f"the {pool} pool's worker", needed, granted))


def test_every_adapter_operation_says_what_it_acts_on() -> None:
    """A new boto3 call in an adapter fails here until ADAPTER_GRANTS says its resource; a line whose
    call is gone fails too."""
    calls = {(call.adapter, call.action) for call in adapter_calls()}
    assert sorted(calls - set(ADAPTER_GRANTS)) == []
    assert sorted(set(ADAPTER_GRANTS) - calls) == []


def managed_policy_arns(node: Any) -> Iterator[Any]:
    """Every managed policy ARN anywhere in a template (a role's ManagedPolicyArns, whoever wrote it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ManagedPolicyArns":
                yield from as_list(value)
            else:
                yield from managed_policy_arns(value)
    elif isinstance(node, list):
        for item in node:
            yield from managed_policy_arns(item)


def test_no_role_carries_an_aws_managed_policy_but_xrays_write_only_one() -> None:
    translated = translated_template()
    roles = {name: body for name, body in translated["Resources"].items() if body["Type"] == "AWS::IAM::Role"}
    assert {function_role(translated, function) for function in FUNCTION_CODE} <= set(roles)
    for function in FUNCTION_CODE:
        assert roles[function_role(translated, function)]["Properties"]["ManagedPolicyArns"] == [
            XRAY_WRITE_ONLY
        ]
    assert [arn for arn in managed_policy_arns(translated) if arn != XRAY_WRITE_ONLY] == []
    # Nothing else attaches policies to a role behind its back.
    assert not [
        body["Type"]
        for body in translated["Resources"].values()
        if body["Type"].startswith("AWS::IAM::") and body["Type"] != "AWS::IAM::Role"
    ]


def test_the_managed_policy_check_sees_what_sam_would_attach() -> None:
    """A function without its own role gets SAM's: the check above must see its managed policies."""
    template = written_template()
    sam = {
        **template,
        "Resources": {
            name: body
            for name, body in template["Resources"].items()
            if name
            in (
                "DispatchFunction",
                "DispatchFunctionLogGroup",
                "JobsQueue",
                "JobsDeadLetterQueue",
                "BatchgateLayer",
            )
        },
    }
    sam["Resources"]["DispatchFunction"] = json.loads(json.dumps(sam["Resources"]["DispatchFunction"]))
    sam["Resources"]["DispatchFunction"]["Properties"].pop("Role")
    sam.pop("Outputs", None)
    translated, _ = translate(sam)
    attached = {json.dumps(arn) for arn in managed_policy_arns(translated)}
    assert any("AWSLambdaBasicExecutionRole" in arn for arn in attached), attached
    assert any("AWSLambdaSQSQueueExecutionRole" in arn for arn in attached), attached


def test_no_function_is_given_a_role_sam_generates() -> None:
    """SAM generates a role (with AWSLambdaBasicExecutionRole) for a function without Role."""
    for resource in written_template()["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            assert "Role" in resource["Properties"] and "Policies" not in resource["Properties"]


# --- the grants test's own checks: it sees what it must and fails as it should -------------------------


def test_a_grant_no_code_uses_is_named() -> None:
    needed = {("dynamodb:GetItem", "JobTable")}
    granted = {("dynamodb:GetItem", "JobTable"), ("dynamodb:Query", "JobTable")}
    assert list(differences("TrackFunction", needed, granted)) == [
        "TrackFunction's role grants dynamodb:Query on JobTable, which no code of it calls"
    ]
    assert list(differences("TrackFunction", granted, needed)) == [
        "TrackFunction needs dynamodb:Query on JobTable, which its role does not grant"
    ]


def test_an_operation_without_a_resource_line_is_named() -> None:
    with pytest.raises(AssertionError, match="Schedules scheduler:GetSchedule"):
        code_grants({AdapterCall("Schedules", "scheduler:GetSchedule")})


def test_calls_are_followed_through_annotations_returns_and_callbacks(tmp_path: Path) -> None:
    index = CodeIndex(tmp_path)
    index.add_module(
        "batchgate.adapters.example_store",
        ast.parse(
            """
from mypy_boto3_dynamodb import DynamoDBClient
class Store:
    def __init__(self, client: DynamoDBClient) -> None:
        self._client = client
    def read(self) -> None:
        self._client.get_item(TableName="t", Key={})
    def scan_all(self) -> None:
        self._client.get_paginator("scan")
"""
        ),
    )
    index.add_module(
        "batchgate.services.example_service",
        ast.parse(
            """
from batchgate.adapters.example_store import Store
class Reader:
    def __init__(self, store: Store) -> None:
        self.store = store
    def run(self) -> Reader:
        self.store.read()
        return self
def use(store: Store) -> None:
    store.scan_all()
def untyped(store) -> None:
    store.read()
def deferred(store: Store, run_later) -> None:
    run_later(store.scan_all)
"""
        ),
    )
    index.read_attributes()
    root = index.add_entry_point(
        "entry",
        """
from batchgate.services.example_service import Reader, use
reader = Reader(None)
reader.run()
""",
    )
    assert index.reachable_calls([root]) == {AdapterCall("Store", "dynamodb:GetItem")}
    scan = index.add_entry_point(
        "entry_scan", "from batchgate.services.example_service import use\nuse(None)\n"
    )
    assert index.reachable_calls([scan]) == {AdapterCall("Store", "dynamodb:Scan")}
    untyped = index.add_entry_point(
        "entry_untyped", "from batchgate.services.example_service import untyped\nuntyped(None)\n"
    )
    assert index.reachable_calls([untyped]) == set()  # not followed: its grant would show as unused
    # A method handed on to be called later (a governor, an executor) counts as called.
    callback = index.add_entry_point(
        "entry_callback", "from batchgate.services.example_service import deferred\ndeferred(None, None)\n"
    )
    assert index.reachable_calls([callback]) == {AdapterCall("Store", "dynamodb:Scan")}
