"""The job book against its own interface: checked status moves, the sync lane in memory,
persist, a write-back that outlives a storage fault, and announcing a final job."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.conftest import make_job

from coldbrew.clock import FakeClock
from coldbrew.control.backlog import Backlog
from coldbrew.control.jobbook import WRITE_BACK_CHUNK, IllegalTransition, JobBook, move
from coldbrew.control.queues import QueueLedger
from coldbrew.errors import StorageUnavailable
from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore


async def book() -> tuple[JobBook, Version, FakeClock]:
    clock, store = FakeClock(), SQLiteStore(":memory:")
    await store.create_account("a", "whsec_x", clock.time())
    version, _ = await store.add_version("a", "e", "sha", "app", "E", {}, {}, clock.time())
    return JobBook(store, clock, Backlog(QueueLedger(100), lambda: None)), version, clock


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        pytest.param(JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS, True, id="queued-starts"),
        pytest.param(JobStatus.IN_PROGRESS, JobStatus.COMPLETED, True, id="running-completes"),
        pytest.param(JobStatus.IN_PROGRESS, JobStatus.IN_QUEUE, True, id="retry"),
        pytest.param(JobStatus.IN_QUEUE, JobStatus.COMPLETED, False, id="never-ran"),
        pytest.param(JobStatus.COMPLETED, JobStatus.IN_PROGRESS, False, id="final-stays"),
        pytest.param(JobStatus.CANCELLED, JobStatus.FAILED, False, id="cancelled-stays"),
    ],
)
def test_status_moves_follow_the_table(start: JobStatus, to: JobStatus, allowed: bool) -> None:
    job = make_job(Version(1, 1, "a", "e", 1, "sha", "m", "C", {}, {}, 0.0), FakeClock())
    job.status = start
    if allowed:
        move(job, to)
        assert job.status is to
    else:
        with pytest.raises(IllegalTransition):
            move(job, to)
        assert job.status is start


def test_a_sync_job_lives_in_memory_until_written_back() -> None:
    async def scenario() -> None:
        b, version, clock = await book()
        announced: list[Job] = []
        b.add_final_listener(announced.append)
        job = make_job(version, clock)
        future = b.take_sync(job)
        assert not job.durable and list(b.backlog.lane[version.id]) == [job]
        assert await b.find(job.id) is job and await b.find(job.id, "other") is None
        b.backlog.lane[version.id].popleft()
        b.start(job, "w-1")
        final = await b.end_safely(job, JobStatus.COMPLETED, clock.time(), output={"ok": 1})
        assert final is job
        b.announce(job)
        assert (await future).status is JobStatus.COMPLETED and announced == [job]
        assert await b.store.get_job(job.id) is None  # not written yet
        await b.write_back()
        stored = await b.store.get_job(job.id)
        assert stored is not None and stored.output == {"ok": 1}
        assert b.unsaved == {}

    asyncio.run(scenario())


def test_persist_takes_a_waiting_job_out_of_the_lane_into_the_store() -> None:
    async def scenario() -> None:
        b, version, clock = await book()
        job = make_job(version, clock)
        b.take_sync(job)
        await b.persist(job)
        assert job.durable and not b.backlog.lane[version.id]
        assert b.backlog.in_store(version.id)  # the lane stops taking the version's jobs
        stored = await b.store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.IN_QUEUE

    asyncio.run(scenario())


def test_an_end_the_storage_cannot_take_is_held_and_written_later() -> None:
    async def scenario() -> None:
        b, version, clock = await book()
        job = make_job(version, clock)
        await b.store.create_job(job)
        claimed = await b.store.claim_job(job.id, "w-1", clock.time())
        assert claimed is not None
        real = b.store.finish

        async def down(*args: object, **kw: object) -> Job | None:
            raise StorageUnavailable.because("disk I/O error")

        b.store.finish = down  # type: ignore[method-assign]
        held = await b.end_safely(claimed, JobStatus.COMPLETED, clock.time(), output=1)
        assert held is claimed and held.status is JobStatus.COMPLETED
        assert (await b.find(job.id)) is claimed  # lookups read it from memory meanwhile
        b.store.finish = real  # type: ignore[method-assign]
        await b.write_back()
        stored = await b.store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED

    asyncio.run(scenario())


def test_the_write_back_goes_in_chunks_and_a_fault_keeps_the_rest_in_order() -> None:
    async def scenario() -> None:
        b, version, clock = await book()
        jobs = []
        for _ in range(2 * WRITE_BACK_CHUNK + 5):
            job = make_job(version, clock)
            b.take_sync(job)
            b.backlog.lane[version.id].popleft()
            b.start(job, "w-1")
            await b.end_safely(job, JobStatus.COMPLETED, clock.time(), output=1)
            jobs.append(job)
        real, sizes = b.store.save_jobs, []

        async def second_fails(batch: list[Job]) -> None:
            sizes.append(len(batch))
            if len(sizes) == 2:
                raise StorageUnavailable.because("disk I/O error")
            await real(batch)

        b.store.save_jobs = second_fails  # type: ignore[method-assign]
        with pytest.raises(StorageUnavailable):
            await b.write_back()
        assert sizes == [WRITE_BACK_CHUNK, WRITE_BACK_CHUNK]
        assert b.writeback == jobs[WRITE_BACK_CHUNK:]  # the rest waits, in its order
        await b.write_back()
        assert sizes[2:] == [WRITE_BACK_CHUNK, 5] and b.unsaved == {}
        assert len(await b.store.get_jobs([j.id for j in jobs])) == len(jobs)

    asyncio.run(scenario())
