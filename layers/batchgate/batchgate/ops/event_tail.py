"""Tailing job state change events (`batchgate events`): read from the tap queue the template's
JobEventsTapRule fills (JobEventsTap=true; the local stack always has it), or the messages of the
local notification topic.

A queue is not a broadcast: each message goes to one reader, which deletes it once handed on, so one
ops tail at a time. EventBridge does not promise order: events are shown as they arrive, with each
job's revision, and a repeat (the same `event_id`, delivered twice) is shown once per tail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchgate.ops.terminal import terminal_text

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

RECEIVE_LIMIT = 10
LONG_POLL_SECONDS = 20
# How many event ids a tail remembers to show a redelivered event once.
SEEN_LIMIT = 10_000


@dataclass(frozen=True)
class EventFilter:
    batch: str | None = None
    tenant: str | None = None
    job_id: str | None = None

    def keeps(self, detail: dict[str, Any]) -> bool:
        return (
            (self.batch is None or detail.get("batch") == self.batch)
            and (self.tenant is None or detail.get("tenant") == self.tenant)
            and (self.job_id is None or detail.get("job_id") == self.job_id)
        )


@dataclass
class QueueTail:
    """The messages of one queue, oldest available first, each deleted once read."""

    sqs: SQSClient
    queue_url: str
    last_received: int = 0  # messages the last receive took off the queue, shown or not
    _seen: dict[str, None] = field(default_factory=dict)

    def receive(self, wait_seconds: int) -> list[str]:
        """One ReceiveMessage (long polling up to `wait_seconds`): the bodies, deleted from the queue."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=RECEIVE_LIMIT, WaitTimeSeconds=wait_seconds
        )
        messages = response.get("Messages", [])
        self.last_received = len(messages)
        if messages:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(messages)
                ],
            )
        return [message["Body"] for message in messages]

    def events(self, wait_seconds: int, event_filter: EventFilter) -> Iterator[dict[str, Any]]:
        """The job events of one receive that pass the filter, each event id once per tail."""
        for body in self.receive(wait_seconds):
            event = job_event_of(body)
            if event is None:
                continue
            detail = event["detail"]
            event_id = str(detail.get("event_id"))
            if event_id in self._seen or not event_filter.keeps(detail):
                continue
            self._seen[event_id] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.pop(next(iter(self._seen)))
            yield event


def job_event_of(body: str) -> dict[str, Any] | None:
    """The EventBridge event a tap message holds; None for anything else."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("detail"), dict):
        return None
    return event


def notification_text(body: str) -> str:
    """A notification as its topic published it, safe for a terminal: text (a JSON string when the
    transformer's quoted template reached the queue as JSON)."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return terminal_text(body)
    return terminal_text(decoded if isinstance(decoded, str) else body)


def event_line(event: dict[str, Any]) -> str:
    """One event in a line: when, job, batch, tenant, the change, attempt, and why; safe for a terminal
    (a reason from ECS or a task is shown, never obeyed: batchgate.ops.terminal)."""
    detail = event["detail"]
    times = detail.get("times") or {}
    change = f"{detail.get('previous_status') or 'new'} -> {detail.get('status')}"
    parts = [
        str(times.get("updated") or event.get("time") or "-"),
        str(detail.get("job_id")),
        str(detail.get("batch")),
        f"tenant {detail['tenant']}" if detail.get("tenant") else "no tenant",
        change,
        f"attempt {detail.get('attempt')}",
    ]
    if detail.get("exit_code") is not None:
        parts.append(f"exit {detail['exit_code']}")
    if detail.get("reason"):
        parts.append(f"- {detail['reason']}")
    return terminal_text("  ".join(parts))
