"""Missed and late scheduled runs, checked by the sweep (docs/schedules.md).

For each schedule of the catalog, the slots of the look-back window (at most `max_slots` of them, the
newest) are known from its expression, and so is each slot's job id (the job id formula over the slot's
idempotency key): one BatchGetItem of those ids says which slots have a job. A slot without one
`missed_after_seconds` after its time is a missed run; a job that started later than the schedule's
start tolerance is a late start. Each is counted (MissedScheduledRuns, LateScheduledStarts) and put as
an event on the job events' bus, once: a conditional put in the schedule table claims the report first,
and is released when the event could not be put, so that the next sweep tries again. The look-back
window bounds what a sweep reads; the claims keep a slot that stays missed from being reported again.
Slots from before the first sweep that saw the schedule are not checked: the schedule was not deployed
yet (the schedule table remembers that moment).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from batchgate.adapters.job_table import JobTable
from batchgate.adapters.schedule_table import ScheduleReports
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.catalog import Catalog
from batchgate.domain.jobs import iso, parse_iso, utc_now
from batchgate.domain.schedule_delivery import MISSED_AFTER_SECONDS
from batchgate.domain.scheduled_runs import MISSED, SlotReport, slot_report
from batchgate.domain.schedules import ScheduleSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from batchgate.adapters.event_bus import EventBus
    from batchgate.services.settings import Settings


class ScheduleWatchSettings(NamedTuple):
    """How far back the sweep looks at schedules' slots, and when a slot is missed."""

    # A slot with no job this long after its time is missed (Scheduler retries its delivery before).
    missed_after_seconds: int = MISSED_AFTER_SECONDS
    # Slots older than this are not read again (their reports, if any, were made then).
    lookback_seconds: int = 6 * 3600
    # The newest slots of the window a sweep reads per schedule (a minutely schedule has 360 in 6 h).
    max_slots: int = 60


DEFAULT_SCHEDULE_WATCH_SETTINGS = ScheduleWatchSettings()


class ScheduleWatchReport:
    """What one check of the schedules found."""

    def __init__(self) -> None:
        self.schedules = 0
        self.slots = 0
        self.missed = 0
        self.late = 0
        self.errors = 0


# Wiring, made once per container: neither frozen, compared nor printed, so that making the class
# generates one method (__init__), not six (docs/contracts-internal.md, Cold start).
@dataclass(eq=False, repr=False)
class ScheduleWatch:
    """Finds the schedules' missed runs and late starts, each reported once."""

    catalog: Catalog
    table: JobTable
    reports: ScheduleReports
    bus: "EventBus | None" = None
    settings: ScheduleWatchSettings = DEFAULT_SCHEDULE_WATCH_SETTINGS
    clock: Callable[[], datetime] = utc_now

    @classmethod
    def from_settings(
        cls, settings: "Settings", catalog: Catalog, table: JobTable, dynamodb: "DynamoDBClient | None" = None
    ) -> "ScheduleWatch | None":
        """None when there is nothing to watch or nowhere to remember reports. `dynamodb`: the client
        the job table uses (one client per cold start); the bus makes its client on its first event."""
        if not catalog.schedules or not settings.schedule_table_name:
            return None
        from batchgate.adapters.event_bus import EventBus

        return cls(
            catalog=catalog,
            table=table,
            reports=ScheduleReports(settings.schedule_table_name, dynamodb),
            bus=EventBus(settings.event_bus_name),
            settings=ScheduleWatchSettings(missed_after_seconds=settings.schedule_missed_after_seconds),
        )

    def check(self, now: datetime | None = None) -> ScheduleWatchReport:
        now = now or self.clock()
        report = ScheduleWatchReport()
        for name in sorted(self.catalog.schedules):
            schedule = self.catalog.schedules[name]
            report.schedules += 1
            try:
                self._check_schedule(schedule, now, report)
            except Exception as error:  # one schedule's trouble must not hide the others'
                report.errors += 1
                logger.exception("schedule check failed", extra={"schedule": name, "error": str(error)})
        count("MissedScheduledRuns", report.missed)
        count("LateScheduledStarts", report.late)
        logger.info(
            "schedules checked",
            extra={
                "schedules": report.schedules,
                "slots": report.slots,
                "missed": report.missed,
                "late": report.late,
            },
        )
        return report

    def _check_schedule(self, schedule: ScheduleSpec, now: datetime, report: ScheduleWatchReport) -> None:
        since = parse_iso(self.reports.watching_since(schedule.name, iso(now)))
        start = max(now - timedelta(seconds=self.settings.lookback_seconds), since)
        slots = schedule.slots(start, now)[-self.settings.max_slots :]
        if not slots:
            return
        report.slots += len(slots)
        ids = [schedule.job_id(slot) for slot in slots]
        jobs = {job.job_id: job for job in self.table.get_many(ids)}
        for slot, job_id in zip(slots, ids, strict=True):
            found = slot_report(schedule, slot, jobs.get(job_id), now, self.settings.missed_after_seconds)
            if found is not None and self._report(found, now):
                if found.kind == MISSED:
                    report.missed += 1
                else:
                    report.late += 1

    def _report(self, found: SlotReport, now: datetime) -> bool:
        """Claim, then publish; a report whose event was refused is released for the next sweep."""
        name = found.schedule.name
        expires_at = int((now + timedelta(seconds=2 * self.settings.lookback_seconds)).timestamp())
        if not self.reports.claim(name, found.report_key, iso(now), expires_at):
            return False
        logger.warning(
            "scheduled run missed" if found.kind == MISSED else "scheduled run started late",
            extra={"schedule": name, "job_id": found.job_id, "reason": found.reason},
        )
        if self.bus is not None:
            error = self.bus.put([found.entry(self.bus.bus_name, now)])[0]
            if error is not None:
                self.reports.release(name, found.report_key)
                logger.error("scheduled run event not put", extra={"schedule": name, "error": error})
                return False
        return True
