"""Lines of output into one CloudWatch Logs stream, as the awslogs driver (tasks) and Lambda (functions)
write them."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import InputLogEventTypeDef

# PutLogEvents takes at most 10,000 events and about 1 MB per call.
MAX_EVENTS_PER_CALL = 1000
MAX_MESSAGE_CHARACTERS = 200_000


class LogShipper:
    """Buffers one stream's lines with their time of arrival; `flush` writes them. Thread-safe: a
    process's output reader writes while its owner flushes."""

    def __init__(self, logs: CloudWatchLogsClient, group: str, stream: str) -> None:
        self.group = group
        self.stream = stream
        self._logs = logs
        self._pending: list[InputLogEventTypeDef] = []
        self._lock = threading.Lock()
        self._opened = False
        self._warned = False

    def open(self) -> None:
        """Create the stream (and its group, as awslogs-create-group would, if it is missing)."""
        try:
            self._create_stream()
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise
            self._logs.create_log_group(logGroupName=self.group)
            self._create_stream()
        self._opened = True

    def write(self, line: str) -> None:
        message = line.rstrip("\r\n")[:MAX_MESSAGE_CHARACTERS]
        if not message:
            return  # CloudWatch Logs refuses empty messages
        with self._lock:
            self._pending.append({"timestamp": int(time.time() * 1000), "message": message})

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending or not self._opened:
            return
        try:
            for start in range(0, len(pending), MAX_EVENTS_PER_CALL):
                self._logs.put_log_events(
                    logGroupName=self.group,
                    logStreamName=self.stream,
                    logEvents=pending[start : start + MAX_EVENTS_PER_CALL],
                )
        except (ClientError, BotoCoreError) as error:
            # Losing log lines must never stop a task or a function; say so once.
            if not self._warned:
                self._warned = True
                print(
                    f"batchgate local: could not write to {self.group} {self.stream}: {error}",
                    file=sys.stderr,
                )

    def _create_stream(self) -> None:
        try:
            self._logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as error:
            if _code(error) != "ResourceAlreadyExistsException":
                raise


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
