"""The stack's resources, created from template.yaml itself so that the local stack cannot drift from
what is deployed.

The SAM template is translated with the SAM translator (as CloudFormation's transform would), then
each resource of the translated template is created with the plain API call its properties describe,
in dependency order, resolving intrinsic functions with what earlier resources became. Lambda-side
resources are not created but read: a function's handler, timeout and environment, its event source
mappings (an SQS queue or a DynamoDB table stream of the stack), the EventBridge rules that target it
and its asynchronous invoke configuration become the local function hosts' configuration. What the
local endpoint ignores or cannot hold (IAM, the layer, Lambda permissions, a mapping of another
source or with a filter syntax the local poller does not match, the warm pools' ECS services and their
scaling) is listed as skipped, with the reason.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from batchgate.ops.local.endpoint import ACCOUNT_ID, LocalAws
from batchgate.ops.local.filters import FilterError, parse_patterns
from batchgate.ops.local.intrinsics import Intrinsics, TemplateError, dependencies
from batchgate.ops.template import load_template, table_definition

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

_RATE = re.compile(r"^rate\((\d+)\s+(minutes?|hours?|days?)\)$")
_RATE_UNITS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
ARTIFACT_PREFIX = "s3://batchgate-local-artifacts/"
LIST_PARAMETER_PREFIXES = ("List<", "CommaDelimitedList")
SQS_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
)
# Read for the function hosts, or meaningless against the local endpoint (it enforces no IAM, and the
# layer is the batchgate package installed in this environment).
NOT_CREATED = {
    "AWS::IAM::Role": "IAM is not enforced by the local endpoint",
    "AWS::IAM::Policy": "IAM is not enforced by the local endpoint",
    "AWS::IAM::ManagedPolicy": "IAM is not enforced by the local endpoint",
    "AWS::Lambda::Permission": "IAM is not enforced by the local endpoint",
    "AWS::Lambda::LayerVersion": "the layer is the batchgate package installed locally",
    "AWS::Lambda::LayerVersionPermission": "the layer is the batchgate package installed locally",
    "AWS::Lambda::Version": "functions run from the working tree ($LATEST)",
    "AWS::Lambda::Alias": "functions run from the working tree ($LATEST)",
    # The warm pools (docs/warm-lane.md): their work queues, log groups, alarms and the pool table are
    # created like the rest; what runs and scales their workers is ECS and Application Auto Scaling,
    # which the local endpoint does not run.
    "AWS::ECS::TaskDefinition": "a warm pool's workers do not run on the local endpoint's ECS",
    "AWS::ECS::Service": "a warm pool's workers do not run on the local endpoint's ECS",
    "AWS::ApplicationAutoScaling::ScalableTarget": "the local endpoint scales no ECS service",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "the local endpoint scales no ECS service",
    # The catalog's schedules fire from the local scheduler instead (batchgate.ops.local.scheduler).
    "AWS::Scheduler::Schedule": "the local scheduler fires the catalog's schedules (--schedule-speed)",
    "AWS::Scheduler::ScheduleGroup": "the local scheduler fires the catalog's schedules (--schedule-speed)",
}


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function of the template, as a local host runs it."""

    logical_id: str
    name: str
    arn: str
    code_path: Path
    handler: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    log_group: str  # LoggingConfig.LogGroup, else Lambda's /aws/lambda/<name>

    @property
    def handler_file(self) -> Path:
        module = self.handler.rsplit(".", 1)[0]
        return self.code_path / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event source mapping: which queue feeds which function, and how."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: float
    report_item_failures: bool
    max_concurrency: int | None


@dataclass(frozen=True)
class StreamEventSource:
    """A DynamoDB stream event source mapping: which table's stream feeds which function, and how.
    -1 for the retry attempts or the record age means no limit (until the record leaves the stream)."""

    function: str
    stream_arn: str
    starting_position: str  # TRIM_HORIZON or LATEST
    batch_size: int = 100
    window_seconds: float = 0.0
    report_item_failures: bool = False
    max_retry_attempts: int = -1
    max_record_age_seconds: int = -1
    filter_patterns: tuple[str, ...] = ()  # FilterCriteria's patterns, as JSON text
    on_failure_arn: str | None = None
    on_failure_url: str | None = None

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> StreamEventSource:
        """The inverse of dataclasses.asdict (which makes the patterns a list)."""
        return cls(**{**document, "filter_patterns": tuple(document.get("filter_patterns") or ())})


