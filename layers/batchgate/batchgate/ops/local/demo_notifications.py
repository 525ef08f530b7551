"""The demo's job events and notification step: the FAILED demo job's state changes as they reached
the local bus (read from the events tap, as `batchgate --local events` does), and the readable message
the template's notification rule sent the local topic for it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console

from batchgate.ops.event_tail import EventFilter, QueueTail, event_line, notification_text

if TYPE_CHECKING:
    from batchgate.domain.jobs import Job
    from batchgate.ops.local.stack import LocalStack

WAIT_SECONDS = 15.0  # the job events function reads the job table's stream a moment after the end
RECEIVE_SECONDS = 1


def notification_problems(job: Job, text: str) -> list[str]:
    """What the notification of a FAILED job must say and does not."""
    attempt = job.attempt
    expected = {
        "job id": job.job_id,
        "batch": f"of batch {job.batch}",
        "tenant": f"(tenant {job.tenant})",
        "status": "ended FAILED",
        "reason": job.reason or "",
        "show command": f"batchgate show {job.job_id}",
        "logs link": "console.aws.amazon.com/cloudwatch" if attempt and attempt.log_group else "",
    }
    return [
        f"the notification lacks its {name} ({part!r})" for name, part in expected.items() if part not in text
    ]


def show_failed_job_notification(stack: LocalStack, console: Console, job: Job | None) -> list[str]:
    """Print the job's events from the local bus and its notification; the problems found (none when
    both arrived and the notification says what it must)."""
    if job is None:
        return ["no FAILED demo job to show the notification of"]
    state = stack.state()
    events_url, notifications_url = state.get("events_queue_url"), state.get("notification_queue_url")
    if not events_url or not notifications_url:
        return ["the local stack has no events tap (JobEventsTap) or no notification topic"]
    sqs = stack.client_aws().sqs()
    events_tail, notifications_tail = QueueTail(sqs, events_url), QueueTail(sqs, notifications_url)
    events: dict[int, dict[str, Any]] = {}  # by revision: EventBridge does not promise their order
    texts: list[str] = []
    mine: str | None = None
    ended = False
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and not (mine and ended):
        for event in events_tail.events(RECEIVE_SECONDS, EventFilter(job_id=job.job_id)):
            events[int(event["detail"]["revision"])] = event
            ended = ended or event["detail"]["status"] == job.status.value
        texts += [notification_text(body) for body in notifications_tail.receive(0)]
        mine = next((text for text in texts if job.job_id in text), None)
    changes = [event_line(events[revision]) for revision in sorted(events)]
    console.print(
        f"\njob events of {job.job_id} on the local bus (`batchgate --local events --job {job.job_id}`):",
        highlight=False,
    )
    for line in changes:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print(
        f"notification sent to the local topic {state.get('notification_topic_arn')} "
        f"(`batchgate --local events --notifications`; {len(texts)} in all for the demo's jobs that ended "
        "FAILED, TIMED_OUT or REJECTED so far):",
        highlight=False,
    )
    if mine is None:
        return [f"no notification of {job.job_id} reached the local topic in {WAIT_SECONDS:.0f}s"]
    console.print(f"  {mine}", highlight=False, soft_wrap=True)
    problems = notification_problems(job, mine)
    if not ended:
        problems.append(f"no {job.status.value} event of {job.job_id} reached the local bus")
    return problems
