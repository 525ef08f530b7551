"""What a failed attempt leads to: another attempt after a back-off, or the end of the job.

In the spirit of AWS Batch's `evaluateOnExit`: a batch's catalog entry may list rules matching the exit
code, the ECS stop code and the stop reason, each saying RETRY or FAIL; the first rule that matches
decides. After the batch's own rules come the defaults: infrastructure failures (the task failed to
start, the image could not be pulled, the network or secrets could not be set up, Spot reclaimed the
capacity, no capacity) are retried, a task stopped on purpose (cancel, timeout, ops) is not, and an
application's own non-zero exit code is not either: payroll and attendance batches are not assumed to be
safe to run twice.

Pure: `decide` depends only on the attempt, the batch and the job id, so applying the same events in any
order gives the same decision (the back-off "jitter" is derived from the job id and attempt number).
"""

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, NamedTuple

from batchgate.domain.backoff import MAX_DELAY_SECONDS, retry_delay_seconds
from batchgate.domain.jobs import NEVER_RAN_STOP_CODES, Attempt

if TYPE_CHECKING:
    from batchgate.domain.catalog import BatchSpec

RETRY = "RETRY"
FAIL = "FAIL"
ACTIONS = frozenset({RETRY, FAIL})
# SQS DelaySeconds is at most 900 (15 minutes): the back-off travels as the retry message's delay.
DEFAULT_BASE_DELAY_SECONDS = 30
# A reason the timeout sweep gives StopTask; matched by rules as any other stop reason.
TIMEOUT_REASON_PREFIX = "batchgate: exceeded timeout"
CANCEL_REASON_PREFIX = "batchgate: cancelled"

_POLICY_FIELDS = frozenset({"rules", "base_delay_seconds", "max_delay_seconds", "retry_timeouts"})
_RULE_FIELDS = frozenset({"action", "exit_codes", "stop_codes", "reason"})


class RetryPolicyError(ValueError):
    """A retry policy in the catalog is invalid; the message names the field."""


class RetryRule(NamedTuple):
    """RETRY or FAIL when every condition given matches: the exit code is one of `exit_codes`, the
    stop code one of `stop_codes`, and `reason` (a case-insensitive glob, e.g. "*OutOfMemory*") matches
    the task's stopped reason, the container's reason or the launch error."""

    action: str
    exit_codes: frozenset[int] | None = None
    stop_codes: frozenset[str] | None = None
    reason: str | None = None

    def matches(self, attempt: Attempt) -> bool:
        if self.exit_codes is not None and attempt.exit_code not in self.exit_codes:
            return False
        if self.stop_codes is not None and attempt.stop_code not in self.stop_codes:
            return False
        if self.reason is not None:
            pattern = self.reason.lower()
            return any(fnmatchcase(text.lower(), pattern) for text in _reasons(attempt))
        return True

    def describe(self) -> str:
        """`RETRY when stop code is TaskFailedToStart or SpotInterruption`: the rule in words."""
        conditions: list[str] = []
        if self.exit_codes is not None:
            conditions.append("exit code is " + " or ".join(str(code) for code in sorted(self.exit_codes)))
        if self.stop_codes is not None:
            conditions.append("stop code is " + " or ".join(sorted(self.stop_codes)))
        if self.reason is not None:
            conditions.append(f"reason matches {self.reason!r}")
        return f"{self.action} when " + " and ".join(conditions) if conditions else f"{self.action} always"


class RetryPolicy(NamedTuple):
    """A batch's retry rules, checked in order, and its back-off."""

    rules: tuple[RetryRule, ...] = ()
    base_delay_seconds: int = DEFAULT_BASE_DELAY_SECONDS
    max_delay_seconds: int = MAX_DELAY_SECONDS
    retry_timeouts: bool = False


