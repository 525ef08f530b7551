"""Job events: the job table's stream in, one EventBridge event per job status change out.

Every writer of the job table (dispatch, track, sweep, cancel, the warm worker) is covered once,
since the stream carries every write whoever made it; a write that leaves the status as it was
publishes nothing.

A batch's events are put in stream order, ten per PutEvents call at most (and within its 256 KB), a
call ending early rather than holding two changes of one job, so that a job's next change is put only
once EventBridge took the previous one. Entries EventBridge refuses (FailedEntryCount, an ErrorCode
per entry) are put again a few times. A change still refused fails its record and every record after
it, unput, as the history feed does: Lambda delivers the batch again from that record, so what is put
again is at most the rest of the refused call (with the same event ids), and a job never sees an
older event after a newer one. Records that keep failing are named in the dead-letter queue. Nothing
is dropped without a trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchgate.adapters.event_bus import PUT_EVENTS_BYTES, PUT_EVENTS_ENTRIES, EventBus
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.job_events import JobStateChange, entry_size, job_state_change
from batchgate.services.history_feed import JobChange
from batchgate.services.settings import Settings

# Pauses before putting refused entries again (throttling clears within a second or two).
RETRY_PAUSES_SECONDS = (0.2, 1.0)


class EventNotPublished(RuntimeError):
    """A record whose event EventBridge did not take, or that waits behind one of its job's: reported
    failed so that Lambda delivers it again."""


@dataclass(frozen=True, eq=False)  # by identity: two deliveries of one record are two entries
class PendingChange:
    """A stream record's job status change, waiting to be put on the bus."""

    sequence_number: str
    job_id: str
    change: JobStateChange | None  # None: the write changed no status, or the record is unreadable
    unreadable: str | None = None


class PublishOutcome:
    """What one batch of records became: the sequence numbers of the records to report failed."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}  # sequence number -> why
        self.published = 0
        self.unchanged = 0

    def check(self, record: Mapping[str, Any]) -> None:
        """Raises EventNotPublished for a record of `failed` (the record handler of the batch)."""
        sequence_number = _sequence_number(record)
        if sequence_number in self.failed:
            raise EventNotPublished(f"record {sequence_number}: {self.failed[sequence_number]}")


class JobEventPublisher:
    def __init__(
        self,
        bus: EventBus,
        *,
        retry_pauses: Sequence[float] = RETRY_PAUSES_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bus = bus
        self._retry_pauses = tuple(retry_pauses)
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> JobEventPublisher:
        return cls(EventBus(settings.event_bus_name))

    def publish(self, records: Sequence[Mapping[str, Any]]) -> PublishOutcome:
        outcome = PublishOutcome()
        pending = [self._pending(record) for record in records]
        outcome.unchanged = sum(1 for item in pending if item.change is None and item.unreadable is None)
        first_failed: tuple[int, str] | None = None
        for call in calls(pending, self.bus.bus_name):
            first = call[0]
            if pending[first].unreadable is not None:
                first_failed = (first, f"unreadable: {pending[first].unreadable}")
                break
            refused = self._put_with_retries([pending[index] for index in call])
            outcome.published += len(call) - len(refused)
            if refused:
                index = next(index for index in call if pending[index] in refused)
                first_failed = (index, f"EventBridge refused its event ({refused[pending[index]]})")
                break
        if first_failed is not None:
            index, why = first_failed
            outcome.failed[pending[index].sequence_number] = why
            for later in pending[index + 1 :]:
                outcome.failed[later.sequence_number] = f"after record {pending[index].sequence_number}"
            count("JobEventsNotPublished", len(outcome.failed))
        if outcome.published:
            count("JobEventsPublished", outcome.published)
        return outcome

    def _pending(self, record: Mapping[str, Any]) -> PendingChange:
        sequence_number = _sequence_number(record)
        keys = (record.get("dynamodb") or {}).get("Keys") or {}
        job_key = str((keys.get("job_id") or {}).get("S") or f"?{sequence_number}")
        try:
            change = JobChange.from_record(record)
        except ValueError as error:
            logger.exception(
                "stream record holds no readable job", extra={"sequence_number": sequence_number}
            )
            return PendingChange(sequence_number, job_key, None, unreadable=str(error))
        event = job_state_change(change.before, change.after, self.bus.region)
        return PendingChange(sequence_number, job_key, event)

    def _put_with_retries(self, chunk: Sequence[PendingChange]) -> dict[PendingChange, str]:
        """Puts the chunk, then what was refused again after each pause; what is still refused."""
        remaining = list(chunk)
        errors: dict[PendingChange, str] = {}
        for pause in (None, *self._retry_pauses):
            if pause is not None:
                count("JobEventsRetried", len(remaining))
                self._sleep(pause)
            results = self.bus.put([_entry(p, self.bus.bus_name) for p in remaining])
            errors = {p: error for p, error in zip(remaining, results, strict=True) if error is not None}
            remaining = list(errors)
            if not remaining:
                break
            logger.warning(
                "EventBridge refused job events",
                extra={"refused": {p.change.event_id if p.change else "?": e for p, e in errors.items()}},
            )
        return errors


def calls(pending: Sequence[PendingChange], bus_name: str) -> list[list[int]]:
    """The PutEvents calls of a batch, as positions in it, in stream order: at most PUT_EVENTS_ENTRIES
    entries and PUT_EVENTS_BYTES bytes each, never two changes of one job; an unreadable record is a
    call of its own (it fails there); records without a change are in none."""
    planned: list[list[int]] = []
    jobs: set[str] = set()
    size = 0
    open_call = False
    for index, item in enumerate(pending):
        if item.unreadable is not None:
            planned.append([index])
            open_call = False
            continue
        if item.change is None:
            continue
        item_size = entry_size(item.change.entry(bus_name))
        if (
            not open_call
            or len(planned[-1]) == PUT_EVENTS_ENTRIES
            or size + item_size > PUT_EVENTS_BYTES
            or item.job_id in jobs
        ):
            planned.append([])
            jobs.clear()
            size = 0
            open_call = True
        planned[-1].append(index)
        jobs.add(item.job_id)
        size += item_size
    return planned


def _entry(pending: PendingChange, bus_name: str) -> dict[str, Any]:
    assert pending.change is not None
    return pending.change.entry(bus_name)


def _sequence_number(record: Mapping[str, Any]) -> str:
    return str((record.get("dynamodb") or {}).get("SequenceNumber") or "")
