"""Shared fixtures: an in-process moto account with the stack's table, an ECS cluster with the
catalog's task definitions, and the Lambda handlers loaded from `functions/`.

The moto account's EC2 part (default VPC) is built once per test process and every other service
starts empty in every test (tests/moto_world.py)."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

# Powertools reads these when batchgate.adapters.telemetry is first imported, as in Lambda's environment.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "batchgate")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Batchgate")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.job_table import JobTable
from batchgate.domain.catalog import Catalog, load_catalog
from batchgate.domain.relaunch import Relaunch
from batchgate.ops.stream_records import lambda_stream_record
from batchgate.ops.template import load_template, table_definition
from batchgate.services.dispatch import Dispatcher
from batchgate.services.settings import Settings
from batchgate.services.track import Tracker

from tests.moto_world import MotoWorld

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
REGION = "us-east-1"
CLUSTER = "batchgate-dev"
TABLE = "batchgate-test-jobs"
# This process's moto account (one per xdist worker).
MOTO = MotoWorld(REGION)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under `--dist loadgroup`, every test of an `xdist_group` must carry its group in its id (pytest-xdist
    adds it): else the group's tests are spread over the workers, and each starts the shared local stacks
    the group exists to start once."""
    if session.config.getoption("dist", None) != "loadgroup":
        return
    ungrouped = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist did not group {len(ungrouped)} tests (e.g. {ungrouped[0]}): "
            "this pytest and pytest-xdist do not work together (see requirements.in)"
        )


@functools.cache
def _template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def template_table(logical_id: str = "JobTable") -> dict[str, Any]:
    """CreateTable parameters of one of template.yaml's tables (the template is read once)."""
    return copy.deepcopy(table_definition(_template(), logical_id))


def event_fixture(name: str) -> dict[str, Any]:
    """One of the sample events in events/, the same files `sam local invoke` uses."""
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@dataclass(frozen=True)
class LambdaContextStub:
    function_name: str = "batchgate-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:batchgate-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    remaining_millis: int = 120_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


@dataclass(frozen=True)
class Stack:
    settings: Settings
    catalog: Catalog
    table: JobTable
    ecs_client: Any
    cluster_arn: str

    def dispatcher(self, ecs: EcsTasks | None = None) -> Dispatcher:
        return Dispatcher(
            catalog=self.catalog,
            table=self.table,
            ecs=ecs or EcsTasks(self.settings.cluster, self.ecs_client),
            settings=self.settings,
        )

    def tracker(self) -> Tracker:
        return Tracker(
            catalog=self.catalog, table=self.table, ecs=EcsTasks(self.settings.cluster, self.ecs_client)
        )

    def tasks_started_by(self, job_id: str) -> list[str]:
        arns: list[str] = self.ecs_client.list_tasks(cluster=self.settings.cluster, startedBy=job_id)[
            "taskArns"
        ]
        return arns


@pytest.fixture(autouse=True)
def _powertools_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batchgate")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Batchgate")
    monkeypatch.delenv("BATCHGATE_CATALOG", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto, every service empty but EC2's default VPC (the same in every test)."""
    with MOTO.mocked():
        yield


def create_stack_resources(region: str = REGION, table_name: str = TABLE) -> Stack:
    """The table exactly as template.yaml declares it, plus a cluster and the catalog's task
    definitions (awslogs configured, as ECS would have them). Inside `MOTO.mocked()`."""
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(TableName=table_name, **template_table())
    ecs = boto3.client("ecs", region_name=region)
    cluster_arn = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    catalog = load_catalog()
    for spec in catalog.batches.values():
        ecs.register_task_definition(
            family=spec.task_definition,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE", "EC2"],
            cpu=str(spec.cpu),
            memory=str(spec.memory),
            containerDefinitions=[
                {
                    "name": spec.container,
                    "image": f"123456789012.dkr.ecr.{region}.amazonaws.com/{spec.task_definition}:latest",
                    "memory": spec.memory,
                    "essential": True,
                    "command": list(spec.command),
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": f"/ecs/{spec.task_definition}",
                            "awslogs-region": region,
                            "awslogs-stream-prefix": "batch",
                        },
                    },
                }
            ],
        )
    assert region == MOTO.region and MOTO.subnets, "create_stack_resources runs inside MOTO.mocked()"
    settings = Settings(
        table_name=table_name,
        cluster=cluster_arn,
        subnets=MOTO.subnets,
        security_groups=MOTO.security_groups,
    )
    return Stack(
        settings=settings,
        catalog=catalog,
        table=JobTable(table_name, dynamodb),
        ecs_client=ecs,
        cluster_arn=cluster_arn,
    )


