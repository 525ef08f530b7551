"""The retry policy (batchgate.domain.retry_policy) as a pure function: defaults, catalog rules,
back-off bounds."""

from __future__ import annotations

import pytest
from batchgate.domain.backoff import MAX_DELAY_SECONDS, retry_delay_seconds
from batchgate.domain.catalog import CatalogError, load_catalog, parse_catalog
from batchgate.domain.jobs import Attempt
from batchgate.domain.retry_policy import (
    Fail,
    Retry,
    RetryPolicy,
    RetryPolicyError,
    decide,
    parse_retry_policy,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import TALLY as TALLY_REF
from tests.reliability.conftest import Tally

CATALOG = load_catalog()
PAYROLL = CATALOG.batches["payroll-calculation"]  # max_attempts 3
JOB = "bg-payroll-calculation-0123456789abcdef0123"


def attempt(number: int = 1, **changes: object) -> Attempt:
    base = Attempt(number=number, strategy="FARGATE", capacity_provider="FARGATE", dispatched_at="t")
    return base._replace(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "retried"),
    [
        ({"exit_code": 1, "stop_code": "EssentialContainerExited"}, False),
        (
            {"exit_code": 137, "stop_code": "EssentialContainerExited", "stopped_reason": "OutOfMemoryError"},
            False,
        ),
        ({"stop_code": "TaskFailedToStart", "stopped_reason": "CannotPullContainerError: not found"}, True),
        ({"stop_code": "TaskFailedToStart", "stopped_reason": "ResourceInitializationError: secrets"}, True),
        ({"stop_code": "SpotInterruption", "exit_code": 143}, True),
        ({"stop_code": "SpotInterruption", "exit_code": 0}, True),
        ({"stop_code": "TerminationNotice"}, True),
        ({"container_reason": "CannotPullContainerError: timeout"}, True),
        ({"error": "RunTask failures: Capacity is unavailable at this time"}, True),
        ({"stop_code": "UserInitiated", "stopped_reason": "stopped by ops"}, False),
        ({"stop_code": "UserInitiated", "stopped_reason": "batchgate: cancelled by alice"}, False),
        ({"stop_code": "UserInitiated", "stopped_reason": "batchgate: exceeded timeout of 1800 s"}, False),
        # Cancelled while Spot was reclaiming the capacity: the cancel wins.
        ({"stop_code": "SpotInterruption", "stopped_reason": "batchgate: cancelled by bob"}, False),
        ({}, False),
    ],
)
def test_default_rules_retry_infrastructure_failures_only(
    changes: dict[str, object], retried: bool, tally: Tally
) -> None:
    decision = decide(attempt(1, **changes), PAYROLL, job_id=JOB, failure="it failed")
    tally.add("policy decisions")
    assert isinstance(decision, Retry) is retried
    if isinstance(decision, Retry):
        assert decision.number == 2
        assert "attempt 2 of 3" in decision.reason
    else:
        assert decision.reason.startswith("it failed")


def test_the_last_attempt_is_never_retried(tally: Tally) -> None:
    failed = attempt(3, stop_code="TaskFailedToStart", stopped_reason="CannotPullContainerError")
    decision = decide(failed, PAYROLL, job_id=JOB, failure="TaskFailedToStart")
    tally.add("policy decisions")
    tally.check("not retried", isinstance(decision, Fail))
    assert isinstance(decision, Fail)
    assert "attempt 3 of 3 was the last" in decision.reason


def test_timeouts_are_retried_only_when_the_batch_says_so(tally: Tally) -> None:
    timed_out = attempt(1, note="batchgate: exceeded timeout of 1800 s")
    assert isinstance(decide(timed_out, PAYROLL, job_id=JOB, failure="t", timed_out=True), Fail)
    lenient = PAYROLL._replace(retry_policy=RetryPolicy(retry_timeouts=True))
    assert isinstance(decide(timed_out, lenient, job_id=JOB, failure="t", timed_out=True), Retry)
    tally.add("policy decisions", 2)


