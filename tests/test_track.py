from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import batchgate.services.track
import boto3
import pytest
from batchgate.adapters.ecs import EcsTasks, LaunchOutcome
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.jobs import MAX_STORED_TEXT, Job, JobStatus, LaunchPlan
from batchgate.domain.task_events import InvalidTaskEvent, TaskStateChange, apply_task_event
from batchgate.services.dispatch import begin_attempt, fail_attempt, note_attempt_error, record_task
from batchgate.services.track import JobNotFound, TrackResult
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import LambdaContextStub, Stack, event_fixture
from tests.test_dispatch import PAYROLL, PAYROLL_JOB
from tests.test_jobs import make_job

HAPPY_PATH = ["task-provisioning.json", "task-pending.json", "task-running.json", "task-stopped-exit-0.json"]
TASK_ARN = event_fixture("task-running.json")["detail"]["taskArn"]


def dispatched_job(stack: Stack, task_arn: str = TASK_ARN) -> Job:
    """The fixture job as dispatch leaves it, RunTask having returned the fixture's task."""
    client = stack.ecs_client
    stubber = Stubber(client)
    stubber.add_response("run_task", {"tasks": [{"taskArn": task_arn}], "failures": []})
    with stubber:
        stack.dispatcher(EcsTasks(stack.settings.cluster, client)).dispatch("m-1", PAYROLL)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.DISPATCHED
    return job


