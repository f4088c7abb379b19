"""Keeping workers warm ahead of traffic: cron-style warm windows and learned prewarming.

Both are pure: given the wall-clock instant (and, for prewarming, the traffic profile), they say
how many workers should be up, which the autoscaler takes as a floor next to `min_workers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from coldbrew.cron import CronWindow

__all__ = ["CronWindow", "TrafficProfile", "prewarm_workers", "scheduled_min_workers"]


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
