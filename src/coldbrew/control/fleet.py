"""The fleet: every worker process this node runs, from launch through ready to exit.

It owns the worker registry and each worker's reader task; what a worker says is handed on
through callbacks (`on_log`, `on_chunk`, `on_done`, `on_exit`, `wake`), so the fleet knows
nothing of jobs' storage or the queue. Read methods (`state_counts`, `worker_counts`) are what
the dashboard and metrics sample.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from coldbrew.backends.base import Backend, ColdPath, WorkerLaunch
from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control.frames import FrameGuard
from coldbrew.control.statecalls import StateCalls
from coldbrew.control.workers import ManagedWorker, WorkerState
from coldbrew.metering.meter import WorkerMeter
from coldbrew.spec import DeploymentSpec
from coldbrew.store.base import Store
from coldbrew.store.models import UsageKind, Version

log = logging.getLogger("coldbrew.scheduler")

_STARTING = (WorkerState.STARTING, WorkerState.LOADING)
_STATE_NAMES = {WorkerState.IDLE: "idle", WorkerState.BUSY: "running"} | dict.fromkeys(
    _STARTING, "starting"
)


#: A one-job-at-a-time worker is sent its next job while it computes only when its version's
#: jobs took at most this long (an average): up to that, the wait behind the job before is
#: shorter than a scale-out, and the worker no longer idles between two jobs.
PIPELINE_MAX_S = 0.05


def _ignore(*_: Any) -> None:
    return None


async def _ignore_async(*_: Any) -> None:
    return None


class Fleet:
    """Workers by id, the versions they run, and their launch, readiness and stop."""

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
        # (account, endpoint name) -> the endpoint's secrets, from memory: no store call per launch
        self._endpoint_env = endpoint_env or (lambda account, endpoint: {})
        self.workers: dict[str, ManagedWorker] = {}
        self.versions: dict[int, tuple[Version, DeploymentSpec]] = {}
        self.current: set[int] = set()  # current versions, and versions with a split share
        self.backoff: dict[int, tuple[float, float]] = {}  # version -> (until, last delay)
        self.batch_s: dict[int, float] = {}  # version -> its batches' compute time (average)
        self.frames = FrameGuard()
        self.limits_frame: dict[str, Any] = {}  # sent to each worker as it becomes ready
        self._tasks: set[asyncio.Task[None]] = set()
        # what the workers' frames and exits are handed to (wired by the scheduler)
        self.wake: Callable[[], None] = _ignore
        self.on_log: Callable[[dict[str, Any]], None] = _ignore
        self.on_chunk: Callable[[str, Any], None] = _ignore
        self.on_done: Callable[[ManagedWorker, dict[str, Any]], Awaitable[None]] = _ignore_async
        # a worker just became ready: its version's next queued job goes to it at once
        self.on_serving: Callable[[ManagedWorker], Awaitable[None]] = _ignore_async
        self.on_exit: Callable[[ManagedWorker, int], Awaitable[None]] = _ignore_async
        #: a worker's `coldbrew.state` requests (`on_state` answers them; set by the platform)
        self.state_calls = StateCalls(self.send)

    # versions
    async def version(self, version_id: int) -> tuple[Version, DeploymentSpec]:
        """A version and its parsed spec (read from the store once)."""
        if version_id not in self.versions:
            version = await self.store.get_version(version_id)
            self.versions[version_id] = (version, DeploymentSpec(**version.spec))
        return self.versions[version_id]

    def account_of(self, version_id: int) -> str:
        return self.versions[version_id][0].account

    async def refresh(self, current: set[int]) -> None:
        """Take each endpoint's current version and let the backend prepare their templates."""
        self.current = current
        launches = []
        for vid in sorted(current):
            version, spec = await self.version(vid)
            launches.append(self.launch_spec(version, spec, "template"))
        await self.backend.prepare(launches)

    async def templates_ready(self, version_ids: list[int], timeout_s: float) -> list[ColdPath]:
        """Wait up to `timeout_s` for the versions' templates; how each will cold start."""
        launches = []
        for vid in version_ids:
            version, spec = await self.version(vid)
            launches.append(self.launch_spec(version, spec, "template"))
        return await self.backend.ready(launches, timeout_s)

    # reads
    def free_worker(self, version_id: int, whole: bool = False) -> ManagedWorker | None:
        """A worker of the version with room for a job (`whole`: for one more batch), an idle
        worker first, then one with a free slot, then one that computes a short job and may be
        sent the next (`job_room`)."""
        found = None
        for worker in self.workers.values():
            if worker.version.id != version_id:
                continue
            state = worker.state
            if state is WorkerState.IDLE:
                return worker
            if state is not WorkerState.BUSY:
                continue
            if whole:
                if found is None and self.batch_room(worker):
                    found = worker
            elif len(worker.jobs) < worker.spec.concurrency:  # a free slot (`job_room`, inline)
                return worker
            elif found is None and worker.spec.concurrency == 1 and self.job_room(worker):
                found = worker
        return found

    def job_room(self, worker: ManagedWorker) -> int:
        """How many more single jobs `worker` may be sent now: its free slots; and a worker
        that runs one job at a time may hold the next while it computes (it waits in its
        socket, and starts the instant the one before ends) when its version's jobs are
        short (`PIPELINE_MAX_S`), up to `batch_pipeline_depth` in all. A long job is never
        queued behind another: it would wait where an idle worker might have taken it."""
        if worker.state not in (WorkerState.IDLE, WorkerState.BUSY):
            return 0
        free = worker.spec.concurrency - len(worker.jobs)
        if free > 0 or worker.spec.concurrency != 1:
            return max(0, free)
        self.settle_batches(worker)
        took_s = self.batch_s.get(worker.version.id)
        if took_s is None or took_s > PIPELINE_MAX_S:
            return 0
        return max(0, self.settings.batch_pipeline_depth - len(worker.batches))

    def batch_room(self, worker: ManagedWorker) -> bool:
        """Whether a batched worker may be sent another batch: fewer than
        `batch_pipeline_depth` in it, so the next one waits in its socket while it computes."""
        if worker.state is WorkerState.IDLE:
            return True
        if worker.state is not WorkerState.BUSY:
            return False
        self.settle_batches(worker)
        return len(worker.batches) < self.settings.batch_pipeline_depth

    def settle_batches(self, worker: ManagedWorker) -> None:
        """Forget the worker's finished batches (or single jobs, on a one-at-a-time worker) and
        learn how long one took: an average per version, for the pipeline's timing
        (`control/batching.py`, `job_room`)."""
        took_s = worker.settle_batches(self.clock.time(), self.clock.monotonic())
        if took_s is not None:
            known = self.batch_s.get(worker.version.id)
            self.batch_s[worker.version.id] = (
                took_s if known is None else 0.7 * known + 0.3 * took_s
            )

    def ready(self, version_id: int) -> bool:
        """Whether a worker of the version is up (idle or busy)."""
        for w in self.workers.values():
            if w.version.id == version_id and w.state in (WorkerState.IDLE, WorkerState.BUSY):
                return True
        return False

    def worker_counts(self, endpoint_id: int) -> dict[str, int]:
        """Workers of the endpoint (all versions) by state: idle, running (busy), starting."""
        counts = {"idle": 0, "running": 0, "starting": 0}
        for worker in self.workers.values():
            state = _STATE_NAMES.get(worker.state)
            if state is not None and worker.version.endpoint_id == endpoint_id:
                counts[state] += 1
        return counts

    def state_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Workers by state (idle, running, starting) per (account, endpoint)."""
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for worker in self.workers.values():
            state = _STATE_NAMES.get(worker.state)
            if state is not None:
                key = (worker.version.account, worker.version.endpoint)
                per_state = counts.setdefault(key, {})
                per_state[state] = per_state.get(state, 0) + 1
        return counts

    # launch
    def launch(self, version: Version, spec: DeploymentSpec) -> None:
        """Start one worker of the version (its reader task runs until the process exits)."""
        worker_id = f"w-{self.settings.gateway_id}-{uuid.uuid4().hex[:12]}"  # its gateway's
        reserved = version.id in self.current and spec.reserved_workers > sum(
            w.reserved for w in self.workers.values() if w.version.id == version.id and w.live
        )  # the version's first workers fill its reserved slots
        meter = WorkerMeter(
            worker_id=worker_id,
            account=version.account,
            endpoint=version.endpoint,
            version_id=version.id,
            hardware=spec.hardware,
            kind=UsageKind.COLD_START,
            since=self.clock.time(),
            reserved=reserved,
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

    def launch_spec(self, version: Version, spec: DeploymentSpec, worker_id: str) -> WorkerLaunch:
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
        launch = self.launch_spec(worker.version, worker.spec, worker.id)
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
        worker.state = WorkerState.STOPPED
        self.workers.pop(worker.id, None)  # first: the slot is free whatever fails below
        await self.on_exit(worker, code)
        self.frames.forget(worker.id)

    async def _on_frame(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        """File one frame from the worker: only about its own running jobs, in the documented
        shape (`control/frames.py`); anything else is dropped and logged, never raised."""
        if not self.frames.admit(
            worker.id, worker.version.endpoint, frame, worker.jobs, self.clock.monotonic()
        ):
            return
        kind = frame["t"]
        if kind == "log":
            self.on_log(frame)
        elif kind == "chunk":
            self.on_chunk(frame["id"], frame["output"])
        elif kind == "done":
            await self.on_done(worker, frame)
        elif kind == "ready" and worker.ready_wall is None:
            if worker.handle is not None:  # before its first job, so the job runs under them
                await self.send(worker, self.limits_frame)
            self.on_ready(worker, frame)
            await self.on_serving(worker)  # the cold start that launched it waits on this
            self.wake()  # after: a tick meanwhile would queue its store reads ahead of that job
        elif kind == "setup_failed":
            worker.setup_error = frame["error"]
        elif kind == "state":
            self.state_calls.take(worker, frame)

    def on_ready(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        """The worker finished setup: record its cold start and take it into service."""
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
        self.backoff.pop(worker.version.id, None)
        if worker.state is WorkerState.LOADING:
            worker.state = WorkerState.IDLE

    # running and stopping
    async def send(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        """Send a frame; a worker that cannot be reached is killed (its exit retries its jobs)."""
        assert worker.handle is not None
        try:
            await worker.handle.send(frame)
        except (ConnectionError, OSError):
            worker.handle.kill()

    def mark_idle_if_free(self, worker: ManagedWorker) -> None:
        """A job left `worker`: idle (and metered so) when nothing else runs there."""
        worker.last_used = self.clock.monotonic()
        if worker.batches:
            self.settle_batches(worker)
        if worker.jobs or worker.state is not WorkerState.BUSY:
            return
        worker.state = WorkerState.IDLE
        worker.idle_since = worker.last_used
        worker.meter.switch(UsageKind.IDLE, self.clock.time())

    def drain(self, worker: ManagedWorker, reason: str) -> bool:
        """Take `worker` out of service (it takes no new job); False if it already was."""
        if worker.state in (WorkerState.DRAINING, WorkerState.STOPPED):
            return False
        worker.state = WorkerState.DRAINING
        worker.stop_reason = reason
        return True

    async def signal_stop(self, worker: ManagedWorker) -> None:
        """Ask a drained worker to finish its jobs and exit."""
        if worker.handle is not None:
            try:
                await worker.handle.send({"t": "stop"})
            except (ConnectionError, OSError):
                worker.handle.kill()

    async def stop_worker(self, worker: ManagedWorker, reason: str) -> None:
        """Drain `worker` and ask it to exit."""
        if self.drain(worker, reason):
            await self.signal_stop(worker)

    def kill(self, worker: ManagedWorker, reason: str) -> None:
        """End the process now, whatever it runs (its exit retries or fails its jobs)."""
        if worker.handle is not None and worker.state is not WorkerState.STOPPED:
            worker.state = WorkerState.DRAINING
            worker.stop_reason = worker.stop_reason or reason
            worker.handle.kill()

    async def stop_all(self, reason: str) -> None:
        """Stop every worker; jobs get `worker_stop_grace_s`, then the rest are killed."""
        for worker in list(self.workers.values()):
            await self.stop_worker(worker, reason)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.worker_stop_grace_s)
            for worker in self.workers.values():
                if worker.handle is not None:
                    worker.handle.kill()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
