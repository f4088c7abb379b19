"""The dispatcher against its own interface: the account cap, a batch held for at most
`max_wait_ms` on the fake clock, and the one place a job's cost is computed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.conftest import World, settle

from coldbrew.store.models import JobStatus


def test_dispatch_now_leaves_a_job_queued_past_the_account_cap(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, account_concurrency_cap=1)
        await w.setup(concurrency=2)
        dispatcher, handle = w.scheduler.dispatcher, w.backend.handles[0]
        first, second = w.job(), w.job()
        await w.store.create_job(first)
        assert await dispatcher.dispatch_now(first)
        await w.store.create_job(second)
        assert not await dispatcher.dispatch_now(second)  # a slot is free, the cap is not
        assert w.scheduler.backlog.in_store(w.version.id)
        assert handle.job_ids() == [first.id] and dispatcher.running["a"] == 1

    asyncio.run(scenario())


def test_a_short_batch_waits_for_the_window_then_goes_on_the_fake_clock(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(batch={"max_size": 2, "max_wait_ms": 50})
        dispatcher, handle, vid = w.scheduler.dispatcher, w.backend.handles[0], w.version.id
        busy = [w.job() for _ in range(4)]
        for job in busy:
            w.scheduler.book.take_sync(job)
        await dispatcher.pump(vid)
        # full batches, two in flight: a busy endpoint (4 callers, so batches of 2 from now on)
        assert [f["ids"] for f in handle.sent[-2:]] == [
            [j.id for j in busy[:2]],
            [j.id for j in busy[2:]],
        ]
        for job in busy:
            handle.done(job.id)
        await settle()
        lone = w.job()
        w.scheduler.book.take_sync(lone)
        await dispatcher.pump(vid)
        assert lone.id not in handle.job_ids()  # held for more jobs to join it
        w.clock.advance(0.04)
        await settle()
        assert lone.id not in handle.job_ids()
        w.clock.advance(0.02)  # the window ran out: the hold pumps the lane again
        await settle()
        assert handle.sent[-1]["ids"] == [lone.id]

    asyncio.run(scenario())


def test_a_job_pays_its_time_at_its_hardwares_price(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job = w.job()
        await w.run_durable(job)
        w.clock.advance(36.0)
        w.backend.handles[0].done(job.id)
        for _ in range(50):
            await settle()
            stored = await w.store.get_job(job.id)
            if stored is not None and stored.status is JobStatus.COMPLETED:
                break
        price = w.scheduler.settings.prices_per_hour_usd["cpu"]
        assert stored is not None and stored.cost_usd is not None
        assert abs(stored.cost_usd - 36.0 * price / 3600) < 1e-12

    asyncio.run(scenario())
