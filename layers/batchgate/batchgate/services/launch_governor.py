"""The launch-rate governor: keep RunTask under ECS's limits across concurrent dispatchers.

ECS allows, per account and region, a burst of 100 Fargate task launches refilled at 20 per second
(on-demand and Spot counted separately) and about 20 RunTask calls per second. Dispatch runs in at most
`DispatchMaxConcurrency` containers at once (the queue's event source mapping caps it), so each container
takes its share: the limits divided by that number. Within a container, the dispatch threads share one
governor (thread-safe). A launch that would wait longer than `max_wait` is not made: it is put back on the
queue with a growing delay (batchgate.services.launch_deferral), so no job is lost and nothing loops hot.

ECS's other actions batchgate calls (ListTasks and DescribeTasks when a resumed launch looks for its
task, the sweep's DescribeTasks and StopTask) are paced by a third bucket, `ecs_api_calls_per_second`
shared by the dispatch containers and the sweep (each takes 1/(N+1)): `pace` waits for a token without
a limit, as those callers can wait, and a launch the governor puts back makes none of them.

Pure apart from the clock and sleep it is given.
"""

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from batchgate.domain.strategy_settings import EC2, FARGATE_SPOT, StrategySettings


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second. Not thread-safe on its own."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(now - self._at, 0.0)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def wait_time(self, count: float = 1.0) -> float:
        """Seconds until `count` tokens are available (0 when they are now)."""
        self._refill()
        missing = count - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, count: float = 1.0) -> None:
        """Take tokens; the balance may go negative (a reservation that later callers wait for)."""
        self._refill()
        self._tokens -= count


class Admission(NamedTuple):
    """The governor's answer to a call: go, after waiting, or come back later."""

    admitted: bool
    waited: float = 0.0
    retry_after: float = 0.0


class LaunchGovernor:
    """RunTask calls and Fargate launches (on-demand and Spot apart) for one dispatch container."""

    def __init__(
        self,
        *,
        calls_per_second: float,
        fargate_per_second: float,
        fargate_burst: float,
        max_wait: float,
        api_calls_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_wait = max_wait
        self._sleep = sleep
        self._lock = threading.Lock()
        self._calls = TokenBucket(calls_per_second, max(calls_per_second, 1.0), clock)
        self._api_calls = (
            TokenBucket(api_calls_per_second, max(api_calls_per_second, 1.0), clock)
            if api_calls_per_second
            else None
        )
        self._fargate = {
            name: TokenBucket(fargate_per_second, fargate_burst, clock) for name in ("FARGATE", FARGATE_SPOT)
        }

    @classmethod
    def for_settings(
        cls,
        settings: StrategySettings,
        containers: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> "LaunchGovernor":
        """This container's share of the account's limits, `containers` being the queue's maximum
        concurrency (the most dispatch containers running at once)."""
        share = 1.0 / max(containers, 1)
        return cls(
            calls_per_second=settings.run_task_calls_per_second * share,
            fargate_per_second=settings.fargate_launch_per_second * share,
            fargate_burst=max(settings.fargate_launch_burst * share, 1.0),
            max_wait=settings.governor_max_wait_seconds,
            # The dispatch containers and the sweep.
            api_calls_per_second=settings.ecs_api_calls_per_second / (max(containers, 1) + 1),
            clock=clock,
            sleep=sleep,
        )

    def admit(self, strategy: str) -> Admission:
        """Wait (up to `max_wait`) for a RunTask call and, off EC2, a Fargate launch of `strategy`."""
        buckets = [self._calls]
        if strategy != EC2:
            buckets.append(self._fargate.get(strategy, self._fargate["FARGATE"]))
        with self._lock:
            wait = max(bucket.wait_time() for bucket in buckets)
            if wait > self.max_wait:
                return Admission(admitted=False, retry_after=wait)
            for bucket in buckets:
                bucket.take()
        if wait > 0:
            self._sleep(wait)
        return Admission(admitted=True, waited=wait)

    def pace(self) -> float:
        """Wait for one call of ECS's other actions (ListTasks, DescribeTasks, StopTask), as long as it
        takes; returns the wait. Without an ECS call rate, no wait."""
        if self._api_calls is None:
            return 0.0
        with self._lock:
            wait = self._api_calls.wait_time()
            self._api_calls.take()
        if wait > 0:
            self._sleep(wait)
        return wait
