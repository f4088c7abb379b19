"""Warm windows (cron-style) and learned prewarming, on a fake clock.

The last test replays a synthetic daily burst through the real autoscaling policy and shows
what `prewarm="auto"` buys (cold-start share) and costs (idle keep-warm seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from coldbrew.control.autoscaler import Observation, ScalerState, WorkerView, decide
from coldbrew.control.warmth import (
    CronWindow,
    TrafficProfile,
    prewarm_workers,
    scheduled_min_workers,
)
from coldbrew.errors import SpecError
from coldbrew.spec import DeploymentSpec, parse_spec


def at(text: str) -> float:
    """Epoch seconds of an ISO time in UTC ('2026-11-23T08:00' is a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("cron", "moment", "open_"),
    [
        ("* 8-17 * * mon-fri", "2026-11-23T08:00", True),  # Monday 08:00
        ("* 8-17 * * mon-fri", "2026-11-23T17:59", True),
        ("* 8-17 * * mon-fri", "2026-11-23T18:00", False),
        ("* 8-17 * * mon-fri", "2026-11-23T07:59", False),
        ("* 8-17 * * mon-fri", "2026-11-28T09:00", False),  # Saturday
        ("* * * * sat,sun", "2026-11-29T03:00", True),  # Sunday
        ("* * * * 0", "2026-11-29T03:00", True),
        ("* * * * 7", "2026-11-29T03:00", True),  # 7 is Sunday too
        ("*/15 9 * * *", "2026-11-24T09:30", True),
        ("*/15 9 * * *", "2026-11-24T09:31", False),
        ("* * 1 jan *", "2026-01-01T12:00", True),
        ("* * 1 jan *", "2026-02-01T12:00", False),
        ("* * 1 * mon", "2026-11-23T12:00", True),  # cron: day-of-month OR weekday
    ],
)
def test_cron_windows_open_on_the_minutes_they_match(cron: str, moment: str, open_: bool) -> None:
    assert CronWindow.parse(cron).open_at(datetime.fromisoformat(moment)) is open_


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("* 8-17 * *", "needs 5 fields"),
        ("* 25 * * *", "outside 0-23 in the hour field"),
        ("* * * * funday", "not a number or name in the day of week field"),
        ("* 9-8 * * *", "outside"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(cron: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        CronWindow.parse(cron)
    with pytest.raises(SpecError, match=says):
        parse_spec({"warm_schedule": [{"cron": cron}]}, where="model X")


def test_the_largest_open_window_sets_the_floor_and_timezones_apply() -> None:
    windows = [("* 8-17 * * mon-fri", 1, "UTC"), ("* 12 * * *", 3, "UTC")]
    assert scheduled_min_workers(windows, at("2026-11-23T09:00")) == 1
    assert scheduled_min_workers(windows, at("2026-11-23T12:30")) == 3
    assert scheduled_min_workers(windows, at("2026-11-23T20:00")) == 0
    paris = [("* 8-17 * * mon-fri", 2, "Europe/Paris")]
    assert scheduled_min_workers(paris, at("2026-11-23T07:30")) == 2  # 08:30 in Paris
    assert scheduled_min_workers(paris, at("2026-11-23T17:30")) == 0  # 18:30 in Paris


def test_an_unknown_timezone_is_refused_with_the_fix() -> None:
    with pytest.raises(SpecError, match="IANA name"):
        parse_spec(
            {"warm_schedule": [{"cron": "* * * * *", "timezone": "Mars/Base"}]}, where="model X"
        )


def test_a_warm_window_is_a_floor_for_the_policy_capped_by_max_workers() -> None:
    spec = DeploymentSpec(max_workers=2, idle_timeout_s=60)
    decision, _ = decide(
        Observation(now=0, queued=0, running=0, oldest_queued_age_s=0, floor_workers=5),
        spec,
        ScalerState(),
    )
    assert (decision.desired_workers, decision.start) == (2, 2)


def test_the_profile_averages_arrivals_by_time_of_day_over_past_days() -> None:
    profile = TrafficProfile(bucket_s=300, days=7)
    for day in range(3):
        for minute in range(4):
            profile.record(at(f"2026-11-2{day}T09:0{minute}"))
    monday_nine = at("2026-11-23T09:00")
    assert profile.expected(monday_nine, monday_nine + 300) == pytest.approx(4.0)
    assert profile.expected(at("2026-11-23T10:00"), at("2026-11-23T10:05")) == 0.0
    assert prewarm_workers(profile, at("2026-11-23T08:57"), lead_s=120, threshold=1.0) == 1
    assert prewarm_workers(profile, at("2026-11-23T08:40"), lead_s=120, threshold=1.0) == 0
    assert profile.expected(at("2026-11-20T09:00"), at("2026-11-20T09:05")) == 0.0  # no past


@dataclass
class _Worker:
    id: str
    ready_at: float
    busy_until: float = 0.0
    idle_since: float = 0.0


@dataclass
class _Sim:
    """A small discrete-time replay of the scheduler around the real `decide`."""

    spec: DeploymentSpec
    prewarm: bool
    cold_start_s: float = 20.0
    job_s: float = 1.0
    step_s: float = 5.0
    profile: TrafficProfile = field(default_factory=TrafficProfile)
    workers: list[_Worker] = field(default_factory=list)
    cold_jobs: int = 0
    jobs: int = 0
    idle_s: float = 0.0
    next_id: int = 0

    def run(self, arrivals: list[float], start: float, end: float, measure_from: float) -> None:
        queue: list[float] = []
        state = ScalerState()
        pending = sorted(arrivals)
        now = start
        while now < end:
            while pending and pending[0] <= now:
                t = pending.pop(0)
                queue.append(t)
                self.profile.record(t)
            floor = prewarm_workers(self.profile, now, 120, 1.0) if self.prewarm else 0
            views = tuple(
                WorkerView(
                    w.id,
                    w.ready_at <= now,
                    int(w.busy_until > now),
                    None if w.busy_until > now else max(w.idle_since, w.ready_at),
                )
                for w in self.workers
            )
            obs = Observation(
                now=now,
                queued=len(queue),
                running=sum(v.active_jobs for v in views),
                oldest_queued_age_s=now - queue[0] if queue else 0.0,
                workers=views,
                floor_workers=floor,
            )
            decision, state = decide(obs, self.spec, state)
            self.workers = [w for w in self.workers if w.id not in decision.stop]
            for _ in range(decision.start):
                self.workers.append(_Worker(f"w{self.next_id}", now + self.cold_start_s))
                self.next_id += 1
            for w in self.workers:
                if queue and w.ready_at <= now and w.busy_until <= now:
                    arrived = queue.pop(0)
                    if now >= measure_from:
                        self.jobs += 1
                        # it waited for a worker that was still starting when it arrived
                        self.cold_jobs += int(w.ready_at > arrived)
                    w.busy_until = now + self.job_s
                    w.idle_since = w.busy_until
                elif w.ready_at <= now and w.busy_until <= now and now >= measure_from:
                    self.idle_s += self.step_s
            now += self.step_s


def test_prewarm_auto_removes_the_daily_cold_start_for_a_little_idle_time() -> None:
    """Every day at 09:00 a burst of 10 requests arrives; nothing else happens all day."""
    first_day = at("2026-11-16T00:00")
    arrivals = [first_day + d * 86_400 + 9 * 3600 + i * 6 for d in range(10) for i in range(10)]
    spec = DeploymentSpec(max_workers=2, idle_timeout_s=300)
    measure_from = first_day + 7 * 86_400  # learn for a week, measure the last 3 days
    results = {}
    for prewarm in (False, True):
        sim = _Sim(spec, prewarm)
        sim.run(arrivals, first_day, first_day + 10 * 86_400, measure_from)
        results[prewarm] = sim
    plain, warm = results[False], results[True]
    print(
        f"\ncold-start share: {plain.cold_jobs / plain.jobs:.0%} without prewarm, "
        f"{warm.cold_jobs / warm.jobs:.0%} with; idle keep-warm: {plain.idle_s:.0f} s "
        f"without, {warm.idle_s:.0f} s with (3 days)"
    )
    assert plain.jobs == warm.jobs == 30
    assert plain.cold_jobs >= 3  # every morning the first request waits for a cold start
    assert warm.cold_jobs == 0
    # prewarming costs its lead time plus a bucket each morning, not a worker around the clock
    assert warm.idle_s - plain.idle_s <= 3 * (120 + 300 + 60)
