"""Who waits for what in the pipeline driver: a run's stage waiting for its job to end, and a
/runsync caller waiting for its run to end; woken by the scheduler's final listener and by the
driver, and reading the store now and then too, as another gateway may be the one that ends
them."""

from __future__ import annotations

import asyncio
import contextlib

from coldbrew.clock import Clock
from coldbrew.control.jobs import JobService
from coldbrew.store.base import Store
from coldbrew.store.models import Job
from coldbrew.store.pipelines import PipelineRun

#: How often a waiting stage re-reads its job from the store as well as listening for its end:
#: with several gateways the job may end on another one, whose final listener this one never
#: hears (one store read per running stage per interval).
STAGE_POLL_S = 1.0


class RunWaits:
    """The futures of the driver's waiters, by stage job id and by run id."""

    def __init__(self, store: Store, jobs: JobService, clock: Clock) -> None:
        self.store = store
        self.jobs = jobs
        self.clock = clock
        self._waiting: dict[str, list[asyncio.Future[Job]]] = {}  # stage job id → waiters
        self._ended: dict[str, list[asyncio.Future[None]]] = {}  # run id → runsync waiters

    async def wait_end(
        self, run: PipelineRun, ended: asyncio.Future[None], wait_s: float
    ) -> PipelineRun:
        """The run once it ended or `wait_s` passed; read from the store now and then too,
        as another gateway (its pipeline's owner) may be the one driving it."""
        deadline = self.clock.monotonic() + wait_s
        try:
            while (left_s := deadline - self.clock.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await self.clock.wait_for(asyncio.shield(ended), min(left_s, STAGE_POLL_S))
                current = await self.store.get_run(run.id)
                if ended.done() or current is None or current.status.final:
                    return current or run
        finally:
            waiters = self._ended.get(run.id, [])
            if ended in waiters:
                waiters.remove(ended)
            if not waiters:
                self._ended.pop(run.id, None)
        return await self.store.get_run(run.id) or run

    def watch_end(self, run_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ended.setdefault(run_id, []).append(future)
        return future

    def announce_end(self, run_id: str) -> None:
        for future in self._ended.pop(run_id, ()):
            if not future.done():
                future.set_result(None)

    def job_final(self, job: Job) -> None:
        """The scheduler's final listener: wake the run waiting for this stage job."""
        for future in self._waiting.pop(job.id, ()):
            if not future.done():
                future.set_result(job)

    async def final_job(self, account: str, job_id: str) -> Job | None:
        """The stage job once it is final (None when it is gone from the store)."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        try:
            while True:
                job = await self.jobs.find(account, job_id)  # after registering: none missed
                if job is None or job.status.final:
                    return job
                with contextlib.suppress(TimeoutError):
                    return await self.clock.wait_for(asyncio.shield(future), STAGE_POLL_S)
        finally:
            waiters = self._waiting.get(job_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiting.pop(job_id, None)
