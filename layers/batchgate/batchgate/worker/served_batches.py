"""The batches this pool task may run: those whose task definition runs the task's own image.

A batch whose task definition moved to a newer image than the pool runs is not advertised (its jobs go
to ECS until the pool is redeployed) and counts in PoolImageStale. Looked up at start and every
`check_seconds` (DescribeTaskDefinition of each batch's task definition). When the task's own image is
unknown (no metadata endpoint: the local stack), every batch of the pool is advertised, and the log
says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.task_definitions import TaskDefinitionImages
from batchgate.domain.catalog import BatchSpec

log = logging.getLogger("batchgate.worker")


def runs_image(task_definition_image: str | None, image: str, image_digest: str | None) -> bool:
    """A task definition's image is this task's: the same reference, or pinned to this task's digest."""
    if task_definition_image is None:
        return False
    if task_definition_image == image:
        return True
    return image_digest is not None and task_definition_image.endswith(f"@{image_digest}")


class ServedBatches:
    def __init__(
        self,
        batches: Sequence[BatchSpec],
        image: str | None,
        image_digest: str | None,
        images: TaskDefinitionImages,
        *,
        check_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._batches = tuple(batches)
        self._image = image
        self._digest = image_digest
        self._images = images
        self._check_seconds = check_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._served: tuple[str, ...] = ()
        self._stale = False
        self._checked_at: float | None = None
        if image is None:
            self._served = tuple(spec.name for spec in self._batches)
            log.warning(
                "this task's image is unknown (no task metadata): advertising every batch of the pool",
                extra={"batches": list(self._served)},
            )

    @property
    def stale(self) -> bool:
        """A batch's task definition runs another image than this task."""
        return self._stale

    def current(self) -> tuple[str, ...]:
        """The batches served now, looked up again when the last look-up is `check_seconds` old."""
        if self._image is None:
            return self._served
        with self._lock:
            due = self._checked_at is None or self._monotonic() - self._checked_at >= self._check_seconds
            if due:
                self._check(self._image)
            return self._served

    def serves(self, batch: str) -> bool:
        return batch in self.current()

    def _check(self, image: str) -> None:
        served, stale, failed = [], False, False
        for spec in self._batches:
            try:
                theirs = self._images.image(spec.task_definition, spec.container)
            except (ClientError, BotoCoreError) as error:
                failed = True
                log.error(
                    "cannot read a batch's task definition: not advertised until it can be read",
                    extra={"batch": spec.name, "error": str(error)},
                )
                continue
            if runs_image(theirs, image, self._digest):
                served.append(spec.name)
            else:
                stale = True
                log.warning(
                    "a batch's task definition runs another image: not advertised",
                    extra={"batch": spec.name, "task_definition_image": theirs, "image": image},
                )
        self._served, self._stale = tuple(served), stale
        # A failed look-up is tried again at the next heartbeat, not minutes later.
        self._checked_at = None if failed else self._monotonic()
