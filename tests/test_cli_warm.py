"""The `batchgate` CLI with the warm lane: `pools`, and show, logs, stats, cancel and retry of WARM jobs
(their items built with the warm transitions, as dispatch, the worker and track write them)."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.jobs import Job, JobStatus, LaunchPlan, iso, job_id_for
from batchgate.domain.pools import HEARTBEAT_RETENTION_SECONDS, PoolTask, SlotJob
from batchgate.domain.task_events import apply_task_event
from batchgate.domain.warm import (
    NOT_PICKED_UP,
    POOL_TASK_STOPPED,
    WARM,
    WorkerClaim,
    claim_warm,
    expire_warm_offer,
    offer_warm,
    pool_task_lost,
    warm_change,
)
from batchgate.ops import logs as logs_module
from batchgate.ops.cli import cli
from batchgate.ops.local.resources import FunctionSpec, StackResources
from batchgate.ops.local.stack import LocalStack, StackOptions
from batchgate.ops.pool_status import QueueBacklogs
from batchgate.ops.stack_outputs import LocalState
from batchgate.services.dispatch import begin_attempt
from botocore.exceptions import ClientError
from click.testing import CliRunner

from tests.cli_support import NOW, USER, CliHarness, harness
from tests.conftest import REGION, ROOT, create_pool_table
from tests.warm_lane import BATCH, POOL, POOL_LOG_GROUP, pool_task_arn, warm_catalog, warm_catalog_document

__all__ = ["harness"]  # the fixture, imported for pytest

POOL_TABLE = "batchgate-test-pools"
TASK = pool_task_arn("0a1b2c3d")
DIGEST = "sha256:0123"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/batchgate-attendance:latest"
SPEC = warm_catalog().get(BATCH)


def at(seconds: float) -> str:
    """NOW less a minute, plus `seconds`: the jobs below are queued a minute before NOW."""
    return iso(NOW - timedelta(minutes=1) + timedelta(seconds=seconds))


@pytest.fixture
def warm(harness: CliHarness, tmp_path: Path) -> CliHarness:
    """The harness with the pool table named (--pool-table) and a catalog file declaring the pool."""
    create_pool_table(boto3.client("dynamodb", region_name=REGION), POOL_TABLE)
    harness.extra = ["--pool-table", POOL_TABLE]
    (tmp_path / "catalog.json").write_text(json.dumps(warm_catalog_document()))
    return harness


def pools_table() -> PoolTable:
    return PoolTable(POOL_TABLE, boto3.client("dynamodb", region_name=REGION))


def heartbeat(
    task_arn: str = TASK, *, age: float = 2.0, running: tuple[SlotJob, ...] = (), **changes: Any
) -> PoolTask:
    written = NOW - timedelta(seconds=age)
    values: dict[str, Any] = {
        "pool": POOL,
        "task_arn": task_arn,
        "slots": 2,
        "running": running,
        "heartbeat_at": iso(written),
        "expires_at": int(written.timestamp()) + HEARTBEAT_RETENTION_SECONDS,
        "batches": (BATCH,),
        "image": IMAGE,
        "image_digest": DIGEST,
        "availability_zone": "us-east-1a",
        **changes,
    }
    return PoolTask(**values)


def offered_job(key: str) -> Job:
    """A job of the pooled batch queued at NOW - 60 s, begun as WARM at +0.1 s and offered at +0.2 s."""
    job_id = job_id_for(BATCH, key)
    job: Job | None = Job(
        job_id=job_id,
        batch=BATCH,
        status=JobStatus.SUBMITTED,
        created_at=at(0),
        updated_at=at(0),
        expires_at=int(NOW.timestamp()) + 86400,
        message_id=f"m-{key}",
        arguments=(f"uploads/{key}.csv",),
        environment={"IMPORT_MODE": "full"},
        idempotency_key=key,
    )
    assert job is not None
    plan = LaunchPlan(WARM, POOL, "pool attendance has a free slot", fallbacks=("FARGATE",))
    job = begin_attempt(job, plan, at(0.1))
    assert job is not None
    job = offer_warm(job, 1, at(0.2))
    assert job is not None
    return job


def claimed_job(key: str) -> Job:
    """`offered_job`, claimed at +0.9 s by slot 1 of TASK."""
    return claim(offered_job(key))


def claim(job: Job) -> Job:
    """The worker's claim of attempt 1 at +0.9 s, by slot 1 of TASK."""
    worker = WorkerClaim(
        task_arn=TASK,
        slot=1,
        image_digest=DIGEST,
        log_group=POOL_LOG_GROUP,
        log_stream=f"{BATCH}/{job.job_id}/1",
        at=at(0.9),
    )
    claimed = claim_warm(job, 1, worker)
    assert claimed is not None and claimed.status is JobStatus.RUNNING
    return claimed


