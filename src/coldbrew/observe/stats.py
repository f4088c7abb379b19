"""What the dashboard shows: per-endpoint summaries and time series, computed from the job table
(invocations, latency, cold starts, cache hits), the usage rows (dollars by hour and kind) and a
bounded in-memory ring of worker counts that the scheduler samples on every tick.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coldbrew.clock import Clock
from coldbrew.metering.report import row_usd
from coldbrew.store.models import JobStatus, JobTiming, UsageKind, UsageRow

#: Worker counts are kept per 5 s slot, for a day: 17,280 small dicts at most.
SAMPLE_STEP_S = 5.0
SAMPLE_SLOTS = 17_280
#: At most this many buckets per series, so one response stays small.
MAX_BUCKETS = 720
WORKER_STATES = ("idle", "running", "starting")
#: How often worker counts are pulled from the control plane (several per 5 s slot).
SAMPLE_EVERY_S = 0.1


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def summarize(jobs: Iterable[JobTiming]) -> dict[str, Any]:
    """Counts and latencies of final jobs: what happened and how long the callers waited.

    Latency is accepted-to-final (what the caller saw); a cold-start wait is the queue delay of
    a job that waited for a new worker (accepted-to-started).
    """
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    cold_waits: list[float] = []
    cache_hits = 0
    for job in jobs:
        statuses[job.status.value] += 1
        latencies.append(job.finished_at - job.created_at)
        if job.cold_start and job.started_at is not None:
            cold_waits.append(job.started_at - job.created_at)
        cache_hits += job.cached
    latencies.sort()
    cold_waits.sort()
    total = sum(statuses.values())
    return {
        "invocations": total,
        "byStatus": {s.value: statuses[s.value] for s in JobStatus if s.final},
        "latencyP50Ms": _ms(percentile(latencies, 50)),
        "latencyP99Ms": _ms(percentile(latencies, 99)),
        "coldStarts": len(cold_waits),
        "coldStartRate": round(len(cold_waits) / total, 4) if total else None,
        "coldStartWaitAvgMs": _ms(sum(cold_waits) / len(cold_waits)) if cold_waits else None,
        "coldStartWaitMaxMs": _ms(cold_waits[-1]) if cold_waits else None,
        "cacheHits": cache_hits,
    }


def by_version(
    jobs: Iterable[JobTiming], number: Callable[[int], int | None]
) -> list[dict[str, Any]]:
    """`summarize` per version (newest first), so a canary's errors and latency stand apart
    from the current version's; `number` maps a version id to its number (None: skipped, a
    version of an endpoint deleted since)."""
    grouped: dict[int, list[JobTiming]] = {}
    for job in jobs:
        found = number(job.version_id)
        if found is not None:
            grouped.setdefault(found, []).append(job)
    return [{"version": n, **summarize(grouped[n])} for n in sorted(grouped, reverse=True)]


@dataclass
class WorkerSamples:
    """Workers by state per (account, endpoint), kept as the maximum seen in each 5 s slot.

    In memory on purpose: worker counts are this node's live state, sampling them costs a dict
    per tick, and a day of slots is small. They start empty after a restart, which the charts
    show as a gap rather than as zero workers.
    """

    step_s: float = SAMPLE_STEP_S
    slots: deque[tuple[float, dict[tuple[str, str], dict[str, int]]]] = field(
        default_factory=lambda: deque(maxlen=SAMPLE_SLOTS)
    )

    def record(self, now: float, counts: Mapping[tuple[str, str], Mapping[str, int]]) -> None:
        """Merge one observation (wall-clock `now`) into its slot, keeping each state's maximum."""
        start = now // self.step_s * self.step_s
        if not self.slots or self.slots[-1][0] != start:
            self.slots.append((start, {}))
        slot = self.slots[-1][1]
        for key, states in counts.items():
            kept = slot.setdefault(key, dict.fromkeys(WORKER_STATES, 0))
            for state, n in states.items():
                kept[state] = max(kept.get(state, 0), n)

    def series(
        self, account: str, endpoint: str, times: list[float], step_s: float
    ) -> dict[str, list[int | None]]:
        """Per bucket of `times` (starts, `step_s` wide): the most workers seen in each state.

        None where no sample falls in the bucket (the server was not running then).
        """
        out: dict[str, list[int | None]] = {s: [None] * len(times) for s in WORKER_STATES}
        if not times:
            return out
        first = times[0]
        for start, slot in self.slots:
            index = int((start - first) // step_s)
            if not 0 <= index < len(times):
                continue
            states = slot.get((account, endpoint), {})
            for state in WORKER_STATES:
                seen = out[state][index]
                out[state][index] = max(seen or 0, states.get(state, 0))
        return out


def buckets(now: float, window_s: float, step_s: float) -> list[float]:
    """Bucket starts covering `window_s` up to now, aligned to `step_s`; the last holds now."""
    count = max(1, math.ceil(window_s / step_s))
    last = now // step_s * step_s
    return [last - (count - 1 - i) * step_s for i in range(count)]


def job_series(jobs: list[JobTiming], times: list[float], step_s: float) -> dict[str, Any]:
    """Per bucket (by when each job became final): counts by status, latency, cold starts."""
    groups: list[list[JobTiming]] = [[] for _ in times]
    for job in jobs:
        index = int((job.finished_at - times[0]) // step_s) if times else -1
        if 0 <= index < len(times):
            groups[index].append(job)
    lines = [summarize(group) for group in groups]
    return {
        "invocations": {
            s.value: [line["byStatus"][s.value] for line in lines] for s in JobStatus if s.final
        },
        "latencyP50Ms": [line["latencyP50Ms"] for line in lines],
        "latencyP99Ms": [line["latencyP99Ms"] for line in lines],
        "coldStarts": [line["coldStarts"] for line in lines],
        "coldStartWaitAvgMs": [line["coldStartWaitAvgMs"] for line in lines],
        "cacheHits": [line["cacheHits"] for line in lines],
    }


def cost_series(
    rows: list[UsageRow],
    since: float,
    now: float,
    prices_per_hour_usd: Mapping[str, float],
    reserved_discount: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Dollars per hour (usage rows are hourly) split into cold start, busy, idle keep-warm and
    reserved."""
    hours = buckets(now, now - since // 3600 * 3600, 3600.0)
    usd: dict[str, list[float]] = {kind.value: [0.0] * len(hours) for kind in UsageKind}
    for row in rows:
        index = int((row.hour_start - hours[0]) // 3600)
        if 0 <= index < len(hours):
            usd[row.kind.value][index] += row_usd(row, prices_per_hour_usd, reserved_discount)
    return {
        "t": hours,
        **{kind: [round(v, 9) for v in values] for kind, values in usd.items()},
    }


WorkerCounts = Mapping[tuple[str, str], Mapping[str, int]]


class WorkerSampler:
    """Pulls worker counts by state from the control plane (the fleet's `state_counts`) into
    `WorkerSamples`: every `every_s`, and once more right before a chart reads them.

    Observe asks the control plane, never the other way round: the scheduler's tick knows
    nothing of the dashboard."""

    def __init__(
        self,
        samples: WorkerSamples,
        counts: Callable[[], WorkerCounts],
        clock: Clock,
        every_s: float = SAMPLE_EVERY_S,
    ) -> None:
        self.samples = samples
        self.counts = counts
        self.clock = clock
        self.every_s = every_s

    def sample(self) -> None:
        """Record the workers as they are now."""
        self.samples.record(self.clock.time(), self.counts())

    def series(
        self, account: str, endpoint: str, times: list[float], step_s: float
    ) -> dict[str, list[int | None]]:
        """`WorkerSamples.series`, with the current counts in the last bucket."""
        self.sample()
        return self.samples.series(account, endpoint, times, step_s)

    async def run(self) -> None:
        """Sample forever (a task the platform starts and cancels)."""
        while True:
            self.sample()
            await self.clock.sleep(self.every_s)
