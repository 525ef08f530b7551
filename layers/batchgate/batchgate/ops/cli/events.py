"""`batchgate events`: job state change events as they happen, from the job events tap queue (or the
local stack's notifications)."""

from __future__ import annotations

import json
import time

import click

from batchgate.ops.cli.context import app
from batchgate.ops.cli.options import CONTEXT_SETTINGS, batch_value, job_id_value, json_option, tenant_value
from batchgate.ops.cli.target import target_options
from batchgate.ops.event_tail import LONG_POLL_SECONDS, EventFilter, QueueTail, event_line, notification_text


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for events (until Ctrl-C or --for).")
@click.option(
    "--for",
    "for_seconds",
    type=click.FloatRange(min=0),
    help="With --follow: stop after this many seconds.",
)
@click.option("--batch", callback=batch_value, help="Only this batch's events.")
@click.option("--tenant", callback=tenant_value, help="Only this tenant's events.")
@click.option("--job", "job_id", callback=job_id_value, help="Only this job's events.")
@click.option(
    "--notifications",
    is_flag=True,
    help="The local stack's notification topic instead: the text of each FAILED, TIMED_OUT, REJECTED job.",
)
@click.option(
    "--events-queue-url", help="The tap queue (default: the stack output JobEventsTapQueueUrl, or --local's)."
)
@json_option(help="One event per line as EventBridge delivered it.")
@target_options(hidden=True)
@click.pass_context
def events(
    ctx: click.Context,
    *,
    follow: bool,
    for_seconds: float | None,
    batch: str | None,
    tenant: str | None,
    job_id: str | None,
    notifications: bool,
    events_queue_url: str | None,
    as_json: bool,
) -> None:
    """Job state change events (what a rule on the job event bus gets), oldest first, each read once:
    what the tap queue holds now, or, with --follow, as they come.

    The tap is a queue: events shown are taken off it, so run one tail at a time. Deploy with
    JobEventsTap=true for it; the local stack always has it.
    """
    state = app(ctx)
    session = state.session
    if notifications:
        queue_url = session.resource("notification_queue_url")
    else:
        queue_url = events_queue_url or session.resource("events_queue_url")
    tail = QueueTail(session.client("sqs"), queue_url)
    event_filter = EventFilter(batch=batch, tenant=tenant, job_id=job_id)
    deadline = None if for_seconds is None else time.monotonic() + for_seconds
    while True:
        remaining = LONG_POLL_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
        wait = min(LONG_POLL_SECONDS, int(remaining)) if follow else 1
        shown = (
            _show_notifications(tail, wait)
            if notifications
            else _show_events(tail, wait, event_filter, as_json)
        )
        if not follow and not shown:
            return
        if follow and deadline is not None and time.monotonic() >= deadline:
            return


def _show_events(tail: QueueTail, wait: int, event_filter: EventFilter, as_json: bool) -> bool:
    """Print the events of one receive; False when the queue had nothing."""
    received = False
    for event in tail.events(wait, event_filter):
        received = True
        click.echo(json.dumps(event, separators=(",", ":")) if as_json else event_line(event))
    return received or tail.last_received > 0


def _show_notifications(tail: QueueTail, wait: int) -> bool:
    bodies = tail.receive(wait)
    for body in bodies:
        click.echo(notification_text(body))
    return bool(bodies)
