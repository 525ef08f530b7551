"""The sample events in events/ are what `sam local invoke` and the handler tests feed in: they must keep
the shapes AWS documents, and agree with the catalog and with how dispatch names jobs."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain.catalog import load_catalog
from batchgate.domain.jobs import JOB_ID_PREFIX, job_id_for
from batchgate.domain.messages import RejectedMessage, parse_submit_message

EVENTS = Path(__file__).resolve().parent.parent / "events"
ACCOUNT, REGION = "123456789012", "us-east-1"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/batchgate-dev"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:batchgate-dev-JobsQueue"
TASK_ARN = re.compile(rf"^arn:aws:ecs:{REGION}:{ACCOUNT}:task/batchgate-dev/[0-9a-f]{{32}}$")
EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TASK_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PAYROLL_JOB = job_id_for("payroll-calculation", "payroll-2026-11-acme")

HAPPY_PATH = ["task-provisioning.json", "task-pending.json", "task-running.json", "task-stopped-exit-0.json"]
STOPPED = {
    "task-stopped-exit-0.json": ("EssentialContainerExited", 0, "FARGATE"),
    "task-stopped-exit-1.json": ("EssentialContainerExited", 1, "FARGATE"),
    "task-stopped-failed-to-start.json": ("TaskFailedToStart", None, "FARGATE"),
    "task-stopped-spot-interruption.json": ("SpotInterruption", 143, "FARGATE_SPOT"),
}
OUR_TASK_EVENTS = [*HAPPY_PATH[:-1], *STOPPED]
# A warm pool's task (batchgate did not start it: its service did); its STOPPED fails the jobs it ran.
POOL_TASK_STOPPED = "task-pool-stopped.json"
ECS_EVENTS = [*OUR_TASK_EVENTS, "task-not-ours.json", POOL_TASK_STOPPED]
STREAM_SAMPLE = "job-stream-attempt-stopped.json"
STATUS_CHANGE_SAMPLE = "job-stream-status-change.json"
ALL_EVENTS = [
    "sqs-submit-batch.json",
    "sweep-schedule.json",
    STREAM_SAMPLE,
    STATUS_CHANGE_SAMPLE,
    *ECS_EVENTS,
]
# Task timestamps in the order a task passes them (stoppingAt and executionStoppedAt can come either way).
TIMELINE = ["createdAt", "connectivityAt", "pullStartedAt", "pullStoppedAt", "startedAt"]
ENDING = ["stoppingAt", "executionStoppedAt"]

# What dispatch makes of each record of the SQS sample, in order: None = accepted, else the reason.
SQS_OUTCOMES: list[str | None] = [
    None,
    None,
    "message body is not valid JSON",
    "unknown batch 'payroll-calc'",
    "argument 1 ('2026-11; rm -rf /') does not match",
    "schema_version 2 is not supported",
    "unknown field 'image'",
]


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def test_every_fixture_is_listed_and_parses() -> None:
    on_disk = sorted(path.name for path in EVENTS.glob("*.json") if path.name != "env.json")
    assert on_disk == sorted(ALL_EVENTS)
    for name in ALL_EVENTS:
        assert isinstance(load(name), dict), name


def sqs_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = load("sqs-submit-batch.json")["Records"]
    return records


def test_sqs_records_have_the_lambda_event_shape() -> None:
    records = sqs_records()
    assert list(load("sqs-submit-batch.json")) == ["Records"]
    assert len({record["messageId"] for record in records}) == len(records)
    for record in records:
        assert set(record) == {
            "messageId",
            "receiptHandle",
            "body",
            "attributes",
            "messageAttributes",
            "md5OfBody",
            "eventSource",
            "eventSourceARN",
            "awsRegion",
        }
        assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
            "aws:sqs",
            QUEUE_ARN,
            REGION,
        )
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert isinstance(record["body"], str) and isinstance(record["messageAttributes"], dict)
        attributes = record["attributes"]
        assert int(attributes["ApproximateReceiveCount"]) >= 1
        assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])
        assert attributes["SenderId"]


def test_sqs_sample_holds_the_good_and_bad_messages_dispatch_must_handle() -> None:
    catalog = load_catalog()
    records = sqs_records()
    assert len(records) == len(SQS_OUTCOMES)
    for record, expected in zip(records, SQS_OUTCOMES, strict=True):
        if expected is None:
            parse_submit_message(record["body"], catalog)
            continue
        with pytest.raises(RejectedMessage) as raised:
            parse_submit_message(record["body"], catalog)
        assert expected in raised.value.reason
    payroll = parse_submit_message(records[0]["body"], catalog)
    assert job_id_for(payroll.batch, payroll.idempotency_key or "") == PAYROLL_JOB
    assert parse_submit_message(records[1]["body"], catalog).idempotency_key is None


@pytest.mark.parametrize("name", ECS_EVENTS)
def test_ecs_events_have_the_documented_envelope(name: str) -> None:
    event = load(name)
    detail = event["detail"]
    assert (event["version"], event["source"], event["detail-type"]) == (
        "0",
        "aws.ecs",
        "ECS Task State Change",
    )
    assert (event["account"], event["region"]) == (ACCOUNT, REGION)
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", event["id"])
    assert EVENT_TIME.match(event["time"])
    assert event["resources"] == [detail["taskArn"]]
    assert TASK_ARN.match(detail["taskArn"])
    assert detail["clusterArn"] == CLUSTER_ARN
    assert isinstance(detail["version"], int) and detail["version"] >= 1
    assert detail["launchType"] == "FARGATE" and detail["capacityProviderName"] in ("FARGATE", "FARGATE_SPOT")
    for container in detail["containers"]:
        assert container["taskArn"] == detail["taskArn"]
        assert {"containerArn", "lastStatus", "name", "image", "networkInterfaces", "cpu"} <= set(container)


@pytest.mark.parametrize("name", ECS_EVENTS)
def test_task_timestamps_are_iso_and_in_lifecycle_order(name: str) -> None:
    detail = load(name)["detail"]
    known = [field for field in TIMELINE if field in detail]
    assert known == TIMELINE[: len(known)], "a later phase is known without an earlier one"
    moments = {
        field: parse(detail[field])
        for field in [*TIMELINE, *ENDING, "stoppedAt", "updatedAt"]
        if field in detail
    }
    assert all(TASK_TIME.match(detail[field]) for field in moments)
    ordered = [moments[field] for field in known]
    assert ordered == sorted(ordered)
    if "stoppedAt" in detail:
        assert all(ordered[-1] <= moments[field] <= moments["stoppedAt"] for field in ENDING)
    assert moments["updatedAt"] == max(moments.values())


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("name", OUR_TASK_EVENTS)
def test_our_task_events_name_the_job_attempt_and_catalog_task(name: str) -> None:
    detail = load(name)["detail"]
    spec = load_catalog().batches["payroll-calculation"]
    assert detail["startedBy"] == PAYROLL_JOB
    assert detail["group"] == f"family:{spec.task_definition}"
    assert detail["taskDefinitionArn"].startswith(
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{spec.task_definition}:"
    )
    assert (detail["cpu"], detail["memory"]) == (str(spec.cpu), str(spec.memory))
    [override] = detail["overrides"]["containerOverrides"]
    assert override["name"] == spec.container
    assert tuple(override["command"][: len(spec.command)]) == spec.command
    assert spec.argument_problem(override["command"][len(spec.command) :]) is None
    environment = {variable["name"]: variable["value"] for variable in override["environment"]}
    assert environment["BATCHGATE_JOB_ID"] == PAYROLL_JOB
    assert environment["BATCHGATE_ATTEMPT"] == "1"
    assert environment["BATCHGATE_BATCH"] == "payroll-calculation"
    assert [container["name"] for container in detail["containers"]] == [spec.container]


def test_happy_path_is_one_task_with_growing_versions() -> None:
    details = [load(name)["detail"] for name in HAPPY_PATH]
    assert [detail["lastStatus"] for detail in details] == ["PROVISIONING", "PENDING", "RUNNING", "STOPPED"]
    assert [detail["version"] for detail in details] == [1, 2, 3, 5]
    assert len({detail["taskArn"] for detail in details}) == 1
    for earlier, later in pairwise(details):
        # A later event repeats every timestamp the earlier one knew.
        for field in TIMELINE:
            if field in earlier:
                assert later[field] == earlier[field], field
    assert all(detail["desiredStatus"] == "RUNNING" for detail in details[:-1])


@pytest.mark.parametrize("name", [*HAPPY_PATH[:-1], "task-not-ours.json"])
def test_running_phases_carry_no_stop_information(name: str) -> None:
    detail = load(name)["detail"]
    assert not {"stopCode", "stoppedReason", "stoppedAt", "stoppingAt"} & set(detail)
    assert all("exitCode" not in container for container in detail["containers"])


@pytest.mark.parametrize(("name", "expected"), list(STOPPED.items()))
def test_stopped_events_say_how_the_task_ended(name: str, expected: tuple[str, int | None, str]) -> None:
    stop_code, exit_code, capacity_provider = expected
    detail = load(name)["detail"]
    assert (detail["lastStatus"], detail["desiredStatus"]) == ("STOPPED", "STOPPED")
    assert detail["stopCode"] == stop_code and detail["stoppedReason"]
    assert detail["capacityProviderName"] == capacity_provider
    assert "stoppedAt" in detail and "executionStoppedAt" in detail
    [container] = detail["containers"]
    assert container["lastStatus"] == "STOPPED"
    assert container.get("exitCode") == exit_code
    if stop_code == "TaskFailedToStart":
        assert "startedAt" not in detail
        assert detail["stoppedReason"].startswith("CannotPullContainerError: ")
        assert container["reason"].startswith("CannotPullContainerError: ")


def test_the_failed_runs_are_separate_tasks_of_the_same_job() -> None:
    arns = [load(name)["detail"]["taskArn"] for name in [HAPPY_PATH[0], *STOPPED]]
    assert len(set(arns)) == 4  # exit-0 shares the happy path's task; the other three are their own


def test_task_not_ours_was_started_by_someone_else() -> None:
    detail = load("task-not-ours.json")["detail"]
    assert detail["startedBy"] == "ecs-svc/123"
    assert not detail["startedBy"].startswith(JOB_ID_PREFIX)
    assert detail["group"].startswith("service:")
    overrides = detail["overrides"]["containerOverrides"]
    assert all(
        not variable["name"].startswith("BATCHGATE_")
        for override in overrides
        for variable in override.get("environment", [])
    )


def test_sweep_schedule_is_a_scheduled_eventbridge_event() -> None:
    event = load("sweep-schedule.json")
    assert (event["version"], event["source"], event["detail-type"]) == ("0", "aws.events", "Scheduled Event")
    assert (event["account"], event["region"], event["detail"]) == (ACCOUNT, REGION, {})
    assert EVENT_TIME.match(event["time"])
    [rule] = event["resources"]
    assert rule.startswith(f"arn:aws:events:{REGION}:{ACCOUNT}:rule/")


def test_job_stream_sample_has_the_lambda_record_shape_and_follows_the_task_events() -> None:
    records = load(STREAM_SAMPLE)["Records"]
    running, stopped = (load(name)["detail"] for name in ("task-running.json", "task-stopped-exit-0.json"))
    for record in records:
        assert (record["eventSource"], record["eventVersion"], record["awsRegion"]) == (
            "aws:dynamodb",
            "1.1",
            REGION,
        )
        assert record["eventName"] == "MODIFY"
        assert record["eventSourceARN"].startswith(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/")
        stream = record["dynamodb"]
        assert stream["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(stream["ApproximateCreationDateTime"], int)
        assert stream["Keys"] == {"job_id": {"S": PAYROLL_JOB}}
        assert stream["NewImage"]["job_id"] == stream["OldImage"]["job_id"] == {"S": PAYROLL_JOB}
    sequence_numbers = [int(record["dynamodb"]["SequenceNumber"]) for record in records]
    assert sequence_numbers == sorted(sequence_numbers)
    # The job's writes for the RUNNING event, then for the STOPPED one.
    statuses = [
        (record["dynamodb"]["OldImage"]["status"]["S"], record["dynamodb"]["NewImage"]["status"]["S"])
        for record in records
    ]
    assert statuses == [("DISPATCHED", "RUNNING"), ("RUNNING", "SUCCEEDED")]
    for record, detail in zip(records, (running, stopped), strict=True):
        [attempt] = record["dynamodb"]["NewImage"]["attempts"]["L"]
        assert attempt["M"]["task_arn"] == {"S": detail["taskArn"]}
        assert attempt["M"]["last_status"] == {"S": detail["lastStatus"]}


def test_status_change_sample_is_the_stop_then_a_write_that_keeps_the_status() -> None:
    """The job events function's sample: one status change (an event), then a write that changes no
    status (none)."""
    stopped, later = load(STATUS_CHANGE_SAMPLE)["Records"]
    assert stopped == load(STREAM_SAMPLE)["Records"][1]
    assert later["dynamodb"]["OldImage"] == stopped["dynamodb"]["NewImage"]
    assert later["dynamodb"]["NewImage"]["status"] == {"S": "SUCCEEDED"}
    assert int(later["dynamodb"]["NewImage"]["revision"]["N"]) == 6
    assert int(later["dynamodb"]["SequenceNumber"]) > int(stopped["dynamodb"]["SequenceNumber"])


def test_the_readmes_track_sequence_is_one_tasks_life() -> None:
    readme = (EVENTS.parent / "README.md").read_text(encoding="utf-8")
    sequence = re.findall(r"sam local invoke TrackFunction --event events/(\S+\.json)", readme)
    assert len(sequence) >= 2
    details = [load(name)["detail"] for name in sequence]
    assert len({detail["taskArn"] for detail in details}) == 1
    assert [detail["version"] for detail in details] == sorted({detail["version"] for detail in details})


def test_the_pool_task_sample_is_a_pool_service_task_that_stopped() -> None:
    detail = load(POOL_TASK_STOPPED)["detail"]
    assert detail["group"] == "service:batchgate-dev-pool-attendance"
    assert detail["startedBy"].startswith("ecs-svc/") and not detail["startedBy"].startswith(JOB_ID_PREFIX)
    assert (detail["lastStatus"], detail["desiredStatus"]) == ("STOPPED", "STOPPED")
    assert detail["stopCode"] == "SpotInterruption" and detail["stoppedReason"]
    assert [container["name"] for container in detail["containers"]] == ["attendance"]
