"""Schedules (docs/schedules.md): Scheduler's expressions over a time zone, the arguments' placeholders,
the catalog's checks, and what dispatch makes of a slot's message."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from batchgate.domain.catalog import CatalogError, load_catalog, parse_catalog
from batchgate.domain.jobs import job_id_for
from batchgate.domain.messages import RejectedMessage, parse_submit_message
from batchgate.domain.schedule_expressions import ScheduleExpressionError, parse_schedule_expression
from batchgate.domain.schedules import (
    ArgumentTemplateError,
    resolve_arguments,
    scheduled_time_text,
)
from batchgate.domain.strategy import plan_launch
from batchgate.services.dispatch import DispatchResult

from tests.conftest import Stack

UTC_ZONE = ZoneInfo("UTC")
TOKYO = ZoneInfo("Asia/Tokyo")
LONDON = ZoneInfo("Europe/London")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def slots(expression: str, start: str, end: str, zone: ZoneInfo = UTC_ZONE) -> list[str]:
    parsed = parse_schedule_expression(expression)
    return [scheduled_time_text(slot) for slot in parsed.slots(at(start), at(end), zone)]


# --- expressions ----------------------------------------------------------------------------------


def test_a_weekday_cron_skips_the_weekend() -> None:
    assert slots("cron(0 2 ? * MON-FRI *)", "2026-12-04T00:00:00+00:00", "2026-12-08T00:00:00+00:00") == [
        "2026-12-04T02:00:00Z",  # Friday
        "2026-12-07T02:00:00Z",  # Monday
    ]


def test_a_cron_is_read_in_its_time_zone() -> None:
    # 00:30 on the 1st in Tokyo is 15:30 UTC the day before.
    parsed = parse_schedule_expression("cron(30 0 1 * ? *)")
    assert parsed.next_slot(at("2026-11-15T00:00:00+00:00"), TOKYO) == at("2026-11-30T15:30:00+00:00")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 22 L * ? *)", "2028-02-01T00:00:00+00:00", "2028-02-29T22:00:00+00:00"),  # leap year
        ("cron(0 9 ? * 2#1 *)", "2026-12-01T00:00:00+00:00", "2026-12-07T09:00:00+00:00"),  # 1st Monday
        ("cron(0 9 ? * 6L *)", "2026-12-01T00:00:00+00:00", "2026-12-25T09:00:00+00:00"),  # last Friday
        ("cron(0 9 15W * ? *)", "2026-08-01T00:00:00+00:00", "2026-08-14T09:00:00+00:00"),  # 15th a Saturday
        ("cron(0 9 LW * ? *)", "2026-05-01T00:00:00+00:00", "2026-05-29T09:00:00+00:00"),  # 31st a Sunday
        ("cron(0/20 8-9 * JAN,FEB ? 2027)", "2026-05-01T00:00:00+00:00", "2027-01-01T08:00:00+00:00"),
    ],
)
def test_scheduler_wildcards(expression: str, after: str, expected: str) -> None:
    assert parse_schedule_expression(expression).next_slot(at(after), UTC_ZONE) == at(expected)


def test_daylight_saving_skips_a_missing_local_time_and_runs_a_repeated_one_once() -> None:
    # London springs forward at 01:00 on 29 March 2026 (01:30 does not exist) and falls back at 02:00 on
    # 25 October (01:30 happens twice).
    assert slots("cron(30 1 * * ? *)", "2026-03-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00", LONDON) == [
        "2026-03-28T01:30:00Z",
        "2026-03-30T00:30:00Z",
    ]
    assert slots("cron(30 1 * * ? *)", "2026-10-24T00:00:00+00:00", "2026-10-27T00:00:00+00:00", LONDON) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ]


def test_a_rate_that_divides_a_day_is_deployed_as_its_cron() -> None:
    assert parse_schedule_expression("rate(15 minutes)").deployed == "cron(0/15 * * * ? *)"
    assert parse_schedule_expression("rate(6 hours)").deployed == "cron(0 0/6 * * ? *)"
    assert parse_schedule_expression("rate(1 day)").deployed == "cron(0 0 * * ? *)"
    assert slots("rate(6 hours)", "2026-12-01T00:00:00+00:00", "2026-12-01T13:00:00+00:00") == [
        "2026-12-01T00:00:00Z",
        "2026-12-01T06:00:00Z",
        "2026-12-01T12:00:00Z",
    ]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("cron(0 2 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 2 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(60 2 * * ? *)", "minutes field: '60' is not one of 0-59"),
        ("cron(0 2 * * ?)", "six fields"),
        ("cron(0 2 * FOO ? *)", "month field: 'FOO'"),
        ("cron(0 2 ? * 8 *)", "day-of-week field: '8'"),
        ("cron(0 2 32W * ? *)", "names no day"),
        ("0 2 * * *", "neither cron("),
        ("rate(7 minutes)", "does not divide a day evenly"),
        ("rate(2 days)", "does not divide a day evenly"),
        ("rate(1 minutes)", "rate(1 minute)"),
        ("rate(5 weeks)", "not a rate expression"),
    ],
)
def test_expressions_scheduler_refuses_or_whose_slots_cannot_be_known_are_refused(
    expression: str, reason: str
) -> None:
    with pytest.raises(ScheduleExpressionError) as raised:
        parse_schedule_expression(expression)
    assert reason in str(raised.value)


# --- arguments' placeholders ------------------------------------------------------------------------


def test_placeholders_resolve_in_the_schedules_zone() -> None:
    slot = at("2026-11-30T13:00:00+00:00")  # 22:00 on 30 November in Tokyo
    assert resolve_arguments(
        ["{scheduled_time:%Y-%m}", "{scheduled_time}", "day={scheduled_time-1d:%Y-%m-%d}", "plain"],
        slot,
        TOKYO,
    ) == ("2026-11", "2026-11-30T13:00:00Z", "day=2026-11-29", "plain")
    # 00:30 on 1 December in Tokyo: the month being closed is November.
    assert resolve_arguments(["{scheduled_time-1d:%Y-%m}"], at("2026-11-30T15:30:00+00:00"), TOKYO) == (
        "2026-11",
    )
    assert resolve_arguments(["{scheduled_time+2h:%H}"], at("2026-11-30T15:30:00+00:00"), TOKYO) == ("02",)


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{scheduled_time:%c}", "%c is not allowed"),
        ("{scheduled_time:%Y-%Z}", "%Z is not allowed"),
        ("{scheduled_time-1d}", "a shifted time needs a format"),
        ("{scheduled_time-1w:%Y}", "has a placeholder that is not"),
        ("{scheduled_time.year}", "has a placeholder that is not"),
    ],
)
def test_placeholders_outside_the_documented_forms_are_refused(template: str, reason: str) -> None:
    with pytest.raises(ArgumentTemplateError) as raised:
        resolve_arguments([template], at("2026-11-30T13:00:00+00:00"), UTC_ZONE)
    assert reason in str(raised.value)


# --- the catalog ----------------------------------------------------------------------------------


def packaged() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        resources.files("batchgate").joinpath("catalog.json").read_text(encoding="utf-8")
    )
    return document


def with_schedule(**fields: Any) -> dict[str, Any]:
    document = copy.deepcopy(packaged())
    schedule = {"batch": "payroll-calculation", "expression": "cron(0 2 * * ? *)", "timezone": "UTC"}
    schedule.update(fields)
    document["schedules"] = {"nightly": {key: value for key, value in schedule.items() if value is not None}}
    return document


def test_the_packaged_catalog_declares_schedules_next_to_their_batches() -> None:
    catalog = load_catalog()
    close = catalog.schedules["payroll-month-close"]
    assert close.batch == "payroll-calculation" and close.timezone == "Asia/Tokyo"
    assert close.start_tolerance_seconds == 300
    assert catalog.schedules["acme-headcount-nightly"].tenant == "acme"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"expression": "cron(0 2 * * * *)"}, "field 'expression': 'cron(0 2 * * * *)': exactly one of"),
        ({"expression": "rate(7 minutes)"}, "does not divide a day evenly"),
        ({"timezone": "Asia/Tokio"}, "field 'timezone': 'Asia/Tokio' is not an IANA time zone"),
        ({"timezone": None}, "missing field 'timezone'"),
        ({"batch": "payroll"}, "field 'batch': 'payroll' is not a batch of the catalog"),
        ({"arguments": ["{scheduled_time:%A}"]}, "%A is not allowed"),
        (
            {"arguments": ["{scheduled_time:%Y/%m}"]},
            'resolve to ["2026/12"], which batch payroll-calculation refuses',
        ),
        ({"arguments": []}, "which batch payroll-calculation refuses: expects 1 to 2 arguments, got 0"),
        ({"tenant": "Acme Corp"}, "field 'tenant' ('Acme Corp') must match"),
        ({"start_tolerance_seconds": 0}, "field 'start_tolerance_seconds' must be an integer from 1"),
        ({"every": "night"}, "unknown field 'every'"),
    ],
)
def test_a_bad_schedule_is_refused_when_the_catalog_loads(fields: dict[str, Any], reason: str) -> None:
    fields.setdefault("arguments", ["{scheduled_time:%Y-%m}"])
    with pytest.raises(CatalogError) as raised:
        parse_catalog(with_schedule(**fields), "catalog.json")
    assert "schedule 'nightly'" in str(raised.value)
    assert reason in str(raised.value)


def test_dispatch_and_track_read_the_catalog_without_its_schedules() -> None:
    # A bad schedule fails the loads that read schedules (the sweep's, the CLI's, the template
    # generators'), not dispatch's or track's: a slot's message carries its schedule, time and zone.
    document = with_schedule(timezone="Asia/Tokio", arguments=["{scheduled_time:%Y-%m}"])
    with pytest.raises(CatalogError, match="'Asia/Tokio' is not an IANA time zone"):
        parse_catalog(document)

    catalog = parse_catalog(document, schedules=False)
    whole = parse_catalog(packaged())

    assert dict(catalog.schedules) == {}
    assert catalog.batches == whole.batches and catalog.launch_classes == whole.launch_classes
    # The pools' scaling windows (their time zone) are schedules too; the rest of each pool is read.
    assert {name: (pool.timezone, pool.windows) for name, pool in catalog.pools.items()} == {
        name: ("UTC", ()) for name in whole.pools
    }
    assert [pool._replace(timezone="UTC", windows=()) for pool in whole.pools.values()] == list(
        catalog.pools.values()
    )
    assert [pool.windows for pool in whole.pools.values()] != [()] * len(whole.pools)
    message = parse_submit_message(slot_body(), catalog)
    assert message.arguments == ("2026-11",) and message.schedule is not None


def test_a_schedule_name_must_fit_schedulers_and_the_keys() -> None:
    document = with_schedule(arguments=["x"])
    document["schedules"] = {"Nightly Run": document["schedules"]["nightly"]}
    with pytest.raises(CatalogError, match="name must match"):
        parse_catalog(document)


# --- a slot's message -----------------------------------------------------------------------------

SLOT = "2026-11-30T13:00:00Z"


def slot_body(name: str = "payroll-month-close", time: str = SLOT) -> str:
    catalog = load_catalog()
    return json.dumps(catalog.schedules[name].message(time))


def test_a_slots_message_carries_resolved_arguments_and_the_slot_key() -> None:
    message = parse_submit_message(slot_body(), load_catalog())
    assert message.arguments == ("2026-11",)
    assert message.idempotency_key == f"schedule:payroll-month-close:{SLOT}"
    assert message.schedule is not None and message.schedule.name == "payroll-month-close"
    # The job id is known from the slot alone.
    schedule = load_catalog().schedules["payroll-month-close"]
    assert schedule.job_id(at("2026-11-30T13:00:00+00:00")) == job_id_for(
        "payroll-calculation", f"schedule:payroll-month-close:{SLOT}"
    )


def test_a_slots_message_keeps_its_tenant() -> None:
    message = parse_submit_message(
        slot_body("acme-headcount-nightly", "2026-12-01T02:00:00Z"), load_catalog()
    )
    assert message.tenant == "acme"
    assert message.arguments == ("headcount", "2026-11-30")


def test_a_slot_message_with_a_bad_time_or_zone_is_rejected_with_the_reason() -> None:
    document = json.loads(slot_body())
    document["schedule"]["scheduled_time"] = "<aws.scheduler.scheduled-time>"
    with pytest.raises(RejectedMessage, match="schedule"):
        parse_submit_message(json.dumps(document), load_catalog())
    document = json.loads(slot_body())
    document["schedule"]["timezone"] = "Mars/Olympus"
    with pytest.raises(RejectedMessage, match='"Mars/Olympus" is not an IANA time zone'):
        parse_submit_message(json.dumps(document), load_catalog())


def test_the_same_slot_delivered_twice_is_one_job(stack: Stack) -> None:
    dispatcher = stack.dispatcher()
    assert dispatcher.dispatch("m-1", slot_body()) is DispatchResult.DISPATCHED
    assert dispatcher.dispatch("m-2", slot_body()) is DispatchResult.DUPLICATE
    job_id = load_catalog().schedules["payroll-month-close"].job_id(at("2026-11-30T13:00:00+00:00"))
    job = stack.table.get(job_id)
    assert job is not None and job.arguments == ("2026-11",)
    assert (job.schedule, job.scheduled_time) == ("payroll-month-close", "2026-11-30T13:00:00.000Z")
    assert len(stack.tasks_started_by(job_id)) == 1
    # Planned for latency: the payroll's class is balanced.
    assert job.plan is not None and "scheduled run plans for latency" in job.plan.reason


def test_a_scheduled_job_plans_for_latency_unless_its_class_prefers_cost() -> None:
    catalog = load_catalog()
    balanced = plan_launch(catalog.batches["payroll-calculation"], scheduled=True)
    assert balanced.inputs["objective"] == "latency"
    cost = plan_launch(catalog.batches["report-export"], scheduled=True)
    assert cost.inputs["objective"] == "cost"
