"""The canary check: is a version that gets a share of traffic failing, judged on its recent
final jobs against the rule set with the split?

`judge` is pure (a table of windows and rules in its tests). `Outcomes` keeps, per version, the
final jobs of the last while in memory, fed by the scheduler's final-job listener: the check
runs every few seconds and must not scan the job table. `CanaryCheck.run(now)` applies `judge`
to every canary of every split and returns the versions to take back, with the reason.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from coldbrew.store.models import CanaryRule, Job, JobStatus, TrafficSplit

#: Final jobs kept per version: enough for a 60 s window at ~1,600 jobs/s, bounded memory.
MAX_OUTCOMES_PER_VERSION = 100_000
#: How long outcomes are kept whatever the rules say (the longest window a rule may ask for).
MAX_WINDOW_S = 3600.0
_ERRORS = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})


@dataclass(frozen=True)
class Outcome:
    """One final job of a version: when it ended, whether it failed, how long the caller waited,
    and whether it waited for a new worker."""

    finished_at: float
    failed: bool
    latency_s: float
    cold_start: bool = False


@dataclass(frozen=True)
class WindowStats:
    """A version's final jobs within a window."""

    jobs: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.jobs if self.jobs else 0.0


@dataclass(frozen=True)
class Verdict:
    """Keep the canary, or take it back to 0% for `reason`."""

    rollback: bool
    reason: str


def window_stats(outcomes: Iterable[Outcome], since: float) -> WindowStats:
    """Counts, errors and nearest-rank p99 latency of the outcomes that ended after `since`.

    The p99 leaves out jobs that waited for a cold start: a new canary's first jobs always
    wait for its first workers, and with 20 jobs in a window the p99 is the slowest one, so a
    latency bound would otherwise judge the canary's start-up rather than its code.
    """
    latencies: list[float] = []
    jobs = errors = 0
    for outcome in outcomes:
        if outcome.finished_at >= since:
            jobs += 1
            errors += outcome.failed
            if not outcome.cold_start:
                latencies.append(outcome.latency_s)
    if not latencies:
        return WindowStats(jobs, errors, None)
    latencies.sort()
    rank = max(1, math.ceil(0.99 * len(latencies)))
    return WindowStats(jobs, errors, round(latencies[rank - 1] * 1000, 1))


def judge(rule: CanaryRule, stats: WindowStats) -> Verdict:
    """Roll back when the window holds at least `min_jobs` jobs and a bound is crossed.

    Fewer jobs than `min_jobs` are not evidence: one failure among three jobs is a 33% error
    rate, and a canary at 1% of a quiet endpoint would be rolled back on noise.
    """
    window = f"over the last {rule.window_s:g} s"
    if stats.jobs < rule.min_jobs:
        return Verdict(False, f"{stats.jobs} of {rule.min_jobs} jobs needed {window}")
    if rule.max_error_rate is not None and stats.error_rate > rule.max_error_rate:
        return Verdict(
            True,
            f"error rate {stats.error_rate:.3f} ({stats.errors} of {stats.jobs} jobs) {window} "
            f"exceeds {rule.max_error_rate:g}",
        )
    if rule.max_p99_ms is not None and stats.p99_ms is not None and stats.p99_ms > rule.max_p99_ms:
        return Verdict(
            True,
            f"p99 latency {stats.p99_ms:g} ms ({stats.jobs} jobs) {window} exceeds "
            f"{rule.max_p99_ms:g} ms",
        )
    return Verdict(False, f"healthy {window}: {stats.jobs} jobs")


class _Ring:
    """One version's outcomes, oldest first, in flat arrays: no object per job, so the garbage
    collector has nothing to scan (100,000 `Outcome` objects per busy version made every full
    collection of the gateway take 40-70 ms, a pause every request waited behind)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.finished = array("d")
        self.latency = array("d")
        self.flags = bytearray()  # 1: failed, 2: waited for a cold start
        self.start = 0  # index of the oldest once the arrays are full

    def append(self, finished_at: float, failed: bool, latency_s: float, cold: bool) -> None:
        flag = failed | cold << 1
        if len(self.finished) < self.size:
            self.finished.append(finished_at)
            self.latency.append(latency_s)
            self.flags.append(flag)
            return
        i = self.start
        self.finished[i], self.latency[i], self.flags[i] = finished_at, latency_s, flag
        self.start = (i + 1) % self.size

    def __iter__(self) -> Iterator[Outcome]:
        n = len(self.finished)
        for k in range(n):
            i = (self.start + k) % n
            flag = self.flags[i]
            yield Outcome(self.finished[i], bool(flag & 1), self.latency[i], bool(flag & 2))


class Outcomes:
    """Per version, its latest final jobs (at most `max_per_version`, within `MAX_WINDOW_S`)."""

    def __init__(self, max_per_version: int = MAX_OUTCOMES_PER_VERSION) -> None:
        self._max = max_per_version
        self._by_version: dict[int, _Ring] = {}

    def record(self, job: Job) -> None:
        """A final-job listener. Cancelled jobs and cache hits say nothing about the version's
        code, so they are not counted."""
        if job.cached or job.status is JobStatus.CANCELLED or job.finished_at is None:
            return
        ring = self._by_version.get(job.version_id)
        if ring is None:
            ring = self._by_version[job.version_id] = _Ring(self._max)
        latency_s = job.finished_at - job.created_at
        ring.append(job.finished_at, job.status in _ERRORS, latency_s, job.cold_start)

    def stats(self, version_id: int, now: float, window_s: float) -> WindowStats:
        ring = self._by_version.get(version_id)
        if ring is None:
            return WindowStats(0, 0, None)
        return window_stats(ring, max(now - window_s, now - MAX_WINDOW_S))


@dataclass(frozen=True)
class Rollback:
    """A canary the check takes back to 0%."""

    endpoint_id: int
    version_id: int
    reason: str


def check(
    splits: Iterable[TrafficSplit], current: dict[int, int], outcomes: Outcomes, now: float
) -> list[Rollback]:
    """The canaries to take back: every version with a share that is not its endpoint's
    current version (`current`: endpoint id → version id), under a split with a rule."""
    found = []
    for split in splits:
        if split.rule is None:
            continue
        for version_id in sorted(split.live - {current.get(split.endpoint_id)}):
            verdict = judge(split.rule, outcomes.stats(version_id, now, split.rule.window_s))
            if verdict.rollback:
                found.append(Rollback(split.endpoint_id, version_id, verdict.reason))
    return found