def ended_job(key: str, exit_code: int, seconds: float = 14.9) -> Job:
    """`claimed_job`, its child exited `exit_code` at +`seconds`, as the worker reports it."""
    return end(claimed_job(key), exit_code, seconds)


def end(job: Job, exit_code: int, seconds: float = 14.9) -> Job:
    """The worker's report that attempt 1's child exited `exit_code` at +`seconds`."""
    change = warm_change(
        TASK,
        job.job_id,
        1,
        version=2,
        last_status="STOPPED",
        at=at(seconds),
        timestamps={"stopped": at(seconds)},
        container="attendance",
        exit_code=exit_code,
    )
    ended = apply_task_event(job, change, "attendance", None, SPEC)
    assert ended is not None
    return ended


def write_pool_logs(stream: str, *lines: str) -> None:
    logs = boto3.client("logs", region_name=REGION)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=POOL_LOG_GROUP)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=POOL_LOG_GROUP, logStreamName=stream)
    if lines:
        start = int(NOW.timestamp() * 1000)
        logs.put_log_events(
            logGroupName=POOL_LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": start + index, "message": line} for index, line in enumerate(lines)],
        )


# --- pools --------------------------------------------------------------------------------------------


def pool_queue(harness: CliHarness, waiting: int, in_flight: int) -> str:
    url: str = harness.sqs.create_queue(QueueName="batchgate-test-pool-attendance")["QueueUrl"]
    for number in range(waiting + in_flight):
        harness.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": f"j{number}", "attempt": 1}))
    if in_flight:
        harness.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=in_flight, VisibilityTimeout=60)
    return url


