"""The warm pools' part of template.yaml, generated from the catalog's `pools` (docs/warm-lane.md).

Pools are declared once, in the catalog. Every template resource, parameter, grant and output that
depends on which pools exist is rendered here and written into template.yaml between marker comments
(`# >>> generated from the catalog's pools: <section>` ... `# <<< ...`), so that the resources stay
reviewable in the diff and checked by `sam validate --lint`; tests/test_template.py fails when the
file and the catalog differ.

    python -m batchgate.ops.pool_template [--catalog FILE] [--template FILE] [--write]

Without --write it prints the sections that differ and exits 1 when the template is out of date.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchgate.domain.catalog import POOL_STOP_TIMEOUT_SECONDS, Catalog, PoolSpec, load_catalog
from batchgate.domain.jobs import JOB_ID_PREFIX, job_id_for

WRITE_COMMAND = "python -m batchgate.ops.pool_template --write"
BEGIN = "# >>> generated from the catalog's pools: {section} ({command})"
END = "# <<< generated from the catalog's pools: {section}"
# The worker's CloudWatch namespace and dimension (docs/warm-lane.md, "Worker metrics").
METRIC_NAMESPACE = "Batchgate"
METRIC_DIMENSION = "Pool"
# A job id is "bg-<batch>-" and a fixed-length digest (batchgate.domain.jobs.job_id_for): the worker's
# grant on the job table matches exactly that many characters after its batches' prefixes.
JOB_ID_DIGEST_LENGTH = len(job_id_for("a", "")) - len(f"{JOB_ID_PREFIX}a-")
# Longer than the longest offer_seconds (30): a received offer is never handed to a second worker while
# it can still be claimed; the worker deletes it right after its claim.
OFFER_VISIBILITY_SECONDS = 30
# An offer older than this was expired by dispatch's check long ago.
OFFER_RETENTION_SECONDS = 300
# Received twice and never deleted: the workers fail between receive and claim (the DLQ alarm says so).
OFFER_MAX_RECEIVE_COUNT = 2
OFFER_AGE_ALARM_SECONDS = 60
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


class PoolTemplateError(ValueError):
    """The catalog's pools cannot be rendered, or the template lacks a marked section."""


def logical_name(pool: str) -> str:
    """The CamelCase part of a pool's logical ids: "short-jobs" -> "ShortJobs"."""
    return "".join(part[:1].upper() + part[1:] for part in pool.split("-"))


def image_parameter(pool: str) -> str:
    """The template parameter of a pool's image: "Pool<Name>Image"."""
    return f"Pool{logical_name(pool)}Image"


def service_name_sub(pool: str) -> str:
    """The pool's ECS service name as a Sub string: `<stack name>-pool-<pool name>` (the tasks' group
    is "service:" and this name, which is what the task state change rule matches)."""
    return f"${{AWS::StackName}}-pool-{pool}"


def leading_key_patterns(catalog: Catalog, pool: str) -> list[str]:
    """The job ids of the pool's batches as StringLike patterns: "bg-<batch>-" and one "?" per digest
    character, so that one batch's prefix never matches another batch's ids."""
    return [f"{JOB_ID_PREFIX}{spec.name}-{'?' * JOB_ID_DIGEST_LENGTH}" for spec in catalog.batches_of(pool)]


@dataclass(frozen=True)
class Section:
    """One marked part of template.yaml and what renders it."""

    name: str
    render: Callable[[Catalog], str]


def in_logical_id_order[ItemT](
    items: Mapping[str, ItemT], logical_id: Callable[[str], str], kind: str
) -> list[ItemT]:
    """The catalog's `items` (pools, schedules) by name; refused when two names give the same logical id
    (e.g. "day-1" and "day1"), which CloudFormation would take for one resource."""
    seen: dict[str, str] = {}
    for name in sorted(items):
        other = seen.setdefault(logical_id(name), name)
        if other != name:
            raise PoolTemplateError(
                f"{kind} {other!r} and {name!r} have the same logical id {logical_id(name)}"
            )
    return [items[name] for name in sorted(items)]