@dataclass(frozen=True)
class RuleTarget:
    """An EventBridge rule whose target is one of the functions."""

    function: str
    rule_name: str
    rule_arn: str
    target_id: str


@dataclass(frozen=True)
class ScheduleTarget:
    """A scheduled EventBridge rule whose target is one of the functions (e.g. the sweep)."""

    function: str
    rule_name: str
    rule_arn: str
    expression: str
    input: str | None = None

    @property
    def period_seconds(self) -> float:
        """The rate of `rate(N unit)`; a cron schedule runs every minute locally."""
        match = _RATE.match(self.expression.strip())
        if match is None:
            return 60.0
        return int(match.group(1)) * _RATE_UNITS[match.group(2).rstrip("s")]


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """Lambda's asynchronous invocation settings: retries, then the on-failure destination."""

    max_retries: int = 2
    max_event_age_seconds: int = 21600
    on_failure_arn: str | None = None
    on_failure_url: str | None = None


@dataclass(frozen=True)
class Skipped:
    logical_id: str
    resource_type: str
    reason: str


@dataclass
class StackResources:
    """What the template became locally."""

    stack_name: str
    region: str
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    sqs_sources: list[SqsEventSource] = field(default_factory=list)
    stream_sources: list[StreamEventSource] = field(default_factory=list)
    rule_targets: list[RuleTarget] = field(default_factory=list)
    schedule_targets: list[ScheduleTarget] = field(default_factory=list)
    async_configs: dict[str, AsyncInvokeConfig] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    queue_urls: dict[str, str] = field(default_factory=dict)  # queue ARN -> URL

    def async_config(self, function: str) -> AsyncInvokeConfig:
        return self.async_configs.get(function, AsyncInvokeConfig())


TRANSLATOR_MODULES = (
    "samtranslator.parser.parser",
    "samtranslator.translator.translator",
    "samtranslator.metrics.metrics",
)


def preload_translator() -> None:
    for name in TRANSLATOR_MODULES:
        importlib.import_module(name)


