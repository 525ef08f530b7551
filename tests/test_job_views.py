"""job_views: phases, latencies, plain-word outcomes and console links, checked by hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from batchgate.domain.jobs import Attempt, Job, JobStatus, LaunchPlan
from batchgate.ops import job_views

from tests.test_jobs import make_job

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/1987b34b2286a9e1d97095b23427e387"
TIMELINE = {
    "created": "2026-11-28T10:00:02.000Z",
    "connectivity": "2026-11-28T10:00:09.000Z",
    "pull_started": "2026-11-28T10:00:10.000Z",
    "pull_stopped": "2026-11-28T10:00:25.500Z",
    "started": "2026-11-28T10:00:27.000Z",
    "stopping": "2026-11-28T10:05:27.000Z",
    "stopped": "2026-11-28T10:05:40.000Z",
}


def attempt(number: int = 1, **changes: Any) -> Attempt:
    base = Attempt(
        number=number,
        strategy="FARGATE",
        capacity_provider="FARGATE",
        dispatched_at="2026-11-28T10:00:01.000Z",
        task_arn=TASK_ARN,
        last_status="STOPPED",
        timeline=dict(TIMELINE),
        exit_code=0,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
        log_group="/ecs/batchgate-payroll",
        log_stream="batch/payroll/1987b34b2286a9e1d97095b23427e387",
    )
    return base._replace(**changes)


def job_with(*attempts: Attempt, status: JobStatus = JobStatus.SUCCEEDED, reason: str | None = None) -> Job:
    return make_job(
        status=status,
        attempts=attempts,
        reason=reason,
        plan=LaunchPlan("FARGATE", "FARGATE", "launch class standard: FARGATE (catalog default)"),
    )


def test_phases_follow_the_lifecycle_with_durations_since_the_previous_phase() -> None:
    job = job_with(attempt())
    result = job_views.phases(job, job.attempts[0])
    assert [(phase.key, phase.duration) for phase in result] == [
        ("queued", None),  # job created 10:00:00.000
        ("dispatched", 1.0),
        ("created", 1.0),
        ("pull_started", 8.0),
        ("pull_stopped", 15.5),
        ("started", 1.5),
        ("stopping", 300.0),
        ("stopped", 13.0),
    ]
    assert result[0].spent_on is None and result[4].spent_on == "pulling the container image"


def test_phases_skip_what_the_task_never_reached_and_show_clock_skew_as_zero() -> None:
    timeline = {"created": "2026-11-28T10:00:00.500Z", "stopped": "2026-11-28T10:01:00.500Z"}
    job = job_with(attempt(timeline=timeline), status=JobStatus.FAILED)
    result = job_views.phases(job, job.attempts[0])
    # dispatched at 10:00:01.000 is after "created" at 10:00:00.500 (two clocks): shown as 0, not -0.5
    assert [(phase.key, phase.duration) for phase in result] == [
        ("queued", None),
        ("dispatched", 1.0),
        ("created", 0.0),
        ("stopped", 60.0),
    ]


def test_a_later_attempt_starts_at_its_own_dispatch() -> None:
    first = attempt(1, exit_code=1)
    second = attempt(
        2, dispatched_at="2026-11-28T10:06:00.000Z", timeline={"created": "2026-11-28T10:06:03.000Z"}
    )
    job = job_with(first, second, status=JobStatus.PROVISIONING)
    assert [phase.key for phase in job_views.phases(job, second)] == ["dispatched", "created"]
    assert job_views.phases(job, second)[1].duration == 3.0
    assert job_views.phases(job, first)[0].key == "queued"


def test_start_latency_run_time_and_time_to_start() -> None:
    current = attempt()
    job = job_with(current)
    assert job_views.start_latency(current) == 25.0  # created 10:00:02 -> started 10:00:27
    assert job_views.time_to_start(job, current) == 27.0  # queued 10:00:00 -> started
    assert job_views.run_time(current) == 313.0  # started 10:00:27 -> stopped 10:05:40
    assert job_views.start_latency(None) is None


def test_run_time_of_a_running_task_counts_to_now() -> None:
    running = attempt(
        last_status="RUNNING",
        timeline={"created": TIMELINE["created"], "started": TIMELINE["started"]},
        exit_code=None,
        stop_code=None,
        stopped_reason=None,
    )
    now = datetime(2026, 11, 28, 10, 2, 27, tzinfo=UTC)
    assert job_views.run_time(running, now) == 120.0
    assert job_views.run_time(running) is None
    assert job_views.run_time(attempt(timeline={"created": TIMELINE["created"]})) is None


@pytest.mark.parametrize(
    ("changes", "status", "expected"),
    [
        (
            {
                "exit_code": None,
                "stop_code": "TaskFailedToStart",
                "stopped_reason": "CannotPullContainerError: x",
            },
            JobStatus.FAILED,
            "container image could not be pulled",
        ),
        (
            {
                "exit_code": None,
                "stop_code": "TaskFailedToStart",
                "stopped_reason": "ResourceInitializationError: y",
            },
            JobStatus.FAILED,
            "secret or SSM parameter",
        ),
        (
            {"exit_code": 137, "container_reason": "OutOfMemoryError: Container killed due to memory usage"},
            JobStatus.FAILED,
            "more memory than the task allows",
        ),
        ({"exit_code": 137}, JobStatus.FAILED, "most often it ran out of memory"),
        (
            {
                "exit_code": 143,
                "stop_code": "SpotInterruption",
                "stopped_reason": "Your Spot Task was interrupted.",
            },
            JobStatus.FAILED,
            "Fargate Spot took the capacity back",
        ),
        (
            {"exit_code": 137, "stop_code": "UserInitiated"},
            JobStatus.CANCELLED,
            "not exiting within the stop timeout",
        ),
        ({"exit_code": 127}, JobStatus.FAILED, "not found in the image"),
        ({"exit_code": 3}, JobStatus.FAILED, "exit code 3): its logs say why"),
        ({"exit_code": 0}, JobStatus.SUCCEEDED, "finished successfully"),
    ],
)
def test_outcome_explains_stop_codes_reasons_and_exit_codes(
    changes: dict[str, Any], status: JobStatus, expected: str
) -> None:
    job = job_with(attempt(**changes), status=status)
    result = job_views.outcome(job)
    assert result.headline.startswith(status.value)
    assert any(expected in line for line in result.explanations), result.explanations


def test_outcome_of_a_task_failed_to_start_does_not_blame_the_command() -> None:
    job = job_with(
        attempt(
            exit_code=None, stop_code="TaskFailedToStart", stopped_reason="CannotPullContainerError: gone"
        ),
        status=JobStatus.FAILED,
    )
    result = job_views.outcome(job)
    assert result.headline == "FAILED: TaskFailedToStart; CannotPullContainerError: gone"
    assert result.explanations[0] == job_views.STOP_CODES["TaskFailedToStart"]
    assert not any("exit code" in line for line in result.explanations)


def test_outcome_of_a_rejected_job_and_of_a_dispatch_failure() -> None:
    rejected = make_job(status=JobStatus.REJECTED, reason="unknown batch 'payrol'")
    result = job_views.outcome(rejected)
    assert result.headline == "REJECTED: unknown batch 'payrol'"
    assert "Reason: unknown batch 'payrol'" in result.explanations

    failed = job_with(
        attempt(
            task_arn=None,
            last_status=None,
            timeline={},
            exit_code=None,
            stop_code=None,
            stopped_reason=None,
            error="RunTask InvalidParameterException: No Fargate configuration",
        ),
        status=JobStatus.FAILED,
    )
    result = job_views.outcome(failed)
    assert result.headline == "FAILED: RunTask InvalidParameterException: No Fargate configuration"
    assert (
        "Dispatch error: RunTask InvalidParameterException: No Fargate configuration" in result.explanations
    )


def test_outcome_of_an_earlier_attempt_names_the_one_that_followed() -> None:
    first = attempt(
        1, exit_code=143, stop_code="SpotInterruption", stopped_reason="Your Spot Task was interrupted."
    )
    job = job_with(first, attempt(2), status=JobStatus.SUCCEEDED)
    result = job_views.outcome(job, first)
    assert result.headline.startswith("attempt 1: exit code 143; SpotInterruption")
    assert result.explanations[0] == "Attempt 1 was followed by attempt 2."
    assert job_views.outcome(job).headline.startswith("SUCCEEDED: exit code 0")


def test_log_console_url_double_escapes_names_like_the_console() -> None:
    url = job_views.log_console_url("ap-northeast-1", "/ecs/batchgate-payroll", "batch/payroll/abc[1]")
    assert url == (
        "https://ap-northeast-1.console.aws.amazon.com/cloudwatch/home?region=ap-northeast-1"
        "#logsV2:log-groups/log-group/$252Fecs$252Fbatchgate-payroll"
        "/log-events/batch$252Fpayroll$252Fabc$255B1$255D"
    )


def test_task_console_url() -> None:
    assert job_views.task_console_url("us-east-1", TASK_ARN) == (
        "https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/batchgate-dev/tasks/"
        "1987b34b2286a9e1d97095b23427e387/configuration?region=us-east-1"
    )
    assert job_views.task_console_url("us-east-1", "arn:aws:ecs:us-east-1:1:task/old-format-id") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.44, "0.4s"),
        (9.96, "10.0s"),
        (12.4, "12s"),
        (312, "5m 12s"),
        (7380, "2h 03m"),
        (97200, "1d 03h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert job_views.format_duration(seconds) == text


def test_job_row_has_the_listing_columns() -> None:
    row = job_views.job_row(job_with(attempt(exit_code=1), status=JobStatus.FAILED)._replace(tenant="acme"))
    assert row == {
        "job_id": make_job().job_id,
        "batch": "payroll-calculation",
        "tenant": "acme",
        "status": "FAILED",
        "strategy": "FARGATE",
        "queued": "2026-11-28T10:00:00.000Z",
        "attempts": 1,
        "start_latency_seconds": 25.0,
        "run_time_seconds": 313.0,
        "exit_code": 1,
        "reason": None,
    }


def test_job_document_carries_phases_outcome_and_links() -> None:
    document = job_views.job_document(job_with(attempt()), "us-east-1")
    assert document["strategy_reason"] == "launch class standard: FARGATE (catalog default)"
    first = document["attempts"][0]
    assert [phase["phase"] for phase in first["phases"]][:3] == ["queued", "dispatched", "created"]
    assert first["log_console_url"].endswith(
        "log-events/batch$252Fpayroll$252F1987b34b2286a9e1d97095b23427e387"
    )
    assert first["run_time_seconds"] == 313.0
    assert document["outcome"]["exit_code"] == 0


NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)),
        ("30m", datetime(2026, 11, 28, 11, 30, 0, tzinfo=UTC)),
        ("7d", datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)),
        ("1w", datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)),
        ("now", NOW),
        ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
        ("2026-11-27T02:00:00Z", datetime(2026, 11, 27, 2, tzinfo=UTC)),
        ("2026-11-27T11:00:00+09:00", datetime(2026, 11, 27, 2, tzinfo=UTC)),
    ],
)
def test_parse_moment(text: str, expected: datetime) -> None:
    assert job_views.parse_moment(text, NOW) == expected


def test_parse_moment_refuses_nonsense_with_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="use a duration such as 30m"):
        job_views.parse_moment("last tuesday", NOW)


@pytest.mark.parametrize(
    ("text", "ahead"),
    [
        ("1000000d", False),
        ("10000000d", True),
        ("99999999999999999999w", False),
        ("0001-01-01T00:00:00+01:00", False),
        ("9999-12-31T23:00:00-01:00", True),
    ],
)
def test_parse_moment_refuses_times_beyond_the_calendar(text: str, ahead: bool) -> None:
    with pytest.raises(ValueError, match="beyond the years 1 to 9999"):
        job_views.parse_moment(text, NOW, ahead=ahead)


def test_parse_moment_ahead_for_deadlines() -> None:
    assert job_views.parse_moment("2h", NOW, ahead=True) == datetime(2026, 11, 28, 14, tzinfo=UTC)
    assert job_views.parse_moment("2026-11-28T10:00:00Z", NOW, ahead=True) == datetime(
        2026, 11, 28, 10, tzinfo=UTC
    )


def test_retrying_and_sweep_notes_are_explained() -> None:
    failed_first = attempt(exit_code=1, note="PENDING for 6 min: image pull not finished")
    job = job_with(failed_first, status=JobStatus.RETRYING, reason="exit code 1: retry 2 of 3 in 30 s")
    result = job_views.outcome(job)
    assert result.explanations[0] == job_views.STATUS_MEANINGS[JobStatus.RETRYING]
    assert "Reason: exit code 1: retry 2 of 3 in 30 s" in result.explanations
    assert "Sweep: PENDING for 6 min: image pull not finished" in result.explanations
    assert all(job_views.status_meaning(status) for status in JobStatus)
