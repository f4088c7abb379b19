"""A worker that runs one job at a time is sent its next job while it computes, when its
version's jobs are short (`Fleet.job_room`): the next waits in its socket and is timed and
billed from when the one before ends. A long job is never queued behind another. On the fake
clock, against the fake worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.conftest import World, settle

from coldbrew.control.fleet import PIPELINE_MAX_S
from coldbrew.store.models import Job, JobStatus


def _sent(w: World, handle: int = 0) -> list[str]:
    return [f["id"] for f in w.backend.handles[handle].sent if f["t"] == "job"]


async def _give(w: World, jobs: list[Job]) -> list[Job]:
    """The jobs arrive on the sync lane (made beforehand: making one moves the clock)."""
    for job in jobs:
        w.scheduler.book.take_sync(job)
    await w.scheduler.dispatcher.pump(w.version.id)
    return jobs


async def _calibrate(w: World, compute_s: float) -> None:
    """One job that computes for `compute_s`: the version's expected job time."""
    (job,) = await _give(w, [w.job()])
    w.clock.advance(compute_s)
    w.backend.handles[0].done(job.id)
    await settle()


def test_a_short_jobs_next_job_goes_while_it_computes(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        made = [w.job() for _ in range(3)]
        await _calibrate(w, 0.003)
        first, second, third = await _give(w, made)
        # the depth is 2: one computes, the next waits in the socket, the third in the lane
        assert _sent(w)[1:] == [first.id, second.id]
        assert [j.id for j in w.scheduler.backlog.lane[w.version.id]] == [third.id]
        w.backend.handles[0].done(first.id)
        await settle()
        assert _sent(w)[1:] == [first.id, second.id, third.id]

    asyncio.run(scenario())


def test_jobs_of_unknown_or_long_length_go_one_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        made = [w.job() for _ in range(4)]
        first, _ = await _give(w, made[:2])  # nothing known yet: one at a time
        assert _sent(w) == [first.id]
        w.clock.advance(PIPELINE_MAX_S * 4)  # a long job
        w.backend.handles[0].done(first.id)
        await settle()
        assert len(_sent(w)) == 2  # the second went when the worker was free, not before
        await _give(w, made[2:])
        assert len(_sent(w)) == 2

    asyncio.run(scenario())


def test_the_next_job_is_timed_and_billed_from_when_the_one_before_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        made = [w.job() for _ in range(2)]
        await _calibrate(w, 0.004)
        first, second = await _give(w, made)
        worker = next(iter(w.scheduler.fleet.workers.values()))
        sent_deadline = worker.jobs[second.id].deadline
        handle = w.backend.handles[0]
        w.clock.advance(0.004)
        handle.done(first.id)
        await settle()
        assert worker.jobs[second.id].deadline == sent_deadline + 0.004
        w.clock.advance(0.004)
        handle.done(second.id)
        await settle()
        price = w.scheduler.settings.prices_per_hour_usd["cpu"]
        for job in (first, second):  # 4 ms each, not 8 ms for the one that waited
            assert job.status is JobStatus.COMPLETED
            assert abs(job.cost_usd - 0.004 * price / 3600) < 1e-12

    asyncio.run(scenario())


def test_a_crash_with_a_job_waiting_in_the_worker_retries_both(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        made = [w.job() for _ in range(2)]
        await _calibrate(w, 0.003)
        first, second = await _give(w, made)
        assert len(_sent(w)) == 3
        w.backend.handles[0].kill()

        def placed(job: Job) -> bool:  # back in the lane, or running on a new worker
            lane = w.scheduler.backlog.lane.get(w.version.id, ())
            return job in lane or (job.status is JobStatus.IN_PROGRESS and job.attempts > 1)

        for _ in range(300):  # the exit is read, recovered and requeued over several steps
            if placed(first) and (
                second in w.scheduler.backlog.lane.get(w.version.id, ())
                or second.status is JobStatus.IN_PROGRESS
            ):
                break
            await settle()
        assert placed(first) and second.status is not JobStatus.FAILED
        assert second.attempts < first.attempts  # it never ran: its attempt was given back

    asyncio.run(scenario())


def test_an_idle_worker_is_used_before_a_job_waits_behind_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        w.scheduler.fleet.launch(*w.scheduler.fleet.versions[w.version.id])  # a second worker
        await settle()
        assert len(w.backend.handles) == 2
        made = [w.job() for _ in range(2)]
        (probe,) = await _give(w, [w.job()])
        w.clock.advance(0.003)
        for handle in w.backend.handles:
            if probe.id in [f.get("id") for f in handle.sent]:
                handle.done(probe.id)
        await settle()
        before = [len(_sent(w, i)) for i in range(2)]
        await _give(w, made)
        after = [len(_sent(w, i)) for i in range(2)]
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]

    asyncio.run(scenario())


def test_a_job_waiting_behind_a_crash_spends_no_attempt(tmp_path: Path) -> None:
    """Without retries, the job whose run killed the worker fails; the one sent to wait behind
    it never reached `predict`, so it goes back to the queue and runs."""

    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        made = [w.job() for _ in range(2)]
        for job in made:
            job.max_attempts = 1  # no retries
        await _calibrate(w, 0.003)
        first, second = await _give(w, made)
        w.backend.handles[0].kill()
        for _ in range(100):
            if first.status is JobStatus.FAILED and second.status is not JobStatus.IN_PROGRESS:
                break
            await settle()
        assert first.status is JobStatus.FAILED
        assert second.status in (JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS)
        assert second.attempts <= 1  # 0 while it waits, 1 once it runs
        for _ in range(100):  # a new worker starts (min_workers=1) and takes it
            if len(w.backend.handles) > 1 and second.id in _sent(w, 1):
                break
            await settle()
            await w.scheduler.tick()
        assert second.id in _sent(w, 1)

    asyncio.run(scenario())
