"""Handing claimed jobs to a worker and taking them back: the dispatcher's bookkeeping of what
runs where (`Dispatcher` is a `Handover`; split off so each stays readable).

A job handed over is tracked on its worker (`InFlight`: deadline, batch share, account slot,
when its batch began), counted against its account, and marked cold when it waited for its
worker's start. `ended` is the one way a job leaves that count, here and across gateways.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable

from coldbrew.clock import Clock
from coldbrew.control.fleet import Fleet
from coldbrew.control.jobbook import JobBook
from coldbrew.control.workers import InFlight, ManagedWorker, WorkerState
from coldbrew.errors import InvalidInput, StorageUnavailable, job_error
from coldbrew.store.base import Store
from coldbrew.store.models import Job, JobStatus, UsageKind
from coldbrew.store.shared.slots import AccountSlots

log = logging.getLogger("coldbrew.scheduler")


class Handover:
    """Sends jobs and batches to workers and records them as running there."""

    book: JobBook
    fleet: Fleet
    store: Store
    clock: Clock
    running: Counter[str]
    slots: AccountSlots
    _wake: Callable[[], None]

    # handing over
    async def assign(self, worker: ManagedWorker, job: Job, slot: str = "") -> None:
        """Send one running job to `worker` (holding account slot `slot`). A worker that runs
        one job at a time keeps its jobs in order in `batches`, as batches of one: a job sent
        while another computes begins, for its cost and its timeout, when that one ends."""
        if worker.spec.concurrency == 1:
            self.fleet.settle_batches(worker)
            if not worker.batches:
                worker.batch_begun = self.clock.monotonic()
            worker.batches.append([job.id])
        await self._track(worker, job, slot=slot)
        try:
            await self.fleet.send(worker, {"t": "job", "id": job.id, "input": job.input})
        except Exception as exc:  # the input cannot be encoded: that job fails, nothing else
            await self._unsendable(worker, [job], exc)

    async def assign_batch(
        self, worker: ManagedWorker, jobs: list[Job], max_size: int, slots: list[str] | None = None
    ) -> None:
        """Send running jobs to `worker` as one batch; it waits in the worker's socket while a
        batch sent before it computes (`Fleet.batch_room`). `slots[i]` is the account slot of
        `jobs[i]`."""
        self.fleet.settle_batches(worker)
        begun = None
        if not worker.batches:  # it computes this one first: it begins now
            begun, worker.batch_begun = self.clock.time(), self.clock.monotonic()
        worker.batches.append([j.id for j in jobs])
        for i, job in enumerate(jobs):
            slot = slots[i] if slots is not None and i < len(slots) else ""
            await self._track(worker, job, share=len(jobs), slot=slot, begun=begun)
        frame = {"t": "batch", "ids": [j.id for j in jobs], "inputs": [j.input for j in jobs]}
        try:
            await self.fleet.send(worker, frame)
        except Exception as exc:  # an input cannot be encoded: the batch fails, nothing else
            await self._unsendable(worker, jobs, exc)

    async def _track(
        self,
        worker: ManagedWorker,
        job: Job,
        share: int = 1,
        slot: str = "",
        begun: float | None = None,
    ) -> None:
        """Record a claimed job as running on `worker` (and whether it waited for its start)."""
        deadline = self.clock.monotonic() + job.timeout_s
        worker.jobs[job.id] = InFlight(job, deadline, share, slot, begun)
        self.fleet.frames.assigned(worker.id, job.id)
        self.running[job.account] += 1
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

    async def _unsendable(self, worker: ManagedWorker, jobs: list[Job], exc: Exception) -> None:
        """Fail jobs whose input could not be encoded for the worker; the worker stays."""
        log.warning("jobs %s: input cannot be sent to a worker (%s)", [j.id for j in jobs], exc)
        error = job_error(
            InvalidInput,
            f"the input could not be sent to the worker: {type(exc).__name__}: {exc}",
            hint="send plain JSON, nested less than 254 levels deep",
        )
        for job in jobs:
            inflight = worker.jobs.pop(job.id, None)
            if inflight is None:
                continue
            self.ended(inflight)
            final = await self.book.end_safely(
                job, JobStatus.FAILED, self.clock.time(), error=error
            )
            if final is not None:
                self.book.announce(final)
        self.fleet.mark_idle_if_free(worker)
        self._wake()

    def ended(self, inflight: InFlight) -> None:
        """A job left its worker (done, failed, timed out, cancelled, lost): its account runs
        one job fewer, here and across gateways."""
        account = inflight.job.account
        self.running[account] -= 1
        if inflight.slot:
            self.slots.give_back(account, [inflight.slot])
