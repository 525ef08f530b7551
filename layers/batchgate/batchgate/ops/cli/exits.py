"""The CLI's exit codes and the errors that end a command with one of them.

0 ok; 1 the job was not found, ended without success (show, logs --follow), or the action was refused
for its state (cancel, retry); 2 usage or configuration (bad option, unknown stack, missing resource);
3 an AWS call failed (credentials, permissions, throttling, endpoint unreachable); 130 interrupted
(Ctrl-C). A closed pipe (`| head`) is not an error: 0.
"""

from __future__ import annotations

from enum import IntEnum

import click

from batchgate.domain.jobs import JobStatus
from batchgate.ops.terminal import terminal_text


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # job not found, ended without success, or action refused
    USAGE = 2
    AWS_ERROR = 3
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


# A job in one of these statuses ended without success: `show` and `logs --follow` exit 1 on it.
UNSUCCESSFUL = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.REJECTED, JobStatus.CANCELLED})


class _Error(click.ClickException):
    """An error whose message may quote data (a job id, a reason, an AWS error message): printed with
    its control characters escaped."""

    def format_message(self) -> str:
        return terminal_text(self.message)


class Failure(_Error):
    """Exit 1: job not found, job failed, action refused."""

    exit_code = ExitCode.FAILED


class ConfigError(_Error):
    """Exit 2: which stack or resource to use is unclear or wrong."""

    exit_code = ExitCode.USAGE


class AwsFailure(_Error):
    """Exit 3: an AWS call failed."""

    exit_code = ExitCode.AWS_ERROR