def with_registered_task_definition(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    """The fixture event pointing at the task definition registered in the moto account."""
    event = copy.deepcopy(event)
    definition = stack.ecs_client.describe_task_definition(taskDefinition="batchgate-payroll")
    event["detail"]["taskDefinitionArn"] = definition["taskDefinition"]["taskDefinitionArn"]
    return event


@pytest.mark.parametrize(
    ("fixture", "status", "reason_fragment"),
    [
        ("task-provisioning.json", JobStatus.PROVISIONING, None),
        ("task-pending.json", JobStatus.PENDING, None),
        ("task-running.json", JobStatus.RUNNING, None),
        ("task-stopped-exit-0.json", JobStatus.SUCCEEDED, None),
        ("task-stopped-exit-1.json", JobStatus.FAILED, "exit code 1"),
        # Infrastructure failures: the default retry policy gives the job another attempt.
        ("task-stopped-failed-to-start.json", JobStatus.RETRYING, "CannotPullContainerError"),
        ("task-stopped-spot-interruption.json", JobStatus.RETRYING, "SpotInterruption"),
    ],
)
def test_each_sample_event_moves_the_job(
    stack: Stack, fixture: str, status: JobStatus, reason_fragment: str | None
) -> None:
    event = event_fixture(fixture)
    dispatched_job(stack, event["detail"]["taskArn"])
    assert stack.tracker().track(event) is TrackResult.APPLIED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is status
    attempt = job.attempt
    assert attempt is not None and attempt.event_version == event["detail"]["version"]
    assert attempt.timeline["created"] == event["detail"]["createdAt"]
    if reason_fragment:
        assert reason_fragment in (job.reason or "")
    if status.is_terminal or status is JobStatus.RETRYING:
        assert attempt.stop_code == event["detail"]["stopCode"]
        assert attempt.stopped_reason == event["detail"].get("stoppedReason")


def test_stopped_event_records_exit_code_and_log_pointer(stack: Stack) -> None:
    dispatched_job(stack)
    event = with_registered_task_definition(stack, event_fixture("task-stopped-exit-1.json"))
    dispatched = stack.table.get(PAYROLL_JOB)
    assert dispatched is not None and dispatched.attempt is not None
    stack.table.mutate(PAYROLL_JOB, lambda job: _retarget(job, event["detail"]["taskArn"]))
    stack.tracker().track(event)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.attempt is not None
    assert job.attempt.exit_code == 1
    task_id = event["detail"]["taskArn"].rsplit("/", 1)[-1]
    assert job.attempt.log_group == "/ecs/batchgate-payroll"
    assert job.attempt.log_stream == f"batch/payroll/{task_id}"
    assert job.to_item()["log_stream"] == job.attempt.log_stream


def _retarget(job: Job, task_arn: str) -> Job:
    """The job with its attempt's task replaced (record_task never replaces a recorded task)."""
    attempt = job.attempt
    assert attempt is not None
    return job.with_attempt(attempt._replace(task_arn=task_arn))


def test_task_not_started_by_batchgate_is_ignored(stack: Stack) -> None:
    assert stack.tracker().track(event_fixture("task-not-ours.json")) is TrackResult.NOT_OURS


def test_event_for_an_unknown_job_is_an_error_so_it_reaches_the_dead_letter_queue(stack: Stack) -> None:
    with pytest.raises(JobNotFound):
        stack.tracker().track(event_fixture("task-running.json"))


def test_malformed_events_are_refused_clearly() -> None:
    event = event_fixture("task-running.json")
    del event["detail"]["lastStatus"]
    with pytest.raises(InvalidTaskEvent, match="lastStatus"):
        TaskStateChange.from_event(event)
    with pytest.raises(InvalidTaskEvent, match=r"aws\.ecs"):
        TaskStateChange.from_event(event_fixture("sweep-schedule.json"))


@pytest.mark.parametrize("where", ["version", "exitCode", "BATCHGATE_ATTEMPT"])
def test_an_infinite_number_in_an_event_is_refused_or_ignored(where: str) -> None:
    """Python's JSON reader (Lambda's) accepts Infinity, which int() cannot convert."""
    event = event_fixture("task-stopped-exit-1.json")
    detail = event["detail"]
    if where == "version":
        detail["version"] = float("inf")
    elif where == "exitCode":
        detail["containers"][0]["exitCode"] = float("inf")
    else:
        for variable in detail["overrides"]["containerOverrides"][0]["environment"]:
            if variable["name"] == where:
                variable["value"] = float("inf")
    if where == "BATCHGATE_ATTEMPT":
        assert TaskStateChange.from_event(event).attempt is None
    else:
        with pytest.raises(InvalidTaskEvent):
            TaskStateChange.from_event(event)


def test_unknown_fields_are_tolerated() -> None:
    event = event_fixture("task-running.json")
    event["detail"]["someFutureField"] = {"nested": [1, 2]}
    event["brandNewTopLevel"] = True
    assert TaskStateChange.from_event(event).last_status == "RUNNING"


def test_duplicate_and_stale_events_change_nothing(stack: Stack) -> None:
    dispatched_job(stack)
    tracker = stack.tracker()
    assert tracker.track(event_fixture("task-running.json")) is TrackResult.APPLIED
    assert tracker.track(event_fixture("task-running.json")) is TrackResult.UNCHANGED
    assert tracker.track(event_fixture("task-pending.json")) is TrackResult.UNCHANGED
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RUNNING


@pytest.mark.parametrize(
    ("fixture", "metrics"),
    [
        ("task-stopped-exit-0.json", ["JobsSucceeded", "StartLatency FARGATE"]),
        ("task-stopped-spot-interruption.json", ["JobsRetried", "StartLatency FARGATE_SPOT"]),
    ],
)
def test_a_duplicate_delivered_concurrently_counts_nothing_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fixture: str, metrics: list[str]
) -> None:
    """Two deliveries of one STOPPED event both read the job before either writes: the second one's
    write loses, and the job it reads back already holds the stop."""
    event = event_fixture(fixture)
    dispatched_job(stack, event["detail"]["taskArn"])
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = JobsQueue(sqs.create_queue(QueueName="batchgate-jobs")["QueueUrl"], sqs)
    tracker = replace(stack.tracker(), jobs_queue=queue)
    provisioning = event_fixture("task-provisioning.json")
    provisioning["detail"]["taskArn"] = event["detail"]["taskArn"]
    tracker.track(provisioning)
    counted: list[str] = []
    monkeypatch.setattr(batchgate.services.track, "count", lambda name, value=1: counted.append(name))
    monkeypatch.setattr(
        batchgate.services.track,
        "record_start_latency",
        lambda strategy, seconds: counted.append(f"StartLatency {strategy}"),
    )
    second_read = stack.table.get(PAYROLL_JOB)
    assert tracker.track(event) is TrackResult.APPLIED
    assert counted == metrics
    # The second delivery, holding its read from before the first one's write.
    reads = iter([second_read])
    read_table = stack.table.get
    monkeypatch.setattr(stack.table, "get", lambda job_id: next(reads, None) or read_table(job_id))
    assert tracker.track(event) is TrackResult.UNCHANGED
    assert counted == metrics


