"""Task scale-in protection while any slot is busy, so that scale-in and deployments stop idle tasks
only (a Spot interruption or the loss of an AZ still stops a busy one: the SIGTERM drain handles it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from batchgate.adapters.ecs_agent import AgentError, TaskProtection

log = logging.getLogger("batchgate.worker")


class ScaleInProtection:
    def __init__(
        self,
        protection: TaskProtection,
        expires_in_minutes: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._protection = protection
        self._minutes = expires_in_minutes
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._enabled = False
        self._set_at = 0.0

    @property
    def enabled(self) -> bool:
        return self._enabled

    def update(self, busy: bool) -> None:
        """On while busy (renewed at half its expiry), off once idle. An agent error is logged: the
        jobs run all the same, only unshielded from scale-in."""
        with self._lock:
            renew_due = self._monotonic() - self._set_at > self._minutes * 30
            if busy == self._enabled and not (busy and renew_due):
                return
            try:
                self._protection.set(busy, self._minutes)
            except AgentError as error:
                log.warning("task scale-in protection not changed", extra={"busy": busy, "error": str(error)})
                return
            self._enabled = busy
            self._set_at = self._monotonic()
