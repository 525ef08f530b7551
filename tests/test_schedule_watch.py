"""Missed and late scheduled runs (batchgate.services.schedule_watch), checked by the sweep: each slot's
job looked up by the id its key gives, a missed slot or a late start reported once (metric, event)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from batchgate.adapters.schedule_table import ScheduleReports
from batchgate.domain.catalog import Catalog, parse_catalog
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso
from batchgate.domain.scheduled_runs import SCHEDULED_RUN_LATE, SCHEDULED_RUN_MISSED
from batchgate.services.schedule_watch import ScheduleWatch, ScheduleWatchSettings
from batchgate.services.settings import Settings
from batchgate.services.sweep import Sweeper

from tests.conftest import REGION, Stack, template_table
from tests.test_pool_template import packaged_document

REPORTS_TABLE = "batchgate-test-schedules"


@dataclass
class RecordingBus:
    """EventBus's put: records the entries it takes; refuses every entry while `refusing`."""

    bus_name: str = "default"
    refusing: bool = False
    entries: list[dict[str, Any]] = field(default_factory=list)

    def put(self, entries: Sequence[dict[str, Any]]) -> list[str | None]:
        if self.refusing:
            return ["ThrottlingException"] * len(entries)
        self.entries.extend(entries)
        return [None] * len(entries)


def hourly_catalog(tolerance: int | None = None) -> Catalog:
    document = copy.deepcopy(packaged_document())
    schedule: dict[str, Any] = {
        "batch": "payroll-calculation",
        "expression": "cron(0 * * * ? *)",
        "timezone": "Asia/Tokyo",
        "arguments": ["{scheduled_time:%Y-%m}"],
        "tenant": "acme",
    }
    if tolerance is not None:
        schedule["start_tolerance_seconds"] = tolerance
    document["schedules"] = {"hourly": schedule}
    return parse_catalog(document)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=UTC)


def slot_job(catalog: Catalog, slot: datetime, started: datetime | None = None) -> Job:
    schedule = catalog.schedules["hourly"]
    timeline = {"started": iso(started)} if started else {}
    return Job(
        job_id=schedule.job_id(slot),
        batch=schedule.batch,
        status=JobStatus.RUNNING if started else JobStatus.DISPATCHED,
        created_at=iso(slot),
        updated_at=iso(slot),
        expires_at=1900000000,
        message_id="m",
        idempotency_key=schedule.key(slot),
        attempts=(Attempt(1, "FARGATE", "FARGATE", iso(slot), timeline=timeline),),
    )


@pytest.fixture
def reports(stack: Stack) -> ScheduleReports:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=REPORTS_TABLE, **template_table("ScheduleTable"))
    reports = ScheduleReports(REPORTS_TABLE, client)
    reports.set_watching_since("hourly", iso(at(0)))  # deployed at midnight
    return reports


def watch(stack: Stack, reports: ScheduleReports, catalog: Catalog, bus: RecordingBus) -> ScheduleWatch:
    return ScheduleWatch(
        catalog=catalog,
        table=stack.table,
        reports=reports,
        bus=bus,  # type: ignore[arg-type]
        settings=ScheduleWatchSettings(missed_after_seconds=900, lookback_seconds=6 * 3600),
    )


def test_a_missed_slot_is_reported_once(stack: Stack, reports: ScheduleReports) -> None:
    catalog = hourly_catalog()
    for hour in range(5, 10):  # 05:00 to 09:00 ran; 10:00 did not
        assert stack.table.create(slot_job(catalog, at(hour), started=at(hour, 1))) is not None
    bus = RecordingBus()
    watcher = watch(stack, reports, catalog, bus)

    # Ten minutes after the slot Scheduler may still be retrying: not yet missed.
    assert watcher.check(at(10, 10)).missed == 0
    first = watcher.check(at(10, 20))
    assert (first.missed, first.slots) == (1, 6)
    [entry] = bus.entries
    assert entry["DetailType"] == SCHEDULED_RUN_MISSED
    detail = json.loads(entry["Detail"])
    expected = catalog.schedules["hourly"].job_id(at(10))
    assert detail["status"] == "MISSED" and detail["job_id"] == expected
    assert (detail["schedule"], detail["tenant"], detail["scheduled_time"]) == (
        "hourly",
        "acme",
        "2026-12-01T10:00:00Z",
    )
    assert "batchgate schedules run hourly --slot 2026-12-01T10:00:00Z" in detail["reason"]
    # Every later sweep sees it again, and says nothing more.
    assert watcher.check(at(10, 30)).missed == 0
    assert watcher.check(at(10, 50)).missed == 0
    assert len(bus.entries) == 1


