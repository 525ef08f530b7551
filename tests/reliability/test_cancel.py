"""Cancel: the job ends CANCELLED, its task is stopped, and nothing launches or retries it again."""

from __future__ import annotations

import batchgate.services.cancel
import pytest
from batchgate.adapters.ecs import EcsTasks
from batchgate.domain.jobs import JobStatus
from batchgate.domain.relaunch import Relaunch
from batchgate.services.cancel import CancelError, cancel_job
from batchgate.services.dispatch import DispatchResult, RetryLater

from tests.conftest import Stack
from tests.reliability.conftest import RecordingSqs, Tally, tasks_by_attempt
from tests.reliability.test_events_and_retries import retargeted, started_task, tracker
from tests.reliability.test_sweep import DescribedEcs, sweeper
from tests.test_dispatch import PAYROLL, PAYROLL_JOB, RecordingEcs, throttled


def test_cancel_stops_the_task_and_a_later_stopped_event_keeps_it_cancelled(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    assert stack.dispatcher().dispatch("m-1", PAYROLL) is DispatchResult.DISPATCHED
    task_arn = started_task(stack, 1)
    track = tracker(stack, sqs)
    track.track(retargeted("task-running.json", task_arn, 1))
    client = DescribedEcs(stack.ecs_client)
    tasks = EcsTasks(stack.settings.cluster, client)  # type: ignore[arg-type]
    job = cancel_job(stack.table, tasks, PAYROLL_JOB, "alice", reason="wrong period")
    assert job.status is JobStatus.CANCELLED
    assert job.reason == "batchgate: cancelled by alice: wrong period"
    assert client.stopped == [(task_arn, "batchgate: cancelled by alice: wrong period")]
    # The task's STOPPED event: a Spot-like infrastructure stop would be retried, a cancel never is.
    stopped = retargeted("task-stopped-spot-interruption.json", task_arn, 1)
    stopped["detail"]["stoppedReason"] = job.reason
    track.track(stopped)
    after = stack.table.get(PAYROLL_JOB)
    assert after is not None and after.status is JobStatus.CANCELLED
    assert after.attempt is not None and after.attempt.stop_code == "SpotInterruption"
    tally.check("not retried", sqs.sent == [])
    assert sqs.sent == []
    # Cancelling again is harmless; the sweep leaves it alone.
    assert cancel_job(stack.table, tasks, PAYROLL_JOB, "alice").status is JobStatus.CANCELLED
    assert sweeper(stack, client, sqs, 10**6).sweep().examined == 0
    tally.add("cancels", 2)


def test_a_cancelled_job_is_never_launched_or_relaunched(
    stack: Stack, sqs: RecordingSqs, tally: Tally
) -> None:
    ecs = RecordingEcs(stack, fail_first=throttled())
    dispatcher = stack.dispatcher(ecs)
    with pytest.raises(RetryLater):
        dispatcher.dispatch("m-1", PAYROLL)  # DISPATCHING, RunTask to be retried
    job = cancel_job(stack.table, ecs, PAYROLL_JOB, "bob")
    assert job.status is JobStatus.CANCELLED
    assert dispatcher.dispatch("m-1", PAYROLL) is DispatchResult.DUPLICATE  # the SQS redelivery
    assert dispatcher.relaunch(Relaunch(PAYROLL_JOB, 1).body()) is DispatchResult.DUPLICATE
    assert dispatcher.relaunch(Relaunch(PAYROLL_JOB, 2).body()) is DispatchResult.DUPLICATE
    assert len(ecs.requests) == 1 and stack.tasks_started_by(PAYROLL_JOB) == []
    tally.add("cancels")
    tally.add("duplicated deliveries", 3)


def test_a_task_started_while_its_job_was_cancelled_is_stopped(stack: Stack, tally: Tally) -> None:
    """Cancel lands between dispatch writing the attempt and RunTask returning."""
    ecs = RecordingEcs(stack)
    original = ecs.flaky.run_task

    def run_task_racing_a_cancel(**request: object) -> object:
        cancel_job(stack.table, EcsTasks(stack.settings.cluster, stack.ecs_client), PAYROLL_JOB, "carol")
        return original(**request)

    ecs.flaky.run_task = run_task_racing_a_cancel  # type: ignore[method-assign]
    stack.dispatcher(ecs).dispatch("m-1", PAYROLL)
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and job.status is JobStatus.CANCELLED
    [task_arn] = stack.tasks_started_by(PAYROLL_JOB)
    task = stack.ecs_client.describe_tasks(cluster=stack.settings.cluster, tasks=[task_arn])["tasks"][0]
    assert task["desiredStatus"] == "STOPPED" and "cancelled by carol" in task["stoppedReason"]
    assert tasks_by_attempt(stack, PAYROLL_JOB) == {1: 1}
    tally.add("cancels")


def test_a_retrying_job_cancelled_gets_no_next_attempt(stack: Stack, sqs: RecordingSqs, tally: Tally) -> None:
    dispatcher = stack.dispatcher()
    dispatcher.dispatch("m-1", PAYROLL)
    tracker(stack, sqs).track(retargeted("task-stopped-failed-to-start.json", started_task(stack, 1), 1))
    cancel_job(stack.table, EcsTasks(stack.settings.cluster, stack.ecs_client), PAYROLL_JOB, "dave")
    [(relaunch, _)] = sqs.relaunches()
    assert dispatcher.relaunch(relaunch.body()) is DispatchResult.DUPLICATE
    assert tasks_by_attempt(stack, PAYROLL_JOB) == {1: 1}
    tally.check("not retried", True)
    tally.add("cancels")


def test_cancel_refuses_unknown_and_ended_jobs(stack: Stack) -> None:
    ecs = EcsTasks(stack.settings.cluster, stack.ecs_client)
    with pytest.raises(CancelError, match="no job"):
        cancel_job(stack.table, ecs, "bg-payroll-calculation-00000000000000000000", "erin")
    stack.dispatcher().dispatch("m-1", PAYROLL)
    tracker(stack, RecordingSqs()).track(retargeted("task-stopped-exit-0.json", started_task(stack, 1), 1))
    with pytest.raises(CancelError, match="already ended SUCCEEDED"):
        cancel_job(stack.table, ecs, PAYROLL_JOB, "erin")


def test_two_cancels_at_once_count_the_job_cancelled_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.dispatcher().dispatch("m-1", PAYROLL)
    ecs = EcsTasks(stack.settings.cluster, stack.ecs_client)
    counted: list[str] = []
    monkeypatch.setattr(batchgate.services.cancel, "count", lambda name, value=1: counted.append(name))
    before_either = stack.table.get(PAYROLL_JOB)
    assert cancel_job(stack.table, ecs, PAYROLL_JOB, "erin").status is JobStatus.CANCELLED
    # The other cancel read the job before this one wrote; its write loses and it reads the cancel back.
    reads = iter([before_either])
    fresh = stack.table.get
    monkeypatch.setattr(stack.table, "get", lambda job_id: next(reads, None) or fresh(job_id))
    assert cancel_job(stack.table, ecs, PAYROLL_JOB, "frank").status is JobStatus.CANCELLED
    assert counted == ["JobsCancelled"]
    job = stack.table.get(PAYROLL_JOB)
    assert job is not None and "erin" in (job.reason or "")
