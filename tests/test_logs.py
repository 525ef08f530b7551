"""logs: a stream read to its end through GetLogEvents' forward tokens, also past empty pages."""

from __future__ import annotations

from typing import Any

import boto3
from batchgate.domain.jobs import Job, JobStatus
from batchgate.ops.logs import LogLocation, TaskLogs
from botocore.stub import Stubber

from tests.cli_support import LOG_GROUP, listed_job
from tests.conftest import REGION

STREAM = "batch/payroll/44cc07f1a1317b70b0e574bacf7ac73d"
LOCATION = LogLocation(LOG_GROUP, STREAM)
# GetLogEvents as AWS documents it: it reads the stream a time range per call, so a quiet stretch
# gives empty pages whose forward token still moves on; the end is the token coming back unchanged.
PAGES: list[tuple[str | None, list[dict[str, Any]], str]] = [
    (None, [{"timestamp": 1_000, "message": "starting payroll"}], "f/1"),
    ("f/1", [], "f/2"),
    ("f/2", [], "f/3"),
    ("f/3", [{"timestamp": 2_400_000, "message": "ERROR: out of memory in step 7"}], "f/4"),
    ("f/4", [], "f/4"),
]


def stubbed_logs() -> tuple[Any, Stubber]:
    client = boto3.client("logs", region_name=REGION)
    stubber = Stubber(client)
    for token, events, forward in PAGES:
        expected: dict[str, Any] = {
            "logGroupName": LOG_GROUP,
            "logStreamName": STREAM,
            "startFromHead": True,
            "limit": 10_000,
        }
        if token is not None:
            expected["nextToken"] = token
        response = {"events": events, "nextForwardToken": forward, "nextBackwardToken": "b/0"}
        stubber.add_response("get_log_events", response, expected)
    return client, stubber


def test_read_goes_on_past_empty_pages_to_the_end_of_the_stream() -> None:
    client, stubber = stubbed_logs()
    with stubber:
        messages = [event.message for event in TaskLogs(client).read(LOCATION)]
        stubber.assert_no_pending_responses()
    assert messages == ["starting payroll", "ERROR: out of memory in step 7"]


def test_follow_reads_an_ended_job_past_empty_pages() -> None:
    listed = listed_job(1, JobStatus.FAILED)
    assert listed.attempt is not None
    job: Job = listed._replace(attempts=(listed.attempt._replace(log_group=LOG_GROUP, log_stream=STREAM),))
    client, stubber = stubbed_logs()
    with stubber:
        followed = TaskLogs(client, sleep=lambda _seconds: None).follow(lambda: job)
        messages = [event.message for event in followed]
        stubber.assert_no_pending_responses()
    assert messages == ["starting payroll", "ERROR: out of memory in step 7"]
