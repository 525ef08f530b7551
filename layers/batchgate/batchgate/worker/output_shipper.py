"""A child's output (stdout and stderr merged) to its attempt's own log stream.

One thread per running job reads the pipe, cuts it into lines (invalid UTF-8 replaced, lines longer
than an event cut into several), and puts them with PutLogEvents at least every `flush_seconds` and at
the end, so that `batchgate logs JOB` shows exactly the job's lines. Empty lines are left out, as the
awslogs driver does (CloudWatch Logs takes no empty event).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.log_streams import LogLine, LogStreamWriter, within_event_limit

log = logging.getLogger("batchgate.worker")

READ_BYTES = 65_536
# Output kept while the stream cannot be written (throttling, an outage), then dropped with a note.
MAX_PENDING_LINES = 50_000


def epoch_milliseconds() -> int:
    return time.time_ns() // 1_000_000


class OutputShipper:
    def __init__(
        self,
        writer: LogStreamWriter,
        group: str,
        stream: str,
        read_fd: int,
        *,
        flush_seconds: float = 1.0,
        clock_ms: Callable[[], int] = epoch_milliseconds,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = group
        self.stream = stream
        self._writer = writer
        self._fd = read_fd
        self._flush_seconds = flush_seconds
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._partial = b""
        self._pending: list[LogLine] = []
        self._dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"output {stream}", daemon=True)

    def start(self) -> None:
        try:
            self._writer.create_stream(self.group, self.stream)
        except (ClientError, BotoCoreError) as error:
            log.error(
                "cannot create the attempt's log stream", extra={"stream": self.stream, "error": str(error)}
            )
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """Wait up to `timeout` for the end of the output (a child's leftovers may hold the pipe
        open), then put what is left."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last_flush = self._monotonic()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self._fd], [], [], self._flush_seconds / 4)
                if ready:
                    chunk = os.read(self._fd, READ_BYTES)
                    if not chunk:
                        break
                    self._take(chunk)
                if self._monotonic() - last_flush >= self._flush_seconds:
                    self._flush()
                    last_flush = self._monotonic()
        finally:
            if self._partial:
                self._add(self._partial)
                self._partial = b""
            self._flush()
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _take(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._add(line)
        if len(self._partial) > READ_BYTES * 4:  # a very long line: ship it in pieces as it comes
            self._add(self._partial)
            self._partial = b""

    def _add(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        if not text:
            return
        now = self._clock_ms()
        if len(self._pending) >= MAX_PENDING_LINES:
            self._dropped += 1
            return
        self._pending.extend(LogLine(now, piece) for piece in within_event_limit(text))

    def _flush(self) -> None:
        if self._dropped:
            note = f"[batchgate: {self._dropped} lines dropped: the log stream could not be written]"
            self._pending.append(LogLine(self._clock_ms(), note))
            self._dropped = 0
        if not self._pending:
            return
        try:
            self._writer.put(self.group, self.stream, self._pending)
        except (ClientError, BotoCoreError) as error:
            log.warning("PutLogEvents failed; kept for the next flush", extra={"error": str(error)})
            return
        self._pending = []