def test_event_before_dispatch_recorded_the_task_is_kept(stack: Stack) -> None:
    """ECS can report the task before dispatch writes the task ARN; dispatch must not undo it."""
    plan = LaunchPlan("FARGATE", "FARGATE", "catalog default")
    stored = stack.table.create(make_job(job_id=PAYROLL_JOB))
    assert stored is not None
    stack.table.mutate(PAYROLL_JOB, lambda job: begin_attempt(job, plan, "2026-11-28T10:00:00.000Z"))
    stack.tracker().track(event_fixture("task-running.json"))
    stack.table.mutate(PAYROLL_JOB, lambda job: _retarget(job, TASK_ARN))
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.RUNNING
    assert job.attempt is not None and job.attempt.task_arn == TASK_ARN


def test_handler_applies_the_sample_event(stack: Stack, load_handler: Callable[[str], ModuleType]) -> None:
    dispatched_job(stack)
    app = load_handler("track")
    assert app.handler(event_fixture("task-stopped-exit-0.json"), LambdaContextStub()) == {
        "result": "APPLIED"
    }
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.attempt is not None
    assert job.attempt.exit_code == 0


def _replay(job: Job, names: list[str]) -> Job:
    for name in names:
        change = TaskStateChange.from_event(event_fixture(name))
        job = apply_task_event(job, change, "payroll") or job
    return job


def _dispatched_pure_job() -> Job:
    plan = LaunchPlan("FARGATE", "FARGATE", "catalog default")
    job = begin_attempt(make_job(job_id=PAYROLL_JOB), plan, "2026-11-28T10:00:00.000Z")
    assert job is not None
    return record_task(job, 1, TASK_ARN, LaunchOutcome(TASK_ARN), "2026-11-28T10:00:00.100Z") or job


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(HAPPY_PATH), max_size=6).flatmap(
        lambda extra: st.permutations(HAPPY_PATH + extra)
    )
)
def test_any_duplication_and_order_of_events_gives_the_same_job(order: list[str]) -> None:
    """Invariant 2: the final job depends only on the set of events, not their order or repetition."""
    expected = _replay(_dispatched_pure_job(), HAPPY_PATH)
    assert expected.status is JobStatus.SUCCEEDED
    assert _replay(_dispatched_pure_job(), order) == expected


def test_reordered_events_through_the_table_give_the_same_item(stack: Stack) -> None:
    dispatched_job(stack)
    tracker = stack.tracker()
    for name in [
        "task-stopped-exit-0.json",
        "task-running.json",
        "task-provisioning.json",
        "task-stopped-exit-0.json",
    ]:
        tracker.track(event_fixture(name))
    reordered = stack.table.get(PAYROLL_JOB)
    assert reordered is not None
    expected = _replay(_dispatched_pure_job(), HAPPY_PATH)
    assert reordered.status is JobStatus.SUCCEEDED
    # Only when dispatch ran differs (the pure replay dispatches at a fixed time).
    assert [a._replace(dispatched_at="") for a in reordered.attempts] == [
        a._replace(dispatched_at="") for a in expected.attempts
    ]


