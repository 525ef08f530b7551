"""The local endpoint's server process: `python -m batchgate.ops.local.moto_server -H HOST -p PORT`.

moto's server, with two ECS behaviours that batchgate relies on and moto 5.2.5 does not have:
- RunTask is idempotent per `clientToken` (ECS keeps a token about 24 hours): the same token with the
  same parameters returns the original tasks, with other parameters a ConflictException. Dispatch's
  "a message delivered twice never starts two tasks" rests on it.
- A task stays RUNNING until it stops: moto would walk it to STOPPED one step per DescribeTasks; here
  only the executor (the process ended) or a StopTask stop it.
And one EventBridge behaviour: a rule delivers to an SNS topic target (the job notification rule's),
which moto fails (`sns_targets`).
And one speed-up: moto's SQS reads the clock through datetime arithmetic for every message of a queue at
every send, receive and attribute read; under a burst (the load run's 1,000 jobs put thousands of task
events on the track function's queue) that was most of the server's time. The same epoch milliseconds
come from time.time().
And one DynamoDB guarantee: a write is atomic with its stream record. moto's server runs requests in
threads and numbers a stream record by the stream's length before appending it, so two writes at once
could share a sequence number, and a reader resuming after it read one of them again (a finished attempt
folded twice into the history); a conditional write could also pass its check alongside another. DynamoDB
requests run one at a time here.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import moto.sqs.models as sqs_models
from moto.core.responses import ActionResult
from moto.core.utils import unix_time_millis
from moto.dynamodb.responses import DynamoHandler
from moto.ecs.exceptions import ECSException
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_api import state_manager
from moto.server import main as moto_main

from batchgate.ops.local.sns_targets import patch_moto_rules

CLIENT_TOKEN_SECONDS = 24 * 3600
RunTask = Callable[[EC2ContainerServiceResponse], ActionResult]


class ConflictException(ECSException):
    def __init__(self, message: str) -> None:
        super().__init__("ConflictException", message)


class ClientTokens:
    """RunTask responses by (account, region, clientToken)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], tuple[str, Any, float]] = {}

    def wrap(self, run_task: RunTask) -> RunTask:
        def idempotent_run_task(response: EC2ContainerServiceResponse) -> ActionResult:
            token = response._get_param("clientToken")
            if not token:
                return run_task(response)
            request = json.loads(response.body or "{}")
            request.pop("clientToken", None)
            fingerprint = json.dumps(request, sort_keys=True)
            key = (str(response.current_account), str(response.region), str(token))
            # One lock for all tokens: concurrent calls with one token must not both start tasks.
            with self._lock:
                seen = self._seen.get(key)
                if seen is not None and time.time() - seen[2] < CLIENT_TOKEN_SECONDS:
                    if seen[0] != fingerprint:
                        raise ConflictException(f"clientToken {token} was used with other parameters")
                    return ActionResult({"tasks": seen[1], "failures": []})
                result = run_task(response)
                tasks = result.result["tasks"] if isinstance(result.result, dict) else []
                self._seen[key] = (fingerprint, tasks, time.time())
                return result

        return idempotent_run_task


def now_millis(dt: datetime.datetime | None = None) -> float:
    """moto's unix_time_millis, without the datetime arithmetic when the moment is now."""
    return time.time() * 1000.0 if dt is None else unix_time_millis(dt)


def one_at_a_time(call_action: Callable[[DynamoHandler], Any]) -> Callable[[DynamoHandler], Any]:
    """`call_action` under one lock for every DynamoDB request of the server."""
    lock = threading.Lock()

    def serialized(handler: DynamoHandler) -> Any:
        with lock:
            return call_action(handler)

    return serialized


def main() -> None:
    # A patch of the pinned moto's response class, in this server process only.
    EC2ContainerServiceResponse.run_task = ClientTokens().wrap(  # type: ignore[method-assign, assignment]
        EC2ContainerServiceResponse.run_task
    )
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    patch_moto_rules()
    sqs_models.unix_time_millis = now_millis  # type: ignore[attr-defined]
    DynamoHandler.call_action = one_at_a_time(DynamoHandler.call_action)  # type: ignore[method-assign]
    moto_main()


if __name__ == "__main__":
    main()