def test_pools_shows_tasks_slots_jobs_images_and_the_queue(warm: CliHarness) -> None:
    running = claimed_job("in-slot")
    warm.add(running)
    busy = heartbeat(running=(SlotJob(running.job_id, 1, 1, at(0.9)),))
    older = heartbeat(pool_task_arn("ffff"), age=40, batches=(), image_digest="sha256:old", stopping=True)
    pools_table().put(busy)
    pools_table().put(older)
    url = pool_queue(warm, waiting=2, in_flight=1)
    warm.extra += ["--pool-queue-urls", f"{POOL}={url}"]

    document = warm.json("pools", "--catalog", "catalog.json")

    assert document == {
        "at": "2026-11-28T12:00:00.000Z",
        "pools": [
            {
                "pool": POOL,
                "state": "open",
                "batches": [BATCH],
                "slots_per_task": 2,
                "tasks_fresh": 1,
                "slots_busy": 1,
                "slots_free": 1,
                "tasks": [
                    {
                        "task_arn": TASK,
                        "availability_zone": "us-east-1a",
                        "heartbeat_at": "2026-11-28T11:59:58.000Z",
                        "heartbeat_age_seconds": 2.0,
                        "fresh": True,
                        "stopping": False,
                        "slots": 2,
                        "busy": 1,
                        "free": 1,
                        "image": IMAGE,
                        "image_digest": DIGEST,
                        "serves": {BATCH: True},
                        "jobs": [
                            {
                                "job_id": running.job_id,
                                "attempt": 1,
                                "slot": 1,
                                "started_at": "2026-11-28T11:59:00.900Z",
                                "running_seconds": 59.1,
                            }
                        ],
                    },
                    {
                        "task_arn": pool_task_arn("ffff"),
                        "availability_zone": "us-east-1a",
                        "heartbeat_at": "2026-11-28T11:59:20.000Z",
                        "heartbeat_age_seconds": 40.0,
                        "fresh": False,
                        "stopping": True,
                        "slots": 2,
                        "busy": 0,
                        "free": 0,
                        "image": IMAGE,
                        "image_digest": "sha256:old",
                        "serves": {BATCH: False},
                        "jobs": [],
                    },
                ],
                # moto publishes no SQS metrics: the oldest message's age is unknown.
                "queue": {"url": url, "waiting": 2, "in_flight": 1, "oldest_age_seconds": None},
            }
        ],
    }
    human = warm.ok("pools", "--catalog", "catalog.json").stdout
    lines = human.splitlines()
    assert lines[0] == (
        "attendance  open  1 task(s) fresh, slots 1 busy / 1 free  queue 2 waiting, 1 in flight, oldest -"
    )
    assert lines[1] == f"  batches  {BATCH}"
    task_row = next(line for line in lines if line.startswith("  0a1b2c3d"))
    assert task_row.split()[:6] == ["0a1b2c3d", "us-east-1a", "2.0s", "ago", "1/2", "no"]
    stale_row = next(line for line in lines if line.startswith("  ffff"))
    assert "40s ago (stale)" in stale_row and "sha256:old" in stale_row and BATCH in stale_row
    job_row = next(line for line in lines if line.startswith(f"  {running.job_id}"))
    assert job_row.split() == [running.job_id, "1", "1", "59s", "0a1b2c3d"]


def test_pools_has_help_and_is_listed() -> None:
    runner = CliRunner(mix_stderr=False)
    assert runner.invoke(cli, ["pools", "--help"]).stdout.startswith("Usage: cli pools")
    assert "--pool-queue-urls" in runner.invoke(cli, ["--help"]).stdout
    assert any(line.split()[:1] == ["pools"] for line in runner.invoke(cli, ["--help"]).stdout.splitlines())


def test_a_pool_without_tasks_is_closed_and_one_with_only_old_heartbeats_is_stale(warm: CliHarness) -> None:
    closed = warm.json("pools", "--catalog", "catalog.json", "--pool", POOL)["pools"][0]
    assert (closed["state"], closed["tasks"], closed["slots_free"]) == ("closed (no task)", [], 0)
    assert closed["queue"] is None  # no --pool-queue-urls, and the stack names none
    human = warm.ok("pools", "--catalog", "catalog.json").stdout
    assert "attendance  closed (no task)  0 task(s) fresh" in human
    assert "work queue unknown (give --pool-queue-urls)" in human

    pools_table().put(heartbeat(age=16))  # STALE_AFTER_SECONDS is 15
    stale = warm.json("pools", "--catalog", "catalog.json")["pools"][0]
    assert (stale["state"], stale["tasks_fresh"], stale["slots_free"]) == ("stale heartbeats", 0, 0)
    assert stale["tasks"][0]["fresh"] is False
    assert "attendance  stale heartbeats" in warm.ok("pools", "--catalog", "catalog.json").stdout


