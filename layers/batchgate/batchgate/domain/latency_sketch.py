"""Measured history of one (batch, strategy) in a compact, bounded form: pure, no AWS.

A `LatencySketch` is a histogram over log-spaced buckets (each bucket 25% wider than the one before, so
a percentile read from it is within about 12% of the true value) whose weights decay with a half-life:
recent runs count fully, runs a few half-lives old hardly at all. That gives p50 and p95 "over a recent
window" without keeping the runs themselves, in an item of bounded size (at most `MAX_BUCKETS` buckets
per sketch, in practice a dozen or two), updated with one read and one conditional write per event.

`StrategyHistory` is what the history table keeps per (batch, strategy): decayed counts of attempts,
successes and Spot interruptions, and four sketches: start latency (created -> started; from the
submit message's send for a job's first attempt, see `start_seconds_of`) and its parts provisioning
(created -> pull_started) and image pull (pull_started -> pull_stopped), and run time (started ->
stopped). `HistorySummary` is what `plan_launch` reads.
"""

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from batchgate.domain.jobs import Attempt, parse_iso
from batchgate.domain.strategy_settings import WARM

# Bucket i holds values in [MIN_SECONDS * GROWTH**i, MIN_SECONDS * GROWTH**(i+1)); bucket 0 also holds
# everything below MIN_SECONDS, the last bucket everything above.
MIN_SECONDS = 0.1
GROWTH = 1.25
MAX_BUCKETS = 80  # 0.1 s * 1.25**80 is about 6 days: longer than any batch timeout
DEFAULT_HALF_LIFE_SECONDS = 7 * 24 * 3600.0
# Buckets whose decayed weight falls below this are dropped, which keeps the item small.
PRUNE_WEIGHT = 0.01
WEIGHT_DIGITS = 4

SKETCHES = ("start", "provisioning", "pull", "run")


def bucket_of(seconds: float) -> int:
    if seconds <= MIN_SECONDS:
        return 0
    index = math.floor(math.log(seconds / MIN_SECONDS) / math.log(GROWTH))
    return min(max(index, 0), MAX_BUCKETS - 1)


def bucket_value(index: int) -> float:
    """The representative value of a bucket: its geometric midpoint."""
    return float(MIN_SECONDS * GROWTH ** (index + 0.5))


class LatencySketch(NamedTuple):
    """Decayed weights per log-spaced bucket."""

    buckets: Mapping[int, float] = MappingProxyType({})

    @property
    def weight(self) -> float:
        return sum(self.buckets.values())

    def add(self, seconds: float, weight: float = 1.0) -> "LatencySketch":
        index = bucket_of(max(seconds, 0.0))
        updated = dict(self.buckets)
        updated[index] = round(updated.get(index, 0.0) + weight, WEIGHT_DIGITS)
        return LatencySketch(updated)

    def decayed(self, factor: float) -> "LatencySketch":
        if factor >= 1.0:
            return self
        kept = {
            index: round(weight * factor, WEIGHT_DIGITS)
            for index, weight in self.buckets.items()
            if weight * factor >= PRUNE_WEIGHT
        }
        return LatencySketch(kept)

    def quantile(self, fraction: float) -> float | None:
        """The value below which `fraction` of the (decayed) weight lies; None when empty."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction}")
        total = self.weight
        if total <= 0:
            return None
        target = fraction * total
        running = 0.0
        ordered = sorted(self.buckets.items())
        for index, weight in ordered:
            running += weight
            if running >= target - 1e-9:
                return bucket_value(index)
        return bucket_value(ordered[-1][0])

    def to_item(self) -> dict[str, float]:
        return {str(index): weight for index, weight in sorted(self.buckets.items())}

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> "LatencySketch":
        if not item:
            return cls({})
        return cls({int(index): float(weight) for index, weight in item.items()})


class AttemptObservation(NamedTuple):
    """One finished attempt, as the track Lambda saw it stop. Durations are None when the task did not
    reach that phase (a task that failed to start has no run time)."""

    strategy: str
    succeeded: bool
    interrupted: bool = False
    start_seconds: float | None = None
    provisioning_seconds: float | None = None
    pull_seconds: float | None = None
    run_seconds: float | None = None

    def durations(self) -> dict[str, float | None]:
        return {
            "start": self.start_seconds,
            "provisioning": self.provisioning_seconds,
            "pull": self.pull_seconds,
            "run": self.run_seconds,
        }


class HistorySummary(NamedTuple):
    """What `plan_launch` reads about one (batch, strategy): decayed counts and percentiles in seconds."""

    strategy: str
    # Decayed count of attempts (StrategyHistory.attempts).
    attempts: float = 0.0
    success_rate: float | None = None
    interruption_rate: float | None = None
    start_p50: float | None = None
    start_p95: float | None = None
    provisioning_p50: float | None = None
    pull_p50: float | None = None
    run_p50: float | None = None
    run_p95: float | None = None
    observed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Integers only (seconds rounded, rates in percent), so that it can be stored in a DynamoDB item
        and read back as it was: the form kept in a plan's inputs."""
        return {
            "strategy": self.strategy,
            "count": round(self.attempts),
            "observed": self.observed,
            "success_pct": _rounded(self.success_rate, 100),
            "interruption_pct": _rounded(self.interruption_rate, 100),
            "start_p50": _rounded(self.start_p50),
            "start_p95": _rounded(self.start_p95),
            "provisioning_p50": _rounded(self.provisioning_p50),
            "pull_p50": _rounded(self.pull_p50),
            "run_p50": _rounded(self.run_p50),
            "run_p95": _rounded(self.run_p95),
        }

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> "HistorySummary":
        """The summary as `to_dict` stored it (for replaying a stored plan)."""

        def number(name: str, scale: float = 1.0) -> float | None:
            value = item.get(name)
            return None if value is None else float(value) / scale

        return cls(
            strategy=str(item["strategy"]),
            attempts=float(item.get("count", 0)),
            success_rate=number("success_pct", 100),
            interruption_rate=number("interruption_pct", 100),
            start_p50=number("start_p50"),
            start_p95=number("start_p95"),
            provisioning_p50=number("provisioning_p50"),
            pull_p50=number("pull_p50"),
            run_p50=number("run_p50"),
            run_p95=number("run_p95"),
            observed=int(item.get("observed", 0)),
        )