def test_a_slot_whose_job_came_after_all_is_not_missed(stack: Stack, reports: ScheduleReports) -> None:
    catalog = hourly_catalog()
    stack.table.create(slot_job(catalog, at(10)))  # not started yet: neither missed nor late
    bus = RecordingBus()
    report = watch(stack, reports, catalog, bus).check(at(10, 30))
    assert report.missed == 5  # 05:00 to 09:00 have no job
    assert all(json.loads(e["Detail"])["scheduled_time"] != "2026-12-01T10:00:00Z" for e in bus.entries)


def test_a_late_start_is_reported_once_past_the_tolerance(stack: Stack, reports: ScheduleReports) -> None:
    catalog = hourly_catalog(tolerance=300)
    for hour in range(5, 10):
        stack.table.create(slot_job(catalog, at(hour), started=at(hour, 2)))  # within 5 min
    stack.table.create(slot_job(catalog, at(10), started=at(10, 8)))  # 8 min late
    bus = RecordingBus()
    watcher = watch(stack, reports, catalog, bus)
    assert watcher.check(at(10, 20)).late == 1
    assert watcher.check(at(10, 40)).late == 0
    [entry] = bus.entries
    assert entry["DetailType"] == SCHEDULED_RUN_LATE
    detail = json.loads(entry["Detail"])
    assert detail["status"] == "LATE" and "started 480 s after its slot" in detail["reason"]


def test_a_report_whose_event_was_refused_is_made_again_by_the_next_sweep(
    stack: Stack, reports: ScheduleReports
) -> None:
    catalog = hourly_catalog()
    for hour in range(5, 10):
        stack.table.create(slot_job(catalog, at(hour), started=at(hour, 1)))
    bus = RecordingBus(refusing=True)
    watcher = watch(stack, reports, catalog, bus)
    assert watcher.check(at(10, 20)).missed == 0
    bus.refusing = False
    assert watcher.check(at(10, 25)).missed == 1
    assert len(bus.entries) == 1


def test_the_look_back_window_bounds_what_a_sweep_reads(stack: Stack, reports: ScheduleReports) -> None:
    catalog = hourly_catalog()
    bus = RecordingBus()
    watcher = ScheduleWatch(
        catalog=catalog,
        table=stack.table,
        reports=reports,
        bus=bus,  # type: ignore[arg-type]
        settings=ScheduleWatchSettings(missed_after_seconds=900, lookback_seconds=2 * 3600, max_slots=60),
    )
    report = watcher.check(at(10, 20))
    assert (report.slots, report.missed) == (2, 2)  # 09:00 and 10:00 only


def test_the_sweep_checks_the_schedules(stack: Stack, reports: ScheduleReports) -> None:
    catalog = hourly_catalog()
    bus = RecordingBus()
    sweeper = Sweeper(
        catalog=catalog,
        table=stack.table,
        ecs=None,  # type: ignore[arg-type]  # no job to compare with ECS
        jobs_queue=None,
        clock=lambda: at(10, 20),
        schedule_watch=watch(stack, reports, catalog, bus),
    )
    sweeper.sweep()
    assert len(bus.entries) == 6


def test_the_sweep_watches_schedules_only_with_a_schedule_table() -> None:
    settings = Settings(table_name="t", cluster="c")
    assert ScheduleWatch.from_settings(settings, hourly_catalog(), None) is None  # type: ignore[arg-type]
    with_table = Settings(table_name="t", cluster="c", schedule_table_name=REPORTS_TABLE)
    no_schedules = parse_catalog({k: v for k, v in packaged_document().items() if k != "schedules"})
    assert ScheduleWatch.from_settings(with_table, no_schedules, None) is None  # type: ignore[arg-type]


def test_slots_from_before_the_schedule_was_first_watched_are_not_missed(stack: Stack) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(TableName=REPORTS_TABLE, **template_table("ScheduleTable"))
    reports = ScheduleReports(REPORTS_TABLE, client)
    bus = RecordingBus()
    watcher = watch(stack, reports, hourly_catalog(), bus)
    assert watcher.check(at(10, 20)).slots == 0  # first seen now: 05:00 to 10:00 predate it
    assert reports.watching_since("hourly", iso(at(12))) == iso(at(10, 20))
    later = watcher.check(at(11, 20))
    assert (later.slots, later.missed) == (1, 1)  # 11:00
    assert reports.reports("hourly") == ["missed#2026-12-01T11:00:00Z"]
