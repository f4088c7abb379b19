"""Keeping workers warm ahead of traffic: cron-style warm windows and learned prewarming.

Both are pure: given the wall-clock instant (and, for prewarming, the traffic profile), they say
how many workers should be up, which the autoscaler takes as a floor next to `min_workers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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


def scheduled_min_workers(windows: list[tuple[str, int, str]], wall: float) -> int:
    """The largest `min_workers` of the (cron, min_workers, timezone) windows open at `wall`."""
    floor = 0
    for cron, min_workers, timezone in windows:
        zone = UTC if timezone == "UTC" else ZoneInfo(timezone)
        if CronWindow.parse(cron).open_at(datetime.fromtimestamp(wall, zone)):
            floor = max(floor, min_workers)
    return floor


@dataclass
class TrafficProfile:
    """Arrivals by time of day: counts per `bucket_s` bucket per day, averaged over the days seen.

    Learned from the endpoint's own job history. `expected(start, end)` is the average number of
    arrivals on a day between those times of day.
    """

    bucket_s: int = 300
    days: int = 7
    counts: dict[tuple[int, int], int] = field(default_factory=dict)  # (day, bucket) -> count

    def record(self, wall: float, count: int = 1) -> None:
        key = (int(wall // 86_400), int(wall % 86_400) // self.bucket_s)
        self.counts[key] = self.counts.get(key, 0) + count

    def expected(self, start: float, end: float) -> float:
        """Average arrivals per day, over the last `days` full days before `start`'s day,
        in the time-of-day span [start, end)."""
        today = int(start // 86_400)
        seen = sorted({day for day, _ in self.counts if today - self.days <= day < today})
        if not seen:
            return 0.0
        first = int(start % 86_400) // self.bucket_s
        last = max(first, math.ceil((end - start) / self.bucket_s) + first - 1)
        per_day = 86_400 // self.bucket_s
        buckets = {b % per_day for b in range(first, last + 1)}
        total = sum(self.counts.get((day, b), 0) for day in seen for b in buckets)
        return total / len(seen)


def prewarm_workers(profile: TrafficProfile, now: float, lead_s: float, threshold: float) -> int:
    """1 when the profile expects at least `threshold` arrivals in the next `lead_s` + a bucket,
    so a worker is ready before the burst; else 0 (the autoscaler handles the rest)."""
    expected = profile.expected(now, now + lead_s + profile.bucket_s)
    return 1 if expected >= threshold else 0