def _pools(catalog: Catalog) -> list[PoolSpec]:
    return in_logical_id_order(catalog.pools, lambda name: f"Pool{logical_name(name)}", "pools")


def render_parameters(catalog: Catalog) -> str:
    return "".join(
        f"""\
  {image_parameter(pool.name)}:
    Type: String
    Description: >-
      Image of the {pool.name} pool: the image of {pool.family}/{pool.container} with batchgate's worker
      added (docs/warm-lane.md), by tag or digest.
    AllowedPattern: "{IMAGE_PATTERN}"
    ConstraintDescription: "must be <registry>/<repository>:<tag> or <registry>/<repository>@sha256:<digest>"
"""
        for pool in _pools(catalog)
    )


# <registry>[:port]/<repository path> followed by :<tag> or @sha256:<digest>. Backslashes doubled: the
# pattern is written into a double-quoted YAML string.
IMAGE_PATTERN = (
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$"
)


def render_environment(catalog: Catalog) -> str:
    pools = _pools(catalog)
    if not pools:
        return '        POOL_QUEUE_URLS: ""\n'
    urls = ",".join(f"{pool.name}=${{Pool{logical_name(pool.name)}Queue}}" for pool in pools)
    return f'        POOL_QUEUE_URLS: !Sub "{urls}"\n'


def render_dispatch_offers(catalog: Catalog) -> str:
    pools = _pools(catalog)
    if not pools:
        return ""
    # In DispatchFunctionRole's policy document.
    queues = "".join(
        f"                  - !GetAtt Pool{logical_name(pool.name)}Queue.Arn\n" for pool in pools
    )
    return f"""\
              - Sid: OfferWarmAttempts
                Effect: Allow
                # A WARM attempt's offer goes to its pool's work queue (docs/warm-lane.md).
                Action: sqs:SendMessage
                Resource:
{queues}"""


def render_outputs(catalog: Catalog) -> str:
    pools = _pools(catalog)
    if not pools:
        return ""
    queues = ",".join(f"{pool.name}=${{Pool{logical_name(pool.name)}Queue}}" for pool in pools)
    dlqs = ",".join(f"{pool.name}=${{Pool{logical_name(pool.name)}DeadLetterQueue}}" for pool in pools)
    return f"""\
  PoolQueueUrls:
    Description: Each warm pool's work queue, pool=url separated by commas (the form of POOL_QUEUE_URLS).
    Value: !Sub "{queues}"
  PoolDeadLetterQueueUrls:
    Description: Each warm pool's work dead-letter queue (offers received and never deleted), pool=url.
    Value: !Sub "{dlqs}"
"""


def render_resources(catalog: Catalog) -> str:
    return "".join(_pool_resources(catalog, pool) for pool in _pools(catalog))