def test_pools_usage_and_configuration_errors(warm: CliHarness, tmp_path: Path) -> None:
    unknown = warm.run("pools", "--catalog", "catalog.json", "--pool", "payroll")
    assert (
        unknown.exit_code == 2
        and "the catalog has no pool 'payroll' (its pools: attendance)" in unknown.stderr
    )
    warm.extra = []  # no pool table named, no stack to find it in
    missing = warm.run("pools", "--catalog", "catalog.json", "--json")
    assert missing.exit_code == 2 and "the pool table" in missing.stderr and "--pool-table" in missing.stderr
    assert missing.stdout == ""
    # A catalog with no pool: nothing to read, nothing to say but that.
    document = json.loads((ROOT / "layers/batchgate/batchgate/catalog.json").read_text())
    document.pop("pools", None)
    for batch in document["batches"].values():
        for field in ("pool", "run_mode", "preload"):
            batch.pop(field, None)
    no_pools = tmp_path / "no-pools.json"
    no_pools.write_text(json.dumps(document))
    assert warm.json("pools", "--catalog", str(no_pools)) == {"at": "2026-11-28T12:00:00.000Z", "pools": []}
    assert warm.ok("pools", "--catalog", str(no_pools)).stdout.strip() == "The catalog declares no warm pool."
    bad_urls = warm.run(
        "pools", "--catalog", "catalog.json", "--pool-table", POOL_TABLE, "--pool-queue-urls", "x"
    )
    assert bad_urls.exit_code == 2 and "is not pool=url" in bad_urls.stderr
    gone = warm.run("pools", "--catalog", "catalog.json", "--pool-table", "no-such-table")
    assert gone.exit_code == 3 and "ResourceNotFoundException" in gone.stderr


