"""The CloudWatch Logs adapter: a task's log stream, read once, filtered, or followed until its job ends.

The job table records where each attempt's container writes (the awslogs log group and stream); this
module only reads them. A missing group or stream (ResourceNotFoundException) becomes `LogsUnavailable`
with an explanation: the task may never have started its container, or the log group's retention may
have deleted the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batchgate.domain.jobs import Attempt, Job, iso
from batchgate.domain.warm import WARM

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient

DEFAULT_POLL_SECONDS = 2.0
# get_log_events returns at most 10,000 events or 1 MB per call.
PAGE_LIMIT = 10_000


class LogsUnavailable(Exception):
    """The job has no logs to show; the message says why."""


@dataclass(frozen=True)
class LogEvent:
    timestamp: int  # epoch milliseconds, as CloudWatch Logs gives it
    message: str

    @property
    def at(self) -> str:
        return iso(datetime.fromtimestamp(self.timestamp / 1000, tz=UTC))

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": self.at, "message": self.message}


@dataclass(frozen=True)
class LogLocation:
    group: str
    stream: str


def location_of(job: Job, attempt_number: int | None = None) -> tuple[Attempt, LogLocation]:
    """The attempt (the latest unless `attempt_number` is given) and where its logs are."""
    if attempt_number is None:
        attempt = job.attempt
        if attempt is None:
            raise LogsUnavailable(
                f"job {job.job_id} has no attempt yet (status {job.status.value}): nothing has run"
            )
    else:
        attempt = job.attempt_by_number(attempt_number)
        if attempt is None:
            raise LogsUnavailable(
                f"job {job.job_id} has no attempt {attempt_number} (it has {len(job.attempts)})"
            )
    if (not attempt.log_group or not attempt.log_stream) and attempt.strategy == WARM:
        claimed = "no worker claimed it" if attempt.last_status else "no worker has claimed it yet"
        raise LogsUnavailable(
            f"no log location recorded for attempt {attempt.number} of {job.job_id}: it was offered to "
            f"warm pool {attempt.capacity_provider} and {claimed} (a worker's claim records its stream)"
        )
    if not attempt.log_group or not attempt.log_stream:
        raise LogsUnavailable(
            f"no log location recorded for attempt {attempt.number} of {job.job_id}: its task has not "
            "reported a state change yet, never started, or its task definition does not use the awslogs "
            "log driver"
        )
    return attempt, LogLocation(attempt.log_group, attempt.log_stream)


def _location_if_known(
    job: Job, attempt_number: int | None, finished: bool
) -> tuple[Attempt, LogLocation] | None:
    """`location_of`, or None while the job may still record it."""
    try:
        return location_of(job, attempt_number)
    except LogsUnavailable:
        if finished:
            raise
        return None


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def _gone(location: LogLocation) -> LogsUnavailable:
    return LogsUnavailable(
        f"log stream {location.stream} in log group {location.group} does not exist: the container may "
        "never have started (so it wrote nothing), or the log group's retention has deleted it"
    )


def pause(seconds: float) -> None:
    """The wait between two reads of a followed stream."""
    time.sleep(seconds)


class TaskLogs:
    """Reads one log stream through get_log_events (or filter_log_events for a pattern)."""

    def __init__(self, client: CloudWatchLogsClient, sleep: Callable[[float], None] | None = None) -> None:
        self._client = client
        self._sleep = sleep

    def page(self, location: LogLocation, token: str | None = None) -> tuple[list[LogEvent], str | None]:
        """One page of events from the head of the stream (or after `token`), and the token for the
        next read. Raises LogsUnavailable when the group or stream does not exist."""
        request: dict[str, Any] = {
            "logGroupName": location.group,
            "logStreamName": location.stream,
            "startFromHead": True,
            "limit": PAGE_LIMIT,
        }
        if token:
            request["nextToken"] = token
        try:
            response = self._client.get_log_events(**request)
        except ClientError as error:
            if _missing(error):
                raise _gone(location) from error
            raise
        events = [
            LogEvent(int(event.get("timestamp", 0)), str(event.get("message", "")))
            for event in response.get("events", [])
        ]
        return events, response.get("nextForwardToken") or token

    def read(self, location: LogLocation, token: str | None = None) -> Iterator[LogEvent]:
        """Every event now in the stream (after `token`), oldest first."""
        for events, _ in self._pages(location, token):
            yield from events

    def _pages(self, location: LogLocation, token: str | None) -> Iterator[tuple[list[LogEvent], str | None]]:
        # The end of the stream is the forward token coming back unchanged. An empty page is not the
        # end: GetLogEvents reads a time range per call, so a quiet stretch of the stream gives empty
        # pages with new tokens before the later events.
        while True:
            events, next_token = self.page(location, token)
            yield events, next_token
            if next_token == token:
                return
            token = next_token

    def grep(self, location: LogLocation, pattern: str) -> Iterator[LogEvent]:
        """Events matching a CloudWatch Logs filter pattern, oldest first."""
        pages = self._client.get_paginator("filter_log_events").paginate(
            logGroupName=location.group, logStreamNames=[location.stream], filterPattern=pattern
        )
        try:
            for response in pages:
                for event in response.get("events", []):
                    yield LogEvent(int(event.get("timestamp", 0)), str(event.get("message", "")))
        except ClientError as error:
            if _missing(error):
                raise _gone(location) from error
            raise

    def follow(
        self,
        load_job: Callable[[], Job | None],
        attempt_number: int | None = None,
        interval: float = DEFAULT_POLL_SECONDS,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> Iterator[LogEvent]:
        """The attempt's events as they arrive, until its job is terminal (then a last read).

        Without `attempt_number` it follows the job's latest attempt, moving on to a new attempt when one
        starts (`on_attempt` is told). While the job is not terminal it waits for the log location to be
        recorded and for the stream to appear; raises LogsUnavailable if the job ends without either.
        """
        token: str | None = None
        location: LogLocation | None = None
        followed: int | None = None
        while True:
            job = load_job()
            if job is None:
                raise LogsUnavailable("the job disappeared from the table while following its logs")
            finished = job.status.is_terminal
            latest = job.attempt.number if job.attempt else None
            if attempt_number is None and followed is not None and latest != followed:
                location, token, followed = None, None, None
            if location is None:
                located = _location_if_known(job, attempt_number, finished)
                if located is not None:
                    attempt, location = located
                    followed = attempt.number
                    if on_attempt is not None:
                        on_attempt(attempt)
            if location is not None:
                try:
                    for events, next_token in self._pages(location, token):
                        yield from events
                        token = next_token
                except LogsUnavailable:
                    if finished:
                        raise
            if finished:
                return
            (self._sleep or pause)(interval)
