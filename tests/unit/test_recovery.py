"""Recovery against its own interface: a dead worker's job is retried in its lane, a failed
setup backs off and fails the waiting jobs, a timed-out job ends and its worker goes, and a
storage fault holds the tick until a probe write succeeds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.conftest import World, settle

from coldbrew.control.workers import WorkerState
from coldbrew.errors import StorageUnavailable
from coldbrew.store.models import JobStatus


def test_a_sync_job_whose_worker_died_goes_first_in_line_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job, later = w.job(), w.job()
        await w.scheduler.run_sync(job)
        w.scheduler.book.take_sync(later)
        await w.scheduler.recovery.worker_lost(job, "killed")
        assert job.status is JobStatus.IN_QUEUE and job.worker_id is None
        assert list(w.scheduler.backlog.lane[w.version.id]) == [job, later]

    asyncio.run(scenario())


def test_a_failed_setup_backs_off_and_fails_the_lane(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, setup_backoff_s=2.0)
        await w.setup()
        recovery, scheduler = w.scheduler.recovery, w.scheduler
        (worker,) = scheduler.workers.values()
        waiting = w.job()
        future = scheduler.book.take_sync(waiting)
        worker.state = WorkerState.DRAINING  # no other worker of the version is up
        worker.setup_error = {"type": "OSError", "message": "weights missing"}
        await recovery.setup_failed(worker, "exited")
        until, delay = scheduler.fleet.backoff[w.version.id]
        assert delay == 2.0 and until == w.clock.monotonic() + 2.0
        final = await future
        assert final.status is JobStatus.FAILED and final.error is not None
        assert final.error["type"] == "setup_failed" and "weights missing" in final.error["message"]

    asyncio.run(scenario())


def test_a_job_past_its_timeout_ends_and_its_worker_is_replaced(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job = w.job()
        job.timeout_s = 5
        future = await w.scheduler.run_sync(job)
        assert future is not None
        w.clock.advance(5.0)
        await w.scheduler.recovery.expire(w.clock.monotonic())
        final = await future
        assert final.status is JobStatus.TIMED_OUT and final.cost_usd is not None
        await settle()
        assert w.scheduler.workers == {}  # killed; the next tick starts another

    asyncio.run(scenario())


def test_a_storage_fault_holds_the_tick_until_a_probe_write_succeeds(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        recovery = w.scheduler.recovery
        real_probe = w.store.probe

        async def failing(now: float) -> None:
            raise StorageUnavailable.because("disk I/O error")

        w.store.probe = failing  # type: ignore[method-assign]
        w.store.fault = "disk I/O error"
        assert not await recovery.storage_ok()
        w.store.probe = real_probe  # type: ignore[method-assign]
        assert not await recovery.storage_ok()  # the next probe waits a second
        w.clock.advance(1.0)
        assert await recovery.storage_ok() and w.store.fault is None

    asyncio.run(scenario())