class RecordedMetrics:
    """CloudWatch's GetMetricStatistics, answering with the given datapoints (or failing)."""

    def __init__(self, datapoints: list[dict[str, Any]] | None) -> None:
        self.datapoints = datapoints
        self.requests: list[dict[str, Any]] = []

    def get_metric_statistics(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.datapoints is None:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetMetricStatistics")
        return {"Datapoints": self.datapoints}


def test_the_oldest_message_age_is_cloudwatchs_newest_datapoint(harness: CliHarness) -> None:
    url = pool_queue(harness, waiting=1, in_flight=0)
    metrics = RecordedMetrics(
        [
            {"Timestamp": NOW - timedelta(minutes=3), "Maximum": 50.0},
            {"Timestamp": NOW - timedelta(minutes=1), "Maximum": 7.0},
        ]
    )
    backlog = QueueBacklogs(harness.sqs, metrics, lambda: NOW).backlog(url)
    assert (backlog.waiting, backlog.in_flight, backlog.oldest_age_seconds) == (1, 0, 7.0)
    [request] = metrics.requests
    assert request["Namespace"] == "AWS/SQS" and request["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert request["Dimensions"] == [{"Name": "QueueName", "Value": "batchgate-test-pool-attendance"}]
    assert request["Statistics"] == ["Maximum"] and request["EndTime"] == NOW
    assert QueueBacklogs(harness.sqs, RecordedMetrics([]), lambda: NOW).oldest_age(url) is None
    assert QueueBacklogs(harness.sqs, RecordedMetrics(None), lambda: NOW).oldest_age(url) is None


# --- show ---------------------------------------------------------------------------------------------


def test_show_a_running_warm_attempt_names_its_worker_slot_image_and_heartbeat(warm: CliHarness) -> None:
    job = warm.add(claimed_job("running"))
    pools_table().put(heartbeat(running=(SlotJob(job.job_id, 1, 1, at(0.9)),)))

    document = warm.json("show", job.job_id)

    [attempt] = document["attempts"]
    assert attempt["warm"] == {
        "pool": POOL,
        "task_arn": TASK,
        "slot": 1,
        "image_digest": DIGEST,
        "offered_at": at(0.2),
        "claimed_at": at(0.9),
        "heartbeat": {
            "state": "fresh",
            "at": "2026-11-28T11:59:58.000Z",
            "age_seconds": 2.0,
            "lists_job": True,
            "stopping": False,
        },
    }
    phases = [(phase["phase"], phase["seconds_since_previous"]) for phase in attempt["phases"]]
    assert phases == [("queued", None), ("dispatched", 0.1), ("offered", 0.1), ("started", 0.7)]
    assert attempt["phases"][3]["spent_on"] == "waiting for a warm worker to claim the offer"
    assert attempt["start_latency_seconds"] == pytest.approx(0.7)  # offered -> claimed
    assert attempt["log_group"] == POOL_LOG_GROUP and attempt["log_stream"] == f"{BATCH}/{job.job_id}/1"

    human = warm.ok("show", job.job_id).stdout
    assert "Attempt 1 of 1  WARM (attendance)  task RUNNING" in human
    assert "  offered " in human and "sending the offer to the pool's work queue" in human
    assert f"  worker     pool attendance, slot 1, image digest {DIGEST}" in human
    assert "  heartbeat  fresh, 2.0s ago (at 2026-11-28T11:59:58.000Z, every 5s), lists the job" in human
    assert "start latency 0.7s" in human


def test_show_says_when_the_heartbeat_is_stale_missing_or_not_read(warm: CliHarness) -> None:
    job = warm.add(claimed_job("quiet"))
    pools_table().put(heartbeat(age=30, stopping=True))
    stale = warm.json("show", job.job_id)["attempts"][0]["warm"]["heartbeat"]
    assert (stale["state"], stale["age_seconds"], stale["lists_job"], stale["stopping"]) == (
        "stale",
        30.0,
        False,
        True,
    )
    assert "heartbeat  stale, 30s ago" in warm.ok("show", job.job_id).stdout
    pools_table().delete(POOL, TASK)
    assert warm.json("show", job.job_id)["attempts"][0]["warm"]["heartbeat"]["state"] == "missing"
    assert (
        "heartbeat  missing: the pool table has no item for this task" in warm.ok("show", job.job_id).stdout
    )
    warm.extra = []
    assert warm.json("show", job.job_id)["attempts"][0]["warm"]["heartbeat"] is None
    assert "not read: the pool table is unknown (give --pool-table)" in warm.ok("show", job.job_id).stdout


def test_show_explains_an_offer_not_picked_up_and_the_next_attempt_on_ecs(warm: CliHarness) -> None:
    job = expire_warm_offer(offered_job("not-picked"), 1, at(2.2), "not picked up by pool attendance in 2s")
    assert job is not None
    fargate = LaunchPlan("FARGATE", "FARGATE", "after WarmNotPickedUp: FARGATE")
    job = begin_attempt(job, fargate, at(2.3))
    assert job is not None
    warm.add(job)

    document = warm.json("show", job.job_id)

    first = document["attempts"][0]
    assert first["outcome"]["stop_code"] == NOT_PICKED_UP
    assert any("No warm worker claimed the offer" in line for line in first["outcome"]["explanations"])
    assert first["warm"]["task_arn"] is None and first["warm"]["claimed_at"] is None
    assert first["warm"]["heartbeat"] is None
    assert first["start_latency_seconds"] is None
    assert document["attempts"][1]["warm"] is None
    human = warm.ok("show", job.job_id).stdout
    assert "worker     offered to pool attendance: no worker claimed it" in human
    assert f"stopped  {NOT_PICKED_UP}: not picked up by pool attendance in 2s" in human


def test_show_explains_a_stopped_pool_task(warm: CliHarness) -> None:
    reason = "pool task stopped: SpotInterruption: Your Spot Task was interrupted."
    job = pool_task_lost(claimed_job("lost"), 1, TASK, reason=reason, at=at(9), spec=SPEC)
    assert job is not None and job.status is JobStatus.RETRYING
    warm.add(job)
    result = warm.run("show", job.job_id, "--json")
    assert result.exit_code == 0  # RETRYING: in progress
    attempt = json.loads(result.stdout)["attempts"][0]
    assert attempt["outcome"]["stop_code"] == POOL_TASK_STOPPED
    assert any(
        "The warm pool task running the job stopped" in line for line in attempt["outcome"]["explanations"]
    )
    assert attempt["run_time_seconds"] == pytest.approx(8.1)
    human = warm.ok("show", job.job_id).stdout
    assert "What happened: RETRYING: WarmTaskStopped; pool task stopped: SpotInterruption" in human
    assert "the retry policy runs it again on ECS" in " ".join(human.split())
    assert "heartbeat  not read (the attempt has ended)" in human


# --- logs ---------------------------------------------------------------------------------------------


def test_logs_of_a_warm_attempt_come_from_its_own_stream_in_the_pool_log_group(warm: CliHarness) -> None:
    job = warm.add(ended_job("logged", exit_code=0))
    write_pool_logs(f"{BATCH}/{job.job_id}/1", "importing uploads/logged.csv", "done: 12 rows")
    result = warm.ok("logs", job.job_id)
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
        "importing uploads/logged.csv",
        "done: 12 rows",
    ]
    waiting = warm.add(offered_job("waiting"))
    unclaimed = warm.run("logs", waiting.job_id)
    assert unclaimed.exit_code == 1
    assert "it was offered to warm pool attendance and no worker has claimed it yet" in unclaimed.stderr


def test_logs_follow_a_warm_job_from_its_offer_to_its_end(
    warm: CliHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = warm.add(offered_job("followed"))
    stream = f"{BATCH}/{job.job_id}/1"
    waits: list[float] = []

    def next_poll(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:  # the worker claims it and writes its first line
            warm.stack.table.mutate(job.job_id, claim)
            write_pool_logs(stream, "line 1")
        else:  # its last line, then the worker reports the child's exit 3
            write_pool_logs(stream, "line 2")
            warm.stack.table.mutate(job.job_id, lambda current: end(current, exit_code=3))

    monkeypatch.setattr(logs_module, "pause", next_poll)
    result = warm.run("logs", job.job_id, "--follow", "--interval", "0.5")
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == ["line 1", "line 2"]
    assert f"--- attempt 1: {POOL_LOG_GROUP} {stream}" in result.stderr
    assert result.exit_code == 1 and f"job {job.job_id} ended FAILED" in result.stderr


# --- stats --------------------------------------------------------------------------------------------


def test_stats_charges_a_warm_attempt_its_share_of_the_pool_task(warm: CliHarness) -> None:
    warm.add(ended_job("ok-1", exit_code=0))
    warm.add(ended_job("ok-2", exit_code=0, seconds=28.9))
    expired = expire_warm_offer(offered_job("never-ran"), 1, at(2.2), "not picked up")
    assert expired is not None
    warm.add(expired)

    document = warm.json("stats", "--catalog", "catalog.json")

    [row] = document["rows"]
    assert (row["batch"], row["strategy"], row["jobs"], row["succeeded"]) == (BATCH, WARM, 3, 2)
    assert row["start_latency_p50_seconds"] == pytest.approx(0.7)
    assert row["run_time_p50_seconds"] == pytest.approx(21.0)  # 14 s and 28 s
    # The pool task: 1 vCPU, 2 GB, Fargate Spot x86 in us-east-1 (70% below 0.04937 USD/h), 2 slots.
    task_hourly = (0.04048 + 2 * 0.004445) * 0.3
    assert row["estimated_cost_usd"] == pytest.approx(round(task_hourly * (14 + 28) / 3600 / 2, 6))
    assert row["cost_complete"] is True  # the offer no worker claimed cost nothing
    human = warm.ok("stats", "--catalog", "catalog.json").stdout
    lines = human.splitlines()
    header = next(line for line in lines if line.startswith("BATCH"))
    line = next(line for line in lines if line.startswith(BATCH))
    start = header.index("START p50")  # columns line up under their headers
    assert line.split()[:2] == [BATCH, WARM] and line[start : start + 12].split()[0] == "0.7s"
    assert "a WARM attempt is charged its share of its pool task" in " ".join(human.split())


# --- cancel and retry ---------------------------------------------------------------------------------


def test_cancel_of_a_claimed_warm_job_leaves_the_pool_task_to_the_worker(warm: CliHarness) -> None:
    job = warm.add(claimed_job("cancel-me"))
    before = warm.stack.ecs_client.list_tasks(cluster=warm.stack.settings.cluster)["taskArns"]

    document = warm.json("cancel", job.job_id)

    assert document == {
        "job_id": job.job_id,
        "status": "CANCELLED",
        "reason": f"batchgate: cancelled by {USER}",
        "task_arn": TASK,
        "stopped_by": "worker",
        "was_already_cancelled": False,
    }
    stored = warm.stack.table.get(job.job_id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
    # No StopTask: a stopped pool task would have been recorded by moto (and the task is not moto's).
    assert warm.stack.ecs_client.list_tasks(cluster=warm.stack.settings.cluster)["taskArns"] == before
    again = " ".join(warm.ok("cancel", job.job_id).stdout.split())
    assert (
        f"the worker on pool task {TASK} stops the job's process at its next heartbeat (within 5s)" in again
    )
    assert "asked ECS" not in again


def test_cancel_of_an_offered_warm_job_says_no_worker_will_run_it(warm: CliHarness) -> None:
    job = warm.add(offered_job("offered"))
    assert warm.json("cancel", job.job_id)["stopped_by"] is None
    stored = warm.stack.table.get(job.job_id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
    again = warm.ok("cancel", job.job_id).stdout
    assert "offered to pool attendance, not claimed: no worker will run it" in again


def test_retry_of_a_failed_warm_job_submits_it_again(warm: CliHarness) -> None:
    job = warm.add(ended_job("failed", exit_code=2))
    assert job.status is JobStatus.FAILED
    document = warm.json("retry", job.job_id)
    assert document["job_id"] == job_id_for(BATCH, f"retry-of:{job.job_id}:1")
    [body] = warm.queued_bodies()
    assert body["batch"] == BATCH and body["arguments"] == ["uploads/failed.csv"]
    assert body["environment"] == {"IMPORT_MODE": "full"}
    assert "strategy" not in body  # the pool is dispatch's choice again, not a preference


# --- where the pool table and queues are found ----------------------------------------------------------


def test_the_local_stack_state_names_the_pool_table_and_queues(tmp_path: Path) -> None:
    urls = "attendance=http://127.0.0.1:1/000000000000/batchgate-local-pool-attendance"
    function = FunctionSpec(
        logical_id="DispatchFunction",
        name="batchgate-local-dispatch",
        arn="arn:aws:lambda:us-east-1:000000000000:function:batchgate-local-dispatch",
        code_path=ROOT / "functions" / "dispatch",
        handler="app.handler",
        timeout_seconds=30,
        memory_mb=256,
        environment={"JOB_TABLE_NAME": "jobs", "POOL_TABLE_NAME": "pools", "POOL_QUEUE_URLS": urls},
        log_group="/aws/lambda/batchgate-local-dispatch",
    )
    stack = LocalStack(StackOptions(root=ROOT, state_path=tmp_path / "local.json"))
    try:
        stack.resources = StackResources(
            stack_name="batchgate-local", region="us-east-1", functions={"DispatchFunction": function}
        )
        state = stack.state()
        stack.resources = StackResources(stack_name="batchgate-local", region="us-east-1")
        without = stack.state()
    finally:
        stack.stop()
    assert (state["pool_table_name"], state["pool_queue_urls"]) == ("pools", urls)
    resources = LocalState.from_dict(state).resources()
    assert (resources["pool_table_name"], resources["pool_queue_urls"]) == ("pools", urls)
    assert (without["pool_table_name"], without["pool_queue_urls"]) == (None, None)
    assert "pool_table_name" not in LocalState.from_dict(without).resources()


def test_stack_outputs_name_the_pool_table_and_queues(warm: CliHarness) -> None:
    url = pool_queue(warm, waiting=1, in_flight=0)
    outputs = {
        "JobTableName": warm.stack.settings.table_name,
        "PoolTableName": POOL_TABLE,
        "PoolQueueUrls": f"{POOL}={url}",
    }
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "x"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="batchgate-warm", TemplateBody=json.dumps(template)
    )
    pools_table().put(heartbeat())
    result = warm.run(
        "--stack",
        "batchgate-warm",
        "--region",
        REGION,
        "pools",
        "--catalog",
        "catalog.json",
        "--json",
        target=False,
    )
    assert result.exit_code == 0, result.stderr
    [pool] = json.loads(result.stdout)["pools"]
    assert pool["state"] == "open" and pool["queue"]["waiting"] == 1
