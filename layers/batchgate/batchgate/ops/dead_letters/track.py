"""The track DLQ: ECS task state change events that EventBridge could not deliver to the track function,
and on-failure records of events the function failed on after its asynchronous retries. Their source is
the function, not a queue, so redrive invokes the track function again (asynchronously) with each
event. Track tolerates repeats.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from batchgate.ops.dead_letters.messages import (
    DeadLetterMessages,
    DeadLetterQueue,
    RedriveResult,
    summarize_json_message,
)

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

TRACK = "track"


def task_event_of(body: str) -> tuple[str, dict[str, Any]]:
    """The task state change event a track dead letter carries, and any error recorded with it.

    Two shapes land in the track DLQ: the event itself (EventBridge could not invoke the function; the
    error is in the message attributes), and a Lambda on-failure destination record (the function
    failed on every retry) holding the event as `requestPayload` and the error as `responsePayload`.
    Returns the event as JSON text (the body unchanged when it is not a destination record).
    """
    try:
        document = json.loads(body)
    except ValueError:
        return body, {}
    if not isinstance(document, dict) or "requestPayload" not in document:
        return body, {}
    error: dict[str, Any] = {}
    response = document.get("responsePayload")
    if isinstance(response, dict):
        for key in ("errorType", "errorMessage"):
            if response.get(key):
                error[key] = response[key]
    context = document.get("requestContext")
    if isinstance(context, dict):
        for key in ("condition", "approximateInvokeCount"):
            if context.get(key) is not None:
                error[key] = context[key]
    return json.dumps(document["requestPayload"]), error


def summarize_track_letter(message_id: str, body: str, attributes: dict[str, str]) -> dict[str, Any]:
    """The task and job of the event a track dead letter carries, and the error Lambda or EventBridge
    recorded."""
    event_text, error = task_event_of(body)
    return summarize_json_message(message_id, event_text, error, attributes)


def redrive_to_function(
    messages: DeadLetterMessages,
    lambda_client: LambdaClient,
    queue: DeadLetterQueue,
    *,
    function_name: str,
    limit: int,
) -> RedriveResult:
    """Invoke `function_name` (the track function) asynchronously with each event, up to `limit`."""

    def send(message: dict[str, Any]) -> None:
        event, _ = task_event_of(str(message.get("Body", "")))
        lambda_client.invoke(FunctionName=function_name, InvocationType="Event", Payload=event.encode())

    return messages.redrive(queue, function_name, limit, send)


def redrive_to_event_queue(
    messages: DeadLetterMessages, queue: DeadLetterQueue, *, queue_url: str, limit: int
) -> RedriveResult:
    """Send each event, up to `limit`, to `queue_url`: on the local stack, the queue EventBridge delivers
    task events to and the track function's host reads (with Lambda's asynchronous retries and
    on-failure destination), since the local stack serves no Lambda Invoke."""

    def send(message: dict[str, Any]) -> None:
        event, _ = task_event_of(str(message.get("Body", "")))
        messages.send_copy(queue_url, event, {"MessageId": message["MessageId"]})

    return messages.redrive(queue, queue_url, limit, send)
