"""A Lambda execution environment for one function of the local stack:
`python -m batchgate.ops.local.runtime`.

Started by `batchgate.ops.local.functions.FunctionProcess` with the function's environment variables and
its configuration in $BATCHGATE_LOCAL_HOST, or started ahead of its function (`WaitingRuntimes`, which
import the SDK meanwhile) and given them as one JSON line on stdin. Imports the real handler file
(functions/<name>/app.py) the way the Lambda runtime does, then feeds it from its event source until
SIGTERM. Writes what Lambda writes around each invocation (START, END, REPORT) so that the function's log
reads the same.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from batchgate.ops.local.events import AsyncInvoker, EventQueueReader, ScheduleLoop
from batchgate.ops.local.functions import HOST_CONFIG_VARIABLE, READY_MARKER, HostConfig
from batchgate.ops.local.poller import SqsPoller, StopRequest
from batchgate.ops.local.resources import AsyncInvokeConfig, FunctionSpec
from batchgate.ops.local.stream_poller import StreamPoller


@dataclass
class LambdaContext:
    """The context object handlers receive (the attributes Powertools and handlers read)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class Invocation:
    """Calls the handler as the runtime does: a fresh context per call, START/END/REPORT lines."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], function: FunctionSpec) -> None:
        self._handler = handler
        self._function = function

    def __call__(self, event: dict[str, Any]) -> Any:
        request_id = str(uuid.uuid4())
        function = self._function
        context = LambdaContext(
            function_name=function.name,
            invoked_function_arn=function.arn,
            memory_limit_in_mb=function.memory_mb,
            aws_request_id=request_id,
            log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
            deadline=time.monotonic() + function.timeout_seconds,
        )
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        started = time.perf_counter()
        try:
            return self._handler(event, context)
        except Exception as error:
            print(f"[ERROR] {type(error).__name__}: {error}", flush=True)
            print("".join(traceback.format_exception(error)).rstrip(), flush=True)
            raise
        finally:
            milliseconds = (time.perf_counter() - started) * 1000
            memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(f"END RequestId: {request_id}", flush=True)
            print(
                f"REPORT RequestId: {request_id}\tDuration: {milliseconds:.2f} ms\t"
                f"Billed Duration: {int(milliseconds) + 1} ms\tMemory Size: {function.memory_mb} MB\t"
                f"Max Memory Used: {memory_mb} MB",
                flush=True,
            )


def load_handler(function: FunctionSpec) -> Callable[[dict[str, Any], Any], Any]:
    """Import the handler file as the runtime would (its folder first on sys.path)."""
    sys.path.insert(0, str(function.code_path))
    spec = importlib.util.spec_from_file_location(
        f"batchgate_local_{function.logical_id}", function.handler_file
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {function.handler_file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, function.handler_name)
    return handler


def serve(config: HostConfig, stop: threading.Event) -> None:
    function = config.function
    print(f"INIT_START Runtime Version: python:3.12 Function: {function.name}", flush=True)
    started = time.perf_counter()
    invoke = Invocation(load_handler(function), function)
    print(f"INIT_REPORT Init Duration: {(time.perf_counter() - started) * 1000:.2f} ms", flush=True)
    sqs = boto3.client("sqs")
    invoker = AsyncInvoker(invoke, config.async_config or AsyncInvokeConfig(), sqs, function.arn)
    print(READY_MARKER, flush=True)
    if config.sqs_source is not None:
        SqsPoller(sqs, config.sqs_source, invoke, config.region).run(stop)
    elif config.stream_source is not None:
        streams = boto3.client("dynamodbstreams")
        StreamPoller(
            streams, sqs, config.stream_source, invoke, region=config.region, function_arn=function.arn
        ).run(stop)
    elif config.event_queue_url is not None:
        EventQueueReader(sqs, config.event_queue_url, invoker).run(stop)
    elif config.schedule is not None:
        period = config.schedule_seconds or config.schedule.period_seconds
        ScheduleLoop(invoker, config.schedule, period, config.region).run(stop)
    else:
        stop.wait()


def main() -> None:
    if HOST_CONFIG_VARIABLE not in os.environ:
        # Started ahead of its function (functions.WaitingRuntimes): the environment comes on stdin.
        line = sys.stdin.readline()
        if not line:
            return  # no function for it after all
        os.environ.update(json.loads(line))
        os.chdir(HostConfig.from_json(os.environ[HOST_CONFIG_VARIABLE]).function.code_path)
    stop = StopRequest()  # serve's loop runs in this, the main thread: its waits are interruptible
    signal.signal(signal.SIGTERM, stop.request)
    # The stack stops its hosts itself, after the tasks: a Ctrl-C in the terminal is not for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(HostConfig.from_json(os.environ[HOST_CONFIG_VARIABLE]), stop)
    # The interpreter's last garbage collection at exit walks every object the SDK and the handler
    # loaded (most of a second); they need no collecting, as the process ends. Exit handlers still run.
    gc.freeze()


if __name__ == "__main__":
    main()
