"""Recovery: what happens when something goes wrong — a worker exits, a job runs past its
timeout, setup fails, the server restarted with jobs running, or the storage is down.

No single job, frame or storage fault wedges the scheduler: a job whose worker died is retried
or failed; while the storage is down, jobs whose worker died wait here (`lost`) and the tick
only probes (once a second) until a write goes through again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control.dispatcher import Dispatcher
from coldbrew.control.fleet import Fleet
from coldbrew.control.jobbook import JobBook
from coldbrew.control.streams import Streams
from coldbrew.control.workers import ManagedWorker, describe_exit
from coldbrew.control.writer import BufferedWriter
from coldbrew.errors import (
    JobTimedOut,
    SetupFailed,
    StorageUnavailable,
    WorkerCrashed,
    job_error,
)
from coldbrew.metering.report import job_cost_usd
from coldbrew.store.models import Job, JobStatus

log = logging.getLogger("coldbrew.scheduler")

PROBE_EVERY_S = 1.0  # while the storage is down, one small write per second tells when it is back


class Recovery:
    """Worker exits, timeouts, failed setups, restart recovery and storage faults."""

    def __init__(
        self,
        book: JobBook,
        fleet: Fleet,
        dispatcher: Dispatcher,
        streams: Streams,
        writer: BufferedWriter,
        clock: Clock,
        settings: Settings,
        wake: Callable[[], None],
    ) -> None:
        self.book = book
        self.store = book.store
        self.fleet = fleet
        self.dispatcher = dispatcher
        self.streams = streams
        self.writer = writer
        self.clock = clock
        self.settings = settings
        self._wake = wake
        self.lost: list[tuple[Job, str]] = []  # jobs whose dead worker could not be recorded
        self._next_probe = 0.0

    def record_lost(self, job: Job, reason: str) -> None:
        """Remember a job whose worker died while the storage was down."""
        self.lost.append((job, reason))

    async def on_exit(self, worker: ManagedWorker, code: int) -> None:
        """A worker process ended (the fleet has already forgotten it): bill it, and retry or
        fail what it ran; a worker that never became ready counts as a failed setup."""
        worker.meter.switch(None, self.clock.time())
        await self.writer.write_usage(worker.meter.drain(self.clock.time()))
        await self.writer.flush_logs()
        # a sandbox limit that killed it ("exceeded its memory limit") says more than the signal
        limit = getattr(worker.handle, "exit_reason", None)
        reason = describe_exit(code, worker.stop_reason or limit)
        if worker.ready_wall is None and worker.stop_reason is None:
            try:
                await self.setup_failed(worker, reason)
            except Exception:
                log.exception("could not fail the queued jobs of %s", worker.version.endpoint)
        # jobs sent to wait behind the one it computed never reached `predict`: they go back
        # to the queue without spending an attempt (one bad job must not fail those after it)
        waiting = {job_id for batch in list(worker.batches)[1:] for job_id in batch}
        held = list(worker.jobs.values())
        worker.jobs.clear()
        worker.batches.clear()
        for inflight in held:
            if inflight.job.id in waiting:
                self.dispatcher.ended(inflight)
        if waiting:  # first, so the retried jobs, older, go back ahead of them
            await self.dispatcher.unclaim([i.job for i in held if i.job.id in waiting])
        for inflight in reversed(held):  # retries keep their order
            if inflight.job.id not in waiting:
                self.dispatcher.ended(inflight)
                await self.lose_safely(inflight.job, reason)
        self._wake()

    async def worker_lost(self, job: Job, reason: str) -> None:
        """Retry a job whose worker died, or fail it once its attempts are used up."""
        if not job.durable and job.attempts < job.max_attempts:
            self.streams.restart(job.id)  # the next attempt streams afresh
            self.book.requeue_sync(job)
            log.warning("job %s: %s; retrying (attempt %d)", job.id, reason, job.attempts + 1)
            self._wake()
            return
        if (
            job.durable
            and job.attempts < job.max_attempts
            and await self.store.requeue(job.id, worker_id=job.worker_id)
        ):
            self.streams.restart(job.id)
            self.book.backlog.flag(job.version_id)
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
        final = await self.book.end(job, JobStatus.FAILED, self.clock.time(), error=error)
        if final is not None:
            self.book.announce(final)

    async def lose_safely(self, job: Job, reason: str) -> None:
        """`worker_lost` that never raises: while the storage is down the job is recorded
        (requeued or failed) at the first tick that can write."""
        try:
            await self.worker_lost(job, reason)
        except StorageUnavailable:
            self.lost.append((job, reason))
        except Exception:
            log.exception("job %s: could not record that its worker died", job.id)

    async def setup_failed(self, worker: ManagedWorker, reason: str) -> None:
        """Back off before the next start; fail the version's waiting jobs with setup's
        traceback unless another worker of the version is up and will run them."""
        vid = worker.version.id
        last = self.fleet.backoff.get(vid, (0.0, 0.0))[1]
        delay = min(self.settings.setup_backoff_max_s, max(self.settings.setup_backoff_s, last * 2))
        self.fleet.backoff[vid] = (self.clock.monotonic() + delay, delay)
        log.warning(
            "setup of %s failed (%s); next try in %.1f s",
            worker.version.endpoint,
            reason,
            delay,
            extra={"worker": worker.id, "endpoint": worker.version.endpoint},
        )
        if self.fleet.ready(vid):
            return
        record = worker.setup_error or job_error(WorkerCrashed, reason)
        error = job_error(
            SetupFailed,
            f"setup of endpoint {worker.version.endpoint!r} failed: "
            f"{record.get('type')}: {record.get('message')}",
            traceback=record.get("traceback", ""),
            hint="fix the model's setup() or imports and deploy again",
        )
        for job in await self.store.fail_queued(vid, error, self.clock.time()):
            self.book.announce(job)
        for job in self.book.backlog.lane.pop(vid, ()):
            now = self.clock.time()
            self.book.announce(self.book.end_unsaved(job, JobStatus.FAILED, now, error=error))

    async def expire(self, now: float) -> None:
        """End jobs past their execution timeout and replace the workers running them."""
        for worker in list(self.fleet.workers.values()):
            for job_id, inflight in list(worker.jobs.items()):
                if inflight.deadline > now:
                    continue
                job = inflight.job
                error = job_error(
                    JobTimedOut,
                    f"the job ran past its execution timeout of {job.timeout_s:g} s",
                    hint="raise timeout_s in @app.model or policy.executionTimeout (ms)",
                )
                prices = self.settings.prices_per_hour_usd
                cost = (
                    0.0
                    if worker.reserved
                    else job_cost_usd(prices, worker.spec.hardware, job.timeout_s)
                )
                final = await self.book.end_safely(
                    job, JobStatus.TIMED_OUT, self.clock.time(), error=error, cost_usd=cost
                )
                if final is not None:
                    self.book.announce(final)
                self.dispatcher.release(job_id, kill_reason="replaced after a job timed out")
                # The job may be stuck in user code: the process goes, whatever its state.
                # Other jobs on the same worker (concurrency > 1) are retried elsewhere.
                self.fleet.kill(worker, "replaced after a job timed out")

    async def recover(self, orphaned: Callable[[Job], bool]) -> None:
        """Jobs IN_PROGRESS whose worker went with its gateway (`orphaned`): the previous
        process of this one, or a dead peer's. Another live gateway's running jobs are left."""
        for job in await self.store.in_progress():
            if orphaned(job):
                await self.worker_lost(job, "the server stopped while the job ran")

    async def storage_ok(self) -> bool:
        """Whether the tick may go on: while a storage fault lasts, a probe write (once a
        second) tells when it clears; then what waited for it is written."""
        if self.store.fault is not None:
            now = self.clock.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + PROBE_EVERY_S
            try:
                await self.store.probe(self.clock.time())
            except StorageUnavailable:
                return False
        if self.lost:
            lost, self.lost = self.lost, []
            for job, reason in lost:
                await self.lose_safely(job, reason)
        return True
