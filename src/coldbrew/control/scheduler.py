"""The scheduler: one node's control loop, and the face the gateway talks to.

It wires the control roles together and owns nothing else: the job book (in-memory jobs,
waiters, ending a job), the backlog (where a waiting job is), streams, the buffered writer,
the fleet (workers), the dispatcher (jobs to slots), placement (scaling and slots) and
recovery (exits, timeouts, faults). Collaborators reach each other through callbacks (`wake`,
`on_exit`, `on_done`), never through the scheduler.

One asyncio task runs `tick()` whenever something changed (a job arrived, a worker became free)
and at least every `tick_interval_s`; a tick reads as collect → decide → act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from coldbrew.backends.base import Backend
from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control.backlog import Backlog
from coldbrew.control.dispatcher import Dispatcher
from coldbrew.control.fleet import Fleet
from coldbrew.control.frames import JobLogLimits
from coldbrew.control.jobbook import FinalListener, JobBook
from coldbrew.control.placement import Placement, Plan
from coldbrew.control.queues import QueueLedger
from coldbrew.control.recovery import Recovery
from coldbrew.control.streams import Streams
from coldbrew.control.warmth import TrafficProfile
from coldbrew.control.workers import ManagedWorker
from coldbrew.control.writer import BufferedWriter
from coldbrew.errors import NotFound, StorageUnavailable
from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, QueueStat

log = logging.getLogger("coldbrew.scheduler")

PURGE_EVERY_S = 60.0  # expired jobs are deleted from the store this often


class FindJob(Protocol):
    """`JobBook.find`: the job (the account's, when given), from memory or the store."""

    def __call__(self, job_id: str, account: str | None = None) -> Awaitable[Job | None]: ...


async def _no_split() -> set[int]:
    return set()


def _everything(_: object) -> bool:
    """One gateway alone: it owns every endpoint and every job left running is its to recover."""
    return True


class Scheduler:
    """Runs workers and jobs for every endpoint of every account on this node."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        clock: Clock,
        settings: Settings,
        endpoint_env: Callable[[str, str], dict[str, str]] | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.clock = clock
        self.settings = settings
        self.generation = 0  # bumped whenever endpoints or their current versions change
        #: the versions a traffic split gives a share (`VersionControl.live`, set by the
        #: platform); they are live like current versions: scaled, prepared, never retired
        self.live_versions: Callable[[], Awaitable[set[int]]] = _no_split
        # Several gateways (`cluster.Ownership`): only owned endpoints are scaled and dispatched
        # here; `orphaned` IN_PROGRESS jobs (an owned endpoint's, whose worker's gateway is
        # gone) are requeued; the leader purges; a local catalog change is announced.
        self.owns: Callable[[int], bool] = _everything
        self.orphaned: Callable[[Job], bool] = _everything
        self.leads: Callable[[], bool] = lambda: True
        self.on_catalog_change: Callable[[], Awaitable[None]] | None = None
        # the dashboard's worker series (`observe.stats.WorkerSamples`), which the platform
        # fills by pulling `state_counts()`; kept here only until the dashboard reads
        # `platform.samples`
        self.samples: Any = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_purge = 0.0
        wake = self.notify
        self.queues = QueueLedger(settings.account_max_queued_jobs)
        self.backlog = Backlog(self.queues, wake)
        self.book = JobBook(store, clock, self.backlog)
        self.streams = Streams(clock, self.book.find)
        limits = JobLogLimits(settings.job_log_max_bytes, settings.job_log_lines_per_s)
        profiles: dict[int, tuple[float, TrafficProfile]] = {}  # placement's, fed by the writer
        self.writer = BufferedWriter(store, clock, limits, profiles)
        self.fleet = Fleet(store, backend, clock, settings, endpoint_env)
        self.placement = Placement(self.fleet, store, clock, settings, self.queues, profiles)
        self.recovery: Recovery
        self.dispatcher = Dispatcher(
            self.book,
            self.fleet,
            self.streams,
            self.writer,
            clock,
            settings,
            wake,
            lambda job, reason: self.recovery.record_lost(job, reason),
        )
        self.recovery = Recovery(
            self.book, self.fleet, self.dispatcher, self.streams, self.writer, clock, settings, wake
        )
        self.fleet.limits_frame = self.writer.limits_frame()
        self.fleet.wake = wake
        self.fleet.on_log = self.writer.log
        self.fleet.on_chunk = self.streams.add_chunk
        self.fleet.on_done = self.dispatcher.on_done
        self.fleet.on_serving = self.dispatcher.first_job
        self.fleet.on_exit = self.recovery.on_exit
        self.book.add_final_listener(limits.ended)  # its late log frames are dropped
        self.book.add_final_listener(self.streams.close)

        # What the gateway asks that one role answers alone is that role's own method, handed
        # out here rather than wrapped (no extra call per request on the warm path).
        #: Refuse a new job of an account (`QueueFull`, a 429) when its queue is at its limit.
        self.admit: Callable[[str], None] = self.backlog.admit
        #: The version has jobs in the store's queue: the sync lane stops taking its jobs (and
        #: spills those it holds into the store at the next tick), so one FIFO order holds.
        self.mark_queued: Callable[[int], None] = self.backlog.flag
        #: Count the job in its endpoint's traffic history (what `prewarm="auto"` learns from);
        #: counts are written with the next flush, not one write per request.
        self.record_arrival: Callable[[Job], None] = self.writer.count_arrival
        #: Write an in-memory job to the store now (its /runsync wait ran out: the caller gets
        #: its id to poll), after which it is an ordinary durable job.
        self.persist: Callable[[Job], Awaitable[Job]] = self.book.persist
        #: The job (the account's, when given), from memory or the store.
        self.find_job: FindJob = self.book.find
        self.wake: Callable[[str], None] = self.book.wake  #: a stored job ended (anywhere)
        #: A future resolved with the job once it is final (register before queueing).
        self.watch: Callable[[str], asyncio.Future[Job]] = self.book.watch
        self.unwatch: Callable[[str, asyncio.Future[Job]], None] = self.book.unwatch
        #: Call `listener(job)` whenever a job reaches a final state.
        self.add_final_listener: Callable[[FinalListener], None] = self.book.add_final_listener
        #: Tell waiters and listeners (webhooks, metrics) about a job the gateway finished.
        self.announce_final: Callable[[Job], None] = self.book.announce
        #: Write the sync lane's final jobs now (before reading jobs back in aggregate).
        self.write_back: Callable[[], Awaitable[None]] = self.book.write_back
        #: Chunks of a streaming job not returned by an earlier poll (RunPod's /stream).
        self.poll_stream: Callable[[Job, float], Awaitable[tuple[Job, list[Any]]]] = (
            self.streams.poll
        )
        #: Every chunk of a job from the first, then ('done', final job): server-sent events.
        self.stream_events: Callable[[Job], AsyncIterator[tuple[str, Any]]] = self.streams.events
        #: Workers of an endpoint (all versions) by state: idle, running (busy), starting.
        self.worker_counts: Callable[[int], dict[str, int]] = self.fleet.worker_counts
        #: Workers by state (idle, running, starting) per (account, endpoint): what observe pulls.
        self.state_counts: Callable[[], dict[tuple[str, str], dict[str, int]]] = (
            self.fleet.state_counts
        )

    @property
    def workers(self) -> dict[str, ManagedWorker]:
        """Every worker of this node by id (read by metrics and tests)."""
        return self.fleet.workers

    # lifecycle
    async def start(self) -> None:
        """Recover jobs a previous run left IN_PROGRESS, then start the control loop."""
        await self.refresh_endpoints(announce=False)
        self.queues.load(await self.store.list_accounts())
        await self.recover_orphans()
        self._loop_task = asyncio.create_task(self._run())

    async def recover_orphans(self) -> None:
        """Retry (or fail) the `orphaned` IN_PROGRESS jobs: this one's previous process's."""
        await self.recovery.recover(self.orphaned)

    async def recover_orphan(self, job: Job) -> None:
        """Retry (or fail) one job whose worker went with its gateway."""
        await self.recovery.lose_safely(job, "its gateway stopped while the job ran")

    async def stop(self) -> None:
        """Stop the loop, then every worker (running jobs get the grace period), then flush."""
        if self._loop_task is not None:
            self._stopping = True
            self._wake.set()
            await self._loop_task
        await self.fleet.stop_all("the server is shutting down")
        self.book.park_for_restart()  # never started: they run after the restart
        await self._flush(force=True)
        if self.book.writeback:
            log.error(
                "%d jobs could not be written at shutdown: %s",
                len(self.book.writeback),
                self.store.fault,
            )
        await self.backend.close()

    def notify(self) -> None:
        """Something changed (a job was queued): run a tick soon."""
        self._wake.set()

    # the sync lane
    async def run_sync(self, job: Job) -> asyncio.Future[Job] | None:
        """Take a /runsync job into the sync lane: while a worker of its version is up and
        nothing waits in the store ahead of it, the job lives in memory only and is written once,
        final, with the next flush. Returns a future resolved with the final job, or None: then
        the caller queues the job durably (cold start, queue, webhook).
        """
        vid = job.version_id
        if (
            job.webhook_url
            or not self.owns(job.endpoint_id)
            or vid not in self.fleet.versions
            or vid in self.backlog.flagged
            or not self.fleet.ready(vid)
        ):
            return None
        future = self.book.take_sync(job)
        self.writer.count_arrival(job)
        await self.dispatcher.pump(vid)
        return future

    async def dispatch_now(self, job: Job) -> bool:
        """Hand a job just queued in the store straight to a free slot, or leave it queued
        (False, and a tick soon): `Dispatcher.dispatch_now`; another gateway's endpoint's job
        is left for its owner."""
        if not self.owns(job.endpoint_id):
            return self.backlog.queued_in_store(job)
        return await self.dispatcher.dispatch_now(job)

    # jobs, for the gateway
    async def cancel(self, job_id: str, account: str) -> Job:
        """Cancel a queued or running job; a worker running it alone is replaced."""
        unsaved = self.book.unsaved.get(job_id)
        if unsaved is not None and unsaved.account == account:
            if unsaved.status.final:  # ended, waiting for the storage to take it
                return unsaved
            await self.book.persist(unsaved)  # from here it is an ordinary stored job
        job = await self.store.get_job(job_id, account)
        if job is None:
            raise NotFound(f"no job {job_id!r}", hint="check the id returned by /run")
        if job.status.final:
            return job
        now = self.clock.time()
        if job.status is JobStatus.IN_QUEUE:
            final = await self.store.finish(
                job_id, JobStatus.CANCELLED, now, from_statuses=[JobStatus.IN_QUEUE]
            )
        else:
            final = await self.store.finish(job_id, JobStatus.CANCELLED, now)
            self.dispatcher.release(job_id, kill_reason="its job was cancelled")
        if final is None:  # it finished meanwhile
            return await self.cancel(job_id, account)
        self.book.announce(final)
        return final

    async def purge_queue(self, endpoint_id: int) -> int:
        """Cancel every queued job of the endpoint, in the store and in the sync lane."""
        now = self.clock.time()
        jobs = await self.store.purge_queue(endpoint_id, now)
        versions = self.fleet.versions
        lane = [
            vid
            for vid in self.backlog.lane_versions()
            if vid in versions and versions[vid][0].endpoint_id == endpoint_id
        ]
        jobs += self.book.cancel_waiting(lane, now)
        for job in jobs:
            self.book.announce(job)
        return len(jobs)

    async def delete_endpoint(self, account: str, name: str) -> None:
        """Remove the endpoint, cancel its queue, and drain its workers."""
        endpoint = await self.store.get_endpoint(account, name)
        if endpoint is None:
            raise NotFound(f"no endpoint {name!r}", hint="`coldbrew endpoints` lists yours")
        await self.purge_queue(endpoint.id)
        await self.store.delete_endpoint(account, name, self.clock.time())
        for worker in list(self.fleet.workers.values()):
            if worker.version.endpoint_id == endpoint.id:
                await self.fleet.stop_worker(worker, "its endpoint was deleted")
        await self.refresh_endpoints()

    async def refresh_endpoints(self, announce: bool = True) -> None:
        """Reload which version is current per endpoint (after a deploy or delete, or a change
        of the endpoints this gateway owns); `announce` tells the other gateways."""
        endpoints = await self.store.list_endpoints(None)
        self.generation += 1
        owned = {e.id for e in endpoints if self.owns(e.id)}
        live = {e.current_version_id for e in endpoints if e.id in owned}
        for vid in await self.live_versions():  # a split's versions, of owned endpoints
            if (await self.fleet.version(vid))[0].endpoint_id in owned:
                live.add(vid)
        await self.fleet.refresh(live)
        self.notify()
        if announce and self.on_catalog_change is not None:
            await self.on_catalog_change()

    # reads
    async def health(self, endpoint_id: int) -> dict[str, int]:
        """The endpoint's job counts by status, the sync lane's in-memory jobs included."""
        await self.book.write_back()
        counts = await self.store.health(endpoint_id)
        for key, n in self.book.memory_counts(endpoint_id).items():
            if n:
                counts[key] = counts.get(key, 0) + n
        return counts

    def queue_lengths(self) -> dict[tuple[str, str], int]:
        """Queued jobs per (account, endpoint): the store's as the last tick left it, the sync
        lane's now."""
        lengths: Counter[tuple[str, str]] = Counter()
        for vid, count in self.backlog.lengths().items():
            cached = self.fleet.versions.get(vid)
            if cached is not None:
                lengths[(cached[0].account, cached[0].endpoint)] += count
        return dict(lengths)

    def known_accounts(self) -> set[str]:
        return {version.account for version, _ in self.fleet.versions.values()}

    # buffered writes
    async def flush_usage(self) -> None:
        """Write every running worker's seconds so far, so reports include the current minute."""
        await self._flush(force=True)

    async def _flush(self, force: bool = False) -> None:
        with contextlib.suppress(StorageUnavailable):  # kept for the next flush
            await self.book.write_back()
        await self.writer.flush()
        if self.writer.usage_due(force):
            wall = self.clock.time()
            await self.writer.write_usage(
                [row for w in self.fleet.workers.values() for row in w.meter.drain(wall)]
            )

    # the control loop
    async def _run(self) -> None:
        while not self._stopping:
            # a liveness bound on the real loop, not a measured wait: a fake clock in a test
            # must not stop the loop from ticking
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.tick_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.tick()
            except StorageUnavailable:
                pass  # the store logged the fault; the next tick probes it
            except Exception:
                log.exception("scheduler tick failed")

    async def tick(self) -> None:
        """One reconciliation: collect (queues), decide (scaling, placement), act (stop and
        launch workers, dispatch, time out, flush)."""
        now = self.clock.monotonic()
        if not await self.recovery.storage_ok():
            return  # the storage is down: workers keep running, results wait in memory
        stats = await self._collect()
        plan = await self.placement.plan(self.backlog.with_lane(stats), now)
        await self._act(plan, stats, now)

    async def _collect(self) -> dict[int, QueueStat]:
        """Spill sync-lane jobs behind stored ones, then read the store's queues."""
        self.backlog.begin_tick()
        for vid in self.backlog.to_spill():
            await self.book.spill(vid)
        stats = await self.store.queue_stats()
        for vid in [
            v for v in stats if not self.owns((await self.fleet.version(v))[0].endpoint_id)
        ]:
            del stats[vid]  # another gateway's to run
        # after the read: store calls run on the store thread in order, so every job committed
        # before the read has had its `added()` (its continuation ran before this one)
        self.queues.tick_started()
        return stats

    async def _act(self, plan: Plan, stats: dict[int, QueueStat], now: float) -> None:
        for worker in plan.stop:
            await self.fleet.signal_stop(worker)
        for vid in plan.launch:
            self.fleet.launch(*self.fleet.versions[vid])
        left = await self.dispatcher.dispatch(stats)
        self.backlog.end_tick(left, self.fleet.account_of)
        for vid in self.backlog.lane_versions():
            await self.dispatcher.pump(vid)
        await self.recovery.expire(now)
        await self._flush()
        if now - self._last_purge >= PURGE_EVERY_S and self.leads():
            self._last_purge = now
            await self.store.purge_expired(self.clock.time())
