"""The local ECS executor: runs the tasks that RunTask started in the local cluster.

moto records a RunTask and stops there. The executor watches the cluster (ListTasks/DescribeTasks),
runs each new task's container: in Docker when a Docker engine answers and already has the task
definition's image, else its command as a subprocess (cwd = the repository's samples/ folder, which
stands in for the container images). It streams the output into the task's awslogs stream, and
publishes the task's state changes through EventBridge as ECS would: PROVISIONING, PENDING, RUNNING,
DEPROVISIONING and STOPPED, with timestamps, increasing `detail.version`, the exit code and the stop
code. A StopTask (desiredStatus STOPPED in the endpoint) terminates the process: stop code
UserInitiated, as in ECS.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.ops.local.cloudwatch import LogShipper
from batchgate.ops.local.docker import DOCKER_CLIENT_VARIABLES, DockerEngine, container_name
from batchgate.ops.local.endpoint import LocalAws
from batchgate.ops.local.processes import end_group, exit_status, inherited, start_child, stop_process
from batchgate.ops.local.task_state import (
    ESSENTIAL_CONTAINER_EXITED,
    EXITED_REASON,
    STOPPED_BY_USER_REASON,
    TASK_FAILED_TO_START,
    USER_INITIATED,
    TaskState,
)
from batchgate.ops.terminal import terminal_text

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_logs import CloudWatchLogsClient

PYTHON_COMMANDS = frozenset({"python", "python3", "python3.12"})
DESCRIBE_LIMIT = 100
LOG_FLUSH_SECONDS = 0.5
# The share of a start delay spent provisioning (ENI, placement) before the image pull starts.
PROVISIONING_SHARE = 0.2
# Start delays seen on AWS (field notes: Fargate 30-45 s normal, more for big images; EC2 with a warm
# instance and a cached image much less).
START_PROFILES: dict[str, dict[str, float]] = {
    "none": {},
    "production": {"FARGATE": 50.0, "FARGATE_SPOT": 50.0, "EC2": 15.0},
}
# What a container inherits from the host: enough to run, and nothing secret.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


@dataclass(frozen=True)
class StartDelays:
    """Simulated time from RunTask to the container's start, by strategy, scaled by `scale`."""

    seconds: Mapping[str, float] = field(default_factory=dict)
    scale: float = 1.0

    @classmethod
    def profile(cls, name: str, scale: float = 1.0) -> StartDelays:
        if name not in START_PROFILES:
            raise ValueError(f"unknown start profile {name!r} (known: {', '.join(START_PROFILES)})")
        return cls(seconds=START_PROFILES[name], scale=scale)

    def for_provider(self, capacity_provider: str) -> float:
        strategy = capacity_provider if capacity_provider in ("FARGATE", "FARGATE_SPOT") else "EC2"
        return self.seconds.get(strategy, 0.0) * self.scale


@dataclass(frozen=True)
class ContainerDefinition:
    name: str
    image: str
    command: tuple[str, ...]
    entry_point: tuple[str, ...]
    environment: dict[str, str]
    log_group: str | None
    log_stream_prefix: str | None

    @classmethod
    def from_task_definition(cls, definition: Mapping[str, Any]) -> ContainerDefinition:
        container = definition["containerDefinitions"][0]
        options = (container.get("logConfiguration") or {}).get("options") or {}
        return cls(
            name=container["name"],
            image=container.get("image", ""),
            command=tuple(container.get("command") or ()),
            entry_point=tuple(container.get("entryPoint") or ()),
            environment={item["name"]: item["value"] for item in container.get("environment") or ()},
            log_group=options.get("awslogs-group"),
            log_stream_prefix=options.get("awslogs-stream-prefix"),
        )

    def log_stream(self, task_id: str) -> str:
        """awslogs' stream name: prefix/container/task-id (read by
        batchgate.adapters.ecs.EcsTasks.log_pointer)."""
        return f"{self.log_stream_prefix}/{self.name}/{task_id}" if self.log_stream_prefix else task_id


class CannotStartContainer(Exception):
    """The container's process could not be started (no such command, not executable)."""


@dataclass(frozen=True)
class TaskEnvironment:
    """Where and how the executor runs containers."""

    workdir: Path
    aws: LocalAws
    delays: StartDelays = field(default_factory=StartDelays)
    stop_grace_seconds: float = 2.0
    docker: DockerEngine | None = None  # None: every task runs as a local process


