"""Dashboard numbers: summaries, buckets, per-bucket series and the worker-count ring."""

from __future__ import annotations

import pytest

from coldbrew.clock import FakeClock
from coldbrew.observe.stats import (
    WorkerSampler,
    WorkerSamples,
    buckets,
    by_version,
    cost_series,
    job_series,
    percentile,
    summarize,
)
from coldbrew.store.models import JobStatus, JobTiming, UsageKind, UsageRow


def timing(
    created: float,
    finished: float,
    started: float | None = None,
    status: JobStatus = JobStatus.COMPLETED,
    cold: bool = False,
    cached: bool = False,
) -> JobTiming:
    return JobTiming("echo", status, created, created if started is None else started, finished,
                     cold, cached)  # fmt: skip


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([1.0], 99, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def test_summary_counts_statuses_latency_cold_start_waits_and_cache_hits() -> None:
    jobs = [
        timing(0.0, 2.5, started=2.0, cold=True),  # waited 2 s for a new worker
        timing(10.0, 10.1),
        timing(20.0, 20.2),
        timing(30.0, 34.0, started=30.5, cold=True, status=JobStatus.FAILED),
        timing(40.0, 40.0, cached=True),
    ]
    summary = summarize(jobs)
    assert summary == {
        "invocations": 5,
        "byStatus": {"COMPLETED": 4, "FAILED": 1, "CANCELLED": 0, "TIMED_OUT": 0},
        "latencyP50Ms": 200.0,
        "latencyP99Ms": 4000.0,
        "coldStarts": 2,
        "coldStartRate": 0.4,
        "coldStartWaitAvgMs": 1250.0,
        "coldStartWaitMaxMs": 2000.0,
        "cacheHits": 1,
    }


def test_an_empty_summary_has_no_latency_rather_than_zero() -> None:
    summary = summarize([])
    assert summary["invocations"] == 0
    assert summary["latencyP50Ms"] is None and summary["coldStartRate"] is None


def test_buckets_end_with_the_one_holding_now() -> None:
    assert buckets(1000.0, 300.0, 60.0) == [720.0, 780.0, 840.0, 900.0, 960.0]
    assert buckets(959.0, 60.0, 60.0) == [900.0]


def test_job_series_puts_each_job_in_the_bucket_it_finished_in() -> None:
    times = [0.0, 60.0, 120.0]
    jobs = [
        timing(1.0, 5.0, cold=True, started=4.0),
        timing(61.0, 62.0),
        timing(63.0, 65.0, status=JobStatus.FAILED),
        timing(-50.0, -10.0),  # before the window
    ]
    series = job_series(jobs, times, 60.0)
    assert series["invocations"]["COMPLETED"] == [1, 1, 0]
    assert series["invocations"]["FAILED"] == [0, 1, 0]
    assert series["coldStarts"] == [1, 0, 0]
    assert series["coldStartWaitAvgMs"] == [3000.0, None, None]
    assert series["latencyP50Ms"] == [4000.0, 1000.0, None]
    assert series["latencyP99Ms"] == [4000.0, 2000.0, None]


def test_cost_series_prices_usage_rows_per_hour_and_kind() -> None:
    def row(kind: UsageKind, hour: float, seconds: float, hardware: str = "cpu") -> UsageRow:
        return UsageRow("w1", "acme", "echo", 1, hardware, kind, hour, seconds)

    rows = [
        row(UsageKind.COLD_START, 3600.0, 36.0),
        row(UsageKind.IDLE, 3600.0, 360.0),
        row(UsageKind.BUSY, 7200.0, 3600.0),
        row(UsageKind.BUSY, 7200.0, 3600.0, hardware="unpriced"),
        row(UsageKind.RESERVED, 7200.0, 3600.0),  # at the default 25% off
    ]
    series = cost_series(rows, since=3700.0, now=7300.0, prices_per_hour_usd={"cpu": 0.36})
    assert series == {
        "t": [3600.0, 7200.0],
        "cold_start": [0.0036, 0.0],
        "busy": [0.0, 0.36],
        "idle": [0.036, 0.0],
        "reserved": [0.0, 0.27],
    }


def test_worker_samples_keep_the_most_seen_per_slot_and_gaps_before_the_first() -> None:
    samples = WorkerSamples(step_s=5.0)
    key = ("acme", "echo")
    samples.record(100.0, {key: {"starting": 1}})
    samples.record(101.0, {key: {"idle": 1}})  # same slot: keep both maxima
    samples.record(106.0, {})  # nothing running: a real zero, not a gap
    samples.record(111.0, {key: {"running": 2}, ("beta", "echo"): {"running": 9}})
    series = samples.series("acme", "echo", [90.0, 100.0, 110.0], 10.0)
    assert series == {
        "idle": [None, 1, 0],
        "running": [None, 0, 2],
        "starting": [None, 1, 0],
    }


def test_worker_samples_are_bounded() -> None:
    samples = WorkerSamples(step_s=1.0)
    for second in range(samples.slots.maxlen + 10):  # type: ignore[operator]
        samples.record(float(second), {})
    assert len(samples.slots) == samples.slots.maxlen
    assert samples.slots[0][0] == 10.0


def test_the_sampler_pulls_worker_counts_and_once_more_before_a_read() -> None:
    clock, counts = FakeClock(100.0), {("a", "e"): {"starting": 1}}
    sampler = WorkerSampler(WorkerSamples(step_s=5.0), lambda: counts, clock, every_s=1.0)
    sampler.sample()
    counts = {("a", "e"): {"idle": 1}}
    clock.advance(5.0)
    series = sampler.series("a", "e", [100.0, 105.0], 5.0)  # the read samples the idle worker
    assert series["starting"] == [1, 0] and series["idle"] == [0, 1]


def test_by_version_summarizes_each_version_newest_first() -> None:
    def on(version_id: int, status: JobStatus, latency_s: float) -> JobTiming:
        return JobTiming("echo", status, 10.0, 10.0, 10.0 + latency_s, False, False, version_id)

    jobs = [on(101, JobStatus.COMPLETED, 0.01)] * 9 + [on(102, JobStatus.FAILED, 0.5)] * 3
    jobs.append(on(999, JobStatus.COMPLETED, 1.0))  # a deleted endpoint's version: skipped
    lines = by_version(jobs, {101: 3, 102: 4}.get)
    assert [(line["version"], line["invocations"]) for line in lines] == [(4, 3), (3, 9)]
    assert lines[0]["byStatus"]["FAILED"] == 3 and lines[0]["latencyP99Ms"] == 500.0
    assert lines[1]["byStatus"]["FAILED"] == 0 and lines[1]["latencyP99Ms"] == 10.0
