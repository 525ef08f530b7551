"""Which function hosts the stack runs: one per SQS or DynamoDB stream event source mapping,
EventBridge rule target and schedule of the template (SQS and rule targets `concurrency` times, as
Lambda scales out; a stream once, as it reads one batch per shard at a time), each with the function's
environment as Lambda would set it, pointed at the local endpoint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchgate.ops.local.endpoint import LocalAws
from batchgate.ops.local.errors import StackFailure
from batchgate.ops.local.events import route_to_queue
from batchgate.ops.local.functions import (
    INTERPRETER_VARIABLES,
    FunctionProcess,
    HostConfig,
    WaitingRuntimes,
)
from batchgate.ops.local.processes import inherited
from batchgate.ops.local.resources import FunctionSpec, StackResources

READY_SECONDS = 60.0
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


@dataclass(frozen=True)
class HostOptions:
    stack_name: str
    concurrency: int = 1
    schedule_seconds: float | None = None
    catalog_path: Path | None = None
    log_level: str | None = None
    echo: Callable[[str], None] | None = None


def waiting_runtimes(template: Mapping[str, Any]) -> WaitingRuntimes:
    """One runtime per function of the (SAM) template, started now: most functions have one host (a
    function with more takes new processes for the others; one with none leaves its runtime unused)."""
    functions = [
        resource
        for resource in (template.get("Resources") or {}).values()
        if resource.get("Type") in FUNCTION_TYPES
    ]
    waiting = WaitingRuntimes(inherited(INHERITED_VARIABLES))
    waiting.start(len(functions))
    return waiting


class FunctionHosts:
    def __init__(
        self,
        resources: StackResources,
        aws: LocalAws,
        options: HostOptions,
        waiting: WaitingRuntimes | None = None,
    ) -> None:
        """`waiting`: runtimes started ahead, which hosts take before starting new processes."""
        self._resources = resources
        self._aws = aws
        self._options = options
        self._waiting = waiting
        self.processes: list[FunctionProcess] = []
        # function logical id -> the local queue its EventBridge rule delivers to (what its host reads)
        self.event_queue_urls: dict[str, str] = {}

    def start(self) -> None:
        """Start every host, without waiting for their cold starts (`wait_ready`)."""
        logs = self._aws.logs()
        for config in self._configs():
            for _ in range(self._copies(config)):
                host = FunctionProcess(config, self.environment(config.function), logs, self._options.echo)
                host.start(self._waiting)
                self.processes.append(host)

    def wait_ready(self) -> None:
        """Until every host has imported its handler (started all at once, their cold starts overlap)."""
        for host in self.processes:
            if not host.wait_ready(READY_SECONDS):
                raise StackFailure(
                    f"function {host.name} did not start; its output:\n" + "\n".join(host.tail)
                )

    def _copies(self, config: HostConfig) -> int:
        # A schedule runs once per tick; a stream is read by one host (ParallelizationFactor 1: one
        # batch per shard at a time); a second one would deliver every record again.
        if config.schedule is not None or config.stream_source is not None:
            return 1
        source = config.sqs_source
        limit = source.max_concurrency if source and source.max_concurrency else self._options.concurrency
        return min(self._options.concurrency, limit)

    def check(self) -> None:
        for host in self.processes:
            if not host.running:
                raise StackFailure(f"function {host.name} exited; its last output:\n" + "\n".join(host.tail))

    def stop(self) -> None:
        for host in self.processes:
            host.terminate()  # all at once: each finishes its current invocation
        for host in self.processes:
            host.stop()
        self.processes = []

    def environment(self, function: FunctionSpec) -> dict[str, str]:
        """The template's variables for the function, then what Lambda sets, then the local endpoint."""
        environment = {
            **inherited(INHERITED_VARIABLES),
            **function.environment,
            **self._aws.environment(),
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "LAMBDA_TASK_ROOT": str(function.code_path),
            # No X-Ray daemon here; metrics and logs stay on and go to the function's log group.
            "POWERTOOLS_TRACE_DISABLED": "true",
            **INTERPRETER_VARIABLES,
        }
        if self._options.catalog_path is not None:
            environment["BATCHGATE_CATALOG"] = str(self._options.catalog_path.resolve())
        if self._options.log_level:
            environment["POWERTOOLS_LOG_LEVEL"] = self._options.log_level
        return environment

    def _configs(self) -> list[HostConfig]:
        resources, region = self._resources, self._aws.region
        configs = [
            HostConfig(function=resources.functions[source.function], region=region, sqs_source=source)
            for source in resources.sqs_sources
        ]
        configs += [
            HostConfig(function=resources.functions[source.function], region=region, stream_source=source)
            for source in resources.stream_sources
        ]
        for target in resources.rule_targets:
            queue_name = f"{self._options.stack_name}-{target.function}-{target.target_id}"[:80]
            queue_url = route_to_queue(self._aws.events(), self._aws.sqs(), target, queue_name)
            self.event_queue_urls.setdefault(target.function, queue_url)
            configs.append(
                HostConfig(
                    function=resources.functions[target.function],
                    region=region,
                    event_queue_url=queue_url,
                    async_config=resources.async_config(target.function),
                )
            )
        configs += [
            HostConfig(
                function=resources.functions[schedule.function],
                region=region,
                async_config=resources.async_config(schedule.function),
                schedule=schedule,
                schedule_seconds=self._options.schedule_seconds,
            )
            for schedule in resources.schedule_targets
        ]
        return configs
