"""The receive loop: as many work messages as free slots (no prefetch), each claimed or refused, then
deleted; a claimed attempt starts in its reserved slot."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.pool_work_queue import PoolWorkQueue, WorkMessage
from batchgate.domain.warm import InvalidWorkOffer, WorkOffer
from batchgate.worker.claims import Claimed, Claimer
from batchgate.worker.job_run import JobRun
from batchgate.worker.slots import Slots

log = logging.getLogger("batchgate.worker")

# After a failed receive (throttling, an outage), the loop waits this long before the next one.
RECEIVE_ERROR_PAUSE_SECONDS = 2.0


class SlotLoop:
    def __init__(
        self,
        queue: PoolWorkQueue,
        slots: Slots[JobRun],
        claimer: Claimer,
        start_run: Callable[[Claimed, int], None],
        receive_wait_seconds: int,
    ) -> None:
        self.queue = queue
        self.slots = slots
        self.claimer = claimer
        self._start_run = start_run
        self._wait = receive_wait_seconds

    def run(self, stopping: threading.Event) -> None:
        """Until `stopping` is set (SIGTERM): the worker then drains the running jobs."""
        while not stopping.is_set():
            free = self.slots.free
            if free == 0:
                self.slots.wait_for_free(timeout=self._wait, stopping=stopping)
                continue
            try:
                messages = self.queue.receive(free, self._wait)
            except (ClientError, BotoCoreError) as error:
                log.warning("cannot receive work", extra={"error": str(error)})
                stopping.wait(RECEIVE_ERROR_PAUSE_SECONDS)
                continue
            for message in messages:
                if stopping.is_set():
                    self._hand_back(message)
                else:
                    self.handle(message)

    def handle(self, message: WorkMessage) -> None:
        try:
            offer = WorkOffer.parse(message.body)
        except InvalidWorkOffer as error:
            log.error(
                "unreadable work message: left for the queue's DLQ",
                extra={"error": str(error), "receive_count": message.receive_count},
            )
            return
        slot = self.slots.reserve()
        if slot is None:  # never more messages than free slots: only if a slot was taken meanwhile
            self._hand_back(message)
            return
        try:
            outcome = self.claimer.claim(offer, slot)
        except (ClientError, BotoCoreError) as error:
            self.slots.release(slot)
            log.warning(
                "claim failed: the message comes back (or the offer expires first)",
                extra={"job_id": offer.job_id, "attempt": offer.attempt, "error": str(error)},
            )
            return
        if not isinstance(outcome, Claimed):
            self.slots.release(slot)
            if outcome.keep_message:
                log.error(
                    "work message for no known job: left for the queue's DLQ", extra={"why": outcome.reason}
                )
                return
            log.info(
                "offer not claimed: nothing runs",
                extra={"job_id": offer.job_id, "attempt": offer.attempt, "why": outcome.reason},
            )
        self._delete(message)
        if isinstance(outcome, Claimed):
            log.info(
                "attempt claimed", extra={"job_id": offer.job_id, "attempt": offer.attempt, "slot": slot}
            )
            self._start_run(outcome, slot)

    def _delete(self, message: WorkMessage) -> None:
        try:
            self.queue.delete(message)
        except (ClientError, BotoCoreError) as error:
            # A redelivery finds the attempt claimed (or decided) and runs nothing.
            log.warning("work message not deleted", extra={"error": str(error)})

    def _hand_back(self, message: WorkMessage) -> None:
        try:
            self.queue.hand_back(message)
        except (ClientError, BotoCoreError) as error:
            log.warning("work message not handed back", extra={"error": str(error)})
