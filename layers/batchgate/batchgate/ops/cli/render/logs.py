"""`batchgate logs`: each log event as a line of text (its control characters escaped, newline and tab
kept: a log event may span lines), or as one JSON object a line (exact)."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from batchgate.domain.jobs import Attempt
from batchgate.ops.logs import LogEvent
from batchgate.ops.terminal import terminal_text


def event_printer(as_json: bool) -> Callable[[LogEvent], None]:
    def emit(event: LogEvent) -> None:
        if as_json:
            click.echo(json.dumps(event.to_dict()))
        else:
            click.echo(f"{event.at} {terminal_text(event.message, lines=True)}")

    return emit


def attempt_announcer(as_json: bool) -> Callable[[Attempt], None]:
    """With --follow: on stderr, the log location of each attempt as its lines start (not with --json)."""

    def announce(attempt: Attempt) -> None:
        if not as_json:
            where = terminal_text(f"{attempt.log_group} {attempt.log_stream}")
            click.echo(f"--- attempt {attempt.number}: {where}", err=True)

    return announce
