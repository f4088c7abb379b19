"""The store's dashboard queries on the in-memory SQLite store: recent jobs and job timings."""

from __future__ import annotations

from typing import Any

from tests.unit.test_store import deploy, finished_job, new_job, store, version

from coldbrew.store.models import JobStatus, JobTiming, Version

__all__ = ["store", "version"]  # the fixtures, re-used


def test_recent_jobs_are_the_endpoints_newest_first_with_a_limit(
    store: Any, version: Version
) -> None:
    other = deploy(store, endpoint="other")
    for i in range(5):
        new_job(store, version, f"j{i}", created_at=100.0 + i)
    new_job(store, other, "elsewhere", created_at=200.0)
    assert [j.id for j in store.recent_jobs(version.endpoint_id, 3)] == ["j4", "j3", "j2"]
    assert [j.id for j in store.recent_jobs(other.endpoint_id, 10)] == ["elsewhere"]


def test_job_timings_are_final_jobs_since_a_time_per_account_and_endpoint(
    store: Any, version: Version
) -> None:
    done = finished_job(store, version, "done", JobStatus.COMPLETED, created_at=150.0)
    store.mark_cold_start("done", {"totalMs": 40.0})
    new_job(store, version, "queued", created_at=190.0)  # not final: not a timing
    theirs = deploy(store, endpoint="echo", account="beta")
    finished_job(store, theirs, "beta-job", JobStatus.COMPLETED, created_at=160.0)

    timings = store.job_timings(0.0, "acme")
    assert timings == [
        JobTiming(
            endpoint="echo",
            status=JobStatus.COMPLETED,
            created_at=150.0,
            started_at=200.0,
            finished_at=done.finished_at,
            cold_start=True,
            cached=False,
        )
    ]
    assert [t.status for t in store.job_timings(0.0, None)] == [JobStatus.COMPLETED] * 2
    assert store.job_timings(201.5, "acme") == []  # finished at 201
    assert store.job_timings(0.0, "acme", endpoint_id=theirs.endpoint_id) == []
    assert len(store.job_timings(0.0, "acme", endpoint_id=version.endpoint_id)) == 1
