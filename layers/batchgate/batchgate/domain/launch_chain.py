"""Walking a plan's fallback chain within one attempt: pure transitions, applied with JobTable.mutate.

A plan is a chain of strategies (`LaunchPlan.chain`: the choice, then the fallbacks). When RunTask
reports no capacity for the current try (failures RESOURCE:*, "Capacity is unavailable", Spot short),
the attempt moves to the next strategy of the chain in the same dispatch, as a new try with its own
clientToken (`<job id>-<attempt>.<try>`, `batchgate.domain.jobs.client_token`). Each try is written to the
attempt before its RunTask, and a try only advances from the try that failed, so redelivered or
concurrent dispatches of the same message either repeat the same try (same token, same parameters:
ECS returns the same task) or continue from where the other one got: never two tasks for one try.
`Attempt.tries` keeps every try that did not start a task (strategy, capacity provider, token,
failures); the try that did is the attempt's own strategy, capacity provider and task.
"""

from __future__ import annotations

from typing import Any

from batchgate.adapters.ecs import LaunchOutcome
from batchgate.domain.jobs import Attempt, Job, client_token, stored_text
from batchgate.domain.strategy_settings import EC2


def capacity_provider_for(strategy: str, ec2_capacity_provider: str | None) -> str:
    return ec2_capacity_provider if strategy == EC2 and ec2_capacity_provider else strategy


def try_entry(
    job_id: str, attempt: Attempt, failures: tuple[dict[str, str], ...], error: str
) -> dict[str, Any]:
    return {
        "try": attempt.launch_try,
        "strategy": attempt.strategy,
        "capacity_provider": attempt.capacity_provider,
        "client_token": client_token(job_id, attempt.number, attempt.launch_try),
        "failures": [dict(failure) for failure in failures],
        "error": stored_text(error),
    }


def _with_try(attempt: Attempt, entry: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The attempt's tries with `entry` in place of an earlier record of the same try (a redelivery
    that retried the last try of an exhausted chain updates it instead of adding another)."""
    kept = tuple(existing for existing in attempt.tries if existing.get("try") != entry["try"])
    return (*kept, entry)


def has_next_try(job: Job, attempt: Attempt) -> bool:
    return job.plan is not None and attempt.launch_try + 1 < len(job.plan.chain)


def advance_try(
    job: Job,
    number: int,
    from_try: int,
    outcome: LaunchOutcome,
    ec2_capacity_provider: str | None,
    *,
    failure: str | None = None,
) -> Job | None:
    """The job with attempt `number` moved from try `from_try` (which failed for capacity, or, for a
    WARM try, whose offer could not be sent: `failure` says what failed) to the next strategy of its
    plan's chain. None (nothing to write) when the attempt has a task already, has moved on from
    `from_try`, or the chain is exhausted."""
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.task_arn is not None or attempt.launch_try != from_try:
        return None
    if job.status.is_terminal or not has_next_try(job, attempt) or job.plan is None:
        return None
    summary = outcome.failure_summary()
    following = job.plan.chain[from_try + 1]
    entry = try_entry(job.job_id, attempt, outcome.failures, failure or f"RunTask failures: {summary}")
    why = (
        f"{failure} ({attempt.strategy})" if failure else f"RunTask failures on {attempt.strategy}: {summary}"
    )
    moved = attempt._replace(
        strategy=following,
        capacity_provider=capacity_provider_for(following, ec2_capacity_provider),
        launch_try=from_try + 1,
        tries=_with_try(attempt, entry),
        launch_failures=outcome.failures,
        error=stored_text(f"{why}; falling back to {following}"),
    )
    return job.with_attempt(moved)


def note_try_failure(job: Job, number: int, from_try: int, outcome: LaunchOutcome, error: str) -> Job | None:
    """The last try of the chain failed for capacity: record it; the record goes back to the queue and
    the same try (same token) is repeated later."""
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.task_arn is not None or attempt.launch_try != from_try:
        return None
    entry = try_entry(job.job_id, attempt, outcome.failures, error)
    return job.with_attempt(
        attempt._replace(
            error=stored_text(error),
            launch_failures=outcome.failures,
            tries=_with_try(attempt, entry),
        )
    )
