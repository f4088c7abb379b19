"""The job service against its interface: which lane a job takes, waiting, idempotency, the
result cache, and reads that see what the scheduler still holds in memory. The shared scripted
worker (the test answers its jobs), a fake clock and the real SQLite store in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.unit.conftest import FakeBackend, FakeHandle, settle

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.cache import MemoryCache
from coldbrew.control.jobs import JobService, Policy, Submitted
from coldbrew.control.scheduler import Scheduler
from coldbrew.errors import Conflict, InvalidInput, InvalidRequest, NotFound
from coldbrew.integrations.webhooks import WebhookSender
from coldbrew.metering.budgets import BudgetKeeper
from coldbrew.store.models import Job, JobStatus, Principal
from coldbrew.store.sqlite import SQLiteStore

T = TypeVar("T")
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
ME = Principal(account="a", admin=False)


def finish(handle: FakeHandle, job_id: str, output: Any = None, failed: bool = False) -> None:
    """The worker's `done` frame for a job: an output, or an error record."""
    handle.running.discard(job_id)
    frame: dict[str, Any] = {"t": "done", "id": job_id, "output": output or {"ok": True}}
    if failed:
        frame = {"t": "done", "id": job_id, "error": {"type": "HandlerError", "message": "x"}}
    handle.frames.put_nowait(frame)


class World:
    """One endpoint `e` of account `a` with one warm worker (unless `min_workers=0`)."""

    def __init__(self, tmp_path: Path, **spec: Any) -> None:
        self.clock = FakeClock()
        self.store = SQLiteStore(":memory:")
        self.backend = FakeBackend()
        self.settings = Settings(home=tmp_path, hardware_slots={"cpu": 1})
        self.scheduler = Scheduler(self.store, self.backend, self.clock, self.settings)
        webhooks = WebhookSender(self.store, self.clock, self.settings)
        budgets = BudgetKeeper(self.store, self.clock, self.settings, webhooks)
        cache = MemoryCache(self.clock, 1 << 20)
        self.jobs = JobService(
            self.store, self.scheduler, budgets, cache, self.settings, self.clock
        )
        self.spec = {"min_workers": 1, **spec}

    async def setup(self) -> None:
        await self.store.create_account("a", "whsec_x", self.clock.time())
        await self.store.add_version("a", "e", "sha", "app", "E", self.spec, SCHEMA, 0.0)
        await self.scheduler.refresh_endpoints()
        endpoint = await self.jobs.endpoint(ME, "e")
        for _ in range(10):  # until the worker said it is ready
            await self.scheduler.tick()
            await settle()
            if self.jobs.workers(endpoint.id)["idle"] >= self.spec["min_workers"]:
                break

    @property
    def handle(self) -> FakeHandle:
        return self.backend.handles[0]

    async def drive(self, pending: Awaitable[T]) -> T:
        """Run the scheduler's ticks until `pending` (a task) is done."""
        task = asyncio.ensure_future(pending)
        for _ in range(50):
            await settle()
            if task.done():
                break
            await self.scheduler.tick()
        return await task

    async def started(self) -> str:
        """Tick until a worker got a job; its id."""
        for _ in range(50):
            await self.scheduler.tick()
            await settle()
            if self.backend.handles and self.handle.job_ids():
                break
        return self.handle.job_ids()[-1]

    async def answer(self, submitting: asyncio.Task[Submitted], **done: Any) -> Submitted:
        """Answer the job being submitted once a worker has it, and return the result."""
        job_id = await self.started()  # before `self.handle`: a cold start creates it
        finish(self.handle, job_id, **done)
        return await self.drive(submitting)


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 10))


