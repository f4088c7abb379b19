"""The job book: which jobs live in memory, who waits for them, and how a job ends.

A /runsync job that finds a warm worker lives here only (the sync lane, `Backlog.lane`) and is
written once, final, with the next flush; a stored job whose end the storage could not take is
held here until it can. Every path that ends a job comes through `end_safely`, which never
raises once the job has left its worker: a result the store cannot hold fails that job with the
reason; a storage fault (`StorageUnavailable`) keeps the final state in memory for a flush; a
batched write that fails for one job is retried one job at a time so only that job fails.
Without this, one 255-deep input failed every later write-back and left jobs `IN_PROGRESS`.

Every in-memory status change goes through `move()`, which refuses what `TRANSITIONS` forbids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from coldbrew.clock import Clock
from coldbrew.control.backlog import Backlog
from coldbrew.errors import NotStorable, StorageUnavailable, job_error
from coldbrew.store.base import Store
from coldbrew.store.models import FINAL_STATUSES, TRANSITIONS, Job, JobStatus, WebhookState

log = logging.getLogger("coldbrew.scheduler")

FinalListener = Callable[[Job], None]

#: Final in-memory jobs written per transaction (see `JobBook.write_back`).
WRITE_BACK_CHUNK = 64


class IllegalTransition(RuntimeError):
    """A job was asked to make a status change `TRANSITIONS` forbids: a bug, never input."""


def move(job: Job, status: JobStatus, *, amend: bool = False) -> None:
    """Change `job.status`, checked against the allowed transitions (`store.models`).

    `amend`: a record the store refused becomes FAILED whatever it said (`_make_storable`).
    """
    if status not in TRANSITIONS[job.status] and not (amend and status is JobStatus.FAILED):
        raise IllegalTransition(f"job {job.id}: {job.status.value} -> {status.value}")
    job.status = status


def not_stored(part: str, exc: BaseException) -> dict[str, Any]:
    """The error record of a job whose input or result the store could not hold."""
    return job_error(
        NotStorable,
        f"the job's {part} could not be stored: {type(exc).__name__}: {exc}",
        hint="keep inputs and outputs plain JSON, nested less than 254 levels deep and "
        "within the size limits",
    )


def _make_storable(job: Job, exc: BaseException) -> None:
    """Turn a job the store refused into one it can hold: FAILED, saying why."""
    part = "output"
    try:
        orjson.dumps(job.input, option=orjson.OPT_SERIALIZE_NUMPY)
    except Exception:
        part, job.input = "input", {}
    move(job, JobStatus.FAILED, amend=True)
    job.output, job.error = None, not_stored(part, exc)


class JobBook:
    """In-memory jobs (the sync lane's, and ends waiting for the storage), their waiters and
    final listeners, and the one way a job ends."""

    def __init__(self, store: Store, clock: Clock, backlog: Backlog) -> None:
        self.store = store
        self.clock = clock
        self.backlog = backlog
        self.unsaved: dict[str, Job] = {}  # every in-memory job by id, until written
        self.writeback: list[Job] = []  # final in-memory jobs, written with the next flush
        self._waiters: dict[str, list[asyncio.Future[Job]]] = {}
        self._listeners: list[FinalListener] = []
        self._waking: set[asyncio.Future[None]] = set()  # `wake`'s reads

    # waiting and announcing
    def watch(self, job_id: str) -> asyncio.Future[Job]:
        """A future resolved with the job once it is final (register before queueing)."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        return future

    def unwatch(self, job_id: str, future: asyncio.Future[Job]) -> None:
        waiters = self._waiters.get(job_id, [])
        if future in waiters:
            waiters.remove(future)
        if not waiters:
            self._waiters.pop(job_id, None)

    def add_final_listener(self, listener: FinalListener) -> None:
        """Call `listener(job)` whenever a job reaches a final state (in the order added)."""
        self._listeners.append(listener)

    def announce(self, job: Job) -> None:
        """The job is final: resolve its waiters, then tell every listener."""
        for future in self._waiters.pop(job.id, ()):
            if not future.done():
                future.set_result(job)
        for listener in self._listeners:
            listener(job)

    def wake(self, job_id: str) -> None:
        """A stored job was made final somewhere (maybe another gateway): read it back for
        whoever waits for it here. Listeners are not told: the gateway that ended it told its
        own (webhooks, metrics), once."""
        if job_id in self._waiters:
            task = asyncio.ensure_future(self._wake(job_id))
            self._waking.add(task)
            task.add_done_callback(self._waking.discard)

    async def _wake(self, job_id: str) -> None:
        try:
            job = await self.store.get_job(job_id)
        except StorageUnavailable:
            return  # the waiter's own bound ends its wait
        if job is not None and job.status.final:
            for future in self._waiters.pop(job_id, ()):
                if not future.done():
                    future.set_result(job)

    # the sync lane
    def take_sync(self, job: Job) -> asyncio.Future[Job]:
        """Keep a /runsync job in memory, last in its version's lane; its final-state future."""
        job.durable = False
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()  # `watch`
        self._waiters.setdefault(job.id, []).append(future)
        self.unsaved[job.id] = job
        self.backlog.lane[job.version_id].append(job)
        return future

    def start(self, job: Job, worker_id: str) -> None:
        """A sync-lane job goes to a worker."""
        move(job, JobStatus.IN_PROGRESS)
        job.worker_id = worker_id
        job.attempts += 1
        job.started_at = self.clock.time()

    def requeue_sync(self, job: Job) -> None:
        """A sync-lane job lost its worker: first in line again (its caller still waits)."""
        move(job, JobStatus.IN_QUEUE)
        job.worker_id = None
        self.backlog.lane[job.version_id].appendleft(job)

    async def find(self, job_id: str, account: str | None = None) -> Job | None:
        """The job (the account's, when given), from memory or the store."""
        job = self.unsaved.get(job_id)
        if job is not None:
            return job if account is None or job.account == account else None
        return await self.store.get_job(job_id, account)

    async def persist(self, job: Job) -> Job:
        """Write an in-memory job to the store now; from here it is an ordinary stored job."""
        if job.durable:
            return job
        queue = self.backlog.lane.get(job.version_id)
        if queue is not None and any(j is job for j in queue):
            queue.remove(job)
            self.backlog.flag(job.version_id)
        job.durable = True
        self.writeback = [j for j in self.writeback if j is not job]
        await self.store.save_jobs([job])
        self.unsaved.pop(job.id, None)
        return job

    def cancel_waiting(self, version_ids: Iterable[int], now: float) -> list[Job]:
        """End the lane's waiting jobs of these versions as CANCELLED (a purge)."""
        return [
            self.end_unsaved(j, JobStatus.CANCELLED, now)
            for vid in version_ids
            for j in self.backlog.lane.pop(vid, ())
        ]

    def park_for_restart(self) -> None:
        """At shutdown: the lane's waiting jobs never started; written queued, they run after
        the restart."""
        waiting = [job for queue in self.backlog.lane.values() for job in queue]
        self.backlog.lane.clear()
        for job in waiting:
            job.durable = True
        self.writeback.extend(waiting)  # written with the flush, a bad one alone

    def memory_counts(self, endpoint_id: int) -> dict[str, int]:
        """The endpoint's in-memory jobs that are not final, by health key."""
        counts = {"inQueue": 0, "inProgress": 0}
        for job in self.unsaved.values():
            if job.endpoint_id == endpoint_id and not job.status.final:
                key = "inQueue" if job.status is JobStatus.IN_QUEUE else "inProgress"
                counts[key] += 1
        return counts

    # ending a job
    def end_unsaved(
        self,
        job: Job,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
    ) -> Job:
        """The in-memory counterpart of `store.finish`: final now, written with the next flush."""
        move(job, status)
        job.output, job.error = output, error
        job.finished_at, job.cost_usd = now, cost_usd
        self.writeback.append(job)
        return job

    async def end(
        self,
        job: Job,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
    ) -> Job | None:
        """Finish a running job, in the store or (sync lane) in memory; None if it had ended."""
        if not job.durable:
            if job.status.final:
                return None
            return self.end_unsaved(job, status, now, output=output, error=error, cost_usd=cost_usd)
        return await self.store.finish(  # only while its worker still holds it (fail-over)
            job.id,
            status,
            now,
            output=output,
            error=error,
            cost_usd=cost_usd,
            worker_id=job.worker_id,
        )

    async def end_safely(
        self,
        job: Job,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
    ) -> Job | None:
        """`end` that never raises: a result the store cannot hold fails the job with the
        reason; while the storage is down the final state waits in memory for a flush."""
        if not job.durable:  # the sync lane: no store call, nothing to fail (the hot path)
            if job.status in FINAL_STATUSES:
                return None
            return self.end_unsaved(job, status, now, output=output, error=error, cost_usd=cost_usd)
        try:
            return await self.end(job, status, now, output=output, error=error, cost_usd=cost_usd)
        except StorageUnavailable:
            return self._hold(job, status, now, output=output, error=error, cost_usd=cost_usd)
        except Exception as exc:
            log.warning("job %s: its result cannot be stored (%s); failing it", job.id, exc)
            failed = not_stored("result", exc)
        try:
            return await self.end(job, JobStatus.FAILED, now, error=failed, cost_usd=cost_usd)
        except Exception:
            return self._hold(job, JobStatus.FAILED, now, error=failed, cost_usd=cost_usd)

    def _hold(
        self,
        job: Job,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
    ) -> Job:
        """Keep a stored job's final state in memory (lookups read it there) until the next
        flush that can write it; a crash first leaves it IN_PROGRESS, so it runs again."""
        if job.webhook_url:
            job.webhook_state = WebhookState.PENDING
        self.unsaved[job.id] = job
        return self.end_unsaved(job, status, now, output=output, error=error, cost_usd=cost_usd)

    # writing back
    async def write_back(self) -> None:
        """Write the final in-memory jobs, `WRITE_BACK_CHUNK` per transaction; a bad one fails
        alone. A tick's few hundred jobs cost SQLite ~20 us of CPU each (six B-trees); in one
        transaction that was 6-9 ms on one of two cores, and a request whose process woke on
        that core waited for it (the c1 p99). In chunks, the loop runs between them."""
        pending, self.writeback = self.writeback, []  # what ends meanwhile waits a tick
        while pending:
            jobs = pending[:WRITE_BACK_CHUNK]
            del pending[:WRITE_BACK_CHUNK]
            try:
                await self.store.save_jobs(jobs)
            except StorageUnavailable:
                self.writeback[:0] = jobs + pending  # kept for the next flush
                raise
            except Exception:  # one job the store cannot hold must not wedge the others
                await self._save_one_by_one(jobs)
            for job in jobs:
                if self.unsaved.get(job.id) is job:
                    del self.unsaved[job.id]

    async def _save_one_by_one(self, jobs: list[Job]) -> None:
        for i, job in enumerate(jobs):
            try:
                await self._save_alone(job)
            except StorageUnavailable:
                self.writeback[:0] = jobs[i:]
                raise
            if self.unsaved.get(job.id) is job:
                del self.unsaved[job.id]

    async def _save_alone(self, job: Job) -> None:
        try:
            await self.store.save_jobs([job])
            return
        except StorageUnavailable:
            raise
        except Exception as exc:
            log.warning("job %s cannot be stored (%s); storing it as failed", job.id, exc)
            _make_storable(job, exc)
        try:
            await self.store.save_jobs([job])
        except StorageUnavailable:
            raise
        except Exception:
            log.exception("job %s cannot be stored at all; dropped", job.id)

    async def spill(self, vid: int) -> None:
        """Move the version's waiting lane jobs into the store's queue (durable from here).
        One that cannot be stored fails alone; on a storage fault the rest wait in the lane."""
        jobs = list(self.backlog.lane.pop(vid, ()))
        if not jobs:
            return
        await self._save_queued(vid, jobs)
        for job in jobs:
            if job.durable:
                self.unsaved.pop(job.id, None)

    async def _save_queued(self, vid: int, jobs: list[Job]) -> None:
        for job in jobs:
            job.durable = True
        try:
            await self.store.save_jobs(jobs)
            return
        except StorageUnavailable:
            self._back_to_lane(vid, jobs)
            raise
        except Exception:
            pass
        for i, job in enumerate(jobs):
            try:
                await self.store.save_jobs([job])
            except StorageUnavailable:
                self._back_to_lane(vid, jobs[i:])
                raise
            except Exception as exc:
                job.durable = False  # ends in memory, written as failed by the write-back
                error = not_stored("input", exc)
                self.announce(
                    self.end_unsaved(job, JobStatus.FAILED, self.clock.time(), error=error)
                )

    def _back_to_lane(self, vid: int, jobs: list[Job]) -> None:
        for job in jobs:
            job.durable = False
        self.backlog.lane[vid].extendleft(reversed(jobs))
