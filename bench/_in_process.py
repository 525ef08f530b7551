"""The stack in one process: the resources of template.yaml created in in-process moto (`mock_aws`),
as the local stack creates them, and the real handlers (`functions/*/app.py`) loaded into it with
their template environment, each like a fresh Lambda container.

A handler builds its AWS clients once, at import, from boto3's default session; loading it with an
instrumented `boto3.Session` as that default gives every one of its clients the session's hooks
(`bench._aws_calls`), without touching the handler.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Powertools reads these when batchgate.adapters.telemetry is first imported, as in Lambda (the template's
# Globals set the same); X-Ray is off outside Lambda.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "batchgate")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Batchgate")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

import boto3
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.telemetry import logger
from batchgate.domain.catalog import load_catalog
from batchgate.domain.jobs import Job
from batchgate.ops.local.cluster import LocalCluster, create_cluster
from batchgate.ops.local.endpoint import CLIENT_CONFIG, LocalAws
from batchgate.ops.local.resources import (
    FunctionSpec,
    ResourceBuilder,
    StackResources,
    parameter_values,
    translate,
)
from batchgate.ops.template import load_template

from bench._aws_calls import TableKeys

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
REGION = "us-east-1"
STACK_NAME = "batchgate-bench"
DISPATCH, TRACK, HISTORY, SWEEP = "DispatchFunction", "TrackFunction", "HistoryFunction", "SweepFunction"
# A job's life as ECS reports it, in the sample events (events/).
LIFE_EVENTS = ("task-provisioning.json", "task-pending.json", "task-running.json", "task-stopped-exit-0.json")


def sample_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


class InProcessAws(LocalAws):
    """The local stack's clients without its endpoint URL: AWS's own endpoints, which `mock_aws`
    answers in this process."""

    def __init__(self, region: str = REGION) -> None:
        super().__init__("", region)

    def _client(self, service: str) -> Any:
        return self._session.client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]


@dataclass(frozen=True)
class InProcessStack:
    cluster: LocalCluster
    resources: StackResources

    def function(self, logical_id: str) -> FunctionSpec:
        return self.resources.functions[logical_id]

    def environment(self, logical_id: str) -> dict[str, str]:
        """The function's environment as the template sets it. The empty AWS_ENDPOINT_URL is left out:
        it only serves `sam local invoke`."""
        variables = self.function(logical_id).environment
        return {key: value for key, value in variables.items() if key != "AWS_ENDPOINT_URL" or value}

    def table(self) -> JobTable:
        """The job table through a plain client (no hooks), to read what the handlers did."""
        return JobTable(
            self.environment(DISPATCH)["JOB_TABLE_NAME"], boto3.client("dynamodb", region_name=REGION)
        )

    def table_names(self) -> dict[str, str]:
        """Table name -> what it is ("job", "history"), from the functions' environment."""
        variables = self.environment(TRACK)
        return {variables["JOB_TABLE_NAME"]: "job", variables.get("HISTORY_TABLE_NAME", ""): "history"}

    def table_keys(self) -> dict[str, TableKeys]:
        """Each table's primary key and indexes, as DynamoDB describes them (write units of indexes)."""
        client = boto3.client("dynamodb", region_name=REGION)
        return {
            name: TableKeys.described(client.describe_table(TableName=name)["Table"])
            for name in self.table_names()
            if name
        }


def build_stack(parameters: Mapping[str, str] | None = None) -> InProcessStack:
    """template.yaml's resources in the active `mock_aws`, with its parameters' defaults (or
    `parameters`), in an ECS cluster with the catalog's task definitions."""
    aws = InProcessAws()
    cluster = create_cluster(aws, STACK_NAME, load_catalog())
    template_path = ROOT / "template.yaml"
    values = parameter_values(
        load_template(template_path), {**cluster.template_parameters(), **(parameters or {})}
    )
    translated = translate(template_path, values, REGION)
    resources = ResourceBuilder(aws, ROOT, STACK_NAME).build(translated, values)
    return InProcessStack(cluster, resources)


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def plain_session() -> boto3.Session:
    return boto3.Session(region_name=REGION)


