"""A pool task's slots: which are free, reserved for a claim in progress, or running a job."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Slots[RunT]:
    """Thread-safe; `on_change(busy)` is called (outside the lock) whenever a slot is taken or freed,
    `busy` counting reserved slots too (the worker protects itself before it claims)."""

    def __init__(self, count: int, on_change: Callable[[int], None] = lambda busy: None) -> None:
        self.count = count
        self._runs: dict[int, RunT | None] = {}
        self._lock = threading.Condition()
        self._on_change = on_change

    @property
    def free(self) -> int:
        with self._lock:
            return self.count - len(self._runs)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._runs)

    def runs(self) -> list[RunT]:
        with self._lock:
            return [run for run in self._runs.values() if run is not None]

    def reserve(self) -> int | None:
        with self._lock:
            slot = next((slot for slot in range(self.count) if slot not in self._runs), None)
            if slot is None:
                return None
            self._runs[slot] = None
            busy = len(self._runs)
        self._on_change(busy)
        return slot

    def assign(self, slot: int, run: RunT) -> None:
        with self._lock:
            self._runs[slot] = run
            busy = len(self._runs)
        self._on_change(busy)

    def release(self, slot: int) -> None:
        with self._lock:
            self._runs.pop(slot, None)
            busy = len(self._runs)
            self._lock.notify_all()
        self._on_change(busy)

    def wait_for_free(self, timeout: float, stopping: threading.Event | None = None) -> bool:
        """Until a slot is free, or `stopping` is set and `wake` called, at most `timeout` seconds."""
        with self._lock:
            return self._lock.wait_for(
                lambda: len(self._runs) < self.count or (stopping is not None and stopping.is_set()),
                timeout,
            )

    def wake(self) -> None:
        """Have the waiters look again at what they wait for (the task is stopping)."""
        with self._lock:
            self._lock.notify_all()

    def wait_until_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._runs, timeout)
