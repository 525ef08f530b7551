"""Where the CLI finds the stack: an AWS session (profile, region, endpoint) and the stack's resources.

Resources come, in order of precedence, from explicit options (`--table`, `--queue-url`), from the
embedded local stack's state file (`--local`), or from the CloudFormation outputs of the stack named by
`--stack` or by samconfig.toml's `stack_name` for `--config-env` (default "default"). Outputs are read
once, and only when a command needs a resource that was not given explicitly.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sqs import SQSClient

    from batchgate.ops.pool_status import MetricsClient
    from batchgate.ops.stream_records import StreamsClient

LOCAL_STATE_ENV = "BATCHGATE_LOCAL_STATE"
ENDPOINT_ENVS = ("BATCHGATE_ENDPOINT_URL", "AWS_ENDPOINT_URL")
SAMCONFIG = "samconfig.toml"
DEFAULT_CONFIG_ENV = "default"
LOCAL_CREDENTIALS = ("batchgate-local", "batchgate-local")  # the local stack accepts any credentials

# CloudFormation output key -> resource name used by the CLI.
OUTPUTS: dict[str, str] = {
    "JobTableName": "table_name",
    "JobsQueueUrl": "queue_url",
    "JobsQueueArn": "queue_arn",
    "JobsDeadLetterQueueUrl": "jobs_dlq_url",
    "TrackDeadLetterQueueUrl": "track_dlq_url",
    "HistoryDeadLetterQueueUrl": "history_dlq_url",
    "DispatchFunctionName": "dispatch_function",
    "TrackFunctionName": "track_function",
    "HistoryFunctionName": "history_function",
    "ClusterName": "cluster",
    "ClusterArn": "cluster",
    # The warm lane (docs/warm-lane.md): the pools' heartbeat table and their work queues
    # ("pool=url,pool=url", as the functions' POOL_QUEUE_URLS).
    "PoolTableName": "pool_table_name",
    "PoolQueueUrls": "pool_queue_urls",
    "PoolDeadLetterQueueUrls": "pool_dlq_urls",
    # Every job state change event (template parameter JobEventsTap), for `batchgate events`.
    "JobEventsTapQueueUrl": "events_queue_url",
}
# What each resource is called in messages, and which option gives it directly.
RESOURCE_HINTS: dict[str, tuple[str, str]] = {
    "table_name": ("the job table", "--table"),
    "queue_url": ("the jobs queue", "--queue-url"),
    "jobs_dlq_url": ("the jobs dead-letter queue", "--jobs-dlq-url"),
    "track_dlq_url": ("the track dead-letter queue", "--track-dlq-url"),
    "history_dlq_url": ("the history dead-letter queue", "--history-dlq-url"),
    "cluster": ("the ECS cluster", "--cluster"),
    "track_function": ("the track function", "--track-function"),
    "history_function": ("the history function", "--history-function"),
    "pool_table_name": ("the pool table", "--pool-table"),
    "pool_queue_urls": ("the pool work queues", "--pool-queue-urls"),
    "pool_dlq_urls": ("the warm pools' work dead-letter queues", "--pool-dlq-urls"),
    "events_queue_url": (
        "the job events tap queue (deploy with JobEventsTap=true; output JobEventsTapQueueUrl)",
        "--events-queue-url",
    ),
    "notification_queue_url": ("the local notification topic's queue (local stack only)", "--local"),
}

CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})


class ConfigurationError(Exception):
    """The CLI cannot tell which stack or resource to use (a usage problem, exit code 2)."""


def local_state_path() -> Path:
    """The file the embedded local stack writes its settings to: $BATCHGATE_LOCAL_STATE, else
    ~/.batchgate/local.json."""
    configured = os.environ.get(LOCAL_STATE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".batchgate" / "local.json"


def running_owner(state: Mapping[str, Any]) -> bool | None:
    """Whether the process that wrote a local stack state file still runs (None: the file names none)."""
    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


@dataclass(frozen=True)
class LocalState:
    """The local stack's state file: endpoint_url, region, table_name, queue_url, dlq_urls, cluster,
    and, when it runs the warm lane, pool_table_name and pool_queue_urls."""

    endpoint_url: str | None = None
    region: str | None = None
    table_name: str | None = None
    queue_url: str | None = None
    jobs_dlq_url: str | None = None
    track_dlq_url: str | None = None
    history_dlq_url: str | None = None
    cluster: str | None = None
    track_function: str | None = None
    history_function: str | None = None
    pool_table_name: str | None = None
    pool_queue_urls: str | None = None
    pool_dlq_urls: str | None = None
    # The local queue the track function's host reads its events from (the stack's EventBridge target).
    track_event_queue_url: str | None = None
    # The job events tap (template parameter JobEventsTap) and the queue subscribed to the local
    # notification topic (JobNotificationTopicArn).
    events_queue_url: str | None = None
    notification_queue_url: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> LocalState:
        path = path or local_state_path()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise ConfigurationError(
                f"no local stack state at {path}: start the local stack first (batchgate local --help)"
            ) from error
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"cannot read the local stack state {path}: {error}") from error
        if not isinstance(data, dict):
            raise ConfigurationError(f"the local stack state {path} is not a JSON object")
        owner = running_owner(data)
        if owner is False:
            raise ConfigurationError(
                f"the local stack state {path} is stale: its stack (process {data['pid']}) has ended; "
                "start it again (batchgate local up)"
            )
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalState:
        """`dlq_urls` may be an object {"jobs": url, "track": url, "history": url} or a list of the
        URLs (told apart by name)."""
        dlqs = data.get("dlq_urls") or {}
        events = data.get("event_queues") or {}
        jobs_dlq: str | None
        track_dlq: str | None
        history_dlq: str | None
        if isinstance(dlqs, Mapping):
            jobs_dlq = _first(dlqs, "jobs", "JobsDeadLetterQueueUrl", "jobs_dlq_url")
            track_dlq = _first(dlqs, "track", "TrackDeadLetterQueueUrl", "track_dlq_url")
            history_dlq = _first(dlqs, "history", "HistoryDeadLetterQueueUrl", "history_dlq_url")
        elif isinstance(dlqs, list):
            urls = [str(url) for url in dlqs]
            track_dlq = next((url for url in urls if "track" in url.lower()), None)
            history_dlq = next((url for url in urls if "history" in url.lower()), None)
            jobs_dlq = next((url for url in urls if url not in (track_dlq, history_dlq)), None)
        else:
            jobs_dlq = track_dlq = history_dlq = None
        return cls(
            endpoint_url=data.get("endpoint_url"),
            region=data.get("region"),
            table_name=data.get("table_name"),
            queue_url=data.get("queue_url"),
            jobs_dlq_url=jobs_dlq,
            track_dlq_url=track_dlq,
            history_dlq_url=history_dlq,
            cluster=data.get("cluster"),
            track_function=data.get("track_function"),
            history_function=data.get("history_function"),
            pool_table_name=data.get("pool_table_name"),
            pool_queue_urls=data.get("pool_queue_urls"),
            pool_dlq_urls=data.get("pool_dlq_urls"),
            track_event_queue_url=_first(events, "track") if isinstance(events, Mapping) else None,
            events_queue_url=data.get("events_queue_url"),
            notification_queue_url=data.get("notification_queue_url"),
        )

    def resources(self) -> dict[str, str]:
        values = {
            "table_name": self.table_name,
            "queue_url": self.queue_url,
            "jobs_dlq_url": self.jobs_dlq_url,
            "track_dlq_url": self.track_dlq_url,
            "history_dlq_url": self.history_dlq_url,
            "cluster": self.cluster,
            "track_function": self.track_function,
            "history_function": self.history_function,
            "pool_table_name": self.pool_table_name,
            "pool_queue_urls": self.pool_queue_urls,
            "pool_dlq_urls": self.pool_dlq_urls,
            "track_event_queue_url": self.track_event_queue_url,
            "events_queue_url": self.events_queue_url,
            "notification_queue_url": self.notification_queue_url,
        }
        return {key: value for key, value in values.items() if value}


def _first(mapping: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        if mapping.get(key):
            return str(mapping[key])
    return None


@dataclass(frozen=True)
class SamEnvironment:
    """The parts of one samconfig.toml environment the CLI uses."""

    name: str
    stack_name: str | None
    region: str | None
    profile: str | None


def find_samconfig(start: Path | None = None) -> Path | None:
    """samconfig.toml in the current directory or one of its parents."""
    directory = (start or Path.cwd()).resolve()
    for candidate in (directory, *directory.parents):
        path = candidate / SAMCONFIG
        if path.is_file():
            return path
    return None


def has_environment(path: Path, environment: str) -> bool:
    try:
        return isinstance(tomllib.loads(path.read_text()).get(environment), dict)
    except (OSError, tomllib.TOMLDecodeError):
        return False


def read_samconfig(path: Path, environment: str) -> SamEnvironment:
    """stack_name/region/profile of `environment`, from its deploy parameters, then its global ones."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"cannot read {path}: {error}") from error
    section = document.get(environment)
    if not isinstance(section, dict):
        known = ", ".join(sorted(key for key, value in document.items() if isinstance(value, dict)))
        raise ConfigurationError(f"{path} has no environment {environment!r} (it has: {known or 'none'})")
    values: dict[str, Any] = {}
    for command in ("global", "deploy"):
        parameters = section.get(command, {}).get("parameters", {})
        if isinstance(parameters, dict):
            values.update(parameters)
    return SamEnvironment(
        name=environment,
        stack_name=values.get("stack_name"),
        region=values.get("region"),
        profile=values.get("profile"),
    )


