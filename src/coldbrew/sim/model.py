"""The simulator's state: the run's configuration, workers and endpoints as the event loop
keeps them (plain slotted classes: millions of updates per run), and what a run measured.

An endpoint also builds the `Observation` the real autoscaler sees: its worker views are kept
between ticks and patched for the workers that changed, so a tick costs what changed, not
how many workers there are.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from coldbrew.config import Settings
from coldbrew.control.autoscaler import Observation, ScalerState, WorkerView
from coldbrew.control.warmth import TrafficProfile
from coldbrew.prices import DEFAULT_PRICES_PER_HOUR_USD
from coldbrew.sim.cluster import DEFAULT_NODE_SLOTS, Node
from coldbrew.sim.latency import ColdStarts
from coldbrew.spec import DeploymentSpec, Scaler

TICK_INTERVAL_S: float = Settings.model_fields["tick_interval_s"].default


@dataclass(frozen=True)
class SimConfig:
    """The cluster and the clock of one run; the workload and the specs come separately."""

    duration_s: float = 600.0  # the trace's end; arrivals after it are not played
    warmup_s: float = 0.0  # requests and costs before this instant are left out of the numbers
    tick_interval_s: float = TICK_INTERVAL_S
    node_slots: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_NODE_SLOTS))
    initial_nodes: dict[str, int] = field(default_factory=lambda: {"cpu": 1})
    max_nodes: int = 10_000
    node_idle_s: float = 300.0
    prices_per_hour_usd: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_PRICES_PER_HOUR_USD)
    )
    cold: ColdStarts = field(default_factory=ColdStarts)
    warm_start: bool = False  # min_workers ready at t=0 (a fixed pool, for validation)
    drain_s: float = 600.0  # after the last arrival, finish queued jobs for at most this long
    seed: int = 0
    #: call `decide` for every endpoint with workers, a queue or a floor on every tick, as the
    #: scheduler does, instead of only where it could act (same results, slower; for tests)
    exhaustive: bool = False


class Worker:
    __slots__ = (
        "active",
        "ep",
        "idle_since",
        "node",
        "placed_at",
        "pos",
        "ready",
        "ready_at",
        "seq",
        "served",
        "sid",
        "stopped",
        "touched",
    )

    def __init__(self, seq: int, ep: Endpoint) -> None:
        self.seq = seq
        self.sid = str(seq)
        self.ep = ep
        self.node: Node | None = None
        self.ready = False
        self.ready_at = 0.0
        self.placed_at = 0.0
        self.active = 0
        self.idle_since: float | None = None
        self.served = 0
        self.stopped = False
        self.pos = 0  # index in the endpoint's view list
        self.touched = False  # changed since the endpoint's views were built


def touch(w: Worker) -> None:
    """`w` changed: its view is rebuilt before the next decision."""
    w.ep.views = None
    if not w.touched:
        w.touched = True
        w.ep.changed.append(w)


class Endpoint:
    __slots__ = (
        "changed",
        "conc",
        "expired",
        "expiries",
        "floor",
        "free",
        "hardware",
        "holes",
        "idx",
        "model_mb",
        "profile",
        "queue",
        "running",
        "spec",
        "state",
        "templates",
        "views",
        "vlist",
        "wake_at",
        "workers",
    )

    def __init__(self, idx: int, spec: DeploymentSpec, model_mb: float) -> None:
        self.idx = idx
        self.spec = spec
        self.conc = spec.concurrency
        self.hardware = spec.hardware
        self.model_mb = model_mb
        self.queue: deque[int] = deque()
        self.workers: dict[str, Worker] = {}
        self.free: list[tuple[int, Worker]] = []  # (seq, worker): oldest worker first
        self.running = 0
        self.state = ScalerState()
        self.floor = 0
        self.templates: set[int] = set()
        self.profile: TrafficProfile | None = None
        # what `decide` sees of the workers: a view per worker in `vlist` (None where one
        # stopped), patched for the workers that changed and made a tuple when asked for
        self.views: tuple[WorkerView, ...] | None = None
        self.vlist: list[WorkerView | None] = []
        self.holes = 0
        self.changed: list[Worker] = []
        # keep-warm windows in the order they end, and the one WAKE event pending for them
        self.expiries: deque[tuple[float, float, Worker]] = deque()
        self.wake_at: float | None = None
        self.expired: list[tuple[float, Worker]] = []  # (idle_since, worker) past the window

    def observe(self, now: float, arrival: list[float]) -> Observation:
        """What the scheduler would hand `decide` for this endpoint at `now`."""
        views = self.views
        if views is None:
            views = self.views = self._views()
        queue = self.queue
        return Observation(
            now=now,
            queued=len(queue),
            running=self.running,
            oldest_queued_age_s=now - arrival[queue[0]] if queue else 0.0,
            workers=views,
            floor_workers=self.floor,
        )

    def add(self, w: Worker) -> None:
        self.workers[w.sid] = w
        w.pos = len(self.vlist)
        self.vlist.append(None)
        touch(w)

    def remove(self, w: Worker) -> None:
        del self.workers[w.sid]
        self.vlist[w.pos] = None
        self.holes += 1
        self.views = None

    def _views(self) -> tuple[WorkerView, ...]:
        vlist = self.vlist
        for w in self.changed:
            w.touched = False
            if not w.stopped:
                vlist[w.pos] = WorkerView(w.sid, w.ready, w.active, w.idle_since)
        self.changed.clear()
        if self.holes > 32 and 2 * self.holes > len(vlist):
            vlist[:] = [v for v in vlist if v is not None]
            for pos, w in enumerate(self.workers.values()):
                w.pos = pos
            self.holes = 0
        if self.holes:
            return tuple(filter(None, vlist))
        return tuple(vlist)  # type: ignore[arg-type]  # no holes: every slot has a view

    def may_act(self) -> bool:
        """Whether `decide` could start or stop a worker of this endpoint now.

        Under the request_count scaler with no queue, demand fits the live workers, so the
        policy starts one only for a floor or a buffer; it stops only workers past their
        keep-warm window. When neither can happen its answer is "hold" and its state is
        unchanged, so the call is skipped (`SimConfig.exhaustive` makes every call).
        """
        spec = self.spec
        if self.queue or spec.scaler is not Scaler.REQUEST_COUNT or spec.buffer_workers:
            return True
        if len(self.workers) < max(spec.min_workers, self.floor, spec.reserved_workers):
            return True
        expired = self.expired
        if expired:
            expired[:] = [(t, w) for t, w in expired if not w.stopped and w.idle_since == t]
        return bool(expired)


class IdleWorkers:
    """Idle workers of one hardware class, least recently used first, for eviction.

    A heap of (idle since, seq, worker); an entry goes stale when its worker runs a job or
    stops, and is dropped when met (or in a compaction when stale ones pile up)."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Worker]] = []

    def push(self, idle_since: float, w: Worker, live_workers: int) -> None:
        heap = self.heap
        heapq.heappush(heap, (idle_since, w.seq, w))
        if len(heap) > 4 * live_workers + 1024:
            heap[:] = [e for e in heap if not e[2].stopped and e[2].idle_since == e[0]]
            heapq.heapify(heap)

    def evictable(self, requester: Endpoint) -> Worker | None:
        """The least recently used idle worker of another endpoint above its floor."""
        heap, kept, found = self.heap, [], None
        while heap:
            idle_since, _, w = heap[0]
            if w.stopped or w.active or w.idle_since != idle_since or w.node is None:
                heapq.heappop(heap)
                continue
            owner = w.ep
            if owner is requester or len(owner.workers) <= max(owner.spec.min_workers, owner.floor):
                kept.append(heapq.heappop(heap))
                continue
            found = w
            break
        for item in kept:
            heapq.heappush(heap, item)
        return found


@dataclass
class Outcome:
    """What one run measured; `report.summarise` turns it into the published numbers."""

    wait_s: np.ndarray  # per request; NaN when it never started
    cold: np.ndarray  # per request: it ran on a worker that came up after it arrived
    starts: dict[str, int]  # worker starts by path
    billed_s: dict[str, float]  # worker-seconds by hardware class, within [0, duration_s]
    node_s: dict[str, float]  # node-seconds by hardware class, within [0, duration_s]
    node_slots: dict[str, int]
    peak_nodes: dict[str, int]
    decide_calls: int
    events: int
    duration_s: float
    measure_from_s: float
    prices_per_hour_usd: dict[str, float]
    arrival_s: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    endpoint: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
