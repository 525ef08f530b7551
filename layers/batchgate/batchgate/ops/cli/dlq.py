"""`batchgate dlq list` and `batchgate dlq redrive`: the jobs, track and history dead-letter queues."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import click

from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import ExitCode
from batchgate.ops.cli.options import CONTEXT_SETTINGS, MAX_LIMIT, json_option, reveal_environment_option
from batchgate.ops.cli.render.dlq import (
    dead_letters_document,
    echo_redrive_before_error,
    redrive_document,
    render_dead_letters,
    render_redrive,
)
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.target import target_options
from batchgate.ops.dead_letters import (
    HISTORY,
    JOBS,
    QUEUES,
    TRACK,
    DeadLetter,
    DeadLetterQueue,
    DeadLetters,
    RedriveResult,
    RedriveStopped,
)
from batchgate.ops.stack_outputs import AwsSession

QUEUE_CHOICE = click.Choice([*QUEUES, "all"], case_sensitive=False)
QUEUE_RESOURCES = {JOBS: "jobs_dlq_url", TRACK: "track_dlq_url", HISTORY: "history_dlq_url"}


@click.group(context_settings=CONTEXT_SETTINGS)
def dlq() -> None:
    """The dead-letter queues: submit messages dispatch could not handle (jobs), task events the
    track function failed on (track), and batches of the job table's stream the history function
    failed on (history)."""


def _queues(ctx: click.Context, which: str, *, redrive: bool = False) -> list[DeadLetterQueue]:
    session = app(ctx).session
    if which != "all":
        return [DeadLetterQueue(which, session.resource(QUEUE_RESOURCES[which]))]
    queues = [DeadLetterQueue(name, session.resource(QUEUE_RESOURCES[name])) for name in (JOBS, TRACK)]
    # A stack deployed before the history function has no history queue: "all" is then the other two.
    history_url = session.optional_resource(QUEUE_RESOURCES[HISTORY])
    if history_url and not (redrive and _local_without_history_function(session)):
        queues.append(DeadLetterQueue(HISTORY, history_url))
    return queues


def _local_without_history_function(session: AwsSession) -> bool:
    """The local stack: no Lambda Invoke for the history function, and its host reads the table's stream
    itself, so the history DLQ has nowhere to go (`redrive --queue all` leaves it, and says so)."""
    return bool(session.optional_resource("track_event_queue_url")) and not session.optional_resource(
        "history_function"
    )


@dlq.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--queue", "which", type=QUEUE_CHOICE, default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, help="Per queue.")
@reveal_environment_option
@json_option
@target_options(hidden=True)
@click.pass_context
def dlq_list(ctx: click.Context, *, which: str, limit: int, reveal_environment: bool, as_json: bool) -> None:
    """Show the messages in the dead-letter queues (a peek: they stay in the queue). With --json, each
    message's body, environment values masked unless --reveal-env."""
    state = app(ctx)
    letters_client = DeadLetters(state.session.client("sqs"))
    found: dict[str, list[DeadLetter]] = {}
    depth: dict[str, int] = {}
    for queue in _queues(ctx, which.lower()):
        depth[queue.name] = letters_client.depth(queue)
        found[queue.name] = letters_client.peek(queue, limit)
    if as_json:
        print_json(dead_letters_document(found, depth, reveal_environment=reveal_environment))
        return
    render_dead_letters(state.console, found, depth)


def _redrive_move(session: AwsSession, queue: DeadLetterQueue, limit: int) -> Callable[[], RedriveResult]:
    """The redrive of one queue, its destination resolved now (raises ConfigurationError)."""
    if queue.name == JOBS:
        letters = DeadLetters(session.client("sqs"))
        return partial(letters.redrive_to_queue, queue, session.resource("queue_url"), limit)
    if queue.name == TRACK:
        # The local stack serves no Lambda Invoke: its track host reads events from a local queue.
        local_events = session.optional_resource("track_event_queue_url")
        if local_events and not session.optional_resource("track_function"):
            letters = DeadLetters(session.client("sqs"))
            return partial(letters.redrive_to_event_queue, queue, local_events, limit)
        letters = DeadLetters(session.client("sqs"), session.client("lambda"))
        return partial(letters.redrive_to_function, queue, session.resource("track_function"), limit)
    letters = DeadLetters(
        session.client("sqs"),
        session.client("lambda"),
        session.client("dynamodbstreams"),
        region=session.region,
    )
    return partial(letters.redrive_to_stream_function, queue, session.resource("history_function"), limit)


@dlq.command("redrive", context_settings=CONTEXT_SETTINGS)
@click.option("--queue", "which", type=QUEUE_CHOICE, default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Per queue.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@target_options(hidden=True)
@click.pass_context
def dlq_redrive(ctx: click.Context, *, which: str, limit: int, yes: bool, as_json: bool) -> None:
    """Send dead letters back: submit messages to the jobs queue, task events to the track function,
    the stream records a history message names to the history function.

    A message is deleted from the dead-letter queue only after it was sent, so a failure can repeat a
    message but never lose one (dispatch and track both ignore repeats). History records are read from
    the job table's stream, which keeps them 24 hours; a message whose records have left it stays.
    """
    state = app(ctx)
    session = state.session
    queues = _queues(ctx, which.lower(), redrive=True)
    if which.lower() == "all" and _local_without_history_function(session):
        click.echo(
            "history DLQ: left out (the local stack cannot invoke the history function; its messages stay)",
            err=True,
        )
    # Every destination is resolved before any message moves: a configuration error moves nothing.
    moves = [_redrive_move(session, queue, limit) for queue in queues]
    where = {JOBS: "the jobs queue", TRACK: "the track function", HISTORY: "the history function"}
    if session.optional_resource("track_event_queue_url") and not session.optional_resource("track_function"):
        where[TRACK] = "the local track host's event queue"
    if not yes:
        names = " and ".join(f"{queue.name} DLQ -> {where[queue.name]}" for queue in queues)
        click.confirm(f"Redrive up to {limit} messages per queue ({names})?", abort=True, err=True)
    results: list[RedriveResult] = []
    try:
        for move in moves:
            results.append(move())
    except RedriveStopped as stopped:
        results.append(stopped.result)
        echo_redrive_before_error(results)
        raise stopped.error from stopped
    if as_json:
        print_json(redrive_document(results))
    else:
        render_redrive(state.console, results)
    if any(result.failed for result in results):
        ctx.exit(ExitCode.FAILED)