class ContainerProcess:
    """One container's command as a subprocess in its own process group, output piped line by line
    into a log shipper."""

    def __init__(
        self, argv: list[str], environment: dict[str, str], workdir: Path, shipper: LogShipper
    ) -> None:
        self._shipper = shipper
        # One output stream: awslogs captures both.
        self._process = start_child(argv, environment, cwd=workdir)
        self._reader = threading.Thread(target=self._pump, name=f"output-{self._process.pid}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        stream = self._process.stdout
        if stream is None:
            return
        for line in stream:
            self._shipper.write(line)

    def wait(self, seconds: float) -> int | None:
        try:
            return exit_status(self._process.wait(timeout=seconds))
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_seconds: float) -> int:
        status = stop_process(self._process, grace_seconds)
        # What the command left running (a shell's background job) ends with it, as in a container; it
        # would otherwise hold the output open, and the task's end waited for the reader's timeout.
        end_group(self._process)
        return status

    def close(self) -> None:
        self._reader.join(timeout=5)


class DockerContainer(ContainerProcess):
    """The container in Docker. The `docker run` client is the process: its output is the container's
    and its exit status the container's. A stop goes through the engine, so that the container itself
    gets SIGTERM, then SIGKILL after the grace period, and not only its client."""

    def __init__(
        self,
        engine: DockerEngine,
        name: str,
        *,
        argv: list[str],
        environment: dict[str, str],
        workdir: Path,
        shipper: LogShipper,
    ) -> None:
        self._engine = engine
        self._name = name
        super().__init__(argv, environment, workdir, shipper)

    def stop(self, grace_seconds: float) -> int:
        if self.wait(0) is None:
            self._engine.stop(self._name, grace_seconds)
        return super().stop(grace_seconds)


