"""The template's Lambda functions, each run by host processes (`batchgate.ops.local.runtime`): one process is
one execution environment, with the function's own environment variables, a cold start, and its
output in the function's CloudWatch log group, as in Lambda."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchgate.ops.local.cloudwatch import LogShipper
from batchgate.ops.local.processes import start_child, stop_process, terminate
from batchgate.ops.local.resources import (
    AsyncInvokeConfig,
    FunctionSpec,
    ScheduleTarget,
    SqsEventSource,
    StreamEventSource,
)

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

HOST_CONFIG_VARIABLE = "BATCHGATE_LOCAL_HOST"
READY_MARKER = "batchgate-local: function ready"
FLUSH_SECONDS = 1.0
TAIL_LINES = 40
STOP_GRACE_SECONDS = 5.0
RUNTIME_COMMAND = ("-m", "batchgate.ops.local.runtime")
# Read by the interpreter as it starts: a waiting runtime (WaitingRuntimes) starts with these values.
INTERPRETER_VARIABLES = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class HostConfig:
    """What one host process runs: the function, and what feeds it (an SQS or a DynamoDB stream event
    source mapping, the local queue of an EventBridge rule, or a schedule; the last two with the
    asynchronous invoke settings)."""

    function: FunctionSpec
    region: str
    sqs_source: SqsEventSource | None = None
    stream_source: StreamEventSource | None = None
    event_queue_url: str | None = None
    async_config: AsyncInvokeConfig | None = None
    schedule: ScheduleTarget | None = None
    schedule_seconds: float | None = None  # the local period (default: the schedule's rate)

    def to_json(self) -> str:
        document = asdict(self)
        document["function"]["code_path"] = str(self.function.code_path)
        return json.dumps(document)

    @classmethod
    def from_json(cls, text: str) -> HostConfig:
        document: dict[str, Any] = json.loads(text)
        function = dict(document["function"], code_path=Path(document["function"]["code_path"]))
        sqs_source = document.get("sqs_source")
        stream_source = document.get("stream_source")
        async_config = document.get("async_config")
        schedule = document.get("schedule")
        return cls(
            function=FunctionSpec(**function),
            region=document["region"],
            sqs_source=SqsEventSource(**sqs_source) if sqs_source else None,
            stream_source=StreamEventSource.from_dict(stream_source) if stream_source else None,
            event_queue_url=document.get("event_queue_url"),
            async_config=AsyncInvokeConfig(**async_config) if async_config else None,
            schedule=ScheduleTarget(**schedule) if schedule else None,
            schedule_seconds=document.get("schedule_seconds"),
        )


def log_stream_name() -> str:
    """Lambda's stream naming: date/[version]id."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"


class FunctionProcess:
    """One host process and the shipping of its output."""

    def __init__(
        self,
        config: HostConfig,
        environment: Mapping[str, str],
        logs: CloudWatchLogsClient,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._environment = dict(environment)
        self._shipper = LogShipper(logs, config.function.log_group, log_stream_name())
        self._echo = echo
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._threads: list[threading.Thread] = []
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    @property
    def name(self) -> str:
        return self.config.function.name

    def start(self, waiting: WaitingRuntimes | None = None) -> None:
        """Start the host: in a runtime of `waiting` when it has one that suits the function, else in
        a new process."""
        self._shipper.open()
        environment = {
            **self._environment,
            "AWS_LAMBDA_LOG_GROUP_NAME": self._shipper.group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self._shipper.stream,
            HOST_CONFIG_VARIABLE: self.config.to_json(),
        }
        self._process = waiting.take(environment) if waiting is not None else None
        if self._process is None:
            self._process = start_child(
                [sys.executable, *RUNTIME_COMMAND], environment, cwd=self.config.function.code_path
            )
        self._threads = [
            threading.Thread(target=self._read, name=f"{self.name}-output", daemon=True),
            threading.Thread(target=self._flush, name=f"{self.name}-logs", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def wait_ready(self, seconds: float) -> bool:
        """True once the handler module is imported (the cold start is over)."""
        ready = self._ready.wait(seconds)
        return ready and self.running

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def terminate(self) -> None:
        """Ask the host to stop (it finishes its current invocation); `stop` waits for it."""
        if self._process is not None:
            terminate(self._process)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, STOP_GRACE_SECONDS)
        for thread in self._threads:
            thread.join(timeout=5)
        self._shipper.flush()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip() == READY_MARKER:
                self._ready.set()
                continue
            self.tail.append(line.rstrip("\n"))
            self._shipper.write(line)
            if self._echo is not None:
                self._echo(f"[{self.config.function.logical_id}] {line.rstrip()}")
        self._ready.set()  # an exit before the marker wakes wait_ready, which then sees it ended
        self._ended.set()

    def _flush(self) -> None:
        while not self._ended.wait(FLUSH_SECONDS):
            self._shipper.flush()
        self._shipper.flush()


class WaitingRuntimes:
    """Runtime processes started before the stack knows their functions: each imports what every host
    needs (the SDK and the runtime's modules, about two thirds of a cold start), then waits on stdin for
    its function's environment. The stack starts them while it creates the resources, which keeps
    about one core busy; a host then takes one instead of starting an interpreter. The handler is
    imported only once the function's environment is set, as Lambda imports it.

    Started with the inherited variables and INTERPRETER_VARIABLES only; a function whose environment
    sets other interpreter (PYTHON*) variables gets a new process, as they count only at start."""

    def __init__(self, inherited: Mapping[str, str]) -> None:
        self._environment = {**inherited, **INTERPRETER_VARIABLES}
        self._waiting: list[subprocess.Popen[str]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            # -P: no working folder on sys.path; the host puts its function's folder first.
            argv = [sys.executable, "-P", *RUNTIME_COMMAND]
            self._waiting.append(start_child(argv, self._environment, stdin=subprocess.PIPE))

    def take(self, environment: Mapping[str, str]) -> subprocess.Popen[str] | None:
        """A waiting runtime given `environment` (the function's, as a host process would have it);
        None when none is left or the function sets interpreter variables of its own."""
        interpreter = {name: value for name, value in environment.items() if name.startswith("PYTHON")}
        if interpreter != INTERPRETER_VARIABLES:
            return None
        while self._waiting:
            process = self._waiting.pop(0)
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(dict(environment)) + "\n")
                process.stdin.close()
            except OSError:  # it ended while waiting: the next one
                stop_process(process, STOP_GRACE_SECONDS)
                continue
            return process
        return None

    def close(self) -> None:
        """End the runtimes no host took (one still waiting has nothing to finish: SIGTERM ends it)."""
        waiting, self._waiting = self._waiting, []
        for process in waiting:
            stop_process(process, STOP_GRACE_SECONDS)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
