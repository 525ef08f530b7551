"""EventBridge to a function, locally: the template's rule matches events in the endpoint, and its
Lambda target is replaced by a queue of the local stack that the function's host reads.

The host then invokes the handler as Lambda's asynchronous invocation does: on an error it retries
(`MaximumRetryAttempts` of the function's EventInvokeConfig, default 2), then sends the destination
record to the on-failure destination. Lambda waits about a minute, then two, between retries; locally
the waits are short.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchgate.domain.jobs import iso, utc_now
from batchgate.ops.local.poller import poll_until_stopped, waiting_for_messages
from batchgate.ops.local.resources import AsyncInvokeConfig, RuleTarget, ScheduleTarget

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

LONG_POLL_SECONDS = 1
RECEIVE_LIMIT = 10
RETRY_PAUSES_SECONDS = (0.5, 1.0)
# Longer than any local invocation: the host deletes each message once it was handled.
ROUTING_VISIBILITY_SECONDS = 120


Invoke = Callable[[dict[str, Any]], Any]


def route_to_queue(events: EventBridgeClient, sqs: SQSClient, target: RuleTarget, queue_name: str) -> str:
    """Point the rule's target at a new local queue (same target id); returns the queue URL."""
    url = sqs.create_queue(
        QueueName=queue_name, Attributes={"VisibilityTimeout": str(ROUTING_VISIBILITY_SECONDS)}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_targets(Rule=target.rule_name, Targets=[{"Id": target.target_id, "Arn": arn}])
    return url


@dataclass(frozen=True)
class Delivery:
    invoked: int
    succeeded: bool
    error: str | None = None


class AsyncInvoker:
    """One event, invoked with Lambda's asynchronous retry policy; what still fails goes to the
    on-failure destination as Lambda's destination record."""

    def __init__(
        self,
        invoke: Invoke,
        config: AsyncInvokeConfig,
        sqs: SQSClient,
        function_arn: str,
        pauses: Sequence[float] = RETRY_PAUSES_SECONDS,
    ) -> None:
        self._invoke = invoke
        self._config = config
        self._sqs = sqs
        self._function_arn = function_arn
        self._pauses = pauses

    def deliver(self, event: dict[str, Any], age_seconds: float = 0.0) -> Delivery:
        if age_seconds > self._config.max_event_age_seconds:
            self._dead_letter(event, "EventAgeExceeded", 0, None)
            return Delivery(0, False, "event too old")
        error: Exception | None = None
        attempts = self._config.max_retries + 1
        for attempt in range(attempts):
            try:
                self._invoke(event)
                return Delivery(attempt + 1, True)
            except Exception as failure:  # Lambda retries any handler error
                error = failure
            if attempt + 1 < attempts:
                time.sleep(self._pauses[min(attempt, len(self._pauses) - 1)])
        self._dead_letter(event, "RetriesExhausted", attempts, error)
        return Delivery(attempts, False, f"{type(error).__name__}: {error}")

    def _dead_letter(
        self, event: dict[str, Any], condition: str, invocations: int, error: Exception | None
    ) -> None:
        if not self._config.on_failure_url:
            return  # no destination: Lambda drops the event
        request_id = str(uuid.uuid4())
        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": iso(utc_now()),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{self._function_arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": invocations,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        }
        if error is not None:
            record["responseContext"]["functionError"] = "Unhandled"
            record["responsePayload"] = {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "requestId": request_id,
                "stackTrace": traceback.format_exception(error)[-3:],
            }
        self._sqs.send_message(QueueUrl=self._config.on_failure_url, MessageBody=json.dumps(record))


class EventQueueReader:
    """Reads the rule's local queue and hands each event to the asynchronous invoker, one at a time
    (one execution environment runs one invocation at a time)."""

    def __init__(self, sqs: SQSClient, queue_url: str, invoker: AsyncInvoker) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._invoker = invoker
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        poll_until_stopped(self.poll_once, stop, type(self).__name__)

    def poll_once(self) -> int:
        with waiting_for_messages(self._stop):
            response = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=RECEIVE_LIMIT,
                WaitTimeSeconds=LONG_POLL_SECONDS,
                MessageSystemAttributeNames=["SentTimestamp"],
            )
        messages = response.get("Messages", [])
        for message in messages:
            sent = int((message.get("Attributes") or {}).get("SentTimestamp", "0")) / 1000
            try:
                event = json.loads(message["Body"])
            except ValueError:
                event = None
            if isinstance(event, dict):
                self._invoker.deliver(event, age_seconds=time.time() - sent if sent else 0.0)
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


def scheduled_event(target: ScheduleTarget, region: str) -> dict[str, Any]:
    """What a schedule rule sends: its Input if it has one, else EventBridge's "Scheduled Event"."""
    if target.input:
        document: dict[str, Any] = json.loads(target.input)
        return document
    account = target.rule_arn.split(":")[4]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": iso(utc_now()).split(".")[0] + "Z",
        "region": region,
        "resources": [target.rule_arn],
        "detail": {},
    }


class ScheduleLoop:
    """A schedule rule's invocations, every `period_seconds` (the first one period after the start)."""

    def __init__(
        self, invoker: AsyncInvoker, target: ScheduleTarget, period_seconds: float, region: str
    ) -> None:
        self._invoker = invoker
        self._target = target
        self._period_seconds = period_seconds
        self._region = region

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._period_seconds):
            self._invoker.deliver(scheduled_event(self._target, self._region))