class TaskRun:
    """The life of one task, on its own thread: provisioning and pull (simulated delays), the
    container process, and every state change published as an event."""

    def __init__(
        self,
        *,
        task: dict[str, Any],
        container: ContainerDefinition,
        environment: TaskEnvironment,
        logs: CloudWatchLogsClient,
        publish: Callable[[PutEventsRequestEntryTypeDef], None],
        mark_stopped: Callable[[str, str], None],
        note: Callable[[str], None],
    ) -> None:
        self.task_arn = str(task["taskArn"])
        self._logs = logs
        self._container = container
        self._env = environment
        self._publish = publish
        self._mark_stopped = mark_stopped
        self._note = note
        self._state = TaskState(
            task=task, container=container.name, image=container.image, region=environment.aws.region
        )
        self._stop = threading.Event()
        self._stop_reason = ""
        self.finishing = False  # set once the task ends by itself: its StopTask is ours, not a user's
        self._thread = threading.Thread(target=self._run, name=f"task-{self._state.task_id[:8]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def request_stop(self, reason: str) -> None:
        if not self.finishing and not self._stop.is_set():
            self._stop_reason = reason or STOPPED_BY_USER_REASON
            self._stop.set()

    def join(self, seconds: float) -> None:
        self._thread.join(timeout=seconds)

    def _run(self) -> None:
        try:
            self._lifecycle()
        except Exception as error:  # whatever broke, the task must still reach STOPPED
            self._note(f"task {self._state.task_id}: {type(error).__name__}: {error}")
            if self._state.last_status != "STOPPED":
                self._failed(f"local executor error: {type(error).__name__}: {error}")

    def _lifecycle(self) -> None:
        state = self._state
        delay = self._env.delays.for_provider(state.capacity_provider)
        self._publish(state.change("PROVISIONING", "createdAt"))
        if self._stop.wait(delay * PROVISIONING_SHARE):
            return self._stopped_before_start()
        self._publish(state.change("PENDING", "connectivityAt", "pullStartedAt"))
        if self._stop.wait(delay * (1 - PROVISIONING_SHARE)):
            return self._stopped_before_start()
        state.stamp("pullStoppedAt")
        shipper = self._shipper()
        try:
            process = self._start_container(shipper)
        except CannotStartContainer as error:
            return self._failed(f"CannotStartContainerError: {error}")
        try:
            self._publish(state.change("RUNNING", "startedAt"))
            self._supervise(process, shipper)
        finally:
            exit_code = process.stop(self._env.stop_grace_seconds)  # the exit code if it ended by itself
            process.close()
            shipper.flush()
        if self._stop.is_set():
            state.stop_code, state.stopped_reason = USER_INITIATED, self._stop_reason
        else:
            state.stop_code, state.stopped_reason = ESSENTIAL_CONTAINER_EXITED, EXITED_REASON
        state.exit_code = exit_code
        state.desired_status = "STOPPED"
        self._publish(state.change("DEPROVISIONING", "stoppingAt", "executionStoppedAt"))
        self._finish()
        return None

    def _supervise(self, process: ContainerProcess, shipper: LogShipper) -> None:
        """Wait until the process ends or a stop is requested, shipping its output meanwhile."""
        while process.wait(LOG_FLUSH_SECONDS) is None and not self._stop.is_set():
            shipper.flush()

    def _stopped_before_start(self) -> None:
        state = self._state
        state.stop_code, state.stopped_reason = USER_INITIATED, self._stop_reason
        state.desired_status = "STOPPED"
        state.stamp("stoppingAt")
        self._finish()

    def _failed(self, reason: str) -> None:
        """The container never ran (or the executor broke): stop code TaskFailedToStart."""
        state = self._state
        state.stop_code, state.stopped_reason, state.container_reason = TASK_FAILED_TO_START, reason, reason
        state.desired_status = "STOPPED"
        state.stamp("stoppingAt")
        self._finish()

    def _finish(self) -> None:
        """Stop the task in the endpoint too (unless a user already did), then report STOPPED."""
        if not self._stop.is_set():
            self.finishing = True
            self._mark_stopped(self.task_arn, self._state.stopped_reason or EXITED_REASON)
        self._publish(self._state.change("STOPPED", "stoppedAt"))

    def _shipper(self) -> LogShipper:
        container = self._container
        group = container.log_group or f"/ecs/{container.name}"
        shipper = LogShipper(self._logs, group, container.log_stream(self._state.task_id))
        shipper.open()
        return shipper

    def _start_container(self, shipper: LogShipper) -> ContainerProcess:
        """In Docker when the engine has the image, else as a local process."""
        engine, container = self._env.docker, self._container
        variables = self._task_variables()
        argv: list[str] = []
        try:
            if engine is not None and engine.has_image(container.image):
                name = container_name(self._state.task_id)
                argv = engine.run_argv(
                    name=name,
                    image=container.image,
                    entry_point=container.entry_point,
                    command=self._command(),
                    environment=variables,
                    labels={"batchgate.task-arn": self.task_arn},
                )
                client = inherited(INHERITED_VARIABLES + DOCKER_CLIENT_VARIABLES)
                return DockerContainer(
                    engine,
                    name,
                    argv=argv,
                    environment={**client, **variables},
                    workdir=self._env.workdir,
                    shipper=shipper,
                )
            argv = self._argv()
            environment = {**inherited(INHERITED_VARIABLES), **variables}
            return ContainerProcess(argv, environment, self._env.workdir, shipper)
        except OSError as error:
            raise CannotStartContainer(f"{error.strerror or error}: {' '.join(argv)}") from error

    def _command(self) -> list[str]:
        """ECS semantics: the override's command replaces the task definition's."""
        return list(self._override("command") or self._container.command)

    def _argv(self) -> list[str]:
        """The command as a local process: the entry point stays, and the image's python is this
        environment's."""
        argv = [*self._container.entry_point, *self._command()]
        if argv and argv[0] in PYTHON_COMMANDS:
            argv[0] = sys.executable
        return argv

    def _task_variables(self) -> dict[str, str]:
        """The container's environment as ECS would give it, plus the local endpoint's settings."""
        overrides = {item["name"]: item["value"] for item in self._override("environment") or ()}
        return {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_EXECUTION_ENV": f"AWS_ECS_{self._state.launch_type}",
            # The task role's stand-in: a batch program that calls AWS reaches the local endpoint.
            **self._env.aws.environment(),
            **self._container.environment,
            **overrides,
        }

    def _override(self, key: str) -> Any:
        overrides = self._state.task.get("overrides") or {}
        for container in overrides.get("containerOverrides") or ():
            if container.get("name") == self._container.name and container.get(key) is not None:
                return container[key]
        return None


class LocalExecutor:
    """Watches the cluster for tasks to run and for stop requests; one TaskRun per task."""

    def __init__(self, cluster_arn: str, environment: TaskEnvironment, poll_seconds: float = 0.2) -> None:
        if not environment.workdir.is_dir():
            raise FileNotFoundError(f"the executor's working directory {environment.workdir} does not exist")
        self.cluster_arn = cluster_arn
        self._env = environment
        self._poll_seconds = poll_seconds
        self._ecs: ECSClient = environment.aws.ecs()
        self._events: EventBridgeClient = environment.aws.events()
        self._logs: CloudWatchLogsClient = environment.aws.logs()
        self._runs: dict[str, TaskRun] = {}
        self._seen: set[str] = set()
        self._definitions: dict[str, ContainerDefinition] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-executor", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, stop every task still running (as a StopTask would) and wait for them."""
        self._stopping.set()
        self._thread.join(timeout=10)
        for run in self._runs.values():
            run.request_stop("local stack shutting down")
        for run in self._runs.values():
            run.join(self._env.stop_grace_seconds + 5)

    @property
    def active(self) -> int:
        return sum(1 for run in self._runs.values() if run.is_alive())

    def _loop(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self._start_new_tasks()
                self._forward_stop_requests()
            except (ClientError, BotoCoreError) as error:
                self._note(f"executor: {error}")

    def _start_new_tasks(self) -> None:
        new = [arn for arn in self._task_arns("RUNNING") if arn not in self._seen]
        # A new dict each time: other threads read `_runs` without a lock.
        runs = {arn: run for arn, run in self._runs.items() if run.is_alive()}
        for task in self._describe(new):
            arn = str(task["taskArn"])
            self._seen.add(arn)
            definition = self._definition(task["taskDefinitionArn"])
            runs[arn] = TaskRun(
                task=task,
                container=definition,
                environment=self._env,
                logs=self._logs,
                publish=self._publish,
                mark_stopped=self._stop_task,
                note=self._note,
            )
            runs[arn].start()
        self._runs = runs

    def _forward_stop_requests(self) -> None:
        """StopTask only sets desiredStatus STOPPED in the endpoint; the executor ends the process."""
        if not self._runs:
            return
        stopped = set(self._task_arns("STOPPED"))
        waiting = [arn for arn, run in self._runs.items() if arn in stopped and not run.finishing]
        for task in self._describe(waiting):
            self._runs[str(task["taskArn"])].request_stop(str(task.get("stoppedReason") or ""))

    def _task_arns(self, desired_status: str) -> Iterator[str]:
        paginator = self._ecs.get_paginator("list_tasks")
        for page in paginator.paginate(cluster=self.cluster_arn, desiredStatus=desired_status):  # type: ignore[arg-type]
            yield from page.get("taskArns", [])

    def _describe(self, arns: list[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(arns), DESCRIBE_LIMIT):
            response = self._ecs.describe_tasks(
                cluster=self.cluster_arn, tasks=arns[start : start + DESCRIBE_LIMIT]
            )
            for task in response.get("tasks", []):
                yield dict(task)

    def _definition(self, arn: str) -> ContainerDefinition:
        if arn not in self._definitions:
            described = self._ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            self._definitions[arn] = ContainerDefinition.from_task_definition(described)
        return self._definitions[arn]

    def _publish(self, entry: PutEventsRequestEntryTypeDef) -> None:
        try:
            response = self._events.put_events(Entries=[entry])
            if response.get("FailedEntryCount"):
                self._note(f"executor: event not accepted: {response.get('Entries')}")
        except (ClientError, BotoCoreError) as error:
            self._note(f"executor: could not publish a task event: {error}")

    def _stop_task(self, task_arn: str, reason: str) -> None:
        try:
            self._ecs.stop_task(cluster=self.cluster_arn, task=task_arn, reason=reason)
        except (ClientError, BotoCoreError) as error:
            self._note(f"executor: could not mark {task_arn} stopped: {error}")

    def _note(self, message: str) -> None:
        self.errors.append(message)
        print(terminal_text(f"batchgate local: {message}"), file=sys.stderr)