def _pool_resources(catalog: Catalog, pool: PoolSpec) -> str:
    name = pool.name
    pid = f"Pool{logical_name(name)}"
    service = service_name_sub(name)
    # With windows the bounds start as outside them; the next window start opens the pool.
    max_capacity = pool.min_tasks if pool.windows else pool.max_tasks
    return f"""\
  # ----- pool {name}: {pool.min_tasks} to {pool.max_tasks} tasks of {pool.slots} slots, \
{pool.capacity_provider}, {pool.architecture}, {pool.cpu} cpu / {pool.memory} MiB -----

  # WARM offers ({{"job_id", "attempt"}}) from dispatch to the pool's workers.
  {pid}Queue:
    Type: AWS::SQS::Queue
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Properties:
      QueueName: !Sub {service}
      SqsManagedSseEnabled: true
      # A worker deletes an offer right after its claim; longer than any offer_seconds, so a received
      # offer is never handed to a second worker while it can still be claimed.
      VisibilityTimeout: {OFFER_VISIBILITY_SECONDS}
      # Dispatch's check expired an unclaimed offer long before this.
      MessageRetentionPeriod: {OFFER_RETENTION_SECONDS}
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt {pid}DeadLetterQueue.Arn
        maxReceiveCount: {OFFER_MAX_RECEIVE_COUNT}

  # Offers workers received and never deleted (a worker failing between receive and claim).
  {pid}DeadLetterQueue:
    Type: AWS::SQS::Queue
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Properties:
      QueueName: !Sub {service}-dlq
      SqsManagedSseEnabled: true
      MessageRetentionPeriod: {DEAD_LETTER_RETENTION_SECONDS}

  # The jobs' output: one stream per attempt, <batch>/<job id>/<attempt> (POOL_LOG_GROUP).
  {pid}JobLogGroup:
    Type: AWS::Logs::LogGroup
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Properties:
      LogGroupName: !Sub /batchgate/${{AWS::StackName}}/pool/{name}/jobs
      RetentionInDays: !Ref LogRetentionDays

  # The worker's own logs (awslogs, written with the execution role).
  {pid}WorkerLogGroup:
    Type: AWS::Logs::LogGroup
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Properties:
      LogGroupName: !Sub /batchgate/${{AWS::StackName}}/pool/{name}/worker
      RetentionInDays: !Ref LogRetentionDays

  # What the worker does, nothing more. The batch's code runs in the same task and shares this role.
  {pid}TaskRole:
    Type: AWS::IAM::Role
    Properties:
      Description: !Sub Task role of the ${{AWS::StackName}} warm pool {name} (batchgate worker and its jobs).
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal:
              Service: ecs-tasks.amazonaws.com
            Action: sts:AssumeRole
            Condition:
              StringEquals:
                aws:SourceAccount: !Ref AWS::AccountId
      Policies:
        - PolicyName: warm-worker
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Sid: ReceiveOffers
                Effect: Allow
                Action:
                  - sqs:ReceiveMessage
                  - sqs:DeleteMessage
                  - sqs:ChangeMessageVisibility
                Resource: !GetAtt {pid}Queue.Arn
              - Sid: RelaunchFailedAttempts
                Effect: Allow
                # A failed attempt's next attempt goes back to the jobs queue (batchgate.domain.relaunch).
                Action: sqs:SendMessage
                Resource: !GetAtt JobsQueue.Arn
{_job_table_statement(catalog, pool)}\
              - Sid: Heartbeats
                Effect: Allow
                Action:
                  - dynamodb:PutItem
                  - dynamodb:DeleteItem
                Resource: !GetAtt PoolTable.Arn
                Condition:
                  ForAllValues:StringEquals:
                    dynamodb:LeadingKeys: [{name}]
              - Sid: JobLogs
                Effect: Allow
                Action:
                  - logs:CreateLogStream
                  - logs:PutLogEvents
                # The group's Arn ends in ":*": its streams.
                Resource: !GetAtt {pid}JobLogGroup.Arn
              - Sid: ProtectBusyTasks
                Effect: Allow
                # The agent's task-protection endpoint calls UpdateTaskProtection with the task's role.
                Action: ecs:UpdateTaskProtection
                Resource: !Sub
                  - arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task/${{ClusterName}}/*
                  - ClusterName: !Select [1, !Split ["/", !Ref ClusterArn]]
                Condition:
                  ArnEquals:
                    ecs:cluster: !Ref ClusterArn
              - Sid: PoolMetrics
                Effect: Allow
                # PutMetricData supports no resource-level permissions: AWS requires "*"; the condition
                # keeps it to batchgate's namespace.
                Action: cloudwatch:PutMetricData
                Resource: "*"
                Condition:
                  StringEquals:
                    cloudwatch:namespace: {METRIC_NAMESPACE}
              - Sid: CompareTaskDefinitionImages
                Effect: Allow
                # DescribeTaskDefinition supports no resource-level permissions: AWS requires "*".
                Action: ecs:DescribeTaskDefinition
                Resource: "*"

  # The batch's image with the worker as its entry point.
  {pid}TaskDefinition:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: !Sub {service}
      Cpu: "{pool.cpu}"
      Memory: "{pool.memory}"
      NetworkMode: awsvpc
      RequiresCompatibilities: [FARGATE]
      RuntimePlatform:
        CpuArchitecture: {pool.architecture}
        OperatingSystemFamily: LINUX
      ExecutionRoleArn: !Ref PoolExecutionRoleArn
      TaskRoleArn: !GetAtt {pid}TaskRole.Arn
      ContainerDefinitions:
        - Name: {pool.container}
          Image: !Ref {pid}Image
          Essential: true
          # Both set: the image's own entry point and command never reach the worker.
          EntryPoint: [python]
          Command: [-m, batchgate.worker]
          # Fargate's longest: running jobs finish after SIGTERM (max_run_seconds stays below it).
          StopTimeout: {POOL_STOP_TIMEOUT_SECONDS}
          # An init process reaps the jobs' orphaned grandchildren and forwards SIGTERM to the worker.
          LinuxParameters:
            InitProcessEnabled: true
          Environment:
            - {{Name: BATCHGATE_POOL, Value: {name}}}
            - {{Name: JOB_TABLE_NAME, Value: !Ref JobTable}}
            - {{Name: POOL_TABLE_NAME, Value: !Ref PoolTable}}
            - {{Name: POOL_QUEUE_URL, Value: !Ref {pid}Queue}}
            - {{Name: JOBS_QUEUE_URL, Value: !Ref JobsQueue}}
            - {{Name: POOL_LOG_GROUP, Value: !Ref {pid}JobLogGroup}}
          LogConfiguration:
            LogDriver: awslogs
            Options:
              awslogs-group: !Ref {pid}WorkerLogGroup
              awslogs-region: !Ref AWS::Region
              awslogs-stream-prefix: worker

  {pid}Service:
    Type: AWS::ECS::Service
    Properties:
      ServiceName: !Sub {service}
      Cluster: !Ref ClusterArn
      TaskDefinition: !Ref {pid}TaskDefinition
      # Application Auto Scaling owns the count from here on ({pid}ScalableTarget).
      DesiredCount: {pool.min_tasks}
      CapacityProviderStrategy:
        - CapacityProvider: {pool.capacity_provider}
          Weight: 1
      NetworkConfiguration:
        AwsvpcConfiguration:
          Subnets: !Ref Subnets
          SecurityGroups: !Ref SecurityGroups
          AssignPublicIp: !Ref AssignPublicIp
      # A deployment starts the new tasks before it stops old ones; the task scale-in protection the
      # worker sets while it runs jobs keeps a busy task until its jobs end.
      DeploymentConfiguration:
        MinimumHealthyPercent: 100
        MaximumPercent: 200
        DeploymentCircuitBreaker:
          Enable: true
          Rollback: true
      # Keeps the pool spread over the subnets' zones after Spot reclaims or a zone's trouble; a
      # rebalance may stop a task, one more SIGTERM the worker survives (running jobs finish).
      AvailabilityZoneRebalancing: ENABLED
      EnableECSManagedTags: true
      PropagateTags: SERVICE
      Tags:
        - Key: batchgate-pool
          Value: {name}

  # Outside every window the pool keeps min_tasks at most; each window's start and end set both bounds
  # (lowering the minimum alone never scales in).
  {pid}ScalableTarget:
    Type: AWS::ApplicationAutoScaling::ScalableTarget
    Properties:
      ServiceNamespace: ecs
      ScalableDimension: ecs:service:DesiredCount
      ResourceId: !Sub
        - service/${{ClusterName}}/${{{pid}Service.Name}}
        - ClusterName: !Select [1, !Split ["/", !Ref ClusterArn]]
      MinCapacity: {pool.min_tasks}
      MaxCapacity: {max_capacity}
{_scheduled_actions(pool)}\

  # Within a window: more tasks when the slots are busy. Dispatch never queues behind the pool (a job
  # it cannot place goes to ECS at once), so the work queue's backlog cannot drive scaling.
  {pid}BusyRatioScaling:
    Type: AWS::ApplicationAutoScaling::ScalingPolicy
    Properties:
      PolicyName: !Sub {service}-busy-ratio
      PolicyType: TargetTrackingScaling
      ScalingTargetId: !Ref {pid}ScalableTarget
      TargetTrackingScalingPolicyConfiguration:
        TargetValue: {pool.target_busy_ratio}
        ScaleOutCooldown: 60
        ScaleInCooldown: 300
        CustomizedMetricSpecification:
          Namespace: {METRIC_NAMESPACE}
          MetricName: PoolBusyRatio
          Dimensions:
            - Name: {METRIC_DIMENSION}
              Value: {name}
          Statistic: Average

  {pid}OfferAgeAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: >-
        Offers wait in the {name} pool's work queue: its workers advertise free slots but do not receive
        (their jobs still run on ECS after the offer expires).
      Namespace: AWS/SQS
      MetricName: ApproximateAgeOfOldestMessage
      Dimensions:
        - Name: QueueName
          Value: !GetAtt {pid}Queue.QueueName
      Statistic: Maximum
      Period: 60
      EvaluationPeriods: 5
      DatapointsToAlarm: 3
      Threshold: {OFFER_AGE_ALARM_SECONDS}
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]

  {pid}DeadLetterQueueAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: >-
        Offers the {name} pool's workers received and never deleted are in its work dead-letter queue.
      Namespace: AWS/SQS
      MetricName: ApproximateNumberOfMessagesVisible
      Dimensions:
        - Name: QueueName
          Value: !GetAtt {pid}DeadLetterQueue.QueueName
      Statistic: Maximum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]

  # ECS publishes a service's CPUUtilization (no Container Insights needed) only while the service has
  # RUNNING tasks: tasks running and no heartbeat for three minutes is a silent pool; a pool at zero
  # tasks (at night) has neither and is not an alarm.
  {pid}HeartbeatsAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: >-
        The {name} pool's tasks run but its workers send no heartbeat (a broken image or worker):
        dispatch sends its batches to ECS meanwhile.
      Metrics:
        - Id: tasks
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: AWS/ECS
              MetricName: CPUUtilization
              Dimensions:
                - Name: ClusterName
                  Value: !Select [1, !Split ["/", !Ref ClusterArn]]
                - Name: ServiceName
                  Value: !Sub {service}
            Period: 60
            Stat: SampleCount
        - Id: beats
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: {METRIC_NAMESPACE}
              MetricName: PoolHeartbeats
              Dimensions:
                - Name: {METRIC_DIMENSION}
                  Value: {name}
            Period: 60
            Stat: Sum
        - Id: silent
          Label: running pool without heartbeats
          Expression: IF(FILL(tasks, 0) > 0 AND FILL(beats, 0) == 0, 1, 0)
          ReturnData: true
      EvaluationPeriods: 3
      DatapointsToAlarm: 3
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]

"""


