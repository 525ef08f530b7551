"""EventBridge Scheduler's recurring expressions, read and evaluated over a time zone.

`cron(minutes hours day-of-month month day-of-week year)`: six fields; `, - * /` everywhere, `?` in
exactly one of day-of-month and day-of-week, `L` and `W` in day-of-month (`L`, `LW`, `15W`), `L` and
`#` in day-of-week (`6L`: the month's last Friday, `2#1`: its first Monday); days of the week are 1-7
(SUN-SAT), months 1-12 (JAN-DEC), years 1970-2199. Daylight saving time as Scheduler handles it: a
local time the clocks skip is no slot; a local time that happens twice is one slot, its first.

`rate(value unit)` (minutes, hours, days) runs from the schedule's creation, a moment no declaration
knows, so that slots could not be known in advance. A rate whose intervals divide a day evenly (1, 2,
3, 4, 5, 6, 10, 12, 15, 20, 30 minutes; 1, 2, 3, 4, 6, 8, 12 hours; 1 day) is the same as a cron
expression anchored at midnight in the schedule's time zone, and is deployed as that; any other rate is
refused with the reason.
"""

import calendar
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON = re.compile(r"^cron\((?P<fields>[^()]*)\)$")
_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)$")
# Far enough ahead for a yearly schedule, or one whose year field is a few years off.
NEXT_SLOT_HORIZON_DAYS = 4 * 366 + 1


class ScheduleExpressionError(ValueError):
    """The expression is not one EventBridge Scheduler runs, or not one whose slots can be known."""


class _Field(NamedTuple):
    """The values one cron field allows (None: any)."""

    values: frozenset[int] | None

    def allows(self, value: int) -> bool:
        return self.values is None or value in self.values


