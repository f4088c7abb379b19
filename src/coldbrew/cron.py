"""Cron expressions read as sets of open minutes: when a `warm_schedule` window is open.

Below every layer: the spec validates a window's expression at deploy with the same parser the
scheduler uses to open it (`control/warmth.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTH_NAMES),
    ("day of week", 0, 7, _DAY_NAMES),
)


def _value(text: str, names: dict[str, int], what: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not key.isdigit():
        raise ValueError(f"{text!r} is not a number or name in the {what} field")
    return int(key)


def _parse_field(text: str, low: int, high: int, names: dict[str, int], what: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = _value(a, names, what), _value(b, names, what)
        else:
            start = end = _value(body, names, what)
        if not (low <= start <= high and low <= end <= high and start <= end and step > 0):
            raise ValueError(f"{part!r} is outside {low}-{high} in the {what} field")
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True)
class CronWindow:
    """A cron expression read as a set of minutes: the window is open in every minute it matches.

    `* 8-17 * * mon-fri` is open 08:00-17:59 on weekdays. Day of week 0 and 7 are Sunday.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    restricted_days: bool
    restricted_weekdays: bool

    @classmethod
    def parse(cls, expression: str) -> CronWindow:
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron expression {expression!r} needs 5 fields (minute hour day month weekday), "
                "e.g. '* 8-17 * * mon-fri'"
            )
        sets = [
            _parse_field(p, lo, hi, names, what)
            for p, (what, lo, hi, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = {d % 7 for d in sets[4]}
        return cls(
            frozenset(sets[0]),
            frozenset(sets[1]),
            frozenset(sets[2]),
            frozenset(sets[3]),
            frozenset(weekdays),
            parts[2] != "*",
            parts[4] != "*",
        )

    def open_at(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # cron counts from Sunday
        if self.restricted_days and self.restricted_weekdays:  # cron: either matches
            day_ok = moment.day in self.days or weekday in self.weekdays
        else:
            day_ok = moment.day in self.days and weekday in self.weekdays
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and day_ok
        )
