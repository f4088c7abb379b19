"""The scheduler: reconciles each version's workers with the autoscaler's decision, hands queued
jobs to free worker slots fairly, enforces timeouts, and reacts to workers that die.

One asyncio task runs `tick()` whenever something changed (a job arrived, a worker became free)
and at least every `tick_interval_s`. Each worker has its own task that reads its frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from coldbrew.backends.base import Backend, WorkerLaunch
from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control import fairshare
from coldbrew.control.autoscaler import Observation, ScalerState, WorkerView, decide
from coldbrew.control.frames import FrameGuard, JobLogLimits
from coldbrew.control.poison import PoisonSafety
from coldbrew.control.queues import QueueLedger
from coldbrew.control.warmth import TrafficProfile, prewarm_workers, scheduled_min_workers
from coldbrew.control.workers import (
    InFlight,
    JobStream,
    ManagedWorker,
    WorkerState,
    describe_exit,
)
from coldbrew.errors import (
    JobTimedOut,
    NotFound,
    SetupFailed,
    StorageUnavailable,
    WorkerCrashed,
    job_error,
)
from coldbrew.metering.meter import WorkerMeter
from coldbrew.metering.report import job_cost_usd
from coldbrew.observe.stats import WorkerSamples
from coldbrew.sdk.spec import DeploymentSpec
from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, QueueStat, UsageKind, Version

log = logging.getLogger("coldbrew.scheduler")

FinalListener = Callable[[Job], None]

_METER_FLUSH_S = 5.0
_MAX_STREAMS = 10_000
_BUCKET_S = 300  # traffic history resolution for prewarming
_PROFILE_REFRESH_S = 60.0
_PURGE_EVERY_S = 60.0


class Scheduler(PoisonSafety):
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
        # (account, endpoint name) -> the endpoint's secrets, from memory: no store call per launch
        self._endpoint_env = endpoint_env or (lambda account, endpoint: {})
        self.backend = backend
        self.clock = clock
        self.settings = settings
        self.workers: dict[str, ManagedWorker] = {}
        self._versions: dict[int, tuple[Version, DeploymentSpec]] = {}
        self._current: set[int] = set()
        self._scaler: dict[int, ScalerState] = {}
        self._backoff: dict[int, tuple[float, float]] = {}  # version -> (until, last delay)
        self._waiters: dict[str, list[asyncio.Future[Job]]] = {}
        self._listeners: list[FinalListener] = []
        self._running: Counter[str] = Counter()  # running jobs per account
        self._logs: list[tuple[str, float, str, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._rotation = 0
        self._store_queued: dict[int, int] = {}  # the store's queue per version after a tick
        self._profiles: dict[int, tuple[float, TrafficProfile]] = {}
        self._streams: dict[str, JobStream] = {}
        self._batch_full: dict[int, bool] = {}  # version -> was its last batch full
        self._batch_hold: dict[int, float] = {}  # version -> until when a short batch waits
        self._last_flush = 0.0
        self._last_purge = 0.0
        self._arrivals: Counter[tuple[int, int, int]] = Counter()
        self._maybe_queued: set[int] = set()  # versions whose store queue may hold jobs
        self._queued_meanwhile: set[int] = set()
        # the sync lane: /runsync jobs that found a warm worker, kept in memory until final
        self._sync: defaultdict[int, deque[Job]] = defaultdict(deque)  # version -> waiting
        self._unsaved: dict[str, Job] = {}  # every in-memory job by id, until written
        self._writeback: list[Job] = []  # final in-memory jobs, written with the next flush
        self.generation = 0  # bumped whenever endpoints or their current versions change
        self.samples = WorkerSamples()  # workers by state over time, for the dashboard
        # fair sharing: queue limits and weights per account, untrusted frames, log caps
        self.queues = QueueLedger(settings.account_max_queued_jobs)
        self._frames = FrameGuard()
        # hardware -> account -> when it last held a slot (monotonic): whose turn a slot is
        self._last_held: dict[str, dict[str, float]] = {}
        self._log_limits = JobLogLimits(settings.job_log_max_bytes, settings.job_log_lines_per_s)
        self._init_poison_safety()

    # lifecycle
    async def start(self) -> None:
        """Recover jobs a previous run left IN_PROGRESS, then start the control loop."""
        await self.refresh_endpoints()
        self.queues.load(await self.store.list_accounts())
        await self._recover()
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop, then every worker (running jobs get the grace period), then flush."""
        if self._loop_task is not None:
            self._stopping = True
            self._wake.set()
            await self._loop_task
        for worker in list(self.workers.values()):
            await self._stop_worker(worker, "the server is shutting down")
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.worker_stop_grace_s)
            for worker in self.workers.values():
                if worker.handle is not None:
                    worker.handle.kill()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        waiting = [job for queue in self._sync.values() for job in queue]
        for job in waiting:  # never started: they run after the restart
            job.status, job.durable = JobStatus.IN_QUEUE, True
        self._writeback.extend(waiting)  # written with the flush, a bad one alone
        await self._flush(force=True)
        if self._writeback:
            log.error(
                "%d jobs could not be written at shutdown: %s",
                len(self._writeback),
                self.store.fault,
            )
        await self.backend.close()

    def add_final_listener(self, listener: FinalListener) -> None:
        """Call `listener(job)` whenever a job reaches a final state."""
        self._listeners.append(listener)

    def notify(self) -> None:
        """Something changed (a job was queued): run a tick soon."""
        self._wake.set()

    async def dispatch_now(self, job: Job) -> bool:
        """Hand a job just queued straight to a free slot of its version, without waiting for
        the next tick; False (and a tick soon) when that would jump the queue, pass the account
        cap, or no worker is free.

        The job is already in the store, so this changes when it starts, never what is durable.
        """
        cached = self._versions.get(job.version_id)
        if (
            cached is None
            or job.version_id in self._maybe_queued
            or self._running[job.account] >= self.settings.account_concurrency_cap
        ):
            return self._queued(job)
        spec = cached[1]
        if spec.batch is not None and self._batch_full.get(job.version_id):
            return self._queued(job)  # a busy batched endpoint: let the window gather a batch
        worker = self._free_worker(job.version_id, whole=spec.batch is not None)
        if worker is None:
            return self._queued(job)
        claimed = await self.store.claim_job(job.id, worker.id, self.clock.time())
        if claimed is None or not await self._still_free(worker, [claimed], spec.batch is not None):
            return self._queued(job)
        if spec.batch is not None:
            await self._assign_batch(worker, [claimed], spec.batch.max_size)
        else:
            await self._assign(worker, claimed)
        return True

    def _queued(self, job: Job) -> bool:
        self.queues.added(job.account)
        self.mark_queued(job.version_id)
        return False

    def admit(self, account: str) -> None:
        """Refuse a new job of `account` (`QueueFull`, a 429) when its queue is at its limit:
        the store's queue as of the last tick, jobs queued since, and the sync lane's."""
        waiting = 0
        for vid, queue in self._sync.items():
            cached = self._versions.get(vid)
            if queue and cached is not None and cached[0].account == account:
                waiting += len(queue)
        self.queues.check(account, waiting)

    def mark_queued(self, version_id: int) -> None:
        """The version has jobs in the store's queue: the sync lane stops taking its jobs (and
        spills those it holds into the store at the next tick) so one FIFO order holds."""
        self._maybe_queued.add(version_id)
        self._queued_meanwhile.add(version_id)
        self.notify()

    async def _spill(self, vid: int) -> None:
        """Move the version's waiting sync-lane jobs into the store's queue (by created_at)."""
        waiting = list(self._sync.pop(vid, ()))
        if waiting:
            await self._save_queued(vid, waiting)
        for job in waiting:
            if job.durable:
                self._unsaved.pop(job.id, None)

    async def run_sync(self, job: Job) -> asyncio.Future[Job] | None:
        """Take a /runsync job into the sync lane: while a worker of its version is up and
        nothing waits in the store ahead of it, the job lives in memory only and is written once,
        final, with the next flush. Returns a future resolved with the final job, or None: then
        the caller queues the job durably (cold start, queue, webhook).
        """
        vid = job.version_id
        if job.webhook_url or vid not in self._versions or vid in self._maybe_queued:
            return None
        if not any(
            w.version.id == vid and w.state in (WorkerState.IDLE, WorkerState.BUSY)
            for w in self.workers.values()
        ):
            return None
        job.durable = False
        future = self.watch(job.id)
        self._unsaved[job.id] = job
        self._sync[vid].append(job)
        self.record_arrival(job)
        await self._pump(vid)
        return future

    async def persist(self, job: Job) -> Job:
        """Write an in-memory job to the store now (its /runsync wait ran out: the caller gets
        its id to poll), after which it is an ordinary durable job."""
        if job.durable:
            return job
        queue = self._sync.get(job.version_id)
        if queue is not None and any(j is job for j in queue):
            queue.remove(job)
            job.status = JobStatus.IN_QUEUE
            self._maybe_queued.add(job.version_id)
            self.notify()
        job.durable = True
        self._writeback = [j for j in self._writeback if j is not job]
        await self.store.save_jobs([job])
        self._unsaved.pop(job.id, None)
        return job

    async def find_job(self, job_id: str, account: str | None = None) -> Job | None:
        """The job (the account's, when given), from memory (sync lane, not yet written) or
        the store."""
        job = self._unsaved.get(job_id)
        if job is not None:
            return job if account is None or job.account == account else None
        return await self.store.get_job(job_id, account)

    async def _pump(self, vid: int) -> None:
        """Start the version's sync-lane jobs on free slots (batched versions: as batches)."""
        queue = self._sync.get(vid)
        cached = self._versions.get(vid)
        if not queue or cached is None:
            return
        version, spec = cached
        while queue:
            room = self.settings.account_concurrency_cap - self._running[version.account]
            worker = self._free_worker(vid, whole=spec.batch is not None)
            if room <= 0 or worker is None:
                return
            if spec.batch is None:
                job = queue.popleft()
                self._start(job, worker)
                await self._assign(worker, job)
                continue
            size = min(spec.batch.max_size, room)
            if self._held(vid, spec, len(queue), size):
                return
            jobs = [queue.popleft() for _ in range(min(size, len(queue)))]
            for job in jobs:
                self._start(job, worker)
            await self._assign_batch(worker, jobs, spec.batch.max_size)

    def _start(self, job: Job, worker: ManagedWorker) -> None:
        job.status, job.worker_id = JobStatus.IN_PROGRESS, worker.id
        job.attempts += 1
        job.started_at = self.clock.time()

    def _end_unsaved(
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
        job.status, job.output, job.error = status, output, error
        job.finished_at, job.cost_usd = now, cost_usd
        self._writeback.append(job)
        return job

    async def _end(
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
            return self._end_unsaved(
                job, status, now, output=output, error=error, cost_usd=cost_usd
            )
        return await self.store.finish(
            job.id, status, now, output=output, error=error, cost_usd=cost_usd
        )

    def _held(self, vid: int, spec: DeploymentSpec, queued: int, size: int) -> bool:
        """Whether a short batch waits for more jobs: only when the last batch was full (a busy
        endpoint), for at most `max_wait_ms`; a lone job on a quiet endpoint goes at once."""
        assert spec.batch is not None
        now = self.clock.monotonic()
        if queued < size and self._batch_full.get(vid) and spec.batch.max_wait_ms > 0:
            until = self._batch_hold.get(vid)
            if until is None:
                until = self._batch_hold[vid] = now + spec.batch.max_wait_ms / 1000
                asyncio.get_running_loop().call_later(until - now, self.notify)
            if now < until:
                return True
        self._batch_hold.pop(vid, None)
        return False

    def _free_worker(self, version_id: int, whole: bool = False) -> ManagedWorker | None:
        """A worker of the version with a free slot (`whole`: with nothing running)."""
        for worker in self.workers.values():
            if worker.version.id != version_id:
                continue
            if (worker.state is WorkerState.IDLE) if whole else worker.free_slots > 0:
                return worker
        return None

    async def refresh_endpoints(self) -> None:
        """Reload which version is current per endpoint (after a deploy or delete)."""
        endpoints = await self.store.list_endpoints(None)
        self.generation += 1
        self._current = {e.current_version_id for e in endpoints}
        launches = []
        for vid in sorted(self._current):
            version, spec = await self._version(vid)
            launches.append(self._launch_spec(version, spec, "template"))
        await self.backend.prepare(launches)
        self.notify()

    # job waiting and control, used by the gateway
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

    async def cancel(self, job_id: str, account: str) -> Job:
        """Cancel a queued or running job; a worker running it alone is replaced."""
        unsaved = self._unsaved.get(job_id)
        if unsaved is not None and unsaved.account == account:
            if unsaved.status.final:  # ended, waiting for the storage to take it
                return unsaved
            await self.persist(unsaved)  # from here it is an ordinary stored job
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
            self._release(job_id, kill_reason="its job was cancelled")
        if final is None:  # it finished meanwhile
            return await self.cancel(job_id, account)
        self._finalized(final)
        return final

    async def purge_queue(self, endpoint_id: int) -> int:
        """Cancel every queued job of the endpoint, in the store and in the sync lane."""
        now = self.clock.time()
        jobs = await self.store.purge_queue(endpoint_id, now)
        for vid in [v for v, queue in self._sync.items() if queue]:
            cached = self._versions.get(vid)
            if cached is not None and cached[0].endpoint_id == endpoint_id:
                jobs += [
                    self._end_unsaved(j, JobStatus.CANCELLED, now) for j in self._sync.pop(vid)
                ]
        for job in jobs:
            self._finalized(job)
        return len(jobs)

    async def delete_endpoint(self, account: str, name: str) -> None:
        """Remove the endpoint, cancel its queue, and drain its workers."""
        endpoint = await self.store.get_endpoint(account, name)
        if endpoint is None:
            raise NotFound(f"no endpoint {name!r}", hint="`coldbrew endpoints` lists yours")
        await self.purge_queue(endpoint.id)
        await self.store.delete_endpoint(account, name, self.clock.time())
        for worker in list(self.workers.values()):
            if worker.version.endpoint_id == endpoint.id:
                await self._stop_worker(worker, "its endpoint was deleted")
        await self.refresh_endpoints()

    def record_arrival(self, job: Job) -> None:
        """Count the job in its endpoint's traffic history (what `prewarm="auto"` learns from);
        counts are written with the next flush, not one write per request."""
        day, second = divmod(int(job.created_at), 86_400)
        self._arrivals[(job.endpoint_id, day, second // _BUCKET_S)] += 1
        cached = self._profiles.get(job.endpoint_id)
        if cached is not None:
            cached[1].record(job.created_at)

    async def _floor(self, version: Version, spec: DeploymentSpec, wall: float) -> int:
        """Workers the version's warm windows and learned traffic ask for at `wall`."""
        windows = [(w.cron, w.min_workers, w.timezone) for w in spec.warm_schedule]
        floor = scheduled_min_workers(windows, wall) if windows else 0
        if spec.prewarm == "auto":
            profile = await self._profile(version.endpoint_id)
            floor = max(floor, prewarm_workers(profile, wall, spec.prewarm_lead_s, 1.0))
        return floor

    async def _profile(self, endpoint_id: int) -> TrafficProfile:
        now = self.clock.monotonic()
        cached = self._profiles.get(endpoint_id)
        if cached is None or now - cached[0] > _PROFILE_REFRESH_S:
            profile = TrafficProfile(bucket_s=_BUCKET_S)
            today = int(self.clock.time() // 86_400)
            for day, bucket, count in await self.store.traffic(endpoint_id, today - profile.days):
                profile.counts[(day, bucket)] = count
            cached = (now, profile)
            self._profiles[endpoint_id] = cached
        return cached[1]

    def queue_lengths(self) -> dict[tuple[str, str], int]:
        """Queued jobs per (account, endpoint): the store's as the last tick left it, the sync
        lane's now."""
        lengths: Counter[tuple[str, str]] = Counter()
        queued = Counter(self._store_queued)
        queued.update({vid: len(queue) for vid, queue in self._sync.items() if queue})
        for vid, count in queued.items():
            cached = self._versions.get(vid)
            if cached is not None:
                lengths[(cached[0].account, cached[0].endpoint)] += count
        return dict(lengths)

    def known_accounts(self) -> set[str]:
        return {version.account for version, _ in self._versions.values()}

    async def flush_usage(self) -> None:
        """Write every running worker's seconds so far, so reports include the current minute."""
        await self._flush(force=True)

    def worker_counts(self, endpoint_id: int) -> dict[str, int]:
        """Workers of the endpoint (all versions) by state: idle, running (busy), starting."""
        counts = {"idle": 0, "running": 0, "starting": 0}
        for worker in self.workers.values():
            if worker.version.endpoint_id != endpoint_id:
                continue
            if worker.state is WorkerState.IDLE:
                counts["idle"] += 1
            elif worker.state is WorkerState.BUSY:
                counts["running"] += 1
            elif worker.state in (WorkerState.STARTING, WorkerState.LOADING):
                counts["starting"] += 1
        return counts

    def state_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Workers by state (idle, running, starting) per (account, endpoint)."""
        names = {WorkerState.IDLE: "idle", WorkerState.BUSY: "running"}
        names |= {WorkerState.STARTING: "starting", WorkerState.LOADING: "starting"}
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for worker in self.workers.values():
            state = names.get(worker.state)
            if state is not None:
                key = (worker.version.account, worker.version.endpoint)
                per_state = counts.setdefault(key, {})
                per_state[state] = per_state.get(state, 0) + 1
        return counts

    # the control loop
    async def _run(self) -> None:
        while not self._stopping:
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
        """One reconciliation: scale, dispatch, time out, flush."""
        now = self.clock.monotonic()
        if not await self._storage_ok():
            return  # the storage is down: workers keep running, results wait in memory
        self._queued_meanwhile = set()  # _queued() adds here too while this tick runs
        for vid in [v for v, queue in self._sync.items() if queue and v in self._maybe_queued]:
            await self._spill(vid)
        stats = await self.store.queue_stats()
        # after the read: store calls run on the store thread in order, so every job committed
        # before the read has had its `added()` (its continuation ran before this one)
        self.queues.tick_started()
        both = dict(stats)
        for vid, queue in self._sync.items():  # the sync lane's waiting jobs count as queued
            if queue:
                stored = stats.get(vid)
                both[vid] = QueueStat(
                    queued=len(queue) + (stored.queued if stored else 0),
                    oldest_created_at=min(
                        queue[0].created_at,
                        stored.oldest_created_at if stored else queue[0].created_at,
                    ),
                )
        await self._scale(both, now)
        await self._dispatch(stats)
        for vid in [v for v, queue in self._sync.items() if queue]:
            await self._pump(vid)
        await self._expire(now)
        await self._flush()
        self.samples.record(self.clock.time(), self.state_counts())
        if now - self._last_purge >= _PURGE_EVERY_S:
            self._last_purge = now
            await self.store.purge_expired(self.clock.time())

    async def _version(self, version_id: int) -> tuple[Version, DeploymentSpec]:
        if version_id not in self._versions:
            version = await self.store.get_version(version_id)
            self._versions[version_id] = (version, DeploymentSpec(**version.spec))
        return self._versions[version_id]

    async def _scale(self, stats: dict[int, QueueStat], now: float) -> None:
        version_ids = set(stats) | {w.version.id for w in self.workers.values() if w.live}
        for vid in self._current:
            spec = (await self._version(vid))[1]
            if spec.min_workers > 0 or spec.warm_schedule or spec.prewarm == "auto":
                version_ids.add(vid)
        wall = self.clock.time()
        wants: dict[int, int] = {}  # workers to start per version, placed fairly below
        for vid in sorted(version_ids):
            version, spec = await self._version(vid)
            live = [w for w in self.workers.values() if w.version.id == vid and w.live]
            stat = stats.get(vid)
            obs = Observation(
                now=now,
                queued=stat.queued if stat else 0,
                running=sum(len(w.jobs) for w in live),
                oldest_queued_age_s=max(0.0, wall - stat.oldest_created_at) if stat else 0.0,
                workers=tuple(
                    WorkerView(
                        w.id,
                        w.state in (WorkerState.IDLE, WorkerState.BUSY),
                        len(w.jobs),
                        w.idle_since,
                    )
                    for w in live
                ),
                retired=vid not in self._current,
                floor_workers=await self._floor(version, spec, wall),
            )
            # a batching worker takes up to batch.max_size jobs at once
            policy_spec = (
                spec.model_copy(update={"concurrency": spec.batch.max_size}) if spec.batch else spec
            )
            decision, self._scaler[vid] = decide(
                obs, policy_spec, self._scaler.get(vid, ScalerState())
            )
            for worker_id in decision.stop:
                await self._stop_worker(self.workers[worker_id], "idle past its keep-warm window")
            if decision.start and self._backoff.get(vid, (0.0, 0.0))[0] > now:
                continue  # setup failed recently: wait before trying again
            if decision.start:
                wants[vid] = decision.start
        for hardware in sorted({self._versions[vid][1].hardware for vid in wants}):
            await self._place(hardware, {v: n for v, n in wants.items() if self._hw(v) == hardware})

    def _hw(self, version_id: int) -> str:
        return self._versions[version_id][1].hardware

    async def _place(self, hardware: str, wants: dict[int, int]) -> None:
        """Start the wanted workers on free `hardware` slots, account by account in fair-share
        order (`control/fairshare.py`); when none is free, free one: an idle worker, or a busy
        one of an account above its share (it finishes its job first)."""
        holders = [w for w in self.workers.values() if w.hardware == hardware]
        live = [w for w in holders if w.live]
        held = Counter(w.version.account for w in live)
        last_held = self._last_held.setdefault(hardware, {})
        last_held.update(dict.fromkeys(held, self.clock.monotonic()))
        demand = Counter(held)
        for vid, n in wants.items():
            demand[self._versions[vid][0].account] += n
        weights = self.queues.weights
        shares = fairshare.fair_shares(
            self.settings.hardware_slots.get(hardware, 0), demand, weights, held, last_held
        )
        free = self.settings.hardware_slots.get(hardware, 0) - len(holders)
        while wants:
            account = fairshare.next_claimant(
                held, {self._versions[v][0].account for v in wants}, weights, shares
            )
            vid = min(v for v in wants if self._versions[v][0].account == account)
            if free <= 0:
                await self._free_slot(holders, vid, held, shares)
                return
            version, spec = self._versions[vid]
            self._launch(version, spec)
            free -= 1
            held[version.account] += 1
            wants[vid] -= 1
            if wants[vid] <= 0:
                del wants[vid]

    async def _free_slot(
        self,
        holders: list[ManagedWorker],
        version_id: int,
        held: Counter[str],
        shares: dict[str, int],
    ) -> None:
        """Start freeing a slot for `version_id` (unless one is already being freed)."""
        if any(
            w.state is WorkerState.DRAINING and (w.stop_reason or "").startswith("evicted")
            for w in holders
        ):
            return  # a slot is already being freed; wait for it
        per_version = Counter(w.version.id for w in holders if w.live)
        views = [
            fairshare.Holder(
                id=w.id,
                account=w.version.account,
                version_id=w.version.id,
                idle=w.state is WorkerState.IDLE,
                active_jobs=len(w.jobs),
                last_used=w.last_used,
                spare=w.version.id not in self._current
                or per_version[w.version.id] > w.spec.min_workers,
                fresh=not w.served,
            )
            for w in holders
            if w.live
        ]
        account = self._versions[version_id][0].account
        victim = fairshare.pick_victim(views, account, version_id, held, shares)
        if victim is None:
            return
        worker = self.workers[victim.id]
        reason = "evicted to free a slot for another endpoint"
        if victim.account != account:
            reason = (
                f"evicted to give account {account!r} its fair share of {worker.hardware} slots"
            )
        await self._stop_worker(worker, reason)

    def _launch(self, version: Version, spec: DeploymentSpec) -> None:
        worker_id = f"w-{uuid.uuid4().hex[:12]}"
        meter = WorkerMeter(
            worker_id=worker_id,
            account=version.account,
            endpoint=version.endpoint,
            version_id=version.id,
            hardware=spec.hardware,
            kind=UsageKind.COLD_START,
            since=self.clock.time(),
        )
        worker = ManagedWorker(
            id=worker_id,
            version=version,
            spec=spec,
            state=WorkerState.STARTING,
            spawned_at=self.clock.monotonic(),
            meter=meter,
        )
        self.workers[worker_id] = worker
        task = asyncio.create_task(self._run_worker(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _launch_spec(self, version: Version, spec: DeploymentSpec, worker_id: str) -> WorkerLaunch:
        return WorkerLaunch(
            worker_id=worker_id,
            artifact_dir=self.settings.artifact_dir(version.account, version.artifact_sha),
            module=version.module,
            class_name=version.class_name,
            concurrency=spec.concurrency,
            hardware=spec.hardware,
            log_path=self.settings.logs_dir / "workers" / f"{worker_id}.log",
            # GPU workers initialise CUDA themselves: their template only imports.
            snapshot=spec.snapshot and spec.hardware == "cpu",
            preload=spec.preload,
            env=self._endpoint_env(version.account, version.endpoint),
            account=version.account,
            memory_mb=spec.memory_mb,
            network=spec.network,
        )

    async def _run_worker(self, worker: ManagedWorker) -> None:
        launch = self._launch_spec(worker.version, worker.spec, worker.id)
        code = -1
        try:
            worker.handle = await self.backend.start(launch)
            if worker.state is WorkerState.DRAINING:
                worker.handle.kill()
            else:
                worker.state = WorkerState.LOADING
            while (frame := await worker.handle.recv()) is not None:
                await self._on_frame(worker, frame)
            code = await worker.handle.wait()
        except Exception as exc:
            log.exception("worker %s failed", worker.id, extra={"worker": worker.id})
            if worker.ready_wall is None and worker.stop_reason is None:
                # counts as a failed start: back off instead of relaunching every tick
                worker.setup_error = {"type": type(exc).__name__, "message": str(exc)}
            else:
                worker.stop_reason = worker.stop_reason or f"the worker could not run: {exc}"
            if worker.handle is not None:
                worker.handle.kill()
                code = await worker.handle.wait()
        await self._on_exit(worker, code)
        self._frames.forget(worker.id)

    async def _on_frame(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        """File one frame from the worker: only about its own running jobs, in the documented
        shape (`control/frames.py`); anything else is dropped and logged, never raised."""
        if not self._frames.admit(
            worker.id, worker.version.endpoint, frame, worker.jobs, self.clock.monotonic()
        ):
            return
        kind = frame["t"]
        if kind == "log":
            self._on_log(frame)
        elif kind == "chunk":
            if self._kept_chunk(frame):
                await self._stream(frame["id"]).add(frame["output"])
        elif kind == "done":
            await self._on_done(worker, self._storable_done(frame))
        elif kind == "ready" and worker.ready_wall is None:
            await self._send_limits(worker)
            self._on_ready(worker, frame)
        elif kind == "setup_failed":
            worker.setup_error = frame["error"]

    def _on_log(self, frame: dict[str, Any]) -> None:
        """Keep a log line within the job's caps (bytes in all, lines per second)."""
        line = self._log_limits.admit(frame["id"], frame["line"], self.clock.monotonic())
        if line is not None:
            self._logs.append((frame["id"], frame["ts"], frame["stream"], line))

    async def _send_limits(self, worker: ManagedWorker) -> None:
        """Tell a worker that just became ready the log caps its print capture applies (sent
        before its first job, so the job runs under them)."""
        limits = self._log_limits
        frame = {"t": "limits", "log_max_bytes": limits.max_bytes}
        frame["log_lines_per_s"] = limits.lines_per_s
        if worker.handle is not None:
            await self._send(worker, frame)

    def _on_ready(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        total_s = self.clock.monotonic() - worker.spawned_at
        import_s, setup_s = float(frame["import_s"]), float(frame["setup_s"])
        if "fork_s" in frame:  # forked from a template that had already imported (and set up)
            worker.cold_start_detail = {
                "forked": True,
                "forkMs": round(float(frame["fork_s"]) * 1000, 2),
                "setupMs": round(setup_s * 1000, 2),
                "totalMs": round(total_s * 1000, 2),
            }
        else:
            worker.cold_start_detail = {
                "forked": False,
                "processStartMs": round(max(0.0, total_s - import_s - setup_s) * 1000, 1),
                "importMs": round(import_s * 1000, 1),
                "setupMs": round(setup_s * 1000, 1),
                "totalMs": round(total_s * 1000, 1),
            }
        worker.ready_wall = self.clock.time()
        worker.cold_slots = worker.spec.concurrency
        worker.meter.switch(UsageKind.IDLE, worker.ready_wall)
        worker.idle_since = worker.last_used = self.clock.monotonic()
        self._backoff.pop(worker.version.id, None)
        if worker.state is WorkerState.LOADING:
            worker.state = WorkerState.IDLE
        self.notify()

    async def _on_done(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        inflight = worker.jobs.pop(frame["id"], None)
        if inflight is None:
            return  # timed out or cancelled meanwhile; its outcome is already recorded
        worker.served = True
        self._running[inflight.job.account] -= 1
        now = self.clock.time()
        execution_s = now - (inflight.job.started_at or now)
        price = self.settings.prices_per_hour_usd.get(worker.hardware, 0.0)
        # a job in a batch pays its share of the batch's time: the batch the gateway sent, not
        # the worker's `share`, which tenant code could inflate to cut its bill
        cost = job_cost_usd(execution_s, price) / inflight.share
        await self._flush_logs()
        error = frame.get("error")
        output = frame.get("output")
        if frame.get("streamed"):
            output = list(self._stream(inflight.job.id).chunks)
        final = await self._end_safely(
            inflight.job,
            JobStatus.FAILED if error else JobStatus.COMPLETED,
            now,
            output=output,
            error=error,
            cost_usd=cost,
        )
        if final is not None:
            self._finalized(final)
        self._mark_idle_if_free(worker)
        capped = self._running[worker.version.account] + 1 >= self.settings.account_concurrency_cap
        if worker.version.id in self._maybe_queued or capped:
            self.notify()  # the store's queue goes first; capped jobs of other endpoints may go
        if worker.version.id not in self._maybe_queued:
            await self._pump(worker.version.id)

    def _mark_idle_if_free(self, worker: ManagedWorker) -> None:
        worker.last_used = self.clock.monotonic()
        if worker.jobs or worker.state is not WorkerState.BUSY:
            return
        worker.state = WorkerState.IDLE
        worker.idle_since = worker.last_used
        worker.meter.switch(UsageKind.IDLE, self.clock.time())

    async def _on_exit(self, worker: ManagedWorker, code: int) -> None:
        worker.state = WorkerState.STOPPED
        self.workers.pop(worker.id, None)  # first: the slot is free whatever fails below
        worker.meter.switch(None, self.clock.time())
        await self._write_usage(worker.meter.drain(self.clock.time()))
        await self._flush_logs()
        # a sandbox limit that killed it ("exceeded its memory limit") says more than the signal
        limit = getattr(worker.handle, "exit_reason", None)
        reason = describe_exit(code, worker.stop_reason or limit)
        if worker.ready_wall is None and worker.stop_reason is None:
            try:
                await self._setup_failed(worker, reason)
            except Exception:
                log.exception("could not fail the queued jobs of %s", worker.version.endpoint)
        for inflight in reversed(list(worker.jobs.values())):  # retries keep their order
            self._running[inflight.job.account] -= 1
            await self._lose_safely(inflight.job, reason)
        worker.jobs.clear()
        self.notify()

    async def _worker_lost(self, job: Job, reason: str) -> None:
        """Retry a job whose worker died, or fail it once its attempts are used up."""
        if not job.durable and job.attempts < job.max_attempts:
            job.status, job.worker_id = JobStatus.IN_QUEUE, None
            self._sync[job.version_id].appendleft(job)  # its caller still waits: first in line
            log.warning("job %s: %s; retrying (attempt %d)", job.id, reason, job.attempts + 1)
            self.notify()
            return
        if job.durable and job.attempts < job.max_attempts and await self.store.requeue(job.id):
            self.mark_queued(job.version_id)
            log.warning(
                "job %s: %s; retrying (attempt %d)",
                job.id,
                reason,
                job.attempts + 1,
                extra={"job": job.id, "worker": job.worker_id, "endpoint": job.endpoint},
            )
            return
        error = job_error(
            WorkerCrashed,
            f"the worker died while running the job: {reason} "
            f"(attempt {job.attempts} of {job.max_attempts})",
            hint="see the worker log; raise retries in @app.model if the crash is transient",
        )
        final = await self._end(job, JobStatus.FAILED, self.clock.time(), error=error)
        if final is not None:
            self._finalized(final)

    async def _setup_failed(self, worker: ManagedWorker, reason: str) -> None:
        """Back off before the next start; fail the version's waiting jobs with setup's
        traceback unless another worker of the version is up and will run them."""
        last = self._backoff.get(worker.version.id, (0.0, 0.0))[1]
        delay = min(self.settings.setup_backoff_max_s, max(self.settings.setup_backoff_s, last * 2))
        self._backoff[worker.version.id] = (self.clock.monotonic() + delay, delay)
        log.warning(
            "setup of %s failed (%s); next try in %.1f s",
            worker.version.endpoint,
            reason,
            delay,
            extra={"worker": worker.id, "endpoint": worker.version.endpoint},
        )
        healthy = any(
            w.version.id == worker.version.id and w.state in (WorkerState.IDLE, WorkerState.BUSY)
            for w in self.workers.values()
        )
        if healthy:
            return
        record = worker.setup_error or job_error(WorkerCrashed, reason)
        error = job_error(
            SetupFailed,
            f"setup of endpoint {worker.version.endpoint!r} failed: "
            f"{record.get('type')}: {record.get('message')}",
            traceback=record.get("traceback", ""),
            hint="fix the model's setup() or imports and deploy again",
        )
        for job in await self.store.fail_queued(worker.version.id, error, self.clock.time()):
            self._finalized(job)
        waiting = self._sync.pop(worker.version.id, deque())
        for job in waiting:
            self._finalized(
                self._end_unsaved(job, JobStatus.FAILED, self.clock.time(), error=error)
            )

    async def _stop_worker(self, worker: ManagedWorker, reason: str) -> None:
        """Ask a worker to finish its jobs and exit; it takes no new job from now on."""
        if worker.state in (WorkerState.DRAINING, WorkerState.STOPPED):
            return
        worker.state = WorkerState.DRAINING
        worker.stop_reason = reason
        if worker.handle is not None:
            try:
                await worker.handle.send({"t": "stop"})
            except (ConnectionError, OSError):
                worker.handle.kill()

    def _release(self, job_id: str, kill_reason: str) -> None:
        """Forget a running job the gateway ended; replace its worker if it ran nothing else."""
        for worker in self.workers.values():
            inflight = worker.jobs.pop(job_id, None)
            if inflight is None:
                continue
            self._running[inflight.job.account] -= 1
            if worker.spec.concurrency == 1 and worker.handle is not None:
                worker.state = WorkerState.DRAINING
                worker.stop_reason = kill_reason
                worker.handle.kill()
            else:
                self._mark_idle_if_free(worker)
            self.notify()
            return

    async def _dispatch(self, stats: dict[int, QueueStat]) -> None:
        """Hand queued jobs to free slots, round-robin: one job (or batch) per account per
        round, each account's endpoints taking turns, accounts capped."""
        queued = {vid: s.queued for vid, s in stats.items()}
        by_account: defaultdict[str, list[int]] = defaultdict(list)
        for vid in queued:
            by_account[(await self._version(vid))[0].account].append(vid)
        self._rotation += 1
        order = fairshare.interleave(by_account, self._rotation)
        # one tick fills the slots free when it began, no more: store calls yield to the loop,
        # so short jobs free slots while this loop runs, and refilling those here would keep
        # one tick (and the backlog's account) going until the backlog drained, while another
        # account's job queued meanwhile waited for the next tick to be placed at all. A slot
        # freed meanwhile wakes the next tick (`_on_done`), which scales before it dispatches.
        slots = self._free_at_start(queued)
        progress = True
        while progress:
            progress = False
            for account, vids in order:
                if self._running[account] >= self.settings.account_concurrency_cap:
                    continue
                for turn, vid in enumerate(vids):
                    if slots[vid] <= 0:
                        continue
                    if queued[vid] > 0 and await self._dispatch_one(vid, queued):
                        slots[vid] -= 1
                        vids.append(vids.pop(turn))  # it went: its endpoint goes last next round
                        progress = True
                        break
        # jobs queued while this tick ran were added by _queued() meanwhile
        self._store_queued = {vid: n for vid, n in queued.items() if n > 0}
        self._maybe_queued = set(self._store_queued) | self._queued_meanwhile
        per_account: Counter[str] = Counter()
        for vid, n in self._store_queued.items():
            per_account[self._versions[vid][0].account] += n
        self.queues.tick_ended(per_account)

    def _free_at_start(self, queued: dict[int, int]) -> Counter[int]:
        """Per version with queued jobs: how many jobs (batches, for a batched version) its
        workers can take now."""
        slots: Counter[int] = Counter()
        for worker in self.workers.values():
            vid = worker.version.id
            if vid in queued:
                batched = worker.spec.batch is not None
                slots[vid] += (worker.state is WorkerState.IDLE) if batched else worker.free_slots
        return slots

    async def _dispatch_one(self, vid: int, queued: dict[int, int]) -> int:
        """Claim the version's next queued job (or batch) for a free worker; how many went."""
        version, spec = await self._version(vid)
        if spec.batch is not None:
            sent = await self._dispatch_batch(version, spec, queued[vid])
            queued[vid] -= sent
            return sent
        worker = self._free_worker(vid)
        if worker is None:
            return 0
        job = await self.store.claim(vid, worker.id, self.clock.time())
        if job is None:
            queued[vid] = 0
            return 0
        if not await self._still_free(worker, [job], whole=False):
            return 0
        queued[vid] -= 1
        await self._assign(worker, job)
        return 1

    async def _dispatch_batch(self, version: Version, spec: DeploymentSpec, queued: int) -> int:
        """Send up to `batch.max_size` queued jobs to an idle worker as one batch.

        A quiet endpoint's lone job goes at once; when the last batch was full (the endpoint is
        busy), a short batch waits up to `max_wait_ms` for more to join it.
        """
        assert spec.batch is not None
        worker = self._free_worker(version.id, whole=True)
        if worker is None:
            return 0
        room = self.settings.account_concurrency_cap - self._running[version.account]
        size = min(spec.batch.max_size, room)
        if self._held(version.id, spec, queued, size):
            return 0
        jobs = await self.store.claim_many(version.id, worker.id, self.clock.time(), size)
        if not jobs or not await self._still_free(worker, jobs, whole=True):
            return 0
        await self._assign_batch(worker, jobs, spec.batch.max_size)
        return len(jobs)

    async def _send(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        assert worker.handle is not None
        try:
            await worker.handle.send(frame)
        except (ConnectionError, OSError):
            worker.handle.kill()  # the exit path retries its jobs

    async def _assign(self, worker: ManagedWorker, job: Job) -> None:
        await self._track(worker, job)
        try:
            await self._send(worker, {"t": "job", "id": job.id, "input": job.input})
        except Exception as exc:  # the input cannot be encoded: that job fails, nothing else
            await self._unsendable(worker, [job], exc)

    async def _assign_batch(self, worker: ManagedWorker, jobs: list[Job], max_size: int) -> None:
        """Send running jobs to `worker` as one batch (and remember whether it was full)."""
        self._batch_full[worker.version.id] = len(jobs) >= max_size
        for job in jobs:
            await self._track(worker, job, share=len(jobs))
        frame = {"t": "batch", "ids": [j.id for j in jobs], "inputs": [j.input for j in jobs]}
        try:
            await self._send(worker, frame)
        except Exception as exc:  # an input cannot be encoded: the batch fails, nothing else
            await self._unsendable(worker, jobs, exc)

    async def _track(self, worker: ManagedWorker, job: Job, share: int = 1) -> None:
        """Record a claimed job as running on `worker` (and whether it waited for its start)."""
        stream = self._streams.get(job.id)
        if stream is not None and (stream.closed or stream.chunks):
            del self._streams[job.id]  # a retried job streams afresh
        worker.jobs[job.id] = InFlight(job, self.clock.monotonic() + job.timeout_s, share)
        self._frames.assigned(worker.id, job.id)
        self._running[job.account] += 1
        if worker.state is WorkerState.IDLE:
            worker.state = WorkerState.BUSY
            worker.idle_since = None
            worker.meter.switch(UsageKind.BUSY, self.clock.time())
        if worker.cold_slots > 0 and worker.ready_wall and job.created_at <= worker.ready_wall:
            worker.cold_slots -= 1
            detail = dict(worker.cold_start_detail or {})
            detail["queueWaitMs"] = round(((job.started_at or 0) - job.created_at) * 1000, 1)
            job.cold_start, job.cold_start_detail = True, detail
            if job.durable:
                with contextlib.suppress(StorageUnavailable):  # a flag, not worth a stuck job
                    await self.store.mark_cold_start(job.id, detail)
        else:
            worker.cold_slots = 0

    async def _expire(self, now: float) -> None:
        """End jobs past their execution timeout and replace the workers running them."""
        for worker in list(self.workers.values()):
            for job_id, inflight in list(worker.jobs.items()):
                if inflight.deadline > now:
                    continue
                job = inflight.job
                error = job_error(
                    JobTimedOut,
                    f"the job ran past its execution timeout of {job.timeout_s:g} s",
                    hint="raise timeout_s in @app.model or policy.executionTimeout (ms)",
                )
                cost = job_cost_usd(
                    job.timeout_s, self.settings.prices_per_hour_usd.get(worker.hardware, 0.0)
                )
                final = await self._end_safely(
                    job, JobStatus.TIMED_OUT, self.clock.time(), error=error, cost_usd=cost
                )
                if final is not None:
                    self._finalized(final)
                self._release(job_id, kill_reason="replaced after a job timed out")
                # The job may be stuck in user code: the process goes, whatever its state.
                # Other jobs on the same worker (concurrency > 1) are retried elsewhere.
                if worker.handle is not None and worker.state is not WorkerState.STOPPED:
                    worker.state = WorkerState.DRAINING
                    worker.stop_reason = worker.stop_reason or "replaced after a job timed out"
                    worker.handle.kill()

    async def _recover(self) -> None:
        """Jobs IN_PROGRESS at start-up lost their worker with the previous server process."""
        for job in await self.store.in_progress():
            await self._worker_lost(job, "the server stopped while the job ran")

    def _stream(self, job_id: str) -> JobStream:
        stream = self._streams.get(job_id)
        if stream is None:
            stream = self._streams[job_id] = JobStream()
            if len(self._streams) > _MAX_STREAMS:  # forget finished ones first; outputs are stored
                oldest = next((k for k, s in self._streams.items() if s.closed), None)
                del self._streams[oldest or next(iter(self._streams))]
        return stream

    async def poll_stream(self, job: Job, wait_s: float) -> tuple[Job, list[Any]]:
        """Chunks of a streaming job not returned by an earlier poll (RunPod's /stream).

        Waits up to `wait_s` for something new while the job runs.
        """
        stream = self._stream(job.id)
        if not job.status.final and stream.delivered == len(stream.chunks):
            await stream.wait(stream.delivered, wait_s)
            job = self._unsaved.get(job.id) or await self.store.get_job(job.id) or job
            stream = self._stream(job.id)
        chunks = stream.chunks
        if job.status.final and not chunks and isinstance(job.output, list):
            chunks = job.output  # chunks from before a restart are in the stored output
        new = chunks[stream.delivered :]
        stream.delivered = len(chunks)
        return job, new

    async def stream_events(self, job: Job) -> AsyncIterator[tuple[str, Any]]:
        """Every chunk of a job from the first, then ('done', final job): for server-sent events."""
        stream = self._stream(job.id)
        sent = 0
        while True:
            while sent < len(stream.chunks):
                yield "chunk", stream.chunks[sent]
                sent += 1
            current = self._unsaved.get(job.id) or await self.store.get_job(job.id)
            if current is None or current.status.final:
                if current is not None and not stream.chunks and isinstance(current.output, list):
                    for chunk in current.output[sent:]:
                        yield "chunk", chunk
                yield "done", current
                return
            await stream.wait(sent, 1.0)

    def announce_final(self, job: Job) -> None:
        """Tell waiters and listeners (webhooks, metrics) about a job the gateway finished."""
        self._finalized(job)

    def _finalized(self, job: Job) -> None:
        self._log_limits.forget(job.id)  # its late frames are dropped: it runs nowhere
        self._deep_streams.discard(job.id)
        stream = self._streams.get(job.id)
        if stream is not None:
            stream.close()
        for future in self._waiters.pop(job.id, []):
            if not future.done():
                future.set_result(job)
        for listener in self._listeners:
            listener(job)

    async def health(self, endpoint_id: int) -> dict[str, int]:
        """The endpoint's job counts by status, the sync lane's in-memory jobs included."""
        await self._write_back()
        counts = await self.store.health(endpoint_id)
        for job in self._unsaved.values():
            if job.endpoint_id == endpoint_id and not job.status.final:
                key = "inQueue" if job.status is JobStatus.IN_QUEUE else "inProgress"
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def write_back(self) -> None:
        """Write the sync lane's final jobs now (before reading jobs back in aggregate)."""
        await self._write_back()

    async def _write_back(self) -> None:
        """Write the sync lane's final jobs, many per transaction."""
        if self._writeback:
            jobs, self._writeback = self._writeback, []
            try:
                await self.store.save_jobs(jobs)
            except StorageUnavailable:
                self._writeback[:0] = jobs  # kept for the next flush
                raise
            except Exception:  # one job the store cannot hold must not wedge the others
                await self._save_one_by_one(jobs)
            for job in jobs:
                if self._unsaved.get(job.id) is job:
                    del self._unsaved[job.id]

    async def _flush(self, force: bool = False) -> None:
        with contextlib.suppress(StorageUnavailable):  # kept for the next flush
            await self._write_back()
        await self._flush_logs()
        now = self.clock.monotonic()
        if not force and now - self._last_flush < _METER_FLUSH_S:
            return
        self._last_flush = now
        wall = self.clock.time()
        await self._write_usage([row for w in self.workers.values() for row in w.meter.drain(wall)])