@dataclass
class Target:
    """What the user said about where to look (options and environment variables)."""

    stack: str | None = None
    config_env: str | None = None
    config_file: str | None = None
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    local: bool = False
    local_state: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)


class AwsSession:
    """One command's AWS session: clients are built once and reused, resources resolved once.

    Built from a `Target`; nothing talks to AWS until a client or a resource is asked for.
    """

    def __init__(self, target: Target, boto_session: boto3.session.Session | None = None) -> None:
        self.target = target
        state_path = Path(target.local_state) if target.local_state else None
        self._local = LocalState.load(state_path) if target.local else None
        self._sam = self._sam_environment()
        self.endpoint_url = target.endpoint_url or (self._local.endpoint_url if self._local else None)
        if not self.endpoint_url:
            self.endpoint_url = next(
                (os.environ[name] for name in ENDPOINT_ENVS if os.environ.get(name)), None
            )
        region = target.region or (self._local.region if self._local else None)
        sam_region = self._sam.region if self._sam else None
        if region is None and sam_region and (target.config_env or target.config_file):
            region = sam_region  # an environment named explicitly says where its stack is
        profile = target.profile or (self._sam.profile if self._sam else None)
        if boto_session is None:
            if target.local:
                boto_session = boto3.session.Session(
                    aws_access_key_id=LOCAL_CREDENTIALS[0],
                    aws_secret_access_key=LOCAL_CREDENTIALS[1],
                    region_name=region,
                )
            else:
                boto_session = boto3.session.Session(profile_name=profile, region_name=region)
        self._boto = boto_session
        self.region: str = boto_session.region_name or sam_region or "us-east-1"
        self._clients: dict[str, Any] = {}
        self._outputs: dict[str, str] | None = None

    def _sam_environment(self) -> SamEnvironment | None:
        """samconfig.toml's environment, unless --stack or --local says where to look. Without
        --config-env/--config-file: the "default" environment of a samconfig.toml found in the current
        directory or a parent, if there is one."""
        target = self.target
        if target.local or target.stack:
            return None
        explicit = bool(target.config_env or target.config_file)
        path = Path(target.config_file) if target.config_file else find_samconfig()
        if path is None:
            if explicit:
                raise ConfigurationError(f"no {SAMCONFIG} found (give --config-file or --stack)")
            return None
        if not path.is_file():
            raise ConfigurationError(f"{path} does not exist")
        if not explicit and not has_environment(path, DEFAULT_CONFIG_ENV):
            return None
        return read_samconfig(path, target.config_env or DEFAULT_CONFIG_ENV)

    @property
    def stack_name(self) -> str | None:
        if self.target.stack:
            return self.target.stack
        return self._sam.stack_name if self._sam else None

    def describe(self) -> str:
        """Where this session points, for messages."""
        if self.target.local:
            return f"the local stack at {self.endpoint_url}"
        if self.stack_name:
            return f"stack {self.stack_name} in {self.region}"
        return f"region {self.region}"

    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["sqs"]) -> SQSClient: ...
    @overload
    def client(self, service: Literal["ecs"]) -> ECSClient: ...
    @overload
    def client(self, service: Literal["logs"]) -> CloudWatchLogsClient: ...
    @overload
    def client(self, service: Literal["cloudformation"]) -> CloudFormationClient: ...
    @overload
    def client(self, service: Literal["lambda"]) -> LambdaClient: ...
    @overload
    def client(self, service: Literal["dynamodbstreams"]) -> StreamsClient: ...
    @overload
    def client(self, service: Literal["cloudwatch"]) -> MetricsClient: ...
    def client(self, service: str) -> Any:
        existing = self._clients.get(service)
        if existing is None:
            existing = self._boto.client(
                service,  # type: ignore[call-overload]
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=CLIENT_CONFIG,
            )
            self._clients[service] = existing
        return existing

    def stack_outputs(self) -> dict[str, str]:
        """The stack's outputs by key (read once)."""
        if self._outputs is None:
            name = self.stack_name
            if not name:
                raise ConfigurationError(
                    "no stack given: use --stack NAME, --config-env ENV (samconfig.toml) or --local"
                )
            try:
                response = self.client("cloudformation").describe_stacks(StackName=name)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ValidationError":
                    raise ConfigurationError(f"stack {name} not found in {self.region}") from error
                raise
            stacks = response.get("Stacks", [])
            outputs = stacks[0].get("Outputs", []) if stacks else []
            self._outputs = {
                str(output["OutputKey"]): str(output["OutputValue"])
                for output in outputs
                if "OutputKey" in output and "OutputValue" in output
            }
        return self._outputs

    def resource(self, name: str) -> str:
        """A resource by its CLI name (table_name, queue_url, jobs_dlq_url, track_dlq_url, cluster, ...)."""
        value = self.optional_resource(name)
        if value is None:
            what, option = RESOURCE_HINTS.get(name, (name, f"--{name.replace('_', '-')}"))
            if self._local is None and not self.stack_name:
                raise ConfigurationError(
                    f"no stack given to find {what} in: use --stack NAME, --config-env ENV "
                    f"(samconfig.toml) or --local, or give it with {option}"
                )
            raise ConfigurationError(f"cannot find {what} in {self.describe()}: give it with {option}")
        return value

    def optional_resource(self, name: str) -> str | None:
        override = self.target.overrides.get(name)
        if override:
            return override
        if self._local is not None:
            return self._local.resources().get(name)
        if not self.stack_name:
            return None
        outputs = self.stack_outputs()
        for key, resource in OUTPUTS.items():
            if resource == name and outputs.get(key):
                return outputs[key]
        return None
