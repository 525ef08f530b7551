"""`batchgate schedules` and `batchgate schedules run NAME --slot TIME` against the moto stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from batchgate.domain.catalog import load_catalog
from batchgate.domain.jobs import JobStatus
from batchgate.services.dispatch import DispatchResult

from tests.cli_support import CliHarness, harness, listed_job

__all__ = ["harness"]  # the fixture, imported for pytest

NIGHTLY = load_catalog().schedules["acme-headcount-nightly"]  # 02:00 London: 02:00Z in November


def slot(day: int) -> datetime:
    return datetime(2026, 11, day, 2, tzinfo=UTC)


def test_schedules_lists_the_next_slot_and_the_last_slots_jobs(harness: CliHarness) -> None:
    harness.add(listed_job(1, JobStatus.SUCCEEDED, batch="report-export", job_id=NIGHTLY.job_id(slot(28))))
    harness.add(listed_job(2, JobStatus.FAILED, batch="report-export", job_id=NIGHTLY.job_id(slot(27))))

    document = harness.json("schedules")

    by_name = {entry["name"]: entry for entry in document["schedules"]}
    nightly = by_name["acme-headcount-nightly"]
    assert nightly["next_slot"] == "2026-11-29T02:00:00Z"
    assert nightly["tenant"] == "acme"
    assert [(s["scheduled_time"], s["state"]) for s in nightly["recent"]] == [
        ("2026-11-28T02:00:00Z", "SUCCEEDED"),
        ("2026-11-27T02:00:00Z", "FAILED"),
        ("2026-11-26T02:00:00Z", "MISSED"),
    ]
    assert nightly["recent"][2]["job_id"] == NIGHTLY.job_id(slot(26))
    close = by_name["payroll-month-close"]
    assert close["next_slot"] == "2026-11-30T13:00:00Z"  # 22:00 in Tokyo on the month's last day

    human = harness.ok("schedules", "--schedule", "acme-headcount-nightly").stdout
    assert "acme-headcount-nightly  report-export  cron(0 2 * * ? *) Europe/London  tenant acme" in human
    assert "next  2026-11-29 02:00 GMT (02:00Z)" in human
    assert "2026-11-26 02:00 GMT (02:00Z)  MISSED" in human
    assert "payroll-month-close" not in human


def test_a_slot_whose_time_is_recent_is_due_not_missed(harness: CliHarness) -> None:
    harness.now = datetime(2026, 11, 28, 2, 5, tzinfo=UTC)
    [latest, *_] = harness.json("schedules", "--schedule", "acme-headcount-nightly")["schedules"][0]["recent"]
    assert (latest["scheduled_time"], latest["state"]) == ("2026-11-28T02:00:00Z", "DUE")


def test_run_submits_a_slot_with_its_own_key_and_never_a_second_job(harness: CliHarness) -> None:
    sent = harness.json("schedules", "run", "acme-headcount-nightly", "--slot", "2026-11-26T02:00")
    assert sent["job_id"] == NIGHTLY.job_id(slot(26)) and sent["existing_status"] is None
    [body] = harness.queued_bodies()
    message_id = body.pop("id")
    assert body == NIGHTLY.message("2026-11-26T02:00:00Z")
    dispatcher = harness.stack.dispatcher()
    assert dispatcher.dispatch(message_id, json.dumps(body)) is DispatchResult.DISPATCHED
    job = harness.stack.table.get(sent["job_id"])
    assert job is not None and job.arguments == ("headcount", "2026-11-25")

    again = harness.json("schedules", "run", "acme-headcount-nightly", "--slot", "2026-11-26T02:00:00Z")
    assert again["job_id"] == sent["job_id"] and again["existing_status"] == "DISPATCHED"
    [body] = harness.queued_bodies()
    message_id = body.pop("id")
    assert dispatcher.dispatch(message_id, json.dumps(body)) is DispatchResult.DUPLICATE
    human = harness.ok("schedules", "run", "acme-headcount-nightly", "--slot", "2026-11-26T02:00Z").stdout
    assert "already has its job" in human


def test_run_refuses_a_time_that_is_no_slot_a_future_slot_and_an_unknown_schedule(
    harness: CliHarness,
) -> None:
    not_a_slot = harness.run("schedules", "run", "acme-headcount-nightly", "--slot", "2026-11-26T03:00Z")
    assert not_a_slot.exit_code == 2
    assert "2026-11-26T03:00:00Z is not a slot of schedule acme-headcount-nightly" in not_a_slot.stderr
    assert "the slot before it: 2026-11-26T02:00:00Z" in not_a_slot.stderr
    future = harness.run("schedules", "run", "acme-headcount-nightly", "--slot", "2026-11-29T02:00Z")
    assert future.exit_code == 2 and "has not come yet" in future.stderr
    unknown = harness.run("schedules", "run", "nightly", "--slot", "2026-11-26T02:00Z")
    assert unknown.exit_code == 2 and "no schedule 'nightly'" in unknown.stderr
    assert harness.queued_bodies() == []