def _job_table_statement(catalog: Catalog, pool: PoolSpec) -> str:
    patterns = leading_key_patterns(catalog, pool.name)
    if not patterns:
        return ""  # no batch names the pool: its worker has no job to read
    keys = "".join(f"                      - {pattern}\n" for pattern in patterns)
    return f"""\
              - Sid: ClaimAndReportJobs
                Effect: Allow
                # JobTable.get and its conditional put, on the pool's batches' jobs only.
                Action:
                  - dynamodb:GetItem
                  - dynamodb:PutItem
                Resource: !GetAtt JobTable.Arn
                Condition:
                  ForAllValues:StringLike:
                    dynamodb:LeadingKeys:
{keys}"""


def _scheduled_actions(pool: PoolSpec) -> str:
    if not pool.windows:
        return ""
    actions = []
    for number, window in enumerate(pool.windows, start=1):
        edges = (
            ("start", window.start, window.tasks, pool.max_tasks),
            ("end", window.end, pool.min_tasks, pool.min_tasks),
        )
        for edge, schedule, minimum, maximum in edges:
            actions.append(
                f"""\
        - ScheduledActionName: {pool.name}-window-{number}-{edge}
          Schedule: {schedule}
          Timezone: {pool.timezone}
          ScalableTargetAction:
            MinCapacity: {minimum}
            MaxCapacity: {maximum}
"""
            )
    return "      ScheduledActions:\n" + "".join(actions)


