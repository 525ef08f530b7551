"""Deferral of a throttled launch: ECS said "slow down" (or our own launch-rate governor did), so the
attempt is put back on the jobs queue as a relaunch message (batchgate.domain.relaunch) whose delay grows with
the times it was put back already (exponential, capped, full jitter), and the record in hand is done.

Returning the record to the queue instead would spend one of its receives each time: under throttling
that lasts longer than a few back-offs (a burst of thousands of jobs, an ECS slowdown), a job would go
to the dead-letter queue with nothing wrong with it. A relaunch message starts with a fresh receive
count; the deferral count it carries keeps the back-off growing, so nothing loops hot.

The job is safe meanwhile: its attempt is written (DISPATCHING, no task) before RunTask, and the
relaunch resumes that same attempt with its own clientToken. The message is sent before the record is
reported done, so a crash in between leaves two messages for one attempt, which dispatch tells apart
(`awaited_attempt`); when sending fails, the record goes back to the queue as any failed record does.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.backoff import deferral_delay_seconds
from batchgate.domain.relaunch import Relaunch
from batchgate.domain.strategy_settings import StrategySettings


class LaunchDeferral:
    def __init__(
        self, queue: JobsQueue, settings: StrategySettings, rand: Callable[[], float] = random.random
    ) -> None:
        self.queue = queue
        self.settings = settings
        self._rand = rand

    def defer(self, resume: Relaunch, previous_deferrals: int, at_least: float = 0.0) -> int | None:
        """Send `resume` (the relaunch of the throttled attempt) as its deferral number
        `previous_deferrals + 1`, delayed by that deferral's back-off and at least `at_least` seconds;
        returns the delay, or None when it could not be sent (the caller then returns the record)."""
        deferral = replace(resume, deferrals=previous_deferrals + 1)
        seconds = deferral_delay_seconds(
            deferral.deferrals,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
            at_least=at_least,
            rand=self._rand,
        )
        try:
            self.queue.send_relaunch(deferral, seconds)
        except (ClientError, BotoCoreError) as error:
            logger.warning("could not put the throttled launch on the queue", extra={"error": str(error)})
            return None
        count("LaunchesRequeued")
        logger.info(
            "throttled: launch put back on the queue",
            extra={"delay_seconds": seconds, "deferrals": deferral.deferrals, "attempt": deferral.attempt},
        )
        return seconds