def translate(source: Path | Mapping[str, Any], parameters: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The SAM template (its file, or the document already read from it, which is left as it is) as
    CloudFormation, translated offline. Local code paths become S3 URIs first (as `sam package` does);
    the function hosts map them back to the working tree."""
    # Imported by name: the SAM translator ships no type information.
    parser: Any = importlib.import_module("samtranslator.parser.parser")
    translator_module: Any = importlib.import_module("samtranslator.translator.translator")
    metrics_module: Any = importlib.import_module("samtranslator.metrics.metrics")
    template = load_template(source) if isinstance(source, Path) else copy.deepcopy(dict(source))
    sections = [
        *(resource.get("Properties") or {} for resource in template.get("Resources", {}).values()),
        *(section for section in (template.get("Globals") or {}).values() if isinstance(section, dict)),
    ]
    for properties in sections:
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = ARTIFACT_PREFIX + properties[key]
    session = boto3.session.Session(region_name=region)
    metrics = metrics_module.Metrics("ServerlessTransform", metrics_module.DummyMetricsPublisher())
    translator = translator_module.Translator({}, parser.Parser(), boto_session=session, metrics=metrics)
    values = {"AWS::AccountId": ACCOUNT_ID, **parameters}
    translated: dict[str, Any] = translator.translate(
        template, parameter_values=values, get_managed_policy_map=dict
    )
    metrics.publish()  # to nowhere: the translator warns about unpublished metrics otherwise
    return translated


def parameter_values(
    template: Mapping[str, Any], given: Mapping[str, str | list[str]]
) -> dict[str, str | list[str]]:
    """Every template parameter's value: given, else its Default, as CloudFormation passes them
    (strings, or lists of strings for List and CommaDelimitedList types)."""
    values: dict[str, str | list[str]] = {}
    missing = []
    for name, definition in (template.get("Parameters") or {}).items():
        is_list = str(definition.get("Type", "String")).startswith(LIST_PARAMETER_PREFIXES)
        if name in given:
            value: Any = given[name]
        elif "Default" in definition:
            value = definition["Default"]
        else:
            missing.append(name)
            continue
        if is_list:
            values[name] = value if isinstance(value, list) else [p for p in str(value).split(",") if p]
        else:
            values[name] = str(value)
    if missing:
        raise TemplateError(
            f"template parameters without a default and without a local value: {', '.join(missing)}"
        )
    return values


class ResourceBuilder:
    """Creates the translated template's resources in dependency order against the local endpoint."""

    def __init__(self, aws: LocalAws, root: Path, stack_name: str) -> None:
        self._aws = aws
        self._root = root
        self._sqs: SQSClient = aws.sqs()
        self._result = StackResources(stack_name=stack_name, region=aws.region)
        self._creators: dict[str, Callable[[str, dict[str, Any]], None]] = {
            "AWS::SQS::Queue": self._queue,
            "AWS::SQS::QueuePolicy": self._queue_policy,
            "AWS::DynamoDB::Table": self._table,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::Events::Rule": self._rule,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::Lambda::EventInvokeConfig": self._event_invoke_config,
        }

    def build(self, template: dict[str, Any], parameters: Mapping[str, str | list[str]]) -> StackResources:
        result = self._result
        pseudo: dict[str, str | list[str]] = {
            "AWS::Region": result.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": result.stack_name,
            "AWS::StackId": self._arn("cloudformation", f"stack/{result.stack_name}/local"),
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        self._intrinsics = Intrinsics(
            parameters={**parameters, **pseudo},
            conditions=template.get("Conditions") or {},
            mappings=template.get("Mappings") or {},
            refs=result.refs,
            attributes=result.attributes,
            region=result.region,
        )
        resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        for logical_id in creation_order(resources, self._intrinsics.parameters):
            self._create(logical_id, resources[logical_id])
        for key, output in (template.get("Outputs") or {}).items():
            try:
                result.outputs[key] = str(self._intrinsics.resolve(output["Value"]))
            except TemplateError:
                continue  # an output of something not created locally
        return result

    def _create(self, logical_id: str, resource: dict[str, Any]) -> None:
        resource_type = str(resource.get("Type"))
        condition = resource.get("Condition")
        if condition and not self._intrinsics.condition(condition):
            return
        missing = [
            name
            for name in sorted(dependencies(resource.get("Properties"), self._intrinsics.parameters))
            if name not in self._result.refs
        ]
        if missing:
            self._skip(logical_id, resource_type, f"refers to {', '.join(missing)}, not created locally")
            return
        if resource_type in NOT_CREATED:
            self._stand_in(logical_id, resource_type)
            return
        creator = self._creators.get(resource_type)
        if creator is None:
            self._skip(logical_id, resource_type, "resource type not supported by the local stack")
            return
        creator(logical_id, self._intrinsics.resolve(resource.get("Properties") or {}))

    def _skip(self, logical_id: str, resource_type: str, reason: str) -> None:
        self._result.skipped.append(Skipped(logical_id, resource_type, reason))

    def _stand_in(self, logical_id: str, resource_type: str) -> None:
        """A Ref and Arn for what is not created, so that resources that mention it still resolve."""
        service = resource_type.split("::")[1].lower()
        name = self._name(logical_id)
        arn = self._arn(service, f"{logical_id.lower()}/{name}")
        self._register(logical_id, arn if resource_type.startswith("AWS::Lambda::") else name, Arn=arn)
        self._skip(logical_id, resource_type, NOT_CREATED[resource_type])

    # --- resources created by API call --------------------------------------------------------------

    def _queue(self, logical_id: str, properties: dict[str, Any]) -> None:
        fifo = _flag(properties.get("FifoQueue"))
        name = properties.get("QueueName") or self._name(logical_id, 80 - (5 if fifo else 0))
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[QueueAttributeNameType, str] = {
            key: _text(properties[key]) for key in SQS_ATTRIBUTES if key in properties
        }
        if "RedrivePolicy" in properties:
            attributes["RedrivePolicy"] = json.dumps(_numbers(properties["RedrivePolicy"]))
        if "RedriveAllowPolicy" in properties:
            attributes["RedriveAllowPolicy"] = json.dumps(_numbers(properties["RedriveAllowPolicy"]))
        url = self._sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = self._arn("sqs", name, separator=":")
        self._result.queue_urls[arn] = url
        self._register(logical_id, url, Arn=arn, QueueName=name, QueueUrl=url)

    def _queue_policy(self, logical_id: str, properties: dict[str, Any]) -> None:
        for url in properties.get("Queues", []):
            self._sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])}
            )
        self._register(logical_id, self._name(logical_id))

    def _table(self, logical_id: str, properties: dict[str, Any]) -> None:
        dynamodb = self._aws.dynamodb()
        name = properties.get("TableName") or self._name(logical_id)
        request: dict[str, Any] = table_definition(
            {"Resources": {logical_id: {"Properties": properties}}}, logical_id
        )
        for key in (
            "LocalSecondaryIndexes",
            "ProvisionedThroughput",
            "TableClass",
            "DeletionProtectionEnabled",
        ):
            if key in properties:
                request[key] = _numbers(properties[key])
        sse = properties.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {"Enabled": _flag(sse.get("SSEEnabled"))}
        if "GlobalSecondaryIndexes" in request:
            request["GlobalSecondaryIndexes"] = _numbers(request["GlobalSecondaryIndexes"])
        description = dynamodb.create_table(TableName=name, **request)["TableDescription"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and _flag(ttl.get("Enabled")):
            # Accepted locally, but the endpoint never expires items.
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        recovery = properties.get("PointInTimeRecoverySpecification")
        if recovery and _flag(recovery.get("PointInTimeRecoveryEnabled")):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        arn = description.get("TableArn") or self._arn("dynamodb", f"table/{name}")
        self._register(logical_id, name, Arn=arn, StreamArn=description.get("LatestStreamArn", ""))

    def _log_group(self, logical_id: str, properties: dict[str, Any]) -> None:
        logs = self._aws.logs()
        name = properties.get("LogGroupName") or self._name(logical_id, 512)
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in properties:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(properties["RetentionInDays"]))
        self._register(logical_id, name, Arn=self._arn("logs", f"log-group:{name}:*", separator=":"))

    def _rule(self, logical_id: str, properties: dict[str, Any]) -> None:
        events = self._aws.events()
        name = properties.get("Name") or self._name(logical_id, 64)
        request: dict[str, Any] = {"Name": name, "State": properties.get("State", "ENABLED")}
        pattern = properties.get("EventPattern")
        if pattern is not None:
            request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        for key in ("ScheduleExpression", "Description", "EventBusName"):
            if key in properties:
                request[key] = properties[key]
        arn = events.put_rule(**request)["RuleArn"]
        self._register(logical_id, name, Arn=arn)
        functions = {spec.arn: spec for spec in self._result.functions.values()}
        plain_targets = []
        for target in properties.get("Targets", []):
            spec = functions.get(target.get("Arn"))
            if spec is None:
                plain_targets.append(target)
            elif "ScheduleExpression" in properties:
                self._result.schedule_targets.append(
                    ScheduleTarget(
                        spec.logical_id, name, arn, str(properties["ScheduleExpression"]), target.get("Input")
                    )
                )
            else:
                self._result.rule_targets.append(RuleTarget(spec.logical_id, name, arn, str(target["Id"])))
        if plain_targets:
            events.put_targets(Rule=name, Targets=plain_targets)

    def _alarm(self, logical_id: str, properties: dict[str, Any]) -> None:
        """Created as declared (the endpoint keeps alarms; it evaluates no metrics and notifies nobody)."""
        name = properties.get("AlarmName") or self._name(logical_id)
        request = {key: value for key, value in properties.items() if key not in ("AlarmName", "Tags")}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in request:
                request[key] = int(request[key])
        if "Threshold" in request:
            request["Threshold"] = float(request["Threshold"])
        self._aws.cloudwatch().put_metric_alarm(AlarmName=name, **request)
        self._register(logical_id, name, Arn=self._arn("cloudwatch", f"alarm:{name}"))

    # --- Lambda resources, read for the function hosts ---------------------------------------------------

    def _function(self, logical_id: str, properties: dict[str, Any]) -> None:
        name = properties.get("FunctionName") or self._name(logical_id, 64)
        arn = self._arn("lambda", f"function:{name}", separator=":")
        code = properties.get("Code") or {}
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        self._result.functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=arn,
            code_path=(self._root / str(code.get("S3Key", ""))).resolve(),
            handler=str(properties.get("Handler", "app.handler")),
            timeout_seconds=int(properties.get("Timeout", 3)),
            memory_mb=int(properties.get("MemorySize", 128)),
            environment={key: _text(value) for key, value in variables.items()},
            log_group=str((properties.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{name}"),
        )
        self._register(logical_id, name, Arn=arn)

    def _event_source_mapping(self, logical_id: str, properties: dict[str, Any]) -> None:
        source_arn = str(properties.get("EventSourceArn", ""))
        function = self._function_id(properties.get("FunctionName"))
        url = self._result.queue_urls.get(source_arn)
        streams = {
            attributes["StreamArn"]
            for attributes in self._result.attributes.values()
            if attributes.get("StreamArn")
        }
        if function is None or (url is None and source_arn not in streams):
            self._skip(
                logical_id,
                "AWS::Lambda::EventSourceMapping",
                "only SQS queues and DynamoDB table streams of the stack run locally",
            )
            return
        if not _flag(properties.get("Enabled", True)):
            self._skip(logical_id, "AWS::Lambda::EventSourceMapping", "disabled in the template")
            return
        if url is None:
            self._stream_source(logical_id, function, source_arn, properties)
            return
        concurrency = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency")
        self._result.sqs_sources.append(
            SqsEventSource(
                function=function,
                queue_url=url,
                queue_arn=source_arn,
                batch_size=int(properties.get("BatchSize", 10)),
                window_seconds=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                report_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                max_concurrency=int(concurrency) if concurrency is not None else None,
            )
        )
        self._register(logical_id, f"{logical_id}-local")

    def _stream_source(
        self, logical_id: str, function: str, stream_arn: str, properties: dict[str, Any]
    ) -> None:
        filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
        patterns = tuple(
            pattern if isinstance(pattern, str) else json.dumps(pattern)
            for pattern in (entry.get("Pattern") for entry in filters)
            if pattern is not None
        )
        try:
            parse_patterns(patterns)
        except FilterError as error:
            self._skip(logical_id, "AWS::Lambda::EventSourceMapping", str(error))
            return
        on_failure = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        self._result.stream_sources.append(
            StreamEventSource(
                function=function,
                stream_arn=stream_arn,
                starting_position=str(properties.get("StartingPosition", "LATEST")),
                batch_size=int(properties.get("BatchSize", 100)),
                window_seconds=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                report_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                max_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
                max_record_age_seconds=int(properties.get("MaximumRecordAgeInSeconds", -1)),
                filter_patterns=patterns,
                on_failure_arn=str(on_failure) if on_failure else None,
                on_failure_url=self._result.queue_urls.get(str(on_failure)) if on_failure else None,
            )
        )
        self._register(logical_id, f"{logical_id}-local")

    def _event_invoke_config(self, logical_id: str, properties: dict[str, Any]) -> None:
        function = self._function_id(properties.get("FunctionName"))
        if function is None:
            self._skip(logical_id, "AWS::Lambda::EventInvokeConfig", "its function is not in the template")
            return
        on_failure = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        self._result.async_configs[function] = AsyncInvokeConfig(
            max_retries=int(properties.get("MaximumRetryAttempts", 2)),
            max_event_age_seconds=int(properties.get("MaximumEventAgeInSeconds", 21600)),
            on_failure_arn=on_failure,
            on_failure_url=self._result.queue_urls.get(str(on_failure)) if on_failure else None,
        )
        self._register(logical_id, f"{logical_id}-local")

    # --- helpers -----------------------------------------------------------------------------------------

    def _function_id(self, name_or_arn: Any) -> str | None:
        return next(
            (
                spec.logical_id
                for spec in self._result.functions.values()
                if name_or_arn in (spec.name, spec.arn)
            ),
            None,
        )

    def _register(self, logical_id: str, ref: str, **attributes: str) -> None:
        self._result.refs[logical_id] = ref
        self._result.attributes[logical_id] = dict(attributes)

    def _name(self, logical_id: str, limit: int = 255) -> str:
        return f"{self._result.stack_name}-{logical_id}"[:limit]

    def _arn(self, service: str, resource: str, separator: str = ":") -> str:
        return f"arn:aws:{service}:{self._result.region}:{ACCOUNT_ID}{separator}{resource}"


def creation_order(resources: Mapping[str, dict[str, Any]], parameters: Mapping[str, Any]) -> list[str]:
    """Logical ids with every resource after those it refers to (template order otherwise)."""
    needs: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends_on = resource.get("DependsOn") or []
        names = dependencies(resource.get("Properties"), parameters)
        names |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        needs[logical_id] = {name for name in names if name in resources and name != logical_id}
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(resources):
        ready = [lid for lid in resources if lid not in placed and needs[lid] <= placed]
        if not ready:
            stuck = sorted(set(resources) - placed)
            raise TemplateError(f"circular references between {', '.join(stuck)}")
        order.extend(ready)
        placed.update(ready)
    return order


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _text(value: Any) -> str:
    """A property value as an attribute or environment string (booleans as CloudFormation writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _numbers(value: Any) -> Any:
    """Numeric strings (parameter values arrive as strings) back to numbers, for API calls."""
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value
