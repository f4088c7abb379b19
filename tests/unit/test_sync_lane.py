"""The scheduler's sync lane against its edge cases: one FIFO with the store's queue, purge and
delete, cancel, a failing write-back, health counts. A scripted worker handle (the test answers
its jobs), a fake clock and the real SQLite store in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.conftest import World, settle

from coldbrew.errors import NotFound, StorageUnavailable
from coldbrew.store.models import Job, JobStatus


def test_an_older_sync_job_runs_before_newer_run_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        a, b = w.job(), w.job()
        assert await w.scheduler.run_sync(a) is not None  # runs at once on the idle worker
        waiting = await w.scheduler.run_sync(b)  # the worker is busy: b waits in memory
        assert waiting is not None and handle.job_ids() == [a.id]
        later = [w.job() for _ in range(2)]  # /run jobs that arrive after b
        for job in later:
            await w.run_durable(job)
        for current in [a, b, *later]:
            handle.done(current.id)
            await settle()
            await w.scheduler.tick()
            await settle()
        assert handle.job_ids() == [a.id, b.id, *(j.id for j in later)]
        assert (await waiting).status is JobStatus.COMPLETED  # its caller is still answered
        stored = await w.store.get_job(b.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED

    asyncio.run(scenario())


def test_deleting_an_endpoint_cancels_its_waiting_sync_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        a, b = w.job(), w.job()
        await w.scheduler.run_sync(a)
        waiting = await w.scheduler.run_sync(b)
        assert waiting is not None
        await w.scheduler.delete_endpoint("a", "e")
        assert (await waiting).status is JobStatus.CANCELLED
        handle.done(a.id)
        await settle()
        for _ in range(2):
            await w.scheduler.tick()
            await settle()
        assert len(w.backend.handles) == 1  # no new worker for the deleted endpoint
        assert b.id not in handle.job_ids()

    asyncio.run(scenario())


def test_purge_queue_counts_the_sync_lane(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        jobs = [w.job() for _ in range(3)]
        for job in jobs:
            await w.scheduler.run_sync(job)
        assert await w.scheduler.purge_queue(w.version.endpoint_id) == 2  # 1 runs, 2 waited
        assert [j.status for j in jobs[1:]] == [JobStatus.CANCELLED] * 2

    asyncio.run(scenario())


def test_a_sync_job_can_be_cancelled(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        a = w.job()
        future = await w.scheduler.run_sync(a)
        assert future is not None
        cancelled = await w.scheduler.cancel(a.id, "a")
        assert cancelled.status is JobStatus.CANCELLED
        assert (await future).status is JobStatus.CANCELLED
        with pytest.raises(NotFound):
            await w.scheduler.cancel(a.id, "someone-else")

    asyncio.run(scenario())


def test_a_failed_write_back_is_retried_at_the_next_flush(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        a = w.job()
        future = await w.scheduler.run_sync(a)
        assert future is not None
        handle.done(a.id)
        await settle()
        assert (await future).status is JobStatus.COMPLETED
        real = w.store.save_jobs

        async def failing(jobs: list[Job]) -> None:
            raise StorageUnavailable.because("the disk reported an I/O error")

        w.store.save_jobs = failing  # type: ignore[method-assign]
        with pytest.raises(StorageUnavailable):
            await w.scheduler.write_back()
        w.store.save_jobs = real  # type: ignore[method-assign]
        await w.scheduler.write_back()
        stored = await w.store.get_job(a.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED

    asyncio.run(scenario())


def test_health_counts_jobs_that_live_in_memory(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        for _ in range(3):
            await w.scheduler.run_sync(w.job())
        counts = await w.scheduler.health(w.version.endpoint_id)
        assert (counts["inProgress"], counts["inQueue"]) == (1, 2)

    asyncio.run(scenario())
