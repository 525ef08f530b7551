"""The sweep against moto: timeouts, missed events, stuck jobs, lost launches and lost retries."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, ModuleType
from typing import Any

import batchgate.services.sweep
import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import Attempt, JobStatus, iso, job_id_for, parse_iso
from batchgate.domain.pools import STALE_AFTER_SECONDS
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.task_events import TIMELINE_FIELDS
from batchgate.services.dispatch import Dispatcher, DispatchResult, RetryLater
from batchgate.services.history_feed import HistoryFeed
from batchgate.services.sweep import ACTIVE_STATUSES, Sweeper, SweepSettings

from tests.conftest import LambdaContextStub, Stack, create_history_table, event_fixture, job_stream_records
from tests.reliability.conftest import (
    FaultyClient,
    RecordingSqs,
    Tally,
    all_jobs,
    assert_one_task_per_attempt,
    tasks_by_attempt,
    throttling,
)
from tests.reliability.test_events_and_retries import retargeted, tracker
from tests.test_dispatch import PAYROLL, PAYROLL_JOB, RecordingEcs, throttled
from tests.test_jobs import make_job

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)  # when dispatch ran (the sample events follow it)


def at(seconds: float) -> Callable[[], datetime]:
    return lambda: T0 + timedelta(seconds=seconds)


def dispatcher(stack: Stack, ecs: EcsTasks | None = None) -> Dispatcher:
    return replace(stack.dispatcher(ecs), clock=at(0))


class DescribedEcs(FaultyClient):
    """moto's ECS client, with DescribeTasks answering like ECS for the tasks given (moto's tasks have
    no version, stop code or timestamps) and nothing for tasks ECS has forgotten."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.described: dict[str, dict[str, Any]] = {}
        self.forgotten: set[str] = set()
        self.stopped: list[tuple[str, str]] = []

    def describe_tasks(self, **request: Any) -> dict[str, Any]:
        self.calls["describe_tasks"] += 1
        queued = self.faults.get("describe_tasks")
        if queued:
            self.injected += 1
            raise queued.pop(0)
        arns = [arn for arn in request["tasks"] if arn not in self.forgotten]
        known = [arn for arn in arns if arn not in self.described]
        tasks = self._client.describe_tasks(cluster=request["cluster"], tasks=known)["tasks"] if known else []
        tasks += [self.described[arn] for arn in arns if arn in self.described]
        return {"tasks": tasks, "failures": []}

    def stop_task(self, **request: Any) -> dict[str, Any]:
        self.stopped.append((request["task"], request["reason"]))
        return dict(self._client.stop_task(**request))


def as_described(name: str, task_arn: str, attempt: int = 1, **changes: Any) -> dict[str, Any]:
    """A sample event's detail as DescribeTasks returns it: datetimes where events have ISO strings."""
    detail = copy.deepcopy(retargeted(name, task_arn, attempt)["detail"])
    detail.update(changes)
    for name_ in [*TIMELINE_FIELDS, "updatedAt"]:
        if isinstance(detail.get(name_), str):
            detail[name_] = parse_iso(detail[name_])
    described: dict[str, Any] = detail
    return described


def sweeper(
    stack: Stack, client: Any, sqs: RecordingSqs, seconds: float, settings: SweepSettings | None = None
) -> Sweeper:
    return Sweeper(
        catalog=stack.catalog,
        table=stack.table,
        ecs=EcsTasks(stack.settings.cluster, client),
        jobs_queue=JobsQueue("https://sqs.example/jobs", sqs),  # type: ignore[arg-type]
        settings=settings or SweepSettings(),
        clock=at(seconds),
    )


def running_job(stack: Stack, sqs: RecordingSqs) -> str:
    """The payroll job dispatched at T0, its task RUNNING since 10:00:27.5 (from the sample events)."""
    assert dispatcher(stack).dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None and job.attempt.task_arn
    task_arn = job.attempt.task_arn
    track = tracker(stack, sqs)
    for name in ["task-provisioning.json", "task-pending.json", "task-running.json"]:
        track.track(retargeted(name, task_arn, 1))
    return task_arn