# Stopped on purpose by batchgate (cancel, timeout): never retried, whatever the batch's rules say
# (a timeout is retried only when the batch's policy has retry_timeouts).
STOPPED_ON_PURPOSE: tuple[RetryRule, ...] = (
    RetryRule(FAIL, reason=f"{CANCEL_REASON_PREFIX}*"),
    RetryRule(FAIL, reason=f"{TIMEOUT_REASON_PREFIX}*"),
)
DEFAULT_RULES: tuple[RetryRule, ...] = (
    # Stopped by ops or by ECS on purpose: not retried by the defaults.
    RetryRule(FAIL, stop_codes=frozenset({"UserInitiated", "ServiceSchedulerInitiated"})),
    # The infrastructure failed the task, not the batch's own code.
    RetryRule(RETRY, stop_codes=frozenset({"TaskFailedToStart", "SpotInterruption", "TerminationNotice"})),
    # A warm pool's task stopped under a job (batchgate.domain.warm.POOL_TASK_STOPPED).
    RetryRule(RETRY, stop_codes=frozenset({"WarmTaskStopped"})),
    RetryRule(RETRY, reason="*CannotPullContainerError*"),
    RetryRule(RETRY, reason="*ResourceInitializationError*"),
    RetryRule(RETRY, reason="*CannotStartContainerError*"),
    RetryRule(RETRY, reason="*capacity*"),
    RetryRule(RETRY, reason="*Timeout waiting for network interface*"),
)
DEFAULT_POLICY = RetryPolicy()


def attempts_never_run(attempts: Iterable[Attempt]) -> int:
    """Attempts that never ran the batch (NEVER_RAN_STOP_CODES): they do not use up its max_attempts."""
    return sum(1 for attempt in attempts if attempt.stop_code in NEVER_RAN_STOP_CODES)


class Retry(NamedTuple):
    """Another attempt, `number`, sent to the jobs queue `delay_seconds` from now."""

    delay_seconds: int
    number: int
    reason: str


class Fail(NamedTuple):
    """The decision that an attempt's failure ends the job."""

    reason: str


Decision = Retry | Fail


def decide(
    attempt: Attempt,
    spec: "BatchSpec",
    *,
    job_id: str,
    failure: str,
    timed_out: bool = False,
    never_run: int = 0,
) -> Decision:
    """What follows the failure of `attempt` (described by `failure`, e.g. "exit code 1"). `never_run`
    earlier attempts of the job never ran the batch (`attempts_never_run`): the limit of attempts is
    that many higher."""
    policy = spec.retry_policy
    if timed_out or was_timed_out(attempt):
        action = RETRY if policy.retry_timeouts else FAIL
    else:
        found = deciding_rule(attempt, policy)
        action = found.rule.action if found is not None else FAIL
    if action == FAIL:
        return Fail(failure)
    limit = spec.max_attempts + max(0, never_run)
    unrun = f", {never_run} of them never ran" if never_run > 0 else ""
    if attempt.number >= limit:
        return Fail(f"{failure} (retryable, but attempt {attempt.number} of {limit}{unrun} was the last)")
    delay = retry_delay_seconds(policy.base_delay_seconds, policy.max_delay_seconds, job_id, attempt.number)
    number = attempt.number + 1
    return Retry(
        delay_seconds=delay,
        number=number,
        reason=f"{failure}; attempt {number} of {limit}{unrun} in {delay} s",
    )


class RuleMatch(NamedTuple):
    """The rule that decided an attempt's fate, and whose it is: "stopped on purpose" (batchgate's own,
    before any other), "batch" (the catalog's retry.rules) or "default"."""

    rule: RetryRule
    source: str


def was_timed_out(attempt: Attempt) -> bool:
    """Stopped by the timeout sweep: decided by the policy's retry_timeouts, not by a rule."""
    return any(text.startswith(TIMEOUT_REASON_PREFIX) for text in _reasons(attempt))


