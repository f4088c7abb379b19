"""No single job, frame or storage fault wedges the scheduler.

Every path that ends a job goes through here, and none of them raises once the job has left
its worker: a result the store cannot hold fails that job with the reason; a storage fault
(`StorageUnavailable`) keeps the final state in memory until a flush can write it; a batched
write that fails for one job is retried one job at a time so only that job fails; log lines,
usage seconds and arrival counts that cannot be written never block job handling. Without
this, one 255-deep input failed every later write-back and left jobs `IN_PROGRESS` forever.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict, deque
from typing import TYPE_CHECKING, Any

import orjson

from coldbrew.control.workers import WorkerState
from coldbrew.errors import StorageUnavailable
from coldbrew.runtime.protocol import RESULT_MAX_DEPTH, nests_deeper
from coldbrew.store.models import Job, JobStatus, UsageRow, WebhookState

if TYPE_CHECKING:
    from coldbrew.clock import Clock
    from coldbrew.control.workers import ManagedWorker
    from coldbrew.store.base import Store

log = logging.getLogger("coldbrew.scheduler")

_PROBE_EVERY_S = 1.0  # while the storage is down, one small write per second tells when it is back
_MAX_LOG_BACKLOG = 100_000  # log lines kept in memory while the storage is down


def not_stored(part: str, exc: BaseException) -> dict[str, Any]:
    """The error record of a job whose input or result the store could not hold."""
    return {
        "type": "NotStorable",
        "message": f"the job's {part} could not be stored: {type(exc).__name__}: {exc}",
        "hint": "keep inputs and outputs plain JSON, nested less than 254 levels deep and "
        "within the size limits",
    }


def too_deep(part: str) -> dict[str, Any]:
    """The error record of a job whose worker sent a result nested too deep to keep."""
    return {
        "type": "NotStorable",
        "message": f"the job's {part} nests more than {RESULT_MAX_DEPTH} levels of lists and "
        "objects: it can be neither stored nor returned",
        "hint": f"return plain JSON nested at most {RESULT_MAX_DEPTH} levels deep",
    }


def _make_storable(job: Job, exc: BaseException) -> None:
    """Turn a job the store refused into one it can hold: FAILED, saying why."""
    part = "output"
    try:
        orjson.dumps(job.input, option=orjson.OPT_SERIALIZE_NUMPY)
    except Exception:
        part, job.input = "input", {}
    job.status, job.output, job.error = JobStatus.FAILED, None, not_stored(part, exc)


def _log_row(row: tuple[Any, ...]) -> tuple[str, float, str, str]:
    """A log row as the store's column types: a worker may send any JSON as a line."""
    job_id, ts, stream, line = row
    if not isinstance(line, str):
        try:
            line = orjson.dumps(line).decode()
        except Exception:
            line = repr(line)
    return str(job_id), float(ts) if isinstance(ts, int | float) else 0.0, str(stream), line


