"""The ECS adapter: RunTask and task definition look-ups, with AWS errors mapped to what the job does next.

RunTask is idempotent per `clientToken` (same token, same parameters: the original task comes back), so
a retry of the same attempt can never start a second task; that is why every retryable error here sends
the attempt back with the same token.
"""

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from batchgate.adapters.aws_clients import ecs_client
from batchgate.domain.jobs import stored_text

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

RETRYABLE_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServerException",
        "ServiceUnavailableException",
        "InternalFailure",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# RunTask `failures` that mean "no room right now" rather than "this can never run".
TRANSIENT_FAILURE_MARKERS = ("RESOURCE:", "AGENT", "Capacity is unavailable", "Timeout")


class LaunchError(Exception):
    """Why RunTask did not start a task; the reason (AWS's message) is cut to what a job stores."""

    def __init__(self, reason: str) -> None:
        super().__init__(stored_text(reason))
        self.reason = stored_text(reason)


class RetryableLaunchError(LaunchError):
    """Throttling, a 5xx, a timeout or no capacity now: the same attempt is tried again later."""


class PermanentLaunchError(LaunchError):
    """The request itself is wrong (bad parameters, missing task definition, access denied)."""


class LaunchOutcome(NamedTuple):
    """What RunTask answered: the task it started, or ECS's failures."""

    task_arn: str | None
    failures: tuple[dict[str, str], ...] = ()

    @property
    def failures_are_transient(self) -> bool:
        return bool(self.failures) and all(
            any(marker in failure.get("reason", "") for marker in TRANSIENT_FAILURE_MARKERS)
            for failure in self.failures
        )

    def failure_summary(self) -> str:
        return stored_text(
            "; ".join(
                f"{failure.get('reason', 'unknown')}"
                + (f" ({failure['detail']})" if failure.get("detail") else "")
                for failure in self.failures
            )
        )


class LogPointer(NamedTuple):
    """Where a container's output goes: its CloudWatch Logs group and stream."""

    group: str
    stream: str
    region: str | None = None


class EcsTasks:
    """RunTask and DescribeTaskDefinition for one cluster; task definition look-ups are cached for the
    container's lifetime (a task definition revision never changes)."""

    def __init__(
        self, cluster: str, client: "ECSClient | None" = None, *, pace: Callable[[], object] | None = None
    ) -> None:
        self.cluster = cluster
        self._client: ECSClient = client or ecs_client()
        # Called before each ListTasks listing, DescribeTasks and StopTask call (the launch-rate
        # governor's share of ECS's call rate); RunTask is admitted by the governor itself.
        self._pace = pace or _unpaced
        self._log_configs: dict[str, dict[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def run_task(self, request: dict[str, Any]) -> LaunchOutcome:
        try:
            response = self._client.run_task(**request)
        except ClientError as error:
            raise _launch_error(error) from error
        except (BotoCoreError, ConnectionError, HTTPClientError) as error:
            raise RetryableLaunchError(f"RunTask did not answer: {error}") from error
        tasks = response.get("tasks", [])
        failures = tuple(
            {key: stored_text(str(value)) for key, value in failure.items()}
            for failure in response.get("failures", [])
        )
        return LaunchOutcome(task_arn=tasks[0]["taskArn"] if tasks else None, failures=failures)

    def tasks_started_by(self, started_by: str) -> list[dict[str, Any]]:
        """Every task of the cluster with this startedBy (a job id), running or recently stopped, as
        DescribeTasks describes it (overrides included). ListTasks lists RUNNING tasks unless asked."""
        arns: list[str] = []
        pages = self._client.get_paginator("list_tasks")
        for desired_status in ("RUNNING", "STOPPED"):
            self._pace()
            for page in pages.paginate(
                cluster=self.cluster, startedBy=started_by, desiredStatus=desired_status
            ):
                arns.extend(arn for arn in page.get("taskArns", []) if arn not in arns)
        return self.describe_tasks(arns)

    def describe_tasks(self, task_arns: list[str]) -> list[dict[str, Any]]:
        """DescribeTasks, 100 tasks a call; tasks ECS no longer knows are left out."""
        described: list[dict[str, Any]] = []
        for start in range(0, len(task_arns), 100):
            self._pace()
            response = self._client.describe_tasks(cluster=self.cluster, tasks=task_arns[start : start + 100])
            described.extend(dict(task) for task in response.get("tasks", []))
        return described

    def stop_task(self, task_arn: str, reason: str) -> None:
        """StopTask with a reason ops read on the task and the job (ECS keeps 255 characters)."""
        self._pace()
        self._client.stop_task(cluster=self.cluster, task=task_arn, reason=reason[:255])

    def log_pointer(self, task_definition_arn: str, container: str, task_arn: str) -> LogPointer | None:
        """Where the awslogs driver writes this task's container output, or None if it does not."""
        options = self._log_options(task_definition_arn).get(container)
        if not options or "awslogs-group" not in options:
            return None
        task_id = task_arn.rsplit("/", 1)[-1]
        prefix = options.get("awslogs-stream-prefix")
        # awslogs names streams prefix/container/task-id; without a prefix, the task id alone.
        stream = f"{prefix}/{container}/{task_id}" if prefix else task_id
        return LogPointer(group=options["awslogs-group"], stream=stream, region=options.get("awslogs-region"))

    def _log_options(self, task_definition_arn: str) -> dict[str, dict[str, str]]:
        with self._lock:
            cached = self._log_configs.get(task_definition_arn)
        if cached is not None:
            return cached
        response = self._client.describe_task_definition(taskDefinition=task_definition_arn)
        options: dict[str, dict[str, str]] = {}
        for definition in response["taskDefinition"].get("containerDefinitions", []):
            log_configuration = definition.get("logConfiguration")
            if log_configuration and log_configuration.get("logDriver") == "awslogs":
                options[definition["name"]] = dict(log_configuration.get("options", {}))
        with self._lock:
            self._log_configs[task_definition_arn] = options
        return options


def _unpaced() -> None:
    return None


def is_transient(error: Exception) -> bool:
    """A throttled, unavailable (5xx) or timed-out call: the same call may well succeed later."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in RETRYABLE_ERROR_CODES or status >= 500
    return isinstance(error, BotoCoreError)


def _launch_error(error: ClientError) -> LaunchError:
    details = error.response.get("Error", {})
    code = details.get("Code", "Unknown")
    message = details.get("Message", str(error))
    reason = f"RunTask {code}: {message}"
    if is_transient(error):
        return RetryableLaunchError(reason)
    return PermanentLaunchError(reason)
