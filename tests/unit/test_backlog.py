"""Where a waiting job is: the backlog's one notion of "the store's queue may hold jobs" and the
sync lane, against its own interface (no scheduler, no store)."""

from __future__ import annotations

from collections import Counter

import pytest

from coldbrew.control.backlog import Backlog
from coldbrew.control.queues import QueueLedger
from coldbrew.errors import QueueFull
from coldbrew.store.models import Job, JobStatus, QueueStat


def job(vid: int, created_at: float, account: str = "a") -> Job:
    return Job(
        id=f"j{vid}-{created_at}",
        account=account,
        endpoint_id=vid,
        endpoint="e",
        version_id=vid,
        status=JobStatus.IN_QUEUE,
        input={},
        created_at=created_at,
        expires_at=created_at + 60,
        timeout_s=10,
        max_attempts=1,
    )


def backlog(limit: int = 100) -> tuple[Backlog, list[str]]:
    woken: list[str] = []
    return Backlog(QueueLedger(limit), lambda: woken.append("wake")), woken


def test_a_flag_raised_while_a_tick_runs_survives_its_end() -> None:
    b, woken = backlog()
    b.flag(1)
    assert b.in_store(1) and woken == ["wake"]
    b.begin_tick()
    b.flag(2)  # queued while the tick dispatched
    b.end_tick({1: 0, 3: 4}, lambda vid: "a")
    assert not b.in_store(1)  # its queue drained
    assert b.in_store(2) and b.in_store(3)
    assert b.stored == {3: 4}


def test_lane_jobs_behind_a_stored_queue_are_spilled() -> None:
    b, _ = backlog()
    b.lane[1].append(job(1, 10.0))
    b.lane[2].append(job(2, 11.0))
    b.flag(2)
    assert b.to_spill() == [2]
    assert b.lane_versions() == [1, 2]


def test_scaling_sees_the_lane_and_the_store_together() -> None:
    b, _ = backlog()
    b.lane[1].extend([job(1, 5.0), job(1, 6.0)])
    both = b.with_lane({1: QueueStat(queued=3, oldest_created_at=7.0)})
    assert both[1] == QueueStat(queued=5, oldest_created_at=5.0)
    b.stored = {2: 4}
    assert b.lengths() == Counter({1: 2, 2: 4})


def test_admission_counts_the_lane_and_jobs_queued_since_the_tick() -> None:
    b, _ = backlog(limit=3)
    b.lane[1].extend([job(1, 1.0), job(1, 2.0)])
    b.lane[2].append(job(2, 3.0, account="other"))
    b.admit("a")  # 2 waiting < 3
    assert b.queued_in_store(job(1, 4.0)) is False
    assert b.in_store(1)
    with pytest.raises(QueueFull):
        b.admit("a")  # 2 in memory + 1 queued since the tick