def test_a_spot_interrupted_task_that_exits_0_is_not_a_success() -> None:
    event = event_fixture("task-stopped-spot-interruption.json")
    for container in event["detail"]["containers"]:
        container["exitCode"] = 0
    change = TaskStateChange.from_event(event)
    job = apply_task_event(_dispatched_pure_job_for(change.task_arn), change, "payroll")
    assert job is not None and job.status is JobStatus.FAILED
    assert "SpotInterruption" in (job.reason or "")


def _dispatched_pure_job_for(task_arn: str) -> Job:
    plan = LaunchPlan("FARGATE_SPOT", "FARGATE_SPOT", "catalog default")
    job = begin_attempt(make_job(job_id=PAYROLL_JOB), plan, "2026-11-28T10:00:00.000Z")
    assert job is not None
    return record_task(job, 1, task_arn, LaunchOutcome(task_arn), "2026-11-28T10:00:00.100Z") or job


def test_updated_at_has_milliseconds_and_is_never_before_the_task_stopped(stack: Stack) -> None:
    # EventBridge's `time` has whole seconds; the task's own stoppedAt has milliseconds.
    event = event_fixture("task-stopped-exit-0.json")
    assert event["time"].endswith(":05Z") and event["detail"]["stoppedAt"].endswith(":05.617Z")
    dispatched_job(stack, event["detail"]["taskArn"])
    stack.tracker().track(event)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None
    assert job.updated_at == event["detail"]["stoppedAt"]


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The stopped fixture event with the field at `path` (from the event's top) set to `value`."""
    event = event_fixture("task-stopped-exit-1.json")
    target: Any = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("time",), "yesterday"),
        (("time",), 1764324005),
        (("detail", "createdAt"), "not a time"),
        (("detail", "startedAt"), 1764324001482),
        (("detail", "stoppedAt"), "2026-13-45T99:00:00Z"),
        (("detail", "pullStartedAt"), {"at": "2026-11-28T10:00:10.302Z"}),
        (("detail", "stopCode"), {"code": "EssentialContainerExited"}),
        (("detail", "stoppedReason"), 42),
        (("detail", "containers"), {"name": "payroll"}),
        (("detail", "containers"), ["payroll"]),
        (("detail", "containers", 0, "exitCode"), "1"),
        (("detail", "containers", 0, "exitCode"), True),
        (("detail", "containers", 0, "reason"), ["OOM"]),
        (("detail", "containers", 0, "name"), 7),
        (("detail", "capacityProviderName"), ["FARGATE"]),
        (("detail", "launchType"), 1),
        (("detail", "taskDefinitionArn"), {"arn": "x"}),
        (("detail", "group"), 3),
        (("detail", "clusterArn"), 3),
        (("detail", "version"), "7"),
        (("detail", "version"), 7.5),
    ],
)
def test_a_malformed_field_is_refused(path: tuple[str | int, ...], value: Any) -> None:
    named = "container" if path[-1] == "containers" or isinstance(path[-1], int) else str(path[-1])
    with pytest.raises(InvalidTaskEvent, match=named):
        TaskStateChange.from_event(_with(path, value))


@pytest.mark.parametrize(
    ("path", "value"), [(("detail", "createdAt"), "not a time"), (("detail", "stopCode"), {"code": "x"})]
)
def test_a_malformed_event_is_refused_before_anything_is_written(
    stack: Stack, path: tuple[str | int, ...], value: Any
) -> None:
    event = _with(path, value)
    dispatched_job(stack, event["detail"]["taskArn"])
    before = stack.table.get(PAYROLL_JOB)
    with pytest.raises(InvalidTaskEvent):
        stack.tracker().track(event)
    assert stack.table.get(PAYROLL_JOB) == before


