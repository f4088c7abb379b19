"""The canary check: windows of final jobs judged against a rule (tables)."""

from __future__ import annotations

import pytest

from coldbrew.control.canary import (
    Outcome,
    Outcomes,
    Rollback,
    Verdict,
    WindowStats,
    check,
    judge,
    window_stats,
)
from coldbrew.store.models import CanaryRule, Job, JobStatus, TrafficSplit

RULE = CanaryRule(window_s=60.0, max_error_rate=0.05, max_p99_ms=500.0, min_jobs=20)


@pytest.mark.parametrize(
    ("stats", "rollback", "reason"),
    [
        pytest.param(WindowStats(0, 0, None), False, "0 of 20 jobs needed", id="no jobs"),
        pytest.param(WindowStats(19, 19, 900.0), False, "19 of 20", id="too few to judge"),
        pytest.param(WindowStats(100, 5, 100.0), False, "healthy", id="at the bound"),
        pytest.param(
            WindowStats(100, 6, 100.0), True, "error rate 0.060 (6 of 100 jobs)", id="errors"
        ),
        pytest.param(WindowStats(100, 0, 500.0), False, "healthy", id="p99 at the bound"),
        pytest.param(WindowStats(100, 0, 501.0), True, "p99 latency 501 ms", id="slow"),
        pytest.param(WindowStats(20, 20, 900.0), True, "error rate 1.000", id="errors first"),
    ],
)
def test_judge(stats: WindowStats, rollback: bool, reason: str) -> None:
    verdict = judge(RULE, stats)
    assert verdict.rollback is rollback
    assert reason in verdict.reason


def test_a_rule_without_bounds_never_rolls_back() -> None:
    assert judge(CanaryRule(min_jobs=1), WindowStats(10, 10, 9e9)) == Verdict(
        False, "healthy over the last 60 s: 10 jobs"
    )


def test_window_stats_counts_only_the_window_and_takes_nearest_rank_p99() -> None:
    outcomes = [Outcome(float(t), t % 10 == 0, t / 1000) for t in range(1, 201)]
    stats = window_stats(outcomes, since=101.0)
    assert (stats.jobs, stats.errors) == (100, 10)
    assert stats.p99_ms == 199.0  # rank 99 of 101..200 ms
    assert window_stats([], 0.0) == WindowStats(0, 0, None)


def test_the_p99_leaves_out_cold_starts_but_their_errors_count() -> None:
    warm = [Outcome(10.0, False, 0.020) for _ in range(19)]
    cold = Outcome(10.0, True, 4.0, cold_start=True)  # waited 4 s for the canary's first worker
    assert window_stats([*warm, cold], since=0.0) == WindowStats(20, 1, 20.0)
    assert window_stats([cold], since=0.0) == WindowStats(1, 1, None)


def job(version_id: int, status: JobStatus, finished_at: float, **kw: object) -> Job:
    made = Job(
        id=f"j{finished_at}",
        account="acme",
        endpoint_id=7,
        endpoint="echo",
        version_id=version_id,
        status=status,
        input={},
        created_at=finished_at - 0.1,
        expires_at=1e9,
        timeout_s=60.0,
        max_attempts=1,
        finished_at=finished_at,
    )
    for key, value in kw.items():
        setattr(made, key, value)
    return made


def test_outcomes_skip_cancelled_and_cached_jobs_and_count_timeouts_as_errors() -> None:
    outcomes = Outcomes()
    outcomes.record(job(3, JobStatus.COMPLETED, 10.0))
    outcomes.record(job(3, JobStatus.FAILED, 11.0))
    outcomes.record(job(3, JobStatus.TIMED_OUT, 12.0))
    outcomes.record(job(3, JobStatus.CANCELLED, 13.0))
    outcomes.record(job(3, JobStatus.COMPLETED, 14.0, cached=True))
    assert outcomes.stats(3, now=20.0, window_s=60.0) == WindowStats(3, 2, 100.0)
    assert outcomes.stats(4, now=20.0, window_s=60.0) == WindowStats(0, 0, None)
    assert outcomes.stats(3, now=71.5, window_s=60.0).jobs == 1  # 10 and 11 fell out


def test_check_judges_only_canaries_under_a_rule() -> None:
    outcomes = Outcomes()
    for n in range(30):
        outcomes.record(job(2, JobStatus.FAILED, 100.0 + n))  # the current version fails too
        outcomes.record(job(3, JobStatus.FAILED, 100.0 + n))
        outcomes.record(job(5, JobStatus.FAILED, 100.0 + n))
    splits = [
        TrafficSplit(7, {2: 90, 3: 10}, RULE, 1.0),
        TrafficSplit(8, {4: 90, 5: 10}, None, 1.0),  # no rule: never judged
    ]
    found = check(splits, {7: 2, 8: 4}, outcomes, now=130.0)
    assert [(r.endpoint_id, r.version_id) for r in found] == [(7, 3)]
    assert found[0] == Rollback(7, 3, found[0].reason)
    assert found[0].reason.startswith("error rate 1.000 (30 of 30 jobs) over the last 60 s")


def test_outcomes_keep_the_newest_jobs_once_full() -> None:
    outcomes = Outcomes(max_per_version=4)
    for n in range(10):  # the last four: 6 and 8 failed
        outcomes.record(job(3, JobStatus.FAILED if n % 2 == 0 else JobStatus.COMPLETED, 10.0 + n))
    assert outcomes.stats(3, now=20.0, window_s=60.0) == WindowStats(4, 2, 100.0)
    assert outcomes.stats(3, now=20.0, window_s=2.5).jobs == 2  # 18 and 19
    assert [o.finished_at for o in outcomes._by_version[3]] == [16.0, 17.0, 18.0, 19.0]