def test_a_waiting_job_on_a_warm_worker_takes_the_sync_lane(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        submitting = asyncio.ensure_future(w.jobs.submit(ME, "e", {"n": 1}, wait_s=5))
        job_id = await w.started()
        assert await w.store.get_job(job_id) is None  # in memory only while it runs
        assert (await w.jobs.get(ME, job_id)).status is JobStatus.IN_PROGRESS
        w.handle.done(job_id)
        job, replayed = await w.drive(submitting)
        assert (job.id, job.status, job.output, replayed) == (
            job_id,
            JobStatus.COMPLETED,
            {"ok": True},
            False,
        )
        # reads answer what the scheduler holds, without the caller flushing anything
        (read,) = await w.jobs.lookup("a", [job_id])
        assert read.status is JobStatus.COMPLETED
        assert [j.id for j in await w.jobs.recent_jobs(job.endpoint_id, 10)] == [job_id]
        assert [j.id for j in await w.jobs.account_jobs("a", 10, None)] == [job_id]

    run(scenario())


def test_without_a_wait_the_job_is_queued_durably_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job, replayed = await w.jobs.submit(ME, "e", {"n": 1})
        assert not replayed and job.status is JobStatus.IN_QUEUE
        stored = await w.store.get_job(job.id)
        assert stored is not None and stored.input == {"n": 1}

    run(scenario())


def test_a_wait_that_runs_out_leaves_a_durable_job_to_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job, _ = await w.jobs.submit(ME, "e", {"n": 1}, wait_s=0)
        assert not job.status.final and job.durable
        assert await w.store.get_job(job.id) is not None

    run(scenario())


def test_a_runsync_wait_ends_when_the_injected_clock_passes_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        submitting = asyncio.ensure_future(w.jobs.submit(ME, "e", {"n": 1}, wait_s=30))
        await w.started()  # the worker has the job and never answers
        w.clock.advance(29.9)
        await settle()
        assert not submitting.done()  # no real time passes in this test; only the fake clock
        w.clock.advance(0.2)
        job, _ = await w.drive(submitting)
        assert job.status is JobStatus.IN_PROGRESS and job.durable

    run(scenario())


def test_with_no_warm_worker_a_waiting_job_is_queued_durably(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, min_workers=0)
        await w.setup()
        assert w.backend.handles == []
        submitting = asyncio.ensure_future(w.jobs.submit(ME, "e", {"n": 2}, wait_s=5))
        endpoint = await w.jobs.endpoint(ME, "e")
        queued: list[Job] = []
        for _ in range(20):  # not the sync lane: the job is in the store before a worker starts
            await settle()
            queued = await w.jobs.recent_jobs(endpoint.id, 10)
            if queued:
                break
        assert [j.status for j in queued] == [JobStatus.IN_QUEUE]
        job, _ = await w.answer(submitting)  # a worker starts (cold) and runs it
        assert job.status is JobStatus.COMPLETED and job.durable

    run(scenario())


def test_an_invalid_request_writes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        with pytest.raises(InvalidInput, match=r"input\.n"):
            await w.jobs.submit(ME, "e", {"n": "one"})
        with pytest.raises(InvalidRequest, match="webhook"):
            await w.jobs.submit(ME, "e", {"n": 1}, webhook="ftp://x")
        with pytest.raises(NotFound, match="no endpoint 'nope'"):
            await w.jobs.submit(ME, "nope", {"n": 1})
        assert await w.jobs.account_jobs("a", 10, None) == []

    run(scenario())


def test_a_policy_overrides_the_timeout_and_time_to_live(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job, _ = await w.jobs.submit(ME, "e", {"n": 1}, policy=Policy(timeout_s=7, ttl_s=60))
        assert job.timeout_s == 7 and job.expires_at == job.created_at + 60

    run(scenario())


def test_an_idempotency_key_replays_the_first_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        first, replayed = await w.jobs.submit(ME, "e", {"n": 1}, idempotency_key="k1")
        assert not replayed
        again, replayed = await w.jobs.submit(ME, "e", {"n": 1}, idempotency_key="k1")
        assert replayed and again.id == first.id
        with pytest.raises(Conflict, match="already used"):
            await w.jobs.submit(ME, "e", {"n": 2}, idempotency_key="k1")
        with pytest.raises(InvalidRequest, match="Idempotency-Key"):
            await w.jobs.submit(ME, "e", {"n": 1}, idempotency_key="\n")
        assert len(await w.jobs.account_jobs("a", 10, None)) == 1

    run(scenario())


def test_a_cached_output_answers_without_a_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, cache_ttl_s=60)
        await w.setup()
        submitting = asyncio.ensure_future(w.jobs.submit(ME, "e", {"n": 3}, wait_s=5))
        first, _ = await w.answer(submitting, output={"y": 9})
        assert first.status is JobStatus.COMPLETED and not first.cached
        await settle()  # the final-job listener stores the output
        accepted: list[Job] = []

        async def on_accept(job: Job) -> None:
            accepted.append(job)

        again, _ = await w.jobs.submit(ME, "e", {"n": 3}, wait_s=5, on_accept=on_accept)
        assert (again.cached, again.output, again.status) == (True, {"y": 9}, JobStatus.COMPLETED)
        assert accepted == [again]
        assert w.handle.job_ids() == [first.id]  # no worker saw the second one
        fresh, _ = await w.jobs.submit(ME, "e", {"n": 3}, use_cache=False)
        assert not fresh.cached

    run(scenario())


def test_get_and_cancel_are_scoped_to_the_endpoint(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, min_workers=0)
        await w.setup()
        job, _ = await w.jobs.submit(ME, "e", {"n": 1})
        with pytest.raises(NotFound, match="on endpoint 'other'"):
            await w.jobs.get(ME, job.id, "other")
        with pytest.raises(NotFound):
            await w.jobs.get(Principal(account="b", admin=False), job.id)
        with pytest.raises(NotFound):
            await w.jobs.cancel(ME, job.id, "other")
        cancelled = await w.jobs.cancel(ME, job.id, "e")
        assert cancelled.status is JobStatus.CANCELLED

    run(scenario())


def test_retry_queues_a_failed_job_and_refuses_a_completed_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        submitting = asyncio.ensure_future(w.jobs.submit(ME, "e", {"n": 1}, wait_s=5))
        failed, _ = await w.answer(submitting, failed=True)
        assert failed.status is JobStatus.FAILED
        retried = await w.jobs.retry(ME, "e", failed.id)  # an in-memory job is written first
        assert retried.status is JobStatus.IN_QUEUE
        w.handle.sent.clear()
        assert await w.started() == failed.id  # the worker runs it again
        w.handle.done(failed.id)
        for _ in range(20):
            await settle()
            if (await w.jobs.get(ME, failed.id)).status.final:
                break
        assert (await w.jobs.get(ME, failed.id)).status is JobStatus.COMPLETED
        with pytest.raises(Conflict, match="only FAILED or TIMED_OUT"):
            await w.jobs.retry(ME, "e", failed.id)

    run(scenario())


def test_purge_cancels_the_queue(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path, min_workers=0)
        await w.setup()
        for n in range(3):
            await w.jobs.submit(ME, "e", {"n": n})
        assert await w.jobs.purge(ME, "e") == 3
        assert (await w.jobs.health((await w.jobs.endpoint(ME, "e")).id)).get("inQueue", 0) == 0

    run(scenario())


def test_an_idempotency_key_with_a_wait_waits_for_the_durable_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        submitting = asyncio.ensure_future(
            w.jobs.submit(ME, "e", {"n": 4}, wait_s=5, idempotency_key="k2")
        )
        job_id = await w.started()
        assert await w.store.get_job(job_id) is not None  # a key always takes the store
        w.handle.done(job_id)
        job, replayed = await w.drive(submitting)
        assert (job.id, job.status, replayed) == (job_id, JobStatus.COMPLETED, False)
        again, replayed = await w.jobs.submit(ME, "e", {"n": 4}, wait_s=5, idempotency_key="k2")
        assert replayed and again.id == job_id and again.status is JobStatus.COMPLETED

    run(scenario())
