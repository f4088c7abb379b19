"""When a batched version's next batch goes, and how big it is.

A batched worker holds up to `batch_pipeline_depth` batches: the one it computes and the next,
already in its socket, so it starts that one the instant it finishes instead of waiting while
one batch's answers go out and the next batch's requests come in and are assembled. Batches are
sized to the recent demand shared over the batches in flight (`want`), not to the cap: with 32
callers and a pipeline of 2, two batches of 16 alternate, one computing while the other half's
callers get their answers and send again. A batch for a worker that is computing is sent
shortly before that compute is expected to end (`PIPELINE_LEAD`), so it gathers what arrives
meanwhile; while the worker is idle a short batch waits at most `max_wait_ms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control.fleet import Fleet
from coldbrew.control.workers import ManagedWorker, WorkerState
from coldbrew.spec import DeploymentSpec

#: How fast a batched version's remembered demand fades: slow next to a closed loop's round
#: trip (milliseconds), so batches stay even while answers are out; fast enough that a quiet
#: endpoint's lone job stops waiting for company within seconds.
DEMAND_HALF_LIFE_S = 1.0
#: A batch for a computing worker is sent this fraction of the expected compute time before
#: that compute ends: enough for the frame to cross the socket and be decoded, late enough to
#: take in the requests that arrive meanwhile.
PIPELINE_LEAD = 0.3
#: A compute that has run this many times its expected time has no predictable end: the next
#: batch waits for the worker to finish (and then goes whole) rather than go in pieces.
OVERRUN = 1.5
_SERVING = (WorkerState.IDLE, WorkerState.BUSY)


class BatchPolicy:
    """Whether a short batch waits, per version: demand, the hold window, the pipeline timer."""

    def __init__(
        self,
        fleet: Fleet,
        clock: Clock,
        settings: Settings,
        wake: Callable[[int], None],
    ) -> None:
        self.fleet = fleet
        self.clock = clock
        self.depth = settings.batch_pipeline_depth
        self._wake = wake  # (version) -> look at its queue again
        self._demand: dict[int, tuple[float, float]] = {}  # version -> (recent peak, at)
        self._hold: dict[int, float] = {}  # version -> until when a short batch waits
        self._timers: dict[str, float] = {}  # worker -> when its next batch is due

    def held(
        self, vid: int, spec: DeploymentSpec, queued: int, size: int, worker: ManagedWorker
    ) -> bool:
        """Whether the version's next batch (up to `size` of `queued` jobs) waits."""
        assert spec.batch is not None
        want = min(size, self.want(vid, spec, queued))
        if worker.state is WorkerState.BUSY and worker.batches and queued < size:
            return self._pipelined_held(vid, worker, queued, want)
        now = self.clock.monotonic()
        if spec.batch.max_wait_ms > 0 and queued < want:
            until = self._hold.get(vid)
            if until is None:
                until = self._hold[vid] = now + spec.batch.max_wait_ms / 1000
                self.clock.call_later(until - now, lambda: self._wake(vid))
            if now < until:
                return True
        self._hold.pop(vid, None)
        return False

    def _pipelined_held(self, vid: int, worker: ManagedWorker, queued: int, want: int) -> bool:
        """A short batch for a worker that is computing goes in the last `PIPELINE_LEAD` of
        that compute's expected time, with its share of the demand; before that it gathers
        jobs, and past `OVERRUN` (or with no estimate yet) it waits for the worker to finish."""
        expected_s = self.fleet.batch_s.get(vid)
        begun = worker.batch_begun
        if expected_s is None or begun is None:
            return True
        now = self.clock.monotonic()
        due = begun + expected_s * (1 - PIPELINE_LEAD)
        if now < due:
            if self._timers.get(worker.id) != due:
                self._timers[worker.id] = due
                self.clock.call_later(due - now, lambda: self._wake(vid))
            return True
        self._timers.pop(worker.id, None)
        return now > begun + expected_s * OVERRUN or queued < want

    def want(self, vid: int, spec: DeploymentSpec, queued: int) -> int:
        """How many jobs the next batch waits for: the version's recent demand (jobs on its
        workers plus queued, a peak that halves every `DEMAND_HALF_LIFE_S`) shared evenly over
        the batches its workers hold at once. Waiting for the cap instead (32 of 32 callers)
        would leave nothing to overlap; sending what is there at once would cut batches of 1."""
        assert spec.batch is not None
        running = workers = 0
        for worker in self.fleet.workers.values():
            if worker.version.id == vid and worker.state in _SERVING:
                workers += 1
                running += len(worker.jobs)
        now = self.clock.monotonic()
        peak, at = self._demand.get(vid, (0.0, now))
        peak = max(float(running + queued), peak * 0.5 ** ((now - at) / DEMAND_HALF_LIFE_S))
        self._demand[vid] = (peak, now)
        share: int = math.ceil(peak / (self.depth * max(1, workers)) - 1e-9)
        return max(1, min(spec.batch.max_size, share))