def test_a_task_past_its_timeout_is_stopped_and_the_job_ends_timed_out(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    early = sweeper(stack, client, sqs, 27 + 1700).sweep()  # within payroll's 1800 s
    assert early.timed_out == 0 and client.stopped == []
    report = sweeper(stack, client, sqs, 27 + 1801).sweep()
    assert report.timed_out == 1
    assert client.stopped == [(task_arn, "batchgate: exceeded timeout of 1800 s")]
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.TIMED_OUT
    assert job.reason == "batchgate: exceeded timeout of 1800 s"
    # The task's STOPPED event (UserInitiated, our reason) follows: still TIMED_OUT, never retried.
    stopped = retargeted("task-stopped-exit-1.json", task_arn, 1)
    stopped["detail"].update(stopCode="UserInitiated", stoppedReason="batchgate: exceeded timeout of 1800 s")
    stopped["detail"]["containers"][0]["exitCode"] = 143
    tracker(stack, sqs).track(stopped)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.TIMED_OUT and job.attempt is not None
    assert job.attempt.exit_code == 143
    tally.add("sweep: timeouts")
    tally.check("sweep ended it", True)
    tally.check("not retried", sqs.sent == [])
    assert sqs.sent == []


def test_a_batch_that_retries_timeouts_gets_its_next_attempt(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    from batchgate.domain.retry_policy import RetryPolicy

    running_job(stack, sqs)
    spec = stack.catalog.batches["payroll-calculation"]
    lenient = stack.catalog._replace(
        batches={
            **stack.catalog.batches,
            spec.name: spec._replace(retry_policy=RetryPolicy(retry_timeouts=True)),
        },
    )
    sweep = replace(sweeper(stack, DescribedEcs(stack.ecs_client), sqs, 27 + 1801), catalog=lenient)
    assert sweep.sweep().timed_out == 1
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RETRYING
    assert [relaunch for relaunch, _ in sqs.relaunches()] == [Relaunch(PAYROLL_JOB, 2)]
    tally.add("sweep: timeouts")


STARTED = parse_iso("2026-11-28T10:00:27.540Z")  # the sample events' startedAt


def exit_times(seconds: float) -> dict[str, str]:
    """The stop timestamps of a task whose container exited `seconds` after it started."""
    exited = STARTED + timedelta(seconds=seconds)
    stopped = iso(exited + timedelta(seconds=40))
    return {
        "executionStoppedAt": iso(exited),
        "stoppingAt": iso(exited),
        "stoppedAt": stopped,
        "updatedAt": stopped,
    }


def container_exit(task_arn: str, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DEPROVISIONING and STOPPED events of a task whose container exited 0 `seconds` after it
    started (the container stops first; ECS reports the task STOPPED some 40 s later)."""
    stopped = retargeted("task-stopped-exit-0.json", task_arn, 1)
    stopped["detail"].update(exit_times(seconds))
    stopped["time"] = stopped["detail"]["stoppedAt"]
    deprovisioning = copy.deepcopy(stopped)
    detail = deprovisioning["detail"]
    del detail["stoppedAt"]
    detail.update(lastStatus="DEPROVISIONING", version=4)
    detail["updatedAt"] = deprovisioning["time"] = iso(STARTED + timedelta(seconds=seconds + 1))
    return deprovisioning, stopped


@pytest.mark.parametrize("retry_timeouts", [False, True])
def test_a_container_that_stopped_within_its_timeout_is_never_timed_out(
    stack: Stack, sqs: RecordingSqs, tally: Tally, retry_timeouts: bool
) -> None:
    from batchgate.domain.retry_policy import RetryPolicy

    task_arn = running_job(stack, sqs)
    spec = stack.catalog.batches["payroll-calculation"]
    catalog = stack.catalog._replace(
        batches={
            **stack.catalog.batches,
            spec.name: spec._replace(retry_policy=RetryPolicy(retry_timeouts=retry_timeouts)),
        },
    )
    deprovisioning, stopped = container_exit(task_arn, 1792)  # payroll's timeout is 1800 s
    tracker(stack, sqs).track(deprovisioning)
    client = DescribedEcs(stack.ecs_client)
    # Past the timeout, before the STOPPED event.
    report = replace(sweeper(stack, client, sqs, 27 + 1805), catalog=catalog).sweep()
    assert (report.timed_out, report.errors) == (0, 0) and client.stopped == []
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.STOPPING
    tracker(stack, sqs).track(stopped)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.reason is None
    assert sqs.sent == []
    tally.check("sweep ended it", True)  # reached only when every assert above held


def test_a_stopped_event_missed_just_before_the_timeout_ends_the_job_by_its_result(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described("task-stopped-exit-0.json", task_arn, 1, **exit_times(1750))
    report = sweeper(stack, client, sqs, 27 + 1801).sweep()
    assert (report.reconciled, report.timed_out) == (1, 0) and client.stopped == []
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.attempt is not None
    assert job.attempt.exit_code == 0
    tally.add("sweep: reconciled")
    tally.check("sweep ended it", True)  # reached only when every assert above held


def test_a_container_stopping_while_the_sweep_times_it_out_is_left_to_its_stopped_event(
    stack: Stack, sqs: RecordingSqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_arn = running_job(stack, sqs)
    deprovisioning, stopped = container_exit(task_arn, 1799)
    client = DescribedEcs(stack.ecs_client)  # moto's task: RUNNING, no version
    describe = client.describe_tasks

    def container_stops_meanwhile(**request: Any) -> dict[str, Any]:
        tracker(stack, sqs).track(deprovisioning)  # after the sweep read the job, before it writes
        return describe(**request)

    monkeypatch.setattr(client, "describe_tasks", container_stops_meanwhile)
    assert sweeper(stack, client, sqs, 27 + 1805).sweep().timed_out == 0
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.STOPPING
    tracker(stack, sqs).track(stopped)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.SUCCEEDED


def test_a_job_past_its_timeout_ends_even_when_describe_tasks_fails(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.inject("describe_tasks", throttling("DescribeTasks"))
    report = sweeper(stack, client, sqs, 27 + 1801).sweep()
    assert (report.errors, report.timed_out) == (1, 1)
    assert client.stopped == [(task_arn, "batchgate: exceeded timeout of 1800 s")]
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.TIMED_OUT
    tally.add("sweep: timeouts")
    tally.add("fault: ListTasks/DescribeTasks")


def test_a_missed_stopped_event_is_applied_from_describe_tasks(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described("task-stopped-exit-1.json", task_arn)
    # 10:00:27 RUNNING; nothing since: at 10:06 the sweep asks ECS.
    report = sweeper(stack, client, sqs, 360).sweep()
    assert report.reconciled == 1
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.FAILED and job.attempt is not None
    assert job.attempt.exit_code == 1 and job.attempt.timeline["stopped"] == "2026-11-28T11:22:53.481Z"
    assert sqs.sent == []  # an application exit is not retried
    # The late event itself, after the sweep: nothing changes.
    before = stack.table.get(PAYROLL_JOB)
    tracker(stack, sqs).track(retargeted("task-stopped-exit-1.json", task_arn, 1))
    assert stack.table.get(PAYROLL_JOB) == before
    tally.add("sweep: reconciled")
    tally.check("sweep ended it", True)  # reached only when every assert above held


def test_an_attempt_the_sweep_finds_stopped_reaches_the_history_once(stack: Stack, sqs: RecordingSqs) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described("task-stopped-exit-1.json", task_arn)
    assert sweeper(stack, client, sqs, 360).sweep().reconciled == 1
    tracker(stack, sqs).track(retargeted("task-stopped-exit-1.json", task_arn, 1))  # the late event

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_history_table(dynamodb, "batchgate-sweep-history")
    history = HistoryTable("batchgate-sweep-history", dynamodb)
    fold = HistoryFeed(history).in_order()
    # The sweep's write stopped the attempt: the history learns of it from the stream, as of track's.
    assert sum(fold(record) for record in job_stream_records()) == 1
    stored, _ = history.get("payroll-calculation", "FARGATE")
    assert (stored.observed, stored.successes) == (1, 0)


def test_a_missed_infrastructure_failure_is_retried(stack: Stack, sqs: RecordingSqs, tally: Tally) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described("task-stopped-failed-to-start.json", task_arn, version=9)
    assert sweeper(stack, client, sqs, 360).sweep().reconciled == 1
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RETRYING
    assert [relaunch for relaunch, _ in sqs.relaunches()] == [Relaunch(PAYROLL_JOB, 2)]
    tally.add("sweep: reconciled")
    tally.check("sweep ended it", True)  # reached only when every assert above held


def test_a_stop_track_applies_while_the_sweep_asks_ecs_is_counted_by_track_alone(
    stack: Stack, sqs: RecordingSqs, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described("task-stopped-failed-to-start.json", task_arn, version=9)
    event = retargeted("task-stopped-failed-to-start.json", task_arn, 1)
    event["detail"]["version"] = 9
    describe = client.describe_tasks

    def event_arrives_meanwhile(**request: Any) -> dict[str, Any]:
        tracker(stack, sqs).track(event)  # after the sweep read the job, before it writes
        return describe(**request)

    monkeypatch.setattr(client, "describe_tasks", event_arrives_meanwhile)
    report = sweeper(stack, client, sqs, 360).sweep()
    assert report.reconciled == 0 and report.notes == []
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RETRYING
    assert [relaunch for relaunch, _ in sqs.relaunches()] == [Relaunch(PAYROLL_JOB, 2)]  # track's


def test_a_task_stuck_pending_is_explained_and_counted(stack: Stack, sqs: RecordingSqs, tally: Tally) -> None:
    assert dispatcher(stack).dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None and job.attempt.task_arn
    task_arn = job.attempt.task_arn
    track = tracker(stack, sqs)
    for name in ["task-provisioning.json", "task-pending.json"]:
        track.track(retargeted(name, task_arn, 1))
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described(
        "task-pending.json", task_arn, pullStartedAt=datetime(2026, 11, 28, 10, 0, 10, tzinfo=UTC)
    )
    report = sweeper(stack, client, sqs, 370).sweep()
    assert report.stuck == 1 and report.reconciled == 0
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.PENDING and job.attempt is not None
    assert job.attempt.note == "PENDING for 6 min: image pull not finished"
    assert job.to_item()["note"] == job.attempt.note
    tally.add("sweep: explained")
    # When the task finally runs, the note goes: it described a state that is over.
    track.track(retargeted("task-running.json", task_arn, 1))
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None and job.attempt.note is None


def test_a_lost_launch_is_relaunched_with_the_same_attempt(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    ecs = RecordingEcs(stack, fail_first=throttled())
    with pytest.raises(RetryLater):
        dispatcher(stack, ecs).dispatch("m-1", PAYROLL)
    # ...and the record never came back (e.g. redriven to the DLQ by a misconfiguration).
    client = DescribedEcs(stack.ecs_client)
    assert sweeper(stack, client, sqs, 300).sweep().relaunched == 0
    report = sweeper(stack, client, sqs, 700).sweep()
    assert report.relaunched == 1 and report.stuck == 1
    [(relaunch, delay)] = sqs.relaunches()
    assert relaunch == Relaunch(PAYROLL_JOB, 1) and delay == 0
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None
    assert (job.attempt.note or "").startswith("DISPATCHING for 11 min: launch did not finish")
    assert dispatcher(stack, ecs).relaunch(relaunch.body()) is DispatchResult.DISPATCHED
    assert dispatcher(stack, ecs).relaunch(relaunch.body()) is DispatchResult.DUPLICATE
    assert tasks_by_attempt(stack, PAYROLL_JOB) == {1: 1}
    assert_one_task_per_attempt(stack, PAYROLL_JOB, tally)
    tally.add("sweep: relaunched")
    tally.check("sweep ended it", True)  # reached only when every assert above held
    tally.add("duplicated deliveries")


def test_a_lost_retry_message_is_sent_again(stack: Stack, sqs: RecordingSqs, tally: Tally) -> None:
    lost = RecordingSqs()
    task_arn = running_job(stack, lost)
    tracker(stack, lost).track(retargeted("task-stopped-spot-interruption.json", task_arn, 1))
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RETRYING
    retrying_since = (parse_iso(job.updated_at) - T0).total_seconds()
    [(_, delay)] = lost.relaunches()
    client = DescribedEcs(stack.ecs_client)
    # Lost once its recorded due time (the back-off after the failure) is the retry grace past.
    assert sweeper(stack, client, sqs, retrying_since + delay + 300).sweep().relaunched == 0
    assert sweeper(stack, client, sqs, retrying_since + delay + 301).sweep().relaunched == 1
    assert [relaunch for relaunch, _ in sqs.relaunches()] == [Relaunch(PAYROLL_JOB, 2)]
    tally.add("sweep: relaunched")
    tally.check("sweep ended it", True)  # reached only when every assert above held


def test_a_task_ecs_forgot_ends_the_job_failed_with_the_explanation(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.forgotten.add(task_arn)
    settings = SweepSettings(vanished_after_seconds=900)
    assert sweeper(stack, client, sqs, 600, settings).sweep().reconciled == 0
    assert sweeper(stack, client, sqs, 1000, settings).sweep().reconciled == 1
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.FAILED
    assert "no longer known to ECS" in (job.reason or "")
    tally.add("sweep: reconciled")
    tally.check("sweep ended it", True)  # reached only when every assert above held


def test_describe_tasks_failing_does_not_stop_the_sweep(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    task_arn = running_job(stack, sqs)
    client = DescribedEcs(stack.ecs_client)
    client.described[task_arn] = as_described("task-stopped-exit-0.json", task_arn)
    client.inject("describe_tasks", throttling("DescribeTasks"))
    first = sweeper(stack, client, sqs, 360).sweep()
    assert first.errors == 1 and first.reconciled == 0
    assert sweeper(stack, client, sqs, 420).sweep().reconciled == 1
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    tally.add("fault: ListTasks/DescribeTasks")


def test_the_sweep_reads_the_status_index_and_never_scans(stack: Stack, sqs: RecordingSqs) -> None:
    running_job(stack, sqs)
    dynamodb = FaultyClient(boto3.client("dynamodb", region_name="us-east-1"))
    counting = replace(
        sweeper(stack, DescribedEcs(stack.ecs_client), sqs, 400),
        table=JobTable(stack.settings.table_name, dynamodb),  # type: ignore[arg-type]
    )
    assert counting.sweep().examined == 1
    assert dynamodb.calls["scan"] == 0
    assert dynamodb.calls["query"] >= len(ACTIVE_STATUSES)


class KeysRead(FaultyClient):
    """The jobs each BatchGetItem read."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.read: list[str] = []

    def batch_get_item(self, **request: Any) -> Any:
        for table in request["RequestItems"].values():
            self.read.extend(key["job_id"]["S"] for key in table["Keys"])
        return self._client.batch_get_item(**request)


def test_the_sweep_reads_by_key_only_jobs_old_enough_to_need_anything(
    stack: Stack, sqs: RecordingSqs
) -> None:
    old = running_since(stack, "old", 600)  # past payroll's 30 min timeout
    young = running_since(stack, "young", 4, idle_seconds=240)  # younger than any check's wait
    dynamodb = KeysRead(boto3.client("dynamodb", region_name="us-east-1"))
    sweep = replace(
        sweeper(stack, DescribedEcs(stack.ecs_client), sqs, 0),
        table=JobTable(stack.settings.table_name, dynamodb),  # type: ignore[arg-type]
        catalog=stack.catalog._replace(pools=MappingProxyType({})),  # no warm lane: the ECS waits only
    )
    assert sweep.quiet_seconds(JobStatus.RUNNING) == 300  # the event grace; the shortest timeout is 600 s
    # With a warm pool, running jobs are read as soon as a claimed attempt's heartbeat can go stale.
    with_pools = replace(sweep, catalog=stack.catalog)
    assert with_pools.quiet_seconds(JobStatus.RUNNING) == STALE_AFTER_SECONDS
    report = sweep.sweep()
    assert (report.examined, report.timed_out) == (1, 1)
    assert dynamodb.read == [old]
    job = stack.table.get(young)
    assert job is not None and job.status is JobStatus.RUNNING


def running_since(stack: Stack, key: str, minutes: int, idle_seconds: int = 30) -> str:
    """A payroll job created and RUNNING since `minutes` before T0, its last event `idle_seconds`
    before T0."""
    start = iso(T0 - timedelta(minutes=minutes))
    attempt = Attempt(
        number=1,
        strategy="FARGATE",
        capacity_provider="FARGATE",
        dispatched_at=start,
        task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/{key}",
        last_status="RUNNING",
        event_version=3,
        timeline={"created": start, "started": start},
    )
    job = make_job(
        job_id=job_id_for("payroll-calculation", key),
        status=JobStatus.RUNNING,
        created_at=start,
        updated_at=iso(T0 - timedelta(seconds=idle_seconds)),
        attempts=(attempt,),
    )
    assert stack.table.create(job) is not None
    return job.job_id


def test_a_status_holding_more_than_the_sweep_reads_is_read_oldest_first_and_counted(
    stack: Stack, sqs: RecordingSqs, monkeypatch: pytest.MonkeyPatch, tally: Tally
) -> None:
    oldest = running_since(stack, "oldest", 600)  # payroll's timeout is 30 min
    for key in ("a", "b", "c"):
        running_since(stack, key, 5)
    counted: dict[str, int] = {}
    monkeypatch.setattr(
        batchgate.services.sweep, "count", lambda name, value=1: counted.update({name: value})
    )
    client = DescribedEcs(stack.ecs_client)
    report = sweeper(stack, client, sqs, 0, SweepSettings(max_jobs_per_status=3)).sweep()
    assert report.examined == 3 and report.capped == 1
    assert counted["SweepCapped"] == 1
    assert report.timed_out == 1 and [arn for arn, _ in client.stopped] == [
        "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/oldest"
    ]
    job = stack.table.get(oldest)
    assert job is not None and job.status is JobStatus.TIMED_OUT
    # The oldest has ended: the next run reads the rest, all of them.
    again = sweeper(stack, client, sqs, 60, SweepSettings(max_jobs_per_status=3)).sweep()
    assert (again.examined, again.capped, again.timed_out) == (3, 0, 0)
    assert counted["SweepCapped"] == 0
    tally.add("sweep: timeouts")


def test_jobs_past_their_timeout_and_stale_ones_are_described_100_a_call_in_their_own_passes(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    overdue = [running_since(stack, f"overdue-{n}", 600) for n in range(60)]
    stale = [running_since(stack, f"stale-{n}", 10, idle_seconds=400) for n in range(60)]
    client = DescribedEcs(stack.ecs_client)
    client.forgotten.update(
        f"arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/stale-{n}" for n in range(60)
    )
    report = sweeper(stack, client, sqs, 0).sweep()
    assert client.calls["describe_tasks"] == 2
    assert (report.examined, report.timed_out, report.errors) == (120, 60, 0)
    assert len(client.stopped) == 60
    assert {job.job_id for job in all_jobs(stack) if job.status is JobStatus.TIMED_OUT} == set(overdue)
    assert {job.job_id for job in all_jobs(stack) if job.status is JobStatus.RUNNING} == set(stale)
    tally.add("sweep: timeouts", 60)


def test_the_handler_sweeps_on_the_schedule_event(
    stack: Stack, load_handler: Callable[[str], ModuleType]
) -> None:
    app = load_handler("sweep")
    result = app.handler(event_fixture("sweep-schedule.json"), LambdaContextStub())
    assert result["examined"] == 0 and result["errors"] == 0