SECTIONS: tuple[Section, ...] = (
    Section("parameters", render_parameters),
    Section("environment", render_environment),
    Section("dispatch offers", render_dispatch_offers),
    Section("resources", render_resources),
    Section("outputs", render_outputs),
)


def rewrite(
    template_text: str,
    catalog: Catalog,
    sections: Sequence[Section] = SECTIONS,
    *,
    markers: tuple[str, str, str] = (BEGIN, END, WRITE_COMMAND),
) -> str:
    """template.yaml's text with every marked section rendered from the catalog. `markers`: the begin and
    end lines' formats and the command they name (batchgate.ops.schedule_template has its own)."""
    text = template_text
    begin_format, end_format, command = markers
    for section in sections:
        begin = begin_format.format(section=section.name, command=command)
        end = end_format.format(section=section.name)
        pattern = re.compile(
            rf"^(?P<indent>[ ]*){re.escape(begin)}\n(?P<body>.*?)^(?P=indent){re.escape(end)}\n",
            re.M | re.S,
        )
        found = list(pattern.finditer(text))
        if len(found) != 1:
            raise PoolTemplateError(
                f"template.yaml must hold exactly one section {section.name!r} between the lines "
                f"{begin!r} and {end!r} (found {len(found)})"
            )
        match = found[0]
        indent = match["indent"]
        body = section.render(catalog)
        replacement = f"{indent}{begin}\n{body}{indent}{end}\n"
        text = text[: match.start()] + replacement + text[match.end() :]
    return text


