"""A batched worker is sent its next batch while it computes (`batch_pipeline_depth`), batches
are sized to the recent demand rather than the cap, and the second batch is timed, billed and
retried as its own: on the fake clock, against the fake worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.conftest import World, settle

from coldbrew.store.models import Job, JobStatus


def _batches(w: World) -> list[list[str]]:
    return [f["ids"] for f in w.backend.handles[0].sent if f["t"] == "batch"]


async def _take(w: World, n: int) -> list[Job]:
    return await _give(w, [w.job() for _ in range(n)])


async def _give(w: World, jobs: list[Job]) -> list[Job]:
    """The jobs arrive on the sync lane (made beforehand: making one moves the clock)."""
    for job in jobs:
        w.scheduler.book.take_sync(job)
    await w.scheduler.dispatcher.pump(w.version.id)
    return jobs


def test_full_batches_go_while_the_worker_computes(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 4, "max_wait_ms": 0})
        jobs = await _take(w, 10)
        ids = [j.id for j in jobs]
        # 10 waiting, 2 batches in flight: 4 and 4 go (the cap), 2 wait for a slot
        assert _batches(w) == [ids[:4], ids[4:8]]
        handle = w.backend.handles[0]
        for job_id in ids[:4]:
            handle.done(job_id)
        await settle()
        # 2 are fewer than their share (10 callers over 2 batches, at most 4): they do not
        # go in pieces behind the second batch but when the worker is free
        assert len(_batches(w)) == 2
        for job_id in ids[4:8]:
            handle.done(job_id)
        await settle()
        assert _batches(w)[2] == ids[8:]

    asyncio.run(scenario())


def test_depth_one_keeps_one_batch_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, batch_pipeline_depth=1)
        await w.setup(batch={"max_size": 4, "max_wait_ms": 50})
        jobs = await _take(w, 8)
        assert _batches(w) == [[j.id for j in jobs[:4]]]

    asyncio.run(scenario())


async def _calibrate(w: World, n: int, compute_s: float) -> None:
    """One batch of `n` that computes for `compute_s`: the version's expected batch time."""
    jobs = await _take(w, n)
    w.clock.advance(compute_s)
    for job in jobs:
        w.backend.handles[0].done(job.id)
    await settle()


def test_the_next_batch_goes_just_before_the_compute_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 32, "max_wait_ms": 50})
        made = [w.job() for _ in range(32)]
        await _calibrate(w, 16, 0.010)
        first = await _give(w, made[:16])
        second = await _give(w, made[16:])
        # 32 callers over 2 batches in flight: batches of 16, not one of 32 and an idle wait;
        # the second gathers until 30% of the expected 10 ms compute is left
        assert _batches(w)[1:] == [[j.id for j in first]]
        w.clock.advance(0.006)
        await settle()
        assert len(_batches(w)) == 2
        w.clock.advance(0.0011)
        await settle()
        assert _batches(w)[2] == [j.id for j in second]

    asyncio.run(scenario())


def test_a_compute_past_its_expected_time_is_waited_for(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 32, "max_wait_ms": 50})
        made = [w.job() for _ in range(7)]
        await _calibrate(w, 1, 0.010)
        (slow,) = await _give(w, made[:1])
        w.clock.advance(0.5)  # far past the expected 10 ms
        later = await _give(w, made[1:])
        assert len(_batches(w)) == 2  # not sent piecemeal behind a compute of unknown end
        w.backend.handles[0].done(slow.id)
        await settle()
        assert _batches(w)[2] == [j.id for j in later]  # all six as one batch

    asyncio.run(scenario())


def test_a_lone_job_goes_at_once_once_the_demand_has_faded(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 8, "max_wait_ms": 50})
        (lone,) = await _take(w, 1)
        assert _batches(w) == [[lone.id]]  # a quiet endpoint: no wait for company
        busy = await _take(w, 8)
        handle = w.backend.handles[0]
        handle.done(lone.id)
        await settle()
        assert _batches(w)[1] == [j.id for j in busy]
        for job in busy:
            handle.done(job.id)
        await settle()
        (held,) = await _take(w, 1)
        assert len(_batches(w)) == 2  # 9 callers a moment ago: it waits for others
        w.clock.advance(0.06)
        await settle()  # the window ran out: it goes alone
        assert _batches(w)[-1] == [held.id]
        handle.done(held.id)
        await settle()
        w.clock.advance(10.0)  # the demand halves every second: one caller now
        (later,) = await _take(w, 1)
        assert _batches(w)[-1] == [later.id]

    asyncio.run(scenario())


def test_the_second_batch_is_timed_and_billed_from_when_the_first_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 2, "max_wait_ms": 0})
        a1, a2, b1, _b2 = await _take(w, 4)
        worker = next(iter(w.scheduler.fleet.workers.values()))
        sent_deadline = worker.jobs[b1.id].deadline
        w.clock.advance(36.0)  # the first batch computes for 36 s
        handle = w.backend.handles[0]
        handle.done(a1.id)
        handle.done(a2.id)
        await settle()
        assert worker.jobs[b1.id].deadline == sent_deadline + 36.0
        w.clock.advance(36.0)
        handle.done(b1.id)
        await settle()
        price = w.scheduler.settings.prices_per_hour_usd["cpu"]
        for job in (a1, b1):  # 36 s each, split over a batch of 2; not 72 s for the second
            assert job.status is JobStatus.COMPLETED and job.cost_usd is not None
            assert abs(job.cost_usd - 36.0 * price / 3600 / 2) < 1e-12

    asyncio.run(scenario())


def test_a_crash_with_two_batches_in_flight_retries_both(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 2, "max_wait_ms": 0})
        jobs = await _take(w, 4)
        assert len(_batches(w)) == 2
        w.backend.handles[0].kill()

        def placed(job: Job) -> bool:  # back in the lane, or running on the worker replacing it
            lane = w.scheduler.backlog.lane.get(w.version.id, ())
            return job in lane or (
                job.status is JobStatus.IN_PROGRESS
                and job.worker_id is not None
                and job.worker_id != first_worker
            )

        first_worker = jobs[0].worker_id
        for _ in range(300):  # the exit is read, recovered and requeued over several steps
            if all(placed(j) for j in jobs):
                break
            await settle()
        assert all(placed(j) for j in jobs)
        running = sum(j.status is JobStatus.IN_PROGRESS for j in jobs)
        assert w.scheduler.dispatcher.running["a"] == running
        # the first batch ran and spends a retry; the second waited and spends none
        assert max(j.attempts for j in jobs[2:]) < min(j.attempts for j in jobs[:2])

    asyncio.run(scenario())
