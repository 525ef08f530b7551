"""ctx.obj of every command: where to look, the clock, the user, one AWS session and one console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console

from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import utc_now
from batchgate.ops.stack_outputs import AwsSession, Target

if TYPE_CHECKING:
    import boto3

# Columns of the console when the output is piped (make, CI logs): wide enough for a job's lines.
PIPE_WIDTH = 200


@dataclass
class AppContext:
    """ctx.obj: where to look (from the options) and, once a command needs it, one AWS session.

    `boto_session`: the boto3 session to make the clients with (by default one of the command's own, from
    the profile and region it is given)."""

    target: Target = field(default_factory=Target)
    clock: Callable[[], datetime] = utc_now
    user: str | None = None
    boto_session: boto3.session.Session | None = None
    _session: AwsSession | None = None
    _console: Console | None = None

    @property
    def session(self) -> AwsSession:
        if self._session is None:
            self._session = AwsSession(self.target, self.boto_session)
        return self._session

    def table(self) -> JobTable:
        session = self.session
        return JobTable(session.resource("table_name"), session.client("dynamodb"))

    @property
    def console(self) -> Console:
        if self._console is None:
            console = Console(highlight=False, soft_wrap=False)
            if not console.is_terminal:
                console = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
            self._console = console
        return self._console


def app(ctx: click.Context) -> AppContext:
    return ctx.ensure_object(AppContext)