def deciding_rule(attempt: Attempt, policy: RetryPolicy) -> RuleMatch | None:
    """The first rule that matches the attempt (what `decide` follows for an attempt that did not time
    out); None when none does (the attempt then fails)."""
    sources = (
        ("stopped on purpose", STOPPED_ON_PURPOSE),
        ("batch", policy.rules),
        ("default", DEFAULT_RULES),
    )
    for source, rules in sources:
        for rule in rules:
            if rule.matches(attempt):
                return RuleMatch(rule, source)
    return None


def _reasons(attempt: Attempt) -> Iterable[str]:
    return (text for text in (attempt.stopped_reason, attempt.container_reason, attempt.error) if text)


def parse_retry_policy(raw: Any) -> RetryPolicy:
    """The catalog's optional `retry` object of a batch; raises RetryPolicyError naming the field."""
    if not isinstance(raw, Mapping):
        raise RetryPolicyError("field 'retry' must be a JSON object")
    unknown = sorted(set(raw) - _POLICY_FIELDS)
    if unknown:
        raise RetryPolicyError(
            f"unknown field 'retry.{unknown[0]}' (expected: {', '.join(sorted(_POLICY_FIELDS))})"
        )
    base = _integer(raw, "base_delay_seconds", DEFAULT_BASE_DELAY_SECONDS, 1, MAX_DELAY_SECONDS)
    ceiling = _integer(raw, "max_delay_seconds", MAX_DELAY_SECONDS, base, MAX_DELAY_SECONDS)
    retry_timeouts = raw.get("retry_timeouts", False)
    if not isinstance(retry_timeouts, bool):
        raise RetryPolicyError("field 'retry.retry_timeouts' must be true or false")
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise RetryPolicyError("field 'retry.rules' must be a list of rules")
    rules = tuple(_rule(rule, index) for index, rule in enumerate(rules_raw))
    return RetryPolicy(
        rules=rules, base_delay_seconds=base, max_delay_seconds=ceiling, retry_timeouts=retry_timeouts
    )


def _integer(raw: Mapping[str, Any], name: str, default: int, minimum: int, maximum: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise RetryPolicyError(f"field 'retry.{name}' must be an integer from {minimum} to {maximum}")
    return int(value)


def _rule(raw: Any, index: int) -> RetryRule:
    where = f"retry.rules[{index}]"
    if not isinstance(raw, Mapping):
        raise RetryPolicyError(f"field '{where}' must be a JSON object")
    unknown = sorted(set(raw) - _RULE_FIELDS)
    if unknown:
        raise RetryPolicyError(
            f"unknown field '{where}.{unknown[0]}' (expected: {', '.join(sorted(_RULE_FIELDS))})"
        )
    action = raw.get("action")
    if action not in ACTIONS:
        raise RetryPolicyError(f"field '{where}.action' must be RETRY or FAIL")
    if not set(raw) - {"action"}:
        raise RetryPolicyError(f"rule '{where}' has no condition (exit_codes, stop_codes or reason)")
    exit_codes = raw.get("exit_codes")
    if exit_codes is not None and (
        not isinstance(exit_codes, list)
        or not exit_codes
        or not all(isinstance(code, int) and not isinstance(code, bool) for code in exit_codes)
    ):
        raise RetryPolicyError(f"field '{where}.exit_codes' must be a non-empty list of integers")
    stop_codes = raw.get("stop_codes")
    if stop_codes is not None and (
        not isinstance(stop_codes, list)
        or not stop_codes
        or not all(isinstance(code, str) and re.fullmatch(r"[A-Za-z]+", code) for code in stop_codes)
    ):
        raise RetryPolicyError(f"field '{where}.stop_codes' must be a non-empty list of ECS stop codes")
    reason = raw.get("reason")
    if reason is not None and (not isinstance(reason, str) or not reason or len(reason) > 256):
        raise RetryPolicyError(f"field '{where}.reason' must be a glob pattern of 1 to 256 characters")
    return RetryRule(
        action=action,
        exit_codes=frozenset(exit_codes) if exit_codes is not None else None,
        stop_codes=frozenset(stop_codes) if stop_codes is not None else None,
        reason=reason,
    )