def create_history_table(client: Any, name: str) -> None:
    """The history table as template.yaml declares it."""
    client.create_table(TableName=name, **template_table("HistoryTable"))


def create_pool_table(client: Any, name: str) -> None:
    """The pool table (one heartbeat item per warm pool task): hash `pool`, range `task_arn`."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pool", "KeyType": "HASH"},
            {"AttributeName": "task_arn", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pool", "AttributeType": "S"},
            {"AttributeName": "task_arn", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def stack(aws: None) -> Stack:
    return create_stack_resources()


def settings_environment(settings: Settings) -> dict[str, str]:
    return {
        "JOB_TABLE_NAME": settings.table_name,
        "ECS_CLUSTER": settings.cluster,
        "ECS_SUBNETS": ",".join(settings.subnets),
        "ECS_SECURITY_GROUPS": ",".join(settings.security_groups),
        "ECS_ASSIGN_PUBLIC_IP": settings.assign_public_ip,
        "EC2_CAPACITY_PROVIDER": settings.ec2_capacity_provider or "",
        "DISPATCH_CONCURRENCY": str(settings.dispatch_concurrency),
        "JOB_RETENTION_DAYS": str(settings.job_retention_days),
    }


@pytest.fixture
def load_handler(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import functions/<name>/app.py fresh, as a Lambda cold start would, against the moto stack."""
    for key, value in settings_environment(stack.settings).items():
        monkeypatch.setenv(key, value)

    def load(name: str) -> ModuleType:
        path = ROOT / "functions" / name / "app.py"
        spec = importlib.util.spec_from_file_location(f"batchgate_function_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def sqs_event(*bodies: str, message_ids: list[str] | None = None) -> dict[str, Any]:
    """An SQS event shaped like the one in events/, with the given bodies."""
    template = event_fixture("sqs-submit-batch.json")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = json.loads(json.dumps(template))
        record["messageId"] = message_ids[index] if message_ids else f"msg-{index:04d}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


class RecordingSqs:
    def __init__(self, fail: list[Exception] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = list(fail or [])

    def send_message(self, **request: Any) -> dict[str, Any]:
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(request)
        return {"MessageId": f"sent-{len(self.sent)}"}

    def relaunches(self) -> list[tuple[Relaunch, int]]:
        return [(Relaunch.parse(m["MessageBody"]), int(m.get("DelaySeconds", 0))) for m in self.sent]

    def as_sqs_event(self) -> dict[str, Any]:
        """The sent messages as the dispatch Lambda would receive them."""
        template = event_fixture("sqs-submit-batch.json")["Records"][0]
        records = []
        for index, message in enumerate(self.sent):
            record = json.loads(json.dumps(template))
            record["messageId"] = f"relaunch-{index}"
            record["body"] = message["MessageBody"]
            record["messageAttributes"] = {
                name: {"stringValue": value["StringValue"], "dataType": value["DataType"]}
                for name, value in message.get("MessageAttributes", {}).items()
            }
            records.append(record)
        return {"Records": records}


def job_stream_records(table_name: str = TABLE, region: str = REGION) -> list[dict[str, Any]]:
    """Every record of the table's stream so far, shaped as Lambda delivers them (the moto account's
    stream, read from the start of each shard)."""
    dynamodb = boto3.client("dynamodb", region_name=region)
    streams = boto3.client("dynamodbstreams", region_name=region)
    stream_arn = dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            response = streams.get_records(ShardIterator=iterator)
            if not response["Records"]:
                break
            records.extend(lambda_stream_record(record, stream_arn, region) for record in response["Records"])
            iterator = response.get("NextShardIterator")
    return records
