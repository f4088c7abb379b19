"""The dispatcher: hands waiting jobs to free worker slots and takes their results back.

A job just queued goes straight to a free slot (`dispatch_now`); sync-lane jobs are pumped
from memory (`pump`); each tick hands the store's queue round-robin across accounts
(`dispatch`). Every path respects the per-account concurrency cap. A batched worker holds up
to `batch_pipeline_depth` batches (the next one is sent while it computes), and a short batch
waits for its share of the recent demand (`control/batching.py`).

The cap is counted twice: `running` (this gateway's jobs, a free check first) and the account
slots (`coldbrew.store.shared.slots`: in this process, or in Redis across every gateway), one slot
taken before each claim and given back when the job leaves its worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control import fairshare
from coldbrew.control.backlog import Backlog
from coldbrew.control.batching import BatchPolicy
from coldbrew.control.fleet import Fleet
from coldbrew.control.handover import Handover
from coldbrew.control.jobbook import JobBook, move
from coldbrew.control.streams import Streams
from coldbrew.control.workers import ManagedWorker, WorkerState
from coldbrew.control.writer import BufferedWriter
from coldbrew.errors import StorageUnavailable
from coldbrew.metering.report import job_cost_usd
from coldbrew.spec import DeploymentSpec
from coldbrew.store.models import Job, JobStatus, QueueStat
from coldbrew.store.shared.slots import AccountSlots, LocalSlots

log = logging.getLogger("coldbrew.scheduler")

LostJob = Callable[[Job, str], None]


class Dispatcher(Handover):
    """Which job runs on which worker slot, and when; the running count per account."""

    def __init__(
        self,
        book: JobBook,
        fleet: Fleet,
        streams: Streams,
        writer: BufferedWriter,
        clock: Clock,
        settings: Settings,
        wake: Callable[[], None],
        lost: LostJob,
        slots: AccountSlots | None = None,
    ) -> None:
        self.book = book
        self.backlog: Backlog = book.backlog
        self.fleet = fleet
        self.store = book.store
        self.streams = streams
        self.writer = writer
        self.clock = clock
        self.settings = settings
        self.cap = settings.account_concurrency_cap
        self._wake = wake
        self._lost = lost  # a job the storage could not give back; recorded when it is back
        self.running: Counter[str] = Counter()  # running jobs per account, on this gateway
        self.slots: AccountSlots = slots or LocalSlots()  # running jobs per account, everywhere
        self._full: set[str] = set()  # accounts refused a slot in this tick's dispatch
        self.batching = BatchPolicy(fleet, clock, settings, self._look_again)
        self._pumps: set[asyncio.Task[None]] = set()
        self._rotation = 0

    # the fast paths
    async def dispatch_now(self, job: Job) -> bool:
        """Hand a job just queued in the store straight to a free slot of its version, without
        waiting for the next tick; False (and a tick soon) when that would jump the queue, pass
        the account cap, or no worker is free. This changes when it starts, never what is
        durable."""
        cached = self.fleet.versions.get(job.version_id)
        if (
            cached is None
            or job.version_id in self.backlog.flagged
            or self.running[job.account] >= self.cap
        ):
            return self.backlog.queued_in_store(job)
        spec = cached[1]
        if spec.batch is not None and self.batching.want(job.version_id, spec, 1) > 1:
            return self.backlog.queued_in_store(job)  # busy: let the window gather a batch
        worker = self.fleet.free_worker(job.version_id, whole=spec.batch is not None)
        if worker is None:
            return self.backlog.queued_in_store(job)
        slots = await self.slots.take(job.account, self.cap)
        if not slots:
            return self.backlog.queued_in_store(job)
        claimed = await self.store.claim_job(job.id, worker.id, self.clock.time())
        if claimed is None or not await self._still_free(worker, [claimed], spec.batch is not None):
            self.slots.give_back(job.account, slots)
            return self.backlog.queued_in_store(job)
        if spec.batch is not None:
            await self.assign_batch(worker, [claimed], spec.batch.max_size, slots)
        else:
            await self.assign(worker, claimed, slots[0])
        return True

    async def pump(self, vid: int) -> None:
        """Start the version's sync-lane jobs on free slots (batched versions: as batches)."""
        queue = self.backlog.lane.get(vid)
        cached = self.fleet.versions.get(vid)
        if not queue or cached is None:
            return
        version, spec = cached
        while queue:
            room = self.cap - self.running[version.account]
            worker = self.fleet.free_worker(vid, whole=spec.batch is not None)
            if room <= 0 or worker is None:
                return
            if spec.batch is None:
                slots = await self.slots.take(version.account, self.cap)
                if not slots or not queue or not self.fleet.job_room(worker):
                    self.slots.give_back(version.account, slots)
                    return
                job = queue.popleft()
                self.book.start(job, worker.id)
                await self.assign(worker, job, slots[0])
                continue
            size = min(spec.batch.max_size, room)
            if self.batching.held(vid, spec, len(queue), size, worker):
                return
            slots = await self.slots.take(version.account, self.cap, min(size, len(queue)))
            if not slots or not queue or not self.fleet.batch_room(worker):
                self.slots.give_back(version.account, slots)
                return
            jobs = [queue.popleft() for _ in range(min(len(slots), len(queue)))]
            self.slots.give_back(version.account, slots[len(jobs) :])
            for job in jobs:
                self.book.start(job, worker.id)
            await self.assign_batch(worker, jobs, spec.batch.max_size, slots)

    async def on_done(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        """A worker finished a job: record its end and cost, free the slot, fill it."""
        inflight = worker.jobs.pop(frame["id"], None)
        if inflight is None:
            return  # timed out or cancelled meanwhile; its outcome is already recorded
        frame = self.streams.storable_done(frame)
        worker.served = True
        job = inflight.job
        self.ended(inflight)
        now = self.clock.time()
        begun = inflight.begun or job.started_at or now
        # a job in a batch pays its share of the batch's time: the batch the gateway sent, not
        # the worker's `share`, which tenant code could inflate to cut its bill
        # a job on a reserved worker is covered by the reservation (billed as reserved seconds)
        cost = 0.0
        if not worker.reserved:
            cost = job_cost_usd(
                self.settings.prices_per_hour_usd,
                worker.spec.hardware,
                now - begun,
                inflight.share,
            )
        await self.writer.flush_logs()  # its log is readable once it is final
        error = frame.get("error")
        output = frame.get("output")
        if frame.get("streamed"):
            output = self.streams.chunks(job.id)
        status = JobStatus.FAILED if error else JobStatus.COMPLETED
        final = await self.book.end_safely(
            job, status, now, output=output, error=error, cost_usd=cost
        )
        if final is not None:
            self.book.announce(final)
        self.fleet.mark_idle_if_free(worker)
        vid = worker.version.id
        stored = vid in self.backlog.flagged
        if stored or self.running[worker.version.account] + 1 >= self.cap:
            self._wake()  # the store's queue goes first; capped jobs of other endpoints may go
        if not stored:
            await self.pump(vid)

    def _look_again(self, vid: int) -> None:
        """A batch's wait ended: pump a sync-lane version at once, else wake the tick."""
        if vid in self.backlog.flagged or not self.backlog.lane.get(vid):
            self._wake()
            return
        task = asyncio.get_running_loop().create_task(self.pump(vid))
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    # the tick's dispatch
    async def dispatch(self, stats: Mapping[int, QueueStat]) -> dict[int, int]:
        """Hand queued jobs to free slots, round-robin: one job (or batch) per account per
        round, each account's endpoints taking turns, accounts capped. Returns what is left
        queued per version."""
        queued = {vid: s.queued for vid, s in stats.items()}
        by_account: defaultdict[str, list[int]] = defaultdict(list)
        for vid in queued:
            by_account[(await self.fleet.version(vid))[0].account].append(vid)
        self._rotation += 1
        order = fairshare.interleave(by_account, self._rotation)
        # one tick fills the slots free when it began, no more: store calls yield to the loop,
        # so short jobs free slots while this loop runs, and refilling those here would keep
        # one tick (and the backlog's account) going until the backlog drained, while another
        # account's job queued meanwhile waited for the next tick to be placed at all. A slot
        # freed meanwhile wakes the next tick (`on_done`), which scales before it dispatches.
        slots = self._free_at_start(queued)
        self._full.clear()
        await self.slots.renew()  # every third of a lease; a no-op in one process
        progress = True
        while progress:
            progress = False
            for account, vids in order:
                if self.running[account] >= self.cap or account in self._full:
                    continue
                for turn, vid in enumerate(vids):
                    if slots[vid] <= 0 or account in self._full:
                        continue
                    if queued[vid] > 0 and await self._dispatch_one(vid, queued):
                        slots[vid] -= 1
                        vids.append(vids.pop(turn))  # it went: its endpoint goes last next round
                        progress = True
                        break
        return queued

    def _free_at_start(self, queued: Mapping[int, int]) -> Counter[int]:
        """Per version with queued jobs: how many jobs (batches, for a batched version) its
        workers can take now."""
        slots: Counter[int] = Counter()
        for worker in self.fleet.workers.values():
            vid = worker.version.id
            if vid in queued:
                if worker.spec.batch is None:
                    slots[vid] += self.fleet.job_room(worker)
                elif self.fleet.batch_room(worker):
                    slots[vid] += self.settings.batch_pipeline_depth - len(worker.batches)
        return slots

    async def first_job(self, worker: ManagedWorker) -> None:
        """Hand a worker that just became ready its version's next queued job at once: the
        cold start that launched it is waiting, and the next tick is a store read and a scaling
        pass away. More jobs, and every other version, are the tick's (woken after this)."""
        vid = worker.version.id
        if not self.backlog.in_store(vid) or worker.state is not WorkerState.IDLE:
            return
        if self.running[worker.version.account] >= self.cap:
            return
        with contextlib.suppress(StorageUnavailable):  # the tick tries again
            await self._dispatch_one(vid, {vid: max(1, self.backlog.stored.get(vid, 0))})

    async def _dispatch_one(self, vid: int, queued: dict[int, int]) -> int:
        """Claim the version's next queued job (or batch) for a free worker; how many went."""
        version, spec = await self.fleet.version(vid)
        if spec.batch is not None:
            sent = await self._dispatch_batch(vid, version.account, spec, queued[vid])
            queued[vid] -= sent
            return sent
        worker = self.fleet.free_worker(vid)
        if worker is None:
            return 0
        slots = await self._take(version.account, 1)
        if not slots:
            return 0
        job = await self.store.claim(vid, worker.id, self.clock.time())
        if job is None:
            self.slots.give_back(version.account, slots)
            queued[vid] = 0
            return 0
        if not await self._still_free(worker, [job], whole=False):
            self.slots.give_back(version.account, slots)
            return 0
        queued[vid] -= 1
        await self.assign(worker, job, slots[0])
        return 1

    async def _take(self, account: str, count: int) -> list[str]:
        """Account slots for a claim; none, and the account waits for the next tick."""
        slots = await self.slots.take(account, self.cap, count)
        if not slots:
            self._full.add(account)
        return slots

    async def _dispatch_batch(
        self, vid: int, account: str, spec: DeploymentSpec, queued: int
    ) -> int:
        """Send up to `batch.max_size` queued jobs to an idle worker as one batch."""
        assert spec.batch is not None
        worker = self.fleet.free_worker(vid, whole=True)
        if worker is None:
            return 0
        size = min(spec.batch.max_size, self.cap - self.running[account])
        if size <= 0 or self.batching.held(vid, spec, queued, size, worker):
            return 0
        slots = await self._take(account, min(size, max(1, queued)))
        if not slots:
            return 0
        jobs = await self.store.claim_many(vid, worker.id, self.clock.time(), len(slots))
        self.slots.give_back(account, slots[len(jobs) :])
        if not jobs or not await self._still_free(worker, jobs, whole=True):
            self.slots.give_back(account, slots[: len(jobs)])
            return 0
        await self.assign_batch(worker, jobs, spec.batch.max_size, slots)
        return len(jobs)

    async def _still_free(self, worker: ManagedWorker, jobs: list[Job], whole: bool) -> bool:
        """After a claim (store calls yield to the loop, so the worker may have filled up,
        started draining or died meanwhile): whether `worker` can still take `jobs`. If not,
        they go back to the store's queue as if never claimed (the attempt is given back)."""
        if self.fleet.batch_room(worker) if whole else self.fleet.job_room(worker) >= len(jobs):
            return True
        await self.unclaim(jobs)
        return False

    async def unclaim(self, jobs: list[Job]) -> None:
        """Claimed jobs that never reached a worker's `predict` go back to their queue as if
        never claimed: the attempt is given back (sync-lane jobs: first in their lane)."""
        for job in jobs:
            job.started_at = None
            job.attempts = max(0, job.attempts - 1)
        for job in reversed([j for j in jobs if not j.durable]):  # they keep their order
            self.book.requeue_sync(job)
        stored = [j for j in jobs if j.durable]
        if not stored:
            return
        for job in stored:
            move(job, JobStatus.IN_QUEUE)
            job.worker_id = None
        try:
            await self.store.save_jobs(stored)
        except StorageUnavailable:
            for job in stored:
                self._lost(job, "its worker went away before the job reached it")
        self.backlog.flag(stored[0].version_id)

    def release(self, job_id: str, kill_reason: str) -> None:
        """Forget a running job the gateway ended; replace its worker if it ran nothing else."""
        for worker in self.fleet.workers.values():
            inflight = worker.jobs.pop(job_id, None)
            if inflight is None:
                continue
            self.ended(inflight)
            if worker.spec.concurrency == 1 and worker.handle is not None:
                worker.state = WorkerState.DRAINING
                worker.stop_reason = kill_reason
                worker.handle.kill()
            else:
                self.fleet.mark_idle_if_free(worker)
            self._wake()
            return
