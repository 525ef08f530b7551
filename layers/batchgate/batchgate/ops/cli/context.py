"""ctx.obj of every command: where to look, the clock, the user, one AWS session and one console."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, cast

import click
from click.utils import PacifyFlushWrapper
from rich.console import Console

from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import utc_now
from batchgate.ops.cli.render.terminal import TerminalConsole
from batchgate.ops.stack_outputs import AwsSession, Target

if TYPE_CHECKING:
    import boto3

# Columns of the console when the output is piped (make, CI logs): wide enough for a job's lines.
PIPE_WIDTH = 200


class _Console(TerminalConsole):
    def on_broken_pipe(self) -> None:
        """Rich's own answer to a closed pipe is exit 1; the group's is exit 0 (see `silence_stdout`)."""
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def silence_stdout() -> None:
    """After stdout's reader went away (EPIPE, `| head -1`): later writes and flushes, at exit too, go
    nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.stdout = cast(IO[str], PacifyFlushWrapper(sys.stdout))


@dataclass
class AppContext:
    """ctx.obj: where to look (from the options) and, once a command needs it, one AWS session.

    `boto_session`: the boto3 session to make the clients with (by default one of the command's own, from
    the profile and region it is given)."""

    target: Target = field(default_factory=Target)
    clock: Callable[[], datetime] = utc_now
    user: str | None = None
    boto_session: boto3.session.Session | None = None
    # The target options typed on the command line, as typed (`--local`, `--stack NAME`), so that a
    # command printed for the user to run next points at the same stack.
    target_arguments: dict[str, str | None] = field(default_factory=dict)
    _session: AwsSession | None = None
    _console: Console | None = None

    @property
    def session(self) -> AwsSession:
        if self._session is None:
            self._session = AwsSession(self.target, self.boto_session)
        return self._session

    def command_line(self, *words: str) -> str:
        """`batchgate WORDS... <the target options given>`, quoted for a POSIX shell."""
        arguments = [*words]
        for option, value in self.target_arguments.items():
            arguments.append(option)
            if value is not None:
                arguments.append(value)
        return " ".join(["batchgate", *(shlex.quote(argument) for argument in arguments)])

    def table(self) -> JobTable:
        session = self.session
        return JobTable(session.resource("table_name"), session.client("dynamodb"))

    @property
    def console(self) -> Console:
        if self._console is None:
            console = _Console(highlight=False, soft_wrap=False)
            if not console.is_terminal:
                console = _Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
            self._console = console
        return self._console


def app(ctx: click.Context) -> AppContext:
    return ctx.ensure_object(AppContext)


class _Stderr:
    """sys.stderr as it is when a line is written (a test runner swaps it per command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def service_logs_to_stderr() -> Iterator[None]:
    """While a command runs a service (batchgate.services, e.g. cancel): its Powertools log lines go to
    stderr. Powertools writes to stdout, which in a Lambda function is its log; in the CLI stdout is the
    command's result (`--json` must parse). The Lambda functions' logging is left as it is."""
    from batchgate.adapters.telemetry import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(_Stderr())
    try:
        yield
    finally:
        if previous is not None:
            handler.setStream(previous)
