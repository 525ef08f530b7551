"""Deferral of a launch that cannot be made now: ECS said "slow down" (or our own launch-rate governor
did, or the batch runs its `max_running` already), so the attempt is put back on the jobs queue as a
relaunch message (batchgate.domain.relaunch) whose delay grows with the times it was put back already
(exponential, capped, full jitter), and the record in hand is done.

Returning the record to the queue instead would spend one of its receives each time: under throttling
that lasts longer than a few back-offs (a burst of thousands of jobs, an ECS slowdown), a job would go
to the dead-letter queue with nothing wrong with it. A relaunch message starts with a fresh receive
count; the deferral count kept on the attempt keeps the back-off growing, so nothing loops hot.

The deferral is written on the attempt first (`record_deferral`: its count, when its launch is due,
`updated_at`), conditional on the count the launch was decided on, then the message is sent. So the
message body is never trusted for the count, a relaunch that arrives before the due time does nothing,
the sweep leaves a launch with a pending relaunch alone, and of two deliveries deferring one launch
only one sends a message. The job is safe meanwhile: its attempt is written (DISPATCHING, no task)
before RunTask, and the relaunch resumes that same attempt with its own clientToken. When sending fails,
the record goes back to the queue as any failed record does (its visibility timeout is longer than
any back-off, so it comes back after the due time); a crash in between leaves the sweep to send it once
the due time is well past.
"""

import random
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.backoff import deferral_delay_seconds
from batchgate.domain.jobs import iso
from batchgate.domain.relaunch import Relaunch, record_deferral
from batchgate.domain.strategy_settings import StrategySettings


class Deferral(NamedTuple):
    """A launch put back on the queue: its delay, and whether this delivery sent it."""

    delay_seconds: int
    # False: another delivery deferred this launch first, and sent its relaunch itself.
    sent: bool


class LaunchDeferral:
    def __init__(
        self, queue: JobsQueue, settings: StrategySettings, rand: Callable[[], float] = random.random
    ) -> None:
        self.queue = queue
        self.settings = settings
        self._rand = rand

    def delay_seconds(self, deferral: int, at_least: float = 0.0, cap: float | None = None) -> int:
        """The back-off of deferral number `deferral` (1 for the first) of an attempt."""
        return deferral_delay_seconds(
            deferral,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds if cap is None else cap,
            at_least=at_least,
            rand=self._rand,
        )

    def defer(
        self,
        table: JobTable,
        resume: Relaunch,
        seen_deferrals: int,
        now: datetime,
        *,
        at_least: float = 0.0,
        cap: float | None = None,
        note: str | None = None,
    ) -> Deferral | None:
        """Record deferral number `seen_deferrals + 1` of the attempt `resume` relaunches, then send
        `resume`, delayed by that deferral's back-off (at least `at_least` seconds, at most `cap` when
        given); None when the message could not be sent (the caller then returns the record)."""
        number = seen_deferrals + 1
        seconds = self.delay_seconds(number, at_least, cap)
        at = iso(now)
        write = table.apply(
            resume.job_id,
            lambda job: record_deferral(
                job, resume.attempt, seen_deferrals, at=at, delay_seconds=seconds, note=note
            ),
        )
        if write is None or not write.written:
            logger.info("launch deferred by another delivery already: nothing sent")
            return Deferral(delay_seconds=seconds, sent=False)
        try:
            self.queue.send_relaunch(Relaunch(resume.job_id, resume.attempt, deferrals=number), seconds)
        except (ClientError, BotoCoreError) as error:
            logger.warning("could not put the deferred launch on the queue", extra={"error": str(error)})
            return None
        count("LaunchesRequeued")
        logger.info(
            "launch put back on the queue",
            extra={"delay_seconds": seconds, "deferrals": number, "attempt": resume.attempt, "note": note},
        )
        return Deferral(delay_seconds=seconds, sent=True)