class PoisonSafety:
    """The scheduler's exception-safe ending of jobs (a mixin of `Scheduler`)."""

    store: Store
    clock: Clock
    _logs: list[tuple[str, float, str, str]]
    _arrivals: Counter[tuple[int, int, int]]
    _writeback: list[Job]
    _unsaved: dict[str, Job]
    _running: Counter[str]
    _sync: defaultdict[int, deque[Job]]

    if TYPE_CHECKING:

        async def _end(
            self,
            job: Job,
            status: JobStatus,
            now: float,
            *,
            output: Any = None,
            error: dict[str, Any] | None = None,
            cost_usd: float = 0.0,
        ) -> Job | None: ...

        def _end_unsaved(
            self,
            job: Job,
            status: JobStatus,
            now: float,
            *,
            output: Any = None,
            error: dict[str, Any] | None = None,
            cost_usd: float = 0.0,
        ) -> Job: ...

        def _finalized(self, job: Job) -> None: ...

        def _mark_idle_if_free(self, worker: ManagedWorker) -> None: ...

        def notify(self) -> None: ...

        def mark_queued(self, version_id: int) -> None: ...

        async def _worker_lost(self, job: Job, reason: str) -> None: ...

    def _init_poison_safety(self) -> None:
        self._usage_backlog: dict[tuple[str, str, float], UsageRow] = {}
        self._lost: list[tuple[Job, str]] = []  # jobs whose dead worker could not be recorded
        self._next_probe = 0.0
        self._deep_streams: set[str] = set()  # running jobs that sent a chunk nested too deep

    def _kept_chunk(self, frame: dict[str, Any]) -> bool:
        """Whether a chunk may join its job's stream: one nested too deep for the store and
        the API is dropped (a poll would fail on it) and fails the job when it ends."""
        if not nests_deeper(frame["output"]):
            return True
        if frame["id"] not in self._deep_streams:
            log.warning("job %s: a chunk nests too deep to keep; the job fails", frame["id"])
        self._deep_streams.add(frame["id"])
        return False

    def _storable_done(self, frame: dict[str, Any]) -> dict[str, Any]:
        """A done frame whose result nests too deep for the store and the API becomes that
        job's failure, here, for every job alike: a sync-lane job is answered from memory
        before any write (the caller got COMPLETED, or a 500 as its answer could not be
        encoded, and the store later said FAILED)."""
        part = None
        if frame["id"] in self._deep_streams:
            self._deep_streams.discard(frame["id"])
            part = "stream"
        error = frame.get("error")
        if part is None and nests_deeper(frame.get("output")):
            part = "output"
        if part is None and error is not None and nests_deeper(error):
            part = "error"
        if part is None:
            return frame
        log.warning("job %s: its %s nests too deep to keep; failing it", frame["id"], part)
        return {**frame, "output": None, "streamed": False, "error": too_deep(part)}

    async def _end_safely(
        self,
        job: Job,
        status: JobStatus,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        cost_usd: float = 0.0,
    ) -> Job | None:
        """`_end` that never raises: a result the store cannot hold fails the job with the
        reason; while the storage is down the final state waits in memory for a flush."""
        try:
            return await self._end(job, status, now, output=output, error=error, cost_usd=cost_usd)
        except StorageUnavailable:
            return self._hold(job, status, now, output=output, error=error, cost_usd=cost_usd)
        except Exception as exc:
            log.warning("job %s: its result cannot be stored (%s); failing it", job.id, exc)
            failed = not_stored("result", exc)
        try:
            return await self._end(job, JobStatus.FAILED, now, error=failed, cost_usd=cost_usd)
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
        self._unsaved[job.id] = job
        return self._end_unsaved(job, status, now, output=output, error=error, cost_usd=cost_usd)

    async def _unsendable(self, worker: ManagedWorker, jobs: list[Job], exc: Exception) -> None:
        """Fail jobs whose input could not be encoded for the worker; the worker stays."""
        log.warning("jobs %s: input cannot be sent to a worker (%s)", [j.id for j in jobs], exc)
        error = {
            "type": "InvalidInput",
            "message": f"the input could not be sent to the worker: {type(exc).__name__}: {exc}",
            "hint": "send plain JSON, nested less than 254 levels deep",
        }
        for job in jobs:
            if worker.jobs.pop(job.id, None) is None:
                continue
            self._running[job.account] -= 1
            final = await self._end_safely(job, JobStatus.FAILED, self.clock.time(), error=error)
            if final is not None:
                self._finalized(final)
        self._mark_idle_if_free(worker)
        self.notify()

    async def _save_one_by_one(self, jobs: list[Job]) -> None:
        """The batched write-back failed: write each job alone, so only a bad one fails."""
        for i, job in enumerate(jobs):
            try:
                await self._save_alone(job)
            except StorageUnavailable:
                self._writeback[:0] = jobs[i:]
                raise
            if self._unsaved.get(job.id) is job:
                del self._unsaved[job.id]

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

    async def _save_queued(self, vid: int, jobs: list[Job]) -> None:
        """Write sync-lane jobs into the store's queue (durable from here). One that cannot be
        stored fails alone; on a storage fault the rest wait in the sync lane again."""
        for job in jobs:
            job.durable = True
        try:
            await self.store.save_jobs(jobs)
            return
        except StorageUnavailable:
            for job in jobs:
                job.durable = False
            self._sync[vid].extendleft(reversed(jobs))
            raise
        except Exception:
            pass
        for i, job in enumerate(jobs):
            try:
                await self.store.save_jobs([job])
            except StorageUnavailable:
                for rest in jobs[i:]:
                    rest.durable = False
                self._sync[vid].extendleft(reversed(jobs[i:]))
                raise
            except Exception as exc:
                job.durable = False  # ends in memory, written as failed by the write-back
                error = not_stored("input", exc)
                self._finalized(
                    self._end_unsaved(job, JobStatus.FAILED, self.clock.time(), error=error)
                )

    async def _flush_logs(self) -> None:
        """Write buffered log lines and arrival counts; never raises (kept while the storage
        is down, dropped with an error in the log when the store refuses them)."""
        if self._logs:
            rows, self._logs = [_log_row(r) for r in self._logs], []
            try:
                await self.store.append_logs(rows)
            except StorageUnavailable:
                self._logs[:0] = rows[-_MAX_LOG_BACKLOG:]
            except Exception:
                log.exception("%d job log lines could not be stored; dropped", len(rows))
        if self._arrivals:
            counts, self._arrivals = self._arrivals, Counter()
            try:
                await self.store.record_arrivals([(*key, n) for key, n in counts.items()])
            except StorageUnavailable:
                self._arrivals.update(counts)
            except Exception:
                log.exception("arrival counts could not be stored; dropped")

    async def _write_usage(self, rows: list[UsageRow]) -> None:
        """Write usage seconds; while the storage is down they add up in memory, one row per
        (worker, kind, hour), and are written when it is back. Never raises."""
        for row in rows:
            key = (row.worker_id, row.kind.value, row.hour_start)
            held = self._usage_backlog.get(key)
            if held is not None:
                row = dataclasses.replace(row, seconds=held.seconds + row.seconds)
            self._usage_backlog[key] = row
        if not self._usage_backlog:
            return
        pending, self._usage_backlog = self._usage_backlog, {}
        try:
            await self.store.add_usage(list(pending.values()))
        except StorageUnavailable:
            self._usage_backlog = pending | self._usage_backlog
        except Exception:
            log.exception("usage rows could not be stored; dropped %d", len(pending))

    async def _lose_safely(self, job: Job, reason: str) -> None:
        """`_worker_lost` that never raises: while the storage is down the job is recorded
        (requeued or failed) at the first tick that can write."""
        try:
            await self._worker_lost(job, reason)
        except StorageUnavailable:
            self._lost.append((job, reason))
        except Exception:
            log.exception("job %s: could not record that its worker died", job.id)

    async def _still_free(self, worker: ManagedWorker, jobs: list[Job], whole: bool) -> bool:
        """After a claim (store calls yield to the loop, so the worker may have filled up,
        started draining or died meanwhile): whether `worker` can still take `jobs`. If not,
        they go back to the store's queue as if never claimed (the attempt is given back)."""
        if (worker.state is WorkerState.IDLE) if whole else worker.free_slots >= len(jobs):
            return True
        for job in jobs:
            job.status, job.worker_id, job.started_at = JobStatus.IN_QUEUE, None, None
            job.attempts = max(0, job.attempts - 1)
        try:
            await self.store.save_jobs(jobs)
        except StorageUnavailable:
            self._lost += [(job, "its worker went away before the job reached it") for job in jobs]
        self.mark_queued(jobs[0].version_id)
        return False

    async def _storage_ok(self) -> bool:
        """Whether the tick may go on: while a storage fault lasts, a probe write (once a
        second) tells when it clears; then what waited for it is written."""
        if self.store.fault is not None:
            now = self.clock.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + _PROBE_EVERY_S
            try:
                await self.store.probe(self.clock.time())
            except StorageUnavailable:
                return False
        if self._lost:
            lost, self._lost = self._lost, []
            for job, reason in lost:
                await self._lose_safely(job, reason)
        return True
