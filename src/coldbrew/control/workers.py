"""The scheduler's record of each worker it runs, and how a worker's exit is described."""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from coldbrew.backends.base import WorkerHandle
from coldbrew.metering.meter import WorkerMeter
from coldbrew.spec import DeploymentSpec
from coldbrew.store.models import Job, Version


class WorkerState(StrEnum):
    """Life of a worker process."""

    STARTING = "STARTING"  # the backend is creating the process
    LOADING = "LOADING"  # the process runs: imports and setup()
    IDLE = "IDLE"  # ready, no job
    BUSY = "BUSY"  # at least one job running
    DRAINING = "DRAINING"  # told to stop (or killed); takes no new job
    STOPPED = "STOPPED"  # the process has exited


@dataclass
class InFlight:
    """A job handed to a worker, with the monotonic instant it times out and the size of the
    batch it went in (its cost is split by what the gateway sent, never by what the worker says)."""

    job: Job
    deadline: float
    share: int = 1
    slot: str = ""  # its account slot (`AccountSlots`), given back when it leaves the worker
    #: wall-clock instant its worker began computing it: a batch sent while the one before it
    #: still runs begins when that one ends (None: when the job started)
    begun: float | None = None


@dataclass
class ManagedWorker:
    """One worker process and what the scheduler knows about it."""

    id: str
    version: Version
    spec: DeploymentSpec
    state: WorkerState
    spawned_at: float  # monotonic
    meter: WorkerMeter
    handle: WorkerHandle | None = None
    jobs: dict[str, InFlight] = field(default_factory=dict)
    idle_since: float | None = None  # monotonic
    last_used: float = 0.0  # monotonic; for least-recently-used eviction
    ready_wall: float | None = None
    cold_start_detail: dict[str, float] | None = None
    cold_slots: int = 0  # how many of the next jobs waited for this worker to start
    setup_error: dict[str, Any] | None = None
    stop_reason: str | None = None  # set when the scheduler stops or kills it
    served: bool = False  # finished a job: fair sharing may take its slot back from now on
    #: a batched worker's batches sent and not yet finished, oldest (the one computing) first,
    #: as job ids; the worker runs them in order, the next one waiting in its socket
    batches: deque[list[str]] = field(default_factory=deque)
    batch_begun: float | None = None  # monotonic; when its first batch began computing

    @property
    def hardware(self) -> str:
        return self.spec.hardware

    @property
    def reserved(self) -> bool:
        """One of its version's `reserved_workers`: never scaled down or evicted while the
        version is current, and metered as reserved seconds."""
        return self.meter.reserved

    @property
    def live(self) -> bool:
        """Counts toward the version's workers: neither draining nor stopped."""
        return self.state not in (WorkerState.DRAINING, WorkerState.STOPPED)

    def settle_batches(self, wall: float, now: float) -> float | None:
        """Forget finished batches (every job done, timed out or cancelled); the batch now
        first begins now: its jobs' cost and execution timeout count from here, not from when
        it was sent to wait behind the one before it. Returns how long the finished one
        computed (None if none finished)."""
        batches = self.batches
        finished = False
        while batches and not any(job_id in self.jobs for job_id in batches[0]):
            batches.popleft()
            finished = True
        if not finished:
            return None
        took_s = None if self.batch_begun is None else now - self.batch_begun
        self.batch_begun = now if batches else None
        for job_id in batches[0] if batches else ():
            inflight = self.jobs.get(job_id)
            if inflight is not None:
                inflight.begun = wall
                inflight.deadline = now + inflight.job.timeout_s
        return took_s


def describe_exit(code: int, stop_reason: str | None) -> str:
    """A sentence on why a worker process ended, for job errors and logs."""
    if stop_reason:
        return stop_reason
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"the worker process was killed by {name}{extra}"
    return f"the worker process exited with status {code}"
