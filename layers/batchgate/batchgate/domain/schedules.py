"""Schedules (docs/schedules.md): a batch run at the slots of a cron or rate expression in a time zone.

A slot is one scheduled time. Its submit message names the slot in two places Scheduler fills in when
it delivers (`<aws.scheduler.scheduled-time>`): the idempotency key `schedule:<name>:<time>`, so that
one slot is one job however often it is delivered (and its job id is known in advance: the sweep and
`batchgate schedules` look it up by key), and the `schedule` field, from which dispatch resolves the
arguments' placeholders:

    {scheduled_time}              the slot as Scheduler gives it, 2026-11-30T15:00:00Z
    {scheduled_time:%Y-%m}        the slot in the schedule's time zone, formatted: 2026-12
    {scheduled_time-1d:%Y-%m}     one day (or hours: -6h, +2h) earlier in that zone: 2026-11

Only numeric strftime directives are allowed (%Y %y %m %d %H %M %S %j %u %w %V %G and %%): a resolved
argument never depends on the locale, and is then checked against the batch's argument rules like any
other.
"""

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from batchgate.domain.jobs import job_id_for
from batchgate.domain.schedule_expressions import ScheduleExpression

SCHEDULE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
# What EventBridge Scheduler replaces with the slot's time in a target's input.
SCHEDULED_TIME_ATTRIBUTE = "<aws.scheduler.scheduled-time>"
SCHEDULED_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
KEY_PREFIX = "schedule:"
PLACEHOLDER = re.compile(
    r"\{scheduled_time(?P<shift>[+-](?P<amount>[0-9]{1,3})(?P<unit>[dh]))?(?::(?P<format>[^{}]*))?\}"
)
_PLACEHOLDER_START = "{scheduled_time"
_DIRECTIVE = re.compile(r"%(.)")
ALLOWED_DIRECTIVES = frozenset("YymdHMSjuwVG%")


class ArgumentTemplateError(ValueError):
    """An argument's placeholder is not one this module resolves."""


class ScheduleSpec(NamedTuple):
    """One schedule of the catalog."""

    name: str
    batch: str
    expression: ScheduleExpression
    timezone: str
    arguments: tuple[str, ...] = ()
    tenant: str | None = None
    # A job that starts (RUNNING) this long after its slot is a late start (None: never late).
    start_tolerance_seconds: int | None = None
    description: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def key(self, slot: datetime) -> str:
        return slot_key(self.name, scheduled_time_text(slot))

    def job_id(self, slot: datetime) -> str:
        """The job a slot is: the same formula as dispatch's, from the slot's idempotency key."""
        return job_id_for(self.batch, self.key(slot))

    def message(self, scheduled_time: str = SCHEDULED_TIME_ATTRIBUTE) -> dict[str, Any]:
        """The submit message of a slot: with the default, the input Scheduler fills in; with a time, what
        it sends for that slot (and what `batchgate schedules run` and the local scheduler send)."""
        document: dict[str, Any] = {
            "schema_version": 1,
            "batch": self.batch,
            "arguments": list(self.arguments),
            "idempotency_key": slot_key(self.name, scheduled_time),
            "schedule": {"name": self.name, "scheduled_time": scheduled_time, "timezone": self.timezone},
        }
        if self.tenant is not None:
            document["tenant"] = self.tenant
        return document

    def slots(self, start: datetime, end: datetime) -> list[datetime]:
        return list(self.expression.slots(start, end, self.zone))

    def next_slot(self, after: datetime) -> datetime | None:
        return self.expression.next_slot(after, self.zone)

    def recent_slots(self, now: datetime, count: int, within_days: int = 40) -> list[datetime]:
        """The last `count` slots at or before `now`, newest first."""
        return self.expression.previous_slots(now, self.zone, count, within_days)


def scheduled_time_text(slot: datetime) -> str:
    """A slot as Scheduler writes `<aws.scheduler.scheduled-time>`: UTC, whole seconds, "Z"."""
    return slot.astimezone(UTC).strftime(SCHEDULED_TIME_FORMAT)


def slot_key(schedule: str, scheduled_time: str) -> str:
    return f"{KEY_PREFIX}{schedule}:{scheduled_time}"


def parse_scheduled_time(text: str) -> datetime:
    """A slot's time (RFC 3339 with an offset); ValueError otherwise."""
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


def resolve_arguments(templates: Sequence[str], slot: datetime, zone: ZoneInfo) -> tuple[str, ...]:
    """Each argument with its placeholders replaced by the slot's time; ArgumentTemplateError naming the
    argument when a placeholder is not one of the documented forms."""
    return tuple(_resolve(template, position, slot, zone) for position, template in enumerate(templates, 1))


def argument_template_problem(template: str) -> str | None:
    """None when every placeholder of `template` is valid, else the reason."""
    try:
        _resolve(template, 1, datetime(2000, 1, 1, tzinfo=UTC), ZoneInfo("UTC"))
    except ArgumentTemplateError as error:
        return str(error)
    return None


def _resolve(template: str, position: int, slot: datetime, zone: ZoneInfo) -> str:
    def replace(match: re.Match[str]) -> str:
        local = slot.astimezone(zone)
        if match["shift"]:
            amount = int(match["amount"]) * (-1 if match["shift"].startswith("-") else 1)
            # Whole days move on the wall clock (a DST change keeps the hour); hours are elapsed time.
            if match["unit"] == "d":
                local = (local.replace(tzinfo=None) + timedelta(days=amount)).replace(tzinfo=zone)
            else:
                local = (slot + timedelta(hours=amount)).astimezone(zone)
        text_format = match["format"]
        if text_format is None:
            if match["shift"]:
                raise ArgumentTemplateError(
                    f"argument {position} ({template!r}): a shifted time needs a format, e.g. "
                    "{scheduled_time-1d:%Y-%m-%d}"
                )
            return scheduled_time_text(slot)
        refused = sorted({d for d in _DIRECTIVE.findall(text_format) if d not in ALLOWED_DIRECTIVES})
        if refused or (text_format.endswith("%") and not text_format.endswith("%%")):
            shown = ", ".join(f"%{d}" for d in refused) or "a lone %"
            raise ArgumentTemplateError(
                f"argument {position} ({template!r}): {shown} is not allowed in a placeholder's format "
                f"(allowed: {' '.join('%' + d for d in sorted(ALLOWED_DIRECTIVES))})"
            )
        return local.strftime(text_format)

    resolved = PLACEHOLDER.sub(replace, template)
    if _PLACEHOLDER_START in PLACEHOLDER.sub("", template):
        raise ArgumentTemplateError(
            f"argument {position} ({template!r}) has a placeholder that is not {{scheduled_time}}, "
            "{scheduled_time:FORMAT} or {scheduled_time-1d:FORMAT} (shift in d or h)"
        )
    return resolved


class ScheduledSlot(NamedTuple):
    """The `schedule` field of a submit message: which schedule, which slot, read in which zone."""

    name: str
    scheduled_time: datetime
    timezone: str = "UTC"

    def to_document(self) -> dict[str, str]:
        return {
            "name": self.name,
            "scheduled_time": scheduled_time_text(self.scheduled_time),
            "timezone": self.timezone,
        }

    @property
    def key(self) -> str:
        return slot_key(self.name, scheduled_time_text(self.scheduled_time))