def stale_sections(
    template_text: str,
    catalog: Catalog,
    sections: Sequence[Section] = SECTIONS,
    *,
    markers: tuple[str, str, str] = (BEGIN, END, WRITE_COMMAND),
) -> list[str]:
    """The names of the marked sections that differ from what the catalog renders."""
    return [
        section.name
        for section in sections
        if rewrite(template_text, catalog, (section,), markers=markers) != template_text
    ]


def generate(
    argv: Sequence[str] | None,
    out: Callable[[str], None],
    *,
    prog: str,
    subject: str,
    sections: Sequence[Section],
    markers: tuple[str, str, str],
) -> int:
    """The command line of a generator of template.yaml's marked sections (the pools', the schedules'):
    check the sections against the catalog (exit 1 when out of date), or `--write` them."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"Render the catalog's {subject} into template.yaml's generated sections."
    )
    parser.add_argument("--catalog", help="catalog file (default: $BATCHGATE_CATALOG, else the packaged)")
    parser.add_argument(
        "--template", default="template.yaml", help="the SAM template (default: ./template.yaml)"
    )
    parser.add_argument("--write", action="store_true", help="write the template (else only check it)")
    arguments = parser.parse_args(argv)
    path = Path(arguments.template)
    catalog = load_catalog(arguments.catalog)
    text = path.read_text()
    rendered = rewrite(text, catalog, sections, markers=markers)
    if rendered == text:
        out(f"{path}: the {subject}' sections match the catalog")
        return 0
    stale = ", ".join(stale_sections(text, catalog, sections, markers=markers))
    if arguments.write:
        path.write_text(rendered)
        out(f"{path}: rewrote the sections {stale}")
        return 0
    out(f"{path}: out of date in {stale}: run {markers[2]}")
    return 1


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    return generate(
        argv,
        out,
        prog="python -m batchgate.ops.pool_template",
        subject="pools",
        sections=SECTIONS,
        markers=(BEGIN, END, WRITE_COMMAND),
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