def load_function(
    stack: InProcessStack,
    logical_id: str,
    session: boto3.Session,
    overrides: Mapping[str, str] | None = None,
) -> ModuleType:
    """A fresh import of the function's handler module (a new container): its environment from the
    template (plus `overrides`), its clients from `session`."""
    spec = stack.function(logical_id)
    previous = boto3.DEFAULT_SESSION
    with environment({**stack.environment(logical_id), **(overrides or {})}):
        boto3.DEFAULT_SESSION = session
        try:
            module_spec = importlib.util.spec_from_file_location(f"bench_{logical_id}", spec.handler_file)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {spec.handler_file}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        finally:
            boto3.DEFAULT_SESSION = previous
    return module


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "batchgate-bench"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:batchgate-bench"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@contextlib.contextmanager
def quiet_functions() -> Iterator[None]:
    """The functions' log lines and metrics still get written, to nowhere instead of the terminal
    (in Lambda they go to CloudWatch): Powertools' Logger keeps the stream it was built with, Metrics
    prints."""
    handler = logger.registered_handler
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        # A track invocation that changes nothing publishes no metric; Powertools warns each time.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        if not isinstance(handler, logging.StreamHandler):
            yield
            return
        stream = handler.setStream(sink)
        try:
            yield
        finally:
            handler.setStream(stream or sys.stdout)


def invoke(module: ModuleType, event: Mapping[str, Any]) -> Any:
    return module.handler(dict(event), LambdaContext())


def good_bodies(count: int, prefix: str, kinds: int = 2) -> list[str]:
    """`count` valid submit messages, in turn the first `kinds` good ones of
    events/sqs-submit-batch.json (payroll, then a report export), each with its own idempotency key
    (so each is a new job)."""
    records = sample_event("sqs-submit-batch.json")["Records"]
    templates = [json.loads(record["body"]) for record in records[:kinds]]
    bodies = []
    for number in range(count):
        message = dict(templates[number % len(templates)])
        message["idempotency_key"] = f"{prefix}-{number}"
        bodies.append(json.dumps(message, separators=(",", ":")))
    return bodies


def sqs_event(bodies: Sequence[str], prefix: str) -> dict[str, Any]:
    """An SQS event shaped like events/sqs-submit-batch.json, one record per body."""
    template = sample_event("sqs-submit-batch.json")["Records"][0]
    records = []
    for number, body in enumerate(bodies):
        record = json.loads(json.dumps(template))
        record["messageId"] = f"{prefix}-message-{number}"
        record["body"] = body
        records.append(record)
    return {"Records": records}


def life_events(job: Job, stack: InProcessStack) -> list[dict[str, Any]]:
    """The sample task state change events (PROVISIONING ... STOPPED exit 0), rewritten for the task
    that dispatch started for `job`: its ARN, startedBy, cluster and task definition."""
    attempt = job.attempt
    if attempt is None or attempt.task_arn is None:
        raise ValueError(f"job {job.job_id} has no task")
    sample = sample_event(LIFE_EVENTS[0])["detail"]
    family = sample["taskDefinitionArn"].rsplit("/", 1)[1].split(":")[0]
    replacements = {
        sample["taskArn"]: attempt.task_arn,
        sample["taskArn"].rsplit("/", 1)[1]: attempt.task_arn.rsplit("/", 1)[1],
        sample["startedBy"]: job.job_id,
        sample["clusterArn"]: stack.cluster.arn,
        sample["taskDefinitionArn"]: stack.cluster.task_definition_arns[family],
    }
    events = []
    for name in LIFE_EVENTS:
        text = (EVENTS / name).read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        events.append(json.loads(text))
    return events
