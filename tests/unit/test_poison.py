"""One bad job, frame or storage fault never wedges the scheduler (issue 11): a job the store
cannot hold fails alone, nothing is left IN_PROGRESS without a worker, a dead worker frees its
slot, and a storage fault is held in memory until it clears. Scripted workers, a fake clock and
the real SQLite store in memory (from test_sync_lane)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from tests.unit.conftest import World, settle

from coldbrew.errors import StorageUnavailable
from coldbrew.runtime import protocol
from coldbrew.store.models import Job, JobStatus


async def until(check: Any) -> None:
    """Let the scheduler's tasks run until `check()` holds (store calls hop to its thread)."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def final(w: World, job_id: str) -> Job:
    async def done() -> bool:
        job = await w.scheduler.find_job(job_id)
        return job is not None and job.status.final

    await until(done)
    job = await w.scheduler.find_job(job_id)
    assert job is not None
    return job


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_deep_input_in_the_write_back_fails_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        bad, good = w.job(), w.job()
        bad.input = {"value": nested(300)}  # parsers take it; the store's JSON cannot
        futures = [await w.scheduler.run_sync(j) for j in (bad, good)]
        for job in (bad, good):
            handle.done(job.id)
            await settle()
        assert [(await f).status for f in futures if f] == [JobStatus.COMPLETED] * 2
        await w.scheduler.write_back()  # used to raise, on every flush, forever
        stored_bad, stored_good = await w.store.get_job(bad.id), await w.store.get_job(good.id)
        assert stored_good is not None and stored_good.status is JobStatus.COMPLETED
        assert stored_bad is not None and stored_bad.status is JobStatus.FAILED
        assert (
            stored_bad.error is not None
            and "input could not be stored" in (stored_bad.error["message"])
        )
        later = w.job()  # and the next jobs are written as usual
        future = await w.scheduler.run_sync(later)
        handle.done(later.id)
        await settle()
        assert future is not None and (await future).status is JobStatus.COMPLETED
        await w.scheduler.write_back()
        assert (await w.store.get_job(later.id)) is not None

    asyncio.run(scenario())


def test_an_input_the_worker_cannot_be_sent_fails_that_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        real_send = handle.send

        async def encoding_send(frame: dict[str, Any]) -> None:
            protocol.encode(frame)  # as the real socket handle does
            await real_send(frame)

        handle.send = encoding_send  # type: ignore[method-assign]
        bad = w.job()
        bad.input = {"value": nested(300)}
        future = await w.scheduler.run_sync(bad)
        assert future is not None
        final = await asyncio.wait_for(future, 5)
        assert final.status is JobStatus.FAILED and final.error is not None
        assert final.error["type"] == "invalid_input"
        good = w.job()  # the worker is free again
        future = await w.scheduler.run_sync(good)
        handle.done(good.id)
        await settle()
        assert future is not None and (await future).status is JobStatus.COMPLETED

    asyncio.run(scenario())


def test_a_result_the_store_refuses_fails_the_job_instead_of_stranding_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        job = w.job()
        await w.run_durable(job)
        assert handle.job_ids() == [job.id]
        real_finish = w.store.finish
        calls = 0

        async def too_big(job_id: str, status: JobStatus, now: float, **kw: Any) -> Job | None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise sqlite3.DataError("string or blob too big")
            return await real_finish(job_id, status, now, **kw)

        w.store.finish = too_big  # type: ignore[method-assign]
        handle.done(job.id)
        await final(w, job.id)
        stored = await w.store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.FAILED
        assert stored.error is not None and "could not be stored" in stored.error["message"]
        assert w.scheduler.workers[handle_worker(w)].jobs == {}

    asyncio.run(scenario())


def handle_worker(w: World) -> str:
    return next(iter(w.scheduler.workers))


def test_a_log_frame_whose_line_is_a_dict_does_not_strand_the_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        job = w.job()
        await w.run_durable(job)
        line = {"not": "a string"}
        handle.frames.put_nowait(
            {"t": "log", "id": job.id, "ts": w.clock.time(), "stream": "stdout", "line": line}
        )
        handle.done(job.id)
        await final(w, job.id)
        stored = await w.store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
        # the frame guard drops such a frame; if one got through, it is stored as text
        assert all(isinstance(r["line"], str) for r in await w.store.job_logs(job.id))

    asyncio.run(scenario())


def test_a_worker_exit_frees_its_slot_while_usage_cannot_be_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        job = w.job()
        await w.run_durable(job)
        old = handle_worker(w)
        real_add, real_requeue = w.store.add_usage, w.store.requeue

        async def full(*args: Any, **kwargs: Any) -> Any:
            raise StorageUnavailable.because("the disk is full")

        w.store.add_usage = full  # type: ignore[method-assign]
        w.store.requeue = full  # type: ignore[method-assign]
        handle.kill()

        async def gone() -> bool:
            return w.scheduler.workers == {}

        await until(gone)  # the slot is free at once
        w.store.add_usage, w.store.requeue = real_add, real_requeue  # type: ignore[method-assign]
        w.clock.advance(6)  # past the usage flush interval
        await w.scheduler.tick()  # the disk is back: the lost job is requeued, usage written
        await settle()
        stored = await w.store.get_job(job.id)
        assert stored is not None and stored.worker_id != old
        assert stored.status in (JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS)
        assert old in {r.worker_id for r in await w.store.usage(0, None)}

    asyncio.run(scenario())


def test_a_result_waits_in_memory_while_the_storage_is_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        job = w.job()
        await w.run_durable(job)
        real_finish = w.store.finish

        async def down(*args: Any, **kw: Any) -> Any:
            raise StorageUnavailable.because("the database is locked by another process")

        w.store.finish = down  # type: ignore[method-assign]
        handle.done(job.id)
        await final(w, job.id)
        found = await w.scheduler.find_job(job.id)  # lookups read it from memory
        assert found is not None and found.status is JobStatus.COMPLETED
        w.store.finish = real_finish  # type: ignore[method-assign]
        await w.scheduler.tick()
        stored = await w.store.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
        assert stored.output == {"ok": True}

    asyncio.run(scenario())


def test_a_worker_filled_while_a_claim_was_in_flight_gets_no_second_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        handle = w.backend.handles[0]
        durable, sync = w.job(), w.job()
        real_claim = w.store.claim_job

        async def claim_meanwhile(job_id: str, worker_id: str, now: float) -> Job | None:
            # store calls yield to the loop now: a sync-lane job takes the slot meanwhile
            await w.scheduler.run_sync(sync)
            return await real_claim(job_id, worker_id, now)

        w.store.claim_job = claim_meanwhile  # type: ignore[method-assign]
        await w.store.create_job(durable)
        assert not await w.scheduler.dispatch_now(durable)
        assert handle.job_ids() == [sync.id]  # one slot, one job
        stored = await w.store.get_job(durable.id)
        assert stored is not None and stored.status is JobStatus.IN_QUEUE
        assert stored.attempts == 0  # the claim that never reached a worker is given back

    asyncio.run(scenario())