def catalog_with_retry(retry: object) -> dict[str, object]:
    import json
    from importlib import resources

    document = json.loads(resources.files("batchgate").joinpath("catalog.json").read_text())
    document["batches"]["payroll-calculation"]["retry"] = retry
    return document  # type: ignore[no-any-return]


def test_catalog_rules_come_before_the_defaults(tally: Tally) -> None:
    retry = {
        "rules": [
            {"action": "RETRY", "exit_codes": [75]},
            {"action": "FAIL", "stop_codes": ["SpotInterruption"], "reason": "*do not retry*"},
        ],
        "base_delay_seconds": 10,
        "max_delay_seconds": 60,
    }
    spec = parse_catalog(catalog_with_retry(retry)).batches["payroll-calculation"]
    temp_fail = decide(
        attempt(1, exit_code=75, stop_code="EssentialContainerExited"), spec, job_id=JOB, failure="x"
    )
    assert isinstance(temp_fail, Retry) and temp_fail.delay_seconds <= 60
    spot = attempt(1, stop_code="SpotInterruption", stopped_reason="please do not retry")
    assert isinstance(decide(spot, spec, job_id=JOB, failure="x"), Fail)
    assert isinstance(decide(attempt(1, exit_code=1), spec, job_id=JOB, failure="x"), Fail)
    tally.add("policy decisions", 3)


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ([], "must be a JSON object"),
        ({"rules": [{"action": "MAYBE", "exit_codes": [1]}]}, "RETRY or FAIL"),
        ({"rules": [{"action": "RETRY"}]}, "no condition"),
        ({"rules": [{"action": "RETRY", "exit_codes": ["1"]}]}, "exit_codes"),
        ({"rules": [{"action": "RETRY", "stop_codes": ["Spot Interruption"]}]}, "stop_codes"),
        ({"rules": [{"action": "RETRY", "reason": ""}]}, "reason"),
        ({"base_delay_seconds": 0}, "base_delay_seconds"),
        ({"max_delay_seconds": 901}, "max_delay_seconds"),
        ({"retry_timeouts": "yes"}, "retry_timeouts"),
        ({"jitter": True}, "unknown field 'retry.jitter'"),
    ],
)
def test_a_bad_retry_policy_fails_the_catalog_naming_the_batch(retry: object, message: str) -> None:
    with pytest.raises(CatalogError, match="payroll-calculation") as raised:
        parse_catalog(catalog_with_retry(retry))
    assert message in str(raised.value)


def test_parse_retry_policy_reads_every_field() -> None:
    policy = parse_retry_policy(
        {
            "rules": [{"action": "FAIL", "reason": "*OutOfMemory*"}],
            "base_delay_seconds": 5,
            "retry_timeouts": True,
        }
    )
    assert policy.base_delay_seconds == 5 and policy.max_delay_seconds == MAX_DELAY_SECONDS
    assert policy.retry_timeouts and policy.rules[0].reason == "*OutOfMemory*"
    with pytest.raises(RetryPolicyError):
        parse_retry_policy({"rules": "all"})


@settings(max_examples=500, deadline=None)
@given(
    base=st.integers(1, MAX_DELAY_SECONDS),
    spread=st.integers(0, MAX_DELAY_SECONDS),
    failed=st.integers(1, 12),
    job=st.text(min_size=1, max_size=60),
)
def test_backoff_is_bounded_deterministic_and_grows(base: int, spread: int, failed: int, job: str) -> None:
    ceiling = min(MAX_DELAY_SECONDS, base + spread)
    policy = RetryPolicy(base_delay_seconds=base, max_delay_seconds=ceiling)

    def delay_of() -> int:
        return retry_delay_seconds(policy.base_delay_seconds, policy.max_delay_seconds, job, failed)

    delay = delay_of()
    TALLY_REF.add("policy decisions")
    ok = 1 <= delay <= ceiling and delay == delay_of()
    TALLY_REF.check("back-off bounded", ok)
    assert ok
    # Equal jitter: never below half of the exponential step.
    assert delay >= min(ceiling, base * 2 ** (failed - 1)) // 2