def _rounded(value: float | None, scale: float = 1.0) -> int | None:
    return None if value is None else round(value * scale)


class StrategyHistory(NamedTuple):
    """The history item of one (batch, strategy). `decayed_at` is when the weights were last decayed
    (epoch seconds); `observed` counts every attempt ever recorded, undecayed."""

    batch: str
    strategy: str
    decayed_at: float = 0.0
    attempts: float = 0.0
    successes: float = 0.0
    interruptions: float = 0.0
    observed: int = 0
    sketches: Mapping[str, LatencySketch] = MappingProxyType({})

    def sketch(self, name: str) -> LatencySketch:
        return self.sketches.get(name) or LatencySketch()

    def decayed_to(self, now: float, half_life: float = DEFAULT_HALF_LIFE_SECONDS) -> "StrategyHistory":
        elapsed = now - self.decayed_at
        if elapsed <= 0 or self.decayed_at == 0.0:
            return StrategyHistory(
                self.batch,
                self.strategy,
                max(now, self.decayed_at),
                self.attempts,
                self.successes,
                self.interruptions,
                self.observed,
                self.sketches,
            )
        factor = 0.5 ** (elapsed / half_life)
        return StrategyHistory(
            batch=self.batch,
            strategy=self.strategy,
            decayed_at=now,
            attempts=round(self.attempts * factor, WEIGHT_DIGITS),
            successes=round(self.successes * factor, WEIGHT_DIGITS),
            interruptions=round(self.interruptions * factor, WEIGHT_DIGITS),
            observed=self.observed,
            sketches={name: sketch.decayed(factor) for name, sketch in self.sketches.items()},
        )

    def observe(
        self, observation: AttemptObservation, now: float, half_life: float = DEFAULT_HALF_LIFE_SECONDS
    ) -> "StrategyHistory":
        """This history with one more finished attempt, everything older decayed to `now`."""
        current = self.decayed_to(now, half_life)
        sketches = dict(current.sketches)
        for name, seconds in observation.durations().items():
            if seconds is not None and seconds >= 0:
                sketches[name] = current.sketch(name).add(seconds)
        return StrategyHistory(
            batch=current.batch,
            strategy=current.strategy,
            decayed_at=now,
            attempts=round(current.attempts + 1, WEIGHT_DIGITS),
            successes=round(current.successes + (1 if observation.succeeded else 0), WEIGHT_DIGITS),
            interruptions=round(current.interruptions + (1 if observation.interrupted else 0), WEIGHT_DIGITS),
            observed=current.observed + 1,
            sketches=sketches,
        )

    def summary(self) -> HistorySummary:
        start, run = self.sketch("start"), self.sketch("run")
        return HistorySummary(
            strategy=self.strategy,
            attempts=self.attempts,
            success_rate=self.successes / self.attempts if self.attempts > 0 else None,
            interruption_rate=self.interruptions / self.attempts if self.attempts > 0 else None,
            start_p50=start.quantile(0.50),
            start_p95=start.quantile(0.95),
            provisioning_p50=self.sketch("provisioning").quantile(0.50),
            pull_p50=self.sketch("pull").quantile(0.50),
            run_p50=run.quantile(0.50),
            run_p95=run.quantile(0.95),
            observed=self.observed,
        )

    def to_item(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "strategy": self.strategy,
            "decayed_at": round(self.decayed_at, 3),
            "attempts": self.attempts,
            "successes": self.successes,
            "interruptions": self.interruptions,
            "observed": self.observed,
            "sketches": {name: sketch.to_item() for name, sketch in sorted(self.sketches.items())},
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "StrategyHistory":
        raw = item.get("sketches") or {}
        return cls(
            batch=str(item["batch"]),
            strategy=str(item["strategy"]),
            decayed_at=float(item.get("decayed_at", 0.0)),
            attempts=float(item.get("attempts", 0.0)),
            successes=float(item.get("successes", 0.0)),
            interruptions=float(item.get("interruptions", 0.0)),
            observed=int(item.get("observed", 0)),
            sketches={str(name): LatencySketch.from_item(value) for name, value in raw.items()},
        )


SPOT_INTERRUPTION = "SpotInterruption"


def _moment(text: object) -> datetime | None:
    """A timeline time as an aware datetime (a time without a zone is UTC), None if unreadable."""
    if not isinstance(text, str):
        return None
    try:
        moment = parse_iso(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def observation_of(attempt: Attempt, submitted_at: str | None = None) -> AttemptObservation:
    """What a stopped attempt says about its strategy: did it succeed (exit 0, ended by itself), was it
    interrupted by Spot, and how long each phase took according to its timeline; its start as
    `start_seconds_of` counts it (from the job's `submitted_at` for a first attempt). A time that cannot
    be read (stored before task events were checked) leaves its phases unmeasured: failing the stream
    record would hold back every later job's history for retries that can never succeed."""
    moments = {phase: _moment(text) for phase, text in attempt.timeline.items()}

    def between(first: str, second: str) -> float | None:
        start, end = moments.get(first), moments.get(second)
        if start is None or end is None:
            return None
        seconds = (end - start).total_seconds()
        return seconds if seconds >= 0 else None

    finished_by_itself = attempt.stop_code in (None, "EssentialContainerExited")
    return AttemptObservation(
        strategy=attempt.strategy,
        succeeded=finished_by_itself and attempt.exit_code == 0,
        interrupted=attempt.stop_code == SPOT_INTERRUPTION,
        start_seconds=start_seconds_of(attempt, submitted_at),
        provisioning_seconds=between("created", "pull_started"),
        pull_seconds=between("pull_started", "pull_stopped"),
        run_seconds=between("started", "stopped"),
    )


def start_seconds_of(attempt: Attempt, submitted_at: str | None = None) -> float | None:
    """An attempt's start latency. The job's first attempt, when the send time of its submit message is
    known (`submitted_at`), counts from the send: the time in the jobs queue is part of what the
    application waits, whatever the strategy. Otherwise, and for every later attempt (it begins when
    dispatch launches it, not at a send): task created -> container started, or for a WARM attempt,
    which has no task of its own, offered -> claimed (`warm_start_seconds`). None before the start or
    when a time cannot be read; never negative (the send time is SQS's clock, the others AWS's)."""
    started = _moment(attempt.timeline.get("started"))
    sent = _moment(submitted_at) if attempt.number == 1 else None
    if started is not None and sent is not None:
        return max(0.0, (started - sent).total_seconds())
    if "created" not in attempt.timeline:
        return warm_start_seconds(attempt)
    created = _moment(attempt.timeline["created"])
    if started is None or created is None:
        return None
    seconds = (started - created).total_seconds()
    return seconds if seconds >= 0 else None


def warm_start_seconds(attempt: Attempt) -> float | None:
    """A WARM attempt's start: its offer (its dispatch when the claim beat the offer's record) to the
    worker's claim, never negative; None before the claim or for another strategy."""
    started = _moment(attempt.timeline.get("started"))
    since = _moment(attempt.timeline.get("offered", attempt.dispatched_at))
    if attempt.strategy != WARM or started is None or since is None:
        return None
    return max(0.0, (started - since).total_seconds())
