"""The jobs DLQ: submit messages (and batchgate's relaunch messages) that dispatch could not handle
`maxReceiveCount` times. Redrive sends them back to the jobs queue.

A submit message without an idempotency key gets its original SQS message id as key when it is sent
back: its job id stays the one dispatch already derived from that message id, so the redriven message
continues the same job instead of starting a second one. Dispatch tolerates repeats.
"""

from __future__ import annotations

import json
from typing import Any

from batchgate.domain.relaunch import KIND_ATTRIBUTE, RETRY_KIND, InvalidRelaunchMessage, Relaunch
from batchgate.ops.dead_letters.messages import (
    DeadLetterMessages,
    DeadLetterQueue,
    RedriveResult,
    attribute_errors,
    summarize_json_message,
)

JOBS = "jobs"


def summarize_jobs_letter(message_id: str, body: str, attributes: dict[str, str]) -> dict[str, Any]:
    """The batch and job of a submit message, or the job and attempt of a relaunch message, and the
    error recorded with it."""
    if attributes.get(KIND_ATTRIBUTE) == RETRY_KIND:
        return _summarize_relaunch(body, attributes)
    return summarize_json_message(message_id, body, {}, attributes)


def _summarize_relaunch(body: str, attributes: dict[str, str]) -> dict[str, Any]:
    """batchgate's own message that launches a job's attempt again (a retry or a lost launch)."""
    summary: dict[str, Any] = {"kind": "relaunch"}
    try:
        relaunch = Relaunch.parse(body)
    except InvalidRelaunchMessage as wrong:
        summary["job_id"] = None
        summary["note"] = f"marked {KIND_ATTRIBUTE}={RETRY_KIND} but not a relaunch batchgate wrote: {wrong}"
    else:
        summary["job_id"] = relaunch.job_id
        summary["attempt"] = relaunch.attempt
    error = attribute_errors(attributes)
    if error:
        summary["error"] = error
    return summary


def redrive_to_queue(
    messages: DeadLetterMessages, queue: DeadLetterQueue, destination_url: str, limit: int
) -> RedriveResult:
    """Move up to `limit` messages back to `destination_url` (the jobs queue)."""

    def send(message: dict[str, Any]) -> None:
        body = _keep_job_identity(str(message.get("Body", "")), str(message["MessageId"]))
        messages.send_copy(destination_url, body, message)

    return messages.redrive(queue, destination_url, limit, send)


def _keep_job_identity(body: str, message_id: str) -> str:
    """The submit message with its original message id as idempotency key when it had none, so that the
    job id (batch + key, else message id) does not change with the new message id."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict) or "batch" not in document or document.get("idempotency_key"):
        return body
    return json.dumps({**document, "idempotency_key": message_id}, separators=(",", ":"))
