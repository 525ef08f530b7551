"""What dispatch reads of a warm pool before planning: its free slots for a batch, from the pool's
heartbeats (batchgate.domain.pools), read at most once per `cache_seconds` per container.

Heartbeats are advice (no slot is reserved, so none can leak). Within one container the advice is made
a little better than the cached read: each offer this container sent since the read takes one free
slot off, so a burst larger than the pool goes to ECS at once instead of waiting for offers that
cannot be claimed. Offers from other dispatch containers are not seen: theirs expire after the
pool's `offer_seconds` and go to ECS then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.catalog import PoolSpec
from batchgate.domain.pools import PoolTask, WarmSlots, warm_slots

DEFAULT_CACHE_SECONDS = 1.0


class _PoolRead:
    """A pool's heartbeats as last read, and the offers sent since."""

    def __init__(self, read_at: float, tasks: list[PoolTask]) -> None:
        self.read_at = read_at
        self.tasks = tasks
        self.offers_since = 0


class WarmAdvice:
    def __init__(
        self,
        table: PoolTable,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._reads: dict[str, _PoolRead] = {}
        # Dispatch threads share one read per pool (and one Query on a miss, not one per thread).
        self._lock = threading.Lock()

    def slots(self, pool: PoolSpec, batch: str, now: datetime) -> WarmSlots:
        """The pool's free slots for `batch`. Raises what the pool table raises (the caller plans
        without the pool)."""
        with self._lock:
            read = self._reads.get(pool.name)
            if read is None or self._monotonic() - read.read_at >= self.cache_seconds:
                read = _PoolRead(read_at=self._monotonic(), tasks=self.table.tasks(pool.name))
                self._reads[pool.name] = read
            advertised = warm_slots(pool, read.tasks, batch, now)
            return advertised._replace(free_slots=max(0, advertised.free_slots - read.offers_since))

    def offered(self, pool: str) -> None:
        """This container sent an offer to `pool`: one slot fewer until the next read."""
        with self._lock:
            read = self._reads.get(pool)
            if read is not None:
                read.offers_since += 1