def test_absent_and_null_optional_fields_are_accepted() -> None:
    event = event_fixture("task-stopped-exit-1.json")
    for name in ("stopCode", "stoppedReason", "group", "capacityProviderName", "stoppingAt"):
        event["detail"][name] = None
    del event["detail"]["containers"]
    del event["time"]
    change = TaskStateChange.from_event(event)
    assert change.containers == () and change.stop_code is None and "stopping" not in change.timestamps
    assert change.time == event["detail"]["updatedAt"]


def _begun_pure_job() -> Job:
    plan = LaunchPlan("FARGATE", "FARGATE", "catalog default")
    job = begin_attempt(make_job(job_id=PAYROLL_JOB), plan, "2026-11-28T10:00:00.000Z")
    assert job is not None and job.status is JobStatus.DISPATCHING
    return job


def test_a_job_that_failed_at_dispatch_never_takes_over_a_stray_task() -> None:
    failed = fail_attempt(
        _begun_pure_job(), 1, "RunTask AccessDeniedException: no", "2026-11-28T10:00:00.200Z"
    )
    assert failed is not None and failed.status is JobStatus.FAILED and failed.attempt is not None
    for name in HAPPY_PATH:
        change = TaskStateChange.from_event(event_fixture(name))
        assert change.attempt == 1
        assert apply_task_event(failed, change, "payroll") is None


def test_a_task_event_without_the_attempt_override_takes_over_no_attempt() -> None:
    event = event_fixture("task-running.json")
    del event["detail"]["overrides"]
    change = TaskStateChange.from_event(event)
    assert change.attempt is None
    assert apply_task_event(_begun_pure_job(), change, "payroll") is None
    # Once dispatch recorded the task, its events are found by task ARN.
    moved = apply_task_event(_dispatched_pure_job(), change, "payroll")
    assert moved is not None and moved.status is JobStatus.RUNNING


def test_an_event_that_beats_dispatch_is_taken_over_by_the_attempt_it_names() -> None:
    change = TaskStateChange.from_event(event_fixture("task-running.json"))
    moved = apply_task_event(_begun_pure_job(), change, "payroll")
    assert moved is not None and moved.status is JobStatus.RUNNING
    assert moved.attempt is not None and moved.attempt.task_arn == change.task_arn
    # A later attempt in flight does not take over the task of an earlier attempt number.
    retried = begin_attempt(
        _begun_pure_job()._replace(status=JobStatus.RETRYING),
        LaunchPlan("FARGATE", "FARGATE", "retry"),
        "2026-11-28T10:01:00.000Z",
    )
    assert retried is not None and retried.attempt is not None and retried.attempt.number == 2
    assert apply_task_event(retried, change, "payroll") is None


def test_long_reasons_from_ecs_are_cut_before_they_are_stored() -> None:
    event = event_fixture("task-stopped-exit-1.json")
    event["detail"]["stoppedReason"] = "s" * 5000
    event["detail"]["containers"][0]["reason"] = "c" * 5000
    change = TaskStateChange.from_event(event)
    job = apply_task_event(_dispatched_pure_job_for(change.task_arn), change, "payroll")
    assert job is not None and job.attempt is not None
    assert len(job.attempt.stopped_reason or "") == MAX_STORED_TEXT
    assert len(job.attempt.container_reason or "") == MAX_STORED_TEXT
    assert len(job.reason or "") == MAX_STORED_TEXT and (job.reason or "").startswith("exit code 1")


def test_long_errors_are_cut_before_they_are_stored() -> None:
    failed = fail_attempt(_begun_pure_job(), 1, "RunTask InvalidParameterException: " + "e" * 5000, "t")
    assert failed is not None and failed.attempt is not None
    assert len(failed.attempt.error or "") == MAX_STORED_TEXT and len(failed.reason or "") == MAX_STORED_TEXT
    noted = note_attempt_error(_begun_pure_job(), 1, "RunTask ServerException: " + "e" * 5000)
    assert noted is not None and noted.attempt is not None
    assert len(noted.attempt.error or "") == MAX_STORED_TEXT