class _DayRule(NamedTuple):
    """The day-of-month or day-of-week field, which may use L, W and #."""

    plain: frozenset[int] | None = None  # None: any day ("*"); empty with a special form
    last_day: bool = False  # L in day-of-month
    last_weekday: bool = False  # LW
    nearest_weekday: int | None = None  # 15W
    last_of_weekday: int | None = None  # 6L: the month's last Friday (day of week 1-7)
    nth_weekday: tuple[int, int] | None = None  # 2#1: (weekday 1-7, n)

    def allows_month_day(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if self.last_day and day.day == last:
            return True
        if self.last_weekday and day == _weekday_near(day.year, day.month, last):
            return True
        if self.nearest_weekday is not None and day == _weekday_near(
            day.year, day.month, min(self.nearest_weekday, last)
        ):
            return True
        return self.plain is None or day.day in self.plain

    def allows_week_day(self, day: date) -> bool:
        weekday = _cron_weekday(day)
        last = calendar.monthrange(day.year, day.month)[1]
        if self.last_of_weekday is not None:
            return weekday == self.last_of_weekday and day.day + 7 > last
        if self.nth_weekday is not None:
            wanted, nth = self.nth_weekday
            return weekday == wanted and (day.day - 1) // 7 + 1 == nth
        return self.plain is None or weekday in self.plain


def _cron_weekday(day: date) -> int:
    """1 (Sunday) to 7 (Saturday), as cron counts."""
    return (day.weekday() + 1) % 7 + 1


def _weekday_near(year: int, month: int, day_number: int) -> date:
    """The weekday (Monday-Friday) nearest to that day of the month, within the month (cron's W)."""
    day = date(year, month, day_number)
    last = calendar.monthrange(year, month)[1]
    if day.weekday() == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day - timedelta(days=1) if day_number > 1 else day + timedelta(days=2)
    if day.weekday() == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return day + timedelta(days=1) if day_number < last else day - timedelta(days=2)
    return day


class ScheduleExpression(NamedTuple):
    """A recurring expression and what deploys it: `deployed` is the text given to Scheduler (a rate
    that divides a day is deployed as its cron equivalent, so that its slots are known)."""

    text: str
    deployed: str
    minutes: _Field
    hours: _Field
    month_days: _DayRule | None  # None: "?"
    months: _Field
    week_days: _DayRule | None  # None: "?"
    years: _Field

    def slots(self, start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """The slots from `start` (included) to `end` (excluded), in UTC, oldest first."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        day = start.astimezone(zone).date() - timedelta(days=1)
        last_day = end.astimezone(zone).date() + timedelta(days=1)
        while day <= last_day:
            for slot in self._slots_of(day, zone):
                if start <= slot < end:
                    yield slot
            day += timedelta(days=1)

    def next_slot(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        """The first slot strictly after `after`, within a few years; None when there is none."""
        day = after.astimezone(zone).date()
        after = after.astimezone(UTC)
        for _ in range(NEXT_SLOT_HORIZON_DAYS):
            for slot in self._slots_of(day, zone):
                if slot > after:
                    return slot
            day += timedelta(days=1)
        return None

    def previous_slots(
        self, before: datetime, zone: ZoneInfo, count: int, within_days: int
    ) -> list[datetime]:
        """The last `count` slots at or before `before` within `within_days` days, newest first."""
        start = before - timedelta(days=within_days)
        slots = list(self.slots(start, before + timedelta(microseconds=1), zone))
        return list(reversed(slots))[:count]

    def _slots_of(self, day: date, zone: ZoneInfo) -> Iterator[datetime]:
        if not self._allows_day(day):
            return
        for hour in range(24):
            if not self.hours.allows(hour):
                continue
            for minute in range(60):
                if not self.minutes.allows(minute):
                    continue
                local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                moment = local.astimezone(UTC)
                # A local time the clocks skip does not come back the same: no slot (Scheduler skips it).
                if moment.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
                    continue
                yield moment  # fold 0: a repeated local time is its first occurrence only

    def _allows_day(self, day: date) -> bool:
        if not (self.years.allows(day.year) and self.months.allows(day.month)):
            return False
        if self.month_days is not None:
            return self.month_days.allows_month_day(day)
        if self.week_days is not None:
            return self.week_days.allows_week_day(day)
        return False


def parse_schedule_expression(text: str) -> ScheduleExpression:
    """The expression in `text`; ScheduleExpressionError with the reason when Scheduler would refuse it
    or its slots cannot be known."""
    rate = _RATE.fullmatch(text)
    if rate is not None:
        return _parse_cron(text, _rate_as_cron(text, int(rate["value"]), rate["unit"]))
    if text.startswith("rate("):
        raise ScheduleExpressionError(
            f"{text!r} is not a rate expression: rate(value unit), unit minutes, hours or days "
            "(e.g. rate(15 minutes), rate(1 day))"
        )
    if _CRON.fullmatch(text) is None:
        raise ScheduleExpressionError(
            f"{text!r} is neither cron(minutes hours day-of-month month day-of-week year) "
            "nor rate(value unit)"
        )
    return _parse_cron(text, text)


_DAY_MINUTE_STEPS = frozenset({1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30})
_DAY_HOUR_STEPS = frozenset({1, 2, 3, 4, 6, 8, 12})


def _rate_as_cron(text: str, value: int, unit: str) -> str:
    singular = value == 1
    if singular != (not unit.endswith("s")):
        raise ScheduleExpressionError(
            f"{text!r}: Scheduler writes rate(1 {unit.rstrip('s')}) and rate(N {unit.rstrip('s')}s)"
        )
    refusal = (
        f"{text!r} does not divide a day evenly: Scheduler runs a rate from the moment the schedule is "
        "created, so its slots could not be known (nor missed runs found); use a cron expression"
    )
    if unit.startswith("minute"):
        if value not in _DAY_MINUTE_STEPS:
            raise ScheduleExpressionError(refusal)
        return f"cron(0/{value} * * * ? *)" if value > 1 else "cron(* * * * ? *)"
    if unit.startswith("hour"):
        if value not in _DAY_HOUR_STEPS:
            raise ScheduleExpressionError(refusal)
        return f"cron(0 0/{value} * * ? *)" if value > 1 else "cron(0 * * * ? *)"
    if value != 1:
        raise ScheduleExpressionError(refusal)
    return "cron(0 0 * * ? *)"


def _parse_cron(text: str, cron: str) -> ScheduleExpression:
    match = _CRON.fullmatch(cron)
    if match is None:  # pragma: no cover - callers checked the form
        raise ScheduleExpressionError(f"{text!r} is not a cron expression")
    fields = match["fields"].split()
    if len(fields) != 6 or " ".join(fields) != match["fields"]:
        raise ScheduleExpressionError(
            f"{text!r}: a cron expression has six fields separated by single spaces "
            f"(minutes hours day-of-month month day-of-week year), got {len(fields)}"
        )
    minute, hour, month_day, month, week_day, year = fields
    if (month_day == "?") == (week_day == "?"):
        raise ScheduleExpressionError(
            f"{text!r}: exactly one of day-of-month and day-of-week must be '?' "
            "(e.g. cron(0 2 * * ? *) or cron(0 2 ? * MON-FRI *))"
        )
    try:
        return ScheduleExpression(
            text=text,
            deployed=cron,
            minutes=_Field(_values(minute, 0, 59, "minutes")),
            hours=_Field(_values(hour, 0, 23, "hours")),
            month_days=None if month_day == "?" else _month_days(month_day),
            months=_Field(_values(month, 1, 12, "month", names=MONTHS)),
            week_days=None if week_day == "?" else _week_days(week_day),
            years=_Field(_values(year, 1970, 2199, "year")),
        )
    except _FieldError as error:
        raise ScheduleExpressionError(f"{text!r}: {error}") from None


class _FieldError(ValueError):
    pass


def _values(
    field: str, low: int, high: int, name: str, *, names: tuple[str, ...] = (), first: int | None = None
) -> frozenset[int] | None:
    """The values of a field made of `, - * /` parts; None for "*"."""
    if field == "*":
        return None
    values: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise _FieldError(f"{name} field {field!r}: the increment after '/' must be positive")
            step = int(step_text)
        else:
            step = 1
        if base == "*":
            begin, finish = low, high
        elif "-" in base:
            begin_text, _, finish_text = base.partition("-")
            begin = _value(begin_text, low, high, name, names=names, first=first)
            finish = _value(finish_text, low, high, name, names=names, first=first)
            if finish < begin:
                raise _FieldError(f"{name} field {field!r}: the range {base} runs backwards")
        else:
            begin = _value(base, low, high, name, names=names, first=first)
            finish = high if slash else begin
        values.update(range(begin, finish + 1, step))
    return frozenset(values)


def _value(
    text: str, low: int, high: int, name: str, *, names: tuple[str, ...] = (), first: int | None = None
) -> int:
    upper = text.upper()
    if names and upper in names:
        return names.index(upper) + (low if first is None else first)
    if not text.isdigit() or not low <= int(text) <= high:
        allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
        raise _FieldError(f"{name} field: {text!r} is not one of {allowed}")
    return int(text)


def _month_days(field: str) -> _DayRule:
    if field == "L":
        return _DayRule(plain=frozenset(), last_day=True)
    if field == "LW":
        return _DayRule(plain=frozenset(), last_weekday=True)
    nearest = re.fullmatch(r"([0-9]{1,2})W", field)
    if nearest is not None:
        day = int(nearest[1])
        if not 1 <= day <= 31:
            raise _FieldError(f"day-of-month field: {field!r} names no day 1-31")
        return _DayRule(plain=frozenset(), nearest_weekday=day)
    if "L" in field or "W" in field or "#" in field:
        raise _FieldError(
            f"day-of-month field {field!r}: L, LW and nW stand alone (and # is for day-of-week)"
        )
    return _DayRule(plain=_values(field, 1, 31, "day-of-month"))


def _week_days(field: str) -> _DayRule:
    last = re.fullmatch(r"([1-7]|[A-Za-z]{3})L", field)
    if last is not None:
        return _DayRule(
            plain=frozenset(), last_of_weekday=_value(last[1], 1, 7, "day-of-week", names=WEEKDAYS, first=1)
        )
    if field == "L":
        return _DayRule(plain=frozenset({7}))  # L alone in day-of-week: the week's last day, Saturday
    nth = re.fullmatch(r"([1-7]|[A-Za-z]{3})#([1-5])", field)
    if nth is not None:
        return _DayRule(
            plain=frozenset(),
            nth_weekday=(_value(nth[1], 1, 7, "day-of-week", names=WEEKDAYS, first=1), int(nth[2])),
        )
    upper = field.upper()
    if "L" in upper or "#" in upper or "W" in upper.replace("WED", ""):
        raise _FieldError(
            f"day-of-week field {field!r}: nL and n#k stand alone (k from 1 to 5), W is for day-of-month"
        )
    return _DayRule(plain=_values(field, 1, 7, "day-of-week", names=WEEKDAYS, first=1))
