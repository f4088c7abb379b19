"""The discrete-event core: arrivals, per-endpoint FIFO queues, worker slots, cold starts,
and the real autoscaler (`control.autoscaler.decide`) called on every scheduler tick.

Time is a number the event loop advances (a heap of events plus the sorted arrival array);
nothing reads a wall clock, so a seed fixes every result. A tick calls `decide` for each
endpoint whose observation changed since the last tick (an arrival, a finished job, a worker
that came up or whose keep-warm window ran out, a prewarm floor that moved) or that has a queue:
for an unchanged observation `decide` answers the same, so skipping those calls changes nothing
but the run time. Dispatch follows the fleet's: a job goes to the oldest worker with a free
slot, or waits in its endpoint's FIFO queue; a finished job's slot takes the next queued job.
"""

from __future__ import annotations

import gc
import heapq
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from coldbrew.config import DEFAULT_PRICES_PER_HOUR_USD, Settings
from coldbrew.control.autoscaler import Observation, ScalerState, WorkerView, decide
from coldbrew.control.warmth import TrafficProfile, prewarm_workers
from coldbrew.sim.cluster import DEFAULT_NODE_SLOTS, Cluster, Node
from coldbrew.sim.latency import ColdStarts, StartPath
from coldbrew.sim.workload import Trace
from coldbrew.spec import DeploymentSpec, Scaler

TICK_INTERVAL_S: float = Settings.model_fields["tick_interval_s"].default
PREWARM_EVERY_S = 60.0  # how often prewarm floors are re-read (the profile has 300 s buckets)
NODE_CHECK_EVERY_S = 10.0
#: The wall-clock instant of simulated t=0: midnight UTC of a day after a week of history, so a
#: prewarm profile learned on the days before has whole days to average.
WALL_START_S = 7 * 86_400.0
_DONE, _READY, _WAKE, _NODE_UP = 0, 1, 2, 3


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


class _Worker:
    __slots__ = (
        "active",
        "ep",
        "idle_since",
        "node",
        "placed_at",
        "ready",
        "ready_at",
        "seq",
        "served",
        "sid",
        "stopped",
        "pos",
        "touched",
    )

    def __init__(self, seq: int, ep: _Endpoint) -> None:
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


def _touch(w: _Worker) -> None:
    """`w` changed: its view is rebuilt before the next decision."""
    w.ep.views = None
    if not w.touched:
        w.touched = True
        w.ep.changed.append(w)


class _Endpoint:
    __slots__ = (
        "conc",
        "floor",
        "free",
        "hardware",
        "idx",
        "model_mb",
        "profile",
        "queue",
        "running",
        "spec",
        "state",
        "changed",
        "expired",
        "expiries",
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
        self.workers: dict[str, _Worker] = {}
        self.free: list[tuple[int, _Worker]] = []  # (seq, worker): oldest worker first
        self.running = 0
        self.state = ScalerState()
        self.floor = 0
        self.templates: set[int] = set()
        self.profile: TrafficProfile | None = None
        # what `decide` sees of the workers: rebuilt from `vlist` when a worker changed;
        # `vlist` is patched for changed workers and rebuilt when one is added or removed
        self.views: tuple[WorkerView, ...] | None = None
        self.vlist: list[WorkerView] | None = None
        self.changed: list[_Worker] = []
        # keep-warm windows in the order they end, and the one WAKE event pending for them
        self.expiries: deque[tuple[float, float, _Worker]] = deque()
        self.wake_at: float | None = None
        self.expired: list[tuple[float, _Worker]] = []  # (idle_since, worker) past the window


@dataclass
class Outcome:
    """What one run measured; `report.summarise` turns it into the published numbers."""

    wait_s: np.ndarray  # per request; NaN when it never started
    cold: np.ndarray  # per request: it waited for a worker that started after it arrived
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


class Simulation:
    """One run of a trace against endpoint specs on a simulated cluster."""

    def __init__(
        self,
        trace: Trace,
        specs: Sequence[DeploymentSpec],
        config: SimConfig,
        profiles: Sequence[TrafficProfile | None] | None = None,
    ) -> None:
        self.trace = trace
        self.config = config
        self.eps = [
            _Endpoint(i, spec, load.model_mb)
            for i, (spec, load) in enumerate(zip(specs, trace.endpoints, strict=True))
        ]
        for ep, profile in zip(self.eps, profiles or (), strict=False):
            ep.profile = profile
        self.cluster = Cluster(
            config.node_slots,
            config.initial_nodes,
            config.max_nodes,
            config.node_idle_s,
            config.warmup_s,
        )
        self.rng = random.Random(config.seed)
        self.heap: list[tuple[float, int, int, object, int]] = []
        self.seq = 0
        self.dirty: set[int] = set()
        self.waiting: dict[str, deque[_Worker]] = {}
        self.idle_lru: dict[str, list[tuple[float, int, _Worker]]] = {}
        self.arrival = trace.arrival_s.tolist()
        self.duration = trace.duration_s.tolist()
        self.wait = np.full(len(trace), np.nan)
        self.cold = np.zeros(len(trace), dtype=bool)
        self.starts = {p.value: 0 for p in StartPath}
        self.billed: dict[str, float] = {}
        self.decide_calls = 0
        self.events = 0
        self.running_total = 0
        self.worker_count = 0
        self.queued_total = 0

    # -- events ------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, obj: object, arg: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, obj, arg))

    def _start_job(self, w: _Worker, r: int, now: float) -> None:
        self.wait[r] = now - self.arrival[r]
        if w.served == 0 and self.arrival[r] < w.ready_at:
            self.cold[r] = True
        w.served += 1
        w.active += 1
        w.idle_since = None
        ep = w.ep
        ep.views = None
        if not w.touched:
            w.touched = True
            ep.changed.append(w)
        ep.running += 1
        self.running_total += 1
        self._push(now + self.duration[r], _DONE, w, r)

    def _arrive(self, r: int, ep: _Endpoint, now: float) -> None:
        free = ep.free
        if not ep.queue:
            while free:
                w = free[0][1]
                if w.stopped or w.active >= ep.conc:
                    heapq.heappop(free)
                    continue
                self._start_job(w, r, now)
                if w.active >= ep.conc:
                    heapq.heappop(free)
                self.dirty.add(ep.idx)
                return
        ep.queue.append(r)
        self.queued_total += 1
        self.dirty.add(ep.idx)

    def _idle(self, w: _Worker, now: float) -> None:
        """`w` has nothing running: its keep-warm window starts now."""
        ep = w.ep
        w.idle_since = now
        _touch(w)
        lru = self.idle_lru.setdefault(ep.hardware, [])
        heapq.heappush(lru, (now, w.seq, w))
        if len(lru) > 4 * self.worker_count + 1024:
            self._compact(lru)
        expiry = now + ep.spec.idle_timeout_s
        ep.expiries.append((expiry, now, w))
        if ep.wake_at is None:
            ep.wake_at = expiry
            self._push(expiry, _WAKE, ep)

    @staticmethod
    def _compact(lru: list[tuple[float, int, _Worker]]) -> None:
        """Drop the entries of workers that have since run a job or stopped."""
        lru[:] = [e for e in lru if not e[2].stopped and e[2].idle_since == e[0]]
        heapq.heapify(lru)

    def _wake(self, ep: _Endpoint, now: float) -> None:
        """Keep-warm windows ended: the policy may stop those workers at the next tick."""
        ep.wake_at = None
        expiries = ep.expiries
        while expiries:
            expiry, idle_since, w = expiries[0]
            valid = not w.stopped and w.idle_since == idle_since
            if valid and expiry > now:
                ep.wake_at = expiry
                self._push(expiry, _WAKE, ep)
                return
            expiries.popleft()
            if valid:
                ep.expired.append((idle_since, w))
                self.dirty.add(ep.idx)

    def _done(self, w: _Worker, now: float) -> None:
        was_full = w.active >= w.ep.conc
        w.active -= 1
        _touch(w)
        w.ep.running -= 1
        self.running_total -= 1
        ep = w.ep
        queue = ep.queue
        if queue:
            self.queued_total -= 1
            self._start_job(w, queue.popleft(), now)
            self.dirty.add(ep.idx)
            return
        if was_full:
            heapq.heappush(ep.free, (w.seq, w))
        if w.active == 0:
            self._idle(w, now)
        self.dirty.add(ep.idx)

    def _ready(self, w: _Worker, now: float) -> None:
        w.ready = True
        w.ready_at = now
        ep = w.ep
        _touch(w)
        queue = ep.queue
        while queue and w.active < ep.conc:
            self.queued_total -= 1
            self._start_job(w, queue.popleft(), now)
        if w.active < ep.conc:
            heapq.heappush(ep.free, (w.seq, w))
        if w.active == 0:
            self._idle(w, now)
        self.dirty.add(ep.idx)

    # -- the scheduler tick: observe, decide, act ---------------------------------------------

    def _observe(self, ep: _Endpoint, now: float) -> Observation:
        views = ep.views
        if views is None:
            views = ep.views = self._views(ep)
        queue = ep.queue
        return Observation(
            now=now,
            queued=len(queue),
            running=ep.running,
            oldest_queued_age_s=now - self.arrival[queue[0]] if queue else 0.0,
            workers=views,
            floor_workers=ep.floor,
        )

    @staticmethod
    def _views(ep: _Endpoint) -> tuple[WorkerView, ...]:
        vlist = ep.vlist
        if vlist is None:
            vlist = ep.vlist = []
            for pos, w in enumerate(ep.workers.values()):
                w.pos = pos
                vlist.append(WorkerView(w.sid, w.ready, w.active, w.idle_since))
            for w in ep.changed:
                w.touched = False
        else:
            for w in ep.changed:
                w.touched = False
                if not w.stopped:
                    vlist[w.pos] = WorkerView(w.sid, w.ready, w.active, w.idle_since)
        ep.changed.clear()
        return tuple(vlist)

    def _may_act(self, ep: _Endpoint) -> bool:
        """Whether `decide` could start or stop a worker of `ep` now.

        Under the request_count scaler with no queue, demand fits the live workers, so the
        policy starts one only for a floor or a buffer; it stops only workers past their
        keep-warm window. When neither can happen its answer is "hold" and its state is
        unchanged, so the call is skipped (`SimConfig.exhaustive` makes every call).
        """
        spec = ep.spec
        if ep.queue or spec.scaler is not Scaler.REQUEST_COUNT or spec.buffer_workers:
            return True
        if len(ep.workers) < max(spec.min_workers, ep.floor, spec.reserved_workers):
            return True
        expired = ep.expired
        if expired:
            expired[:] = [(t, w) for t, w in expired if not w.stopped and w.idle_since == t]
        return bool(expired)

    def _tick(self, now: float) -> None:
        if self.config.exhaustive:
            dirty = [ep.idx for ep in self.eps if ep.workers or ep.queue or ep.floor]
            dirty += [i for i in self.dirty if not (self.eps[i].workers or self.eps[i].queue)]
            dirty = sorted(set(dirty))
            self.dirty = set()
        else:
            dirty, self.dirty = sorted(self.dirty), set()
        may_act, exhaustive = self._may_act, self.config.exhaustive
        for idx in dirty:
            ep = self.eps[idx]
            if not exhaustive and not may_act(ep):
                continue
            decision, ep.state = decide(self._observe(ep, now), ep.spec, ep.state)
            self.decide_calls += 1
            for sid in decision.stop:
                self._stop(ep.workers[sid], now)
            for _ in range(decision.start):
                self._launch(ep, now)
            if ep.queue:
                self.dirty.add(idx)

    def _launch(self, ep: _Endpoint, now: float) -> None:
        self.seq += 1
        w = _Worker(self.seq, ep)
        ep.workers[w.sid] = w
        ep.views = ep.vlist = None
        self.worker_count += 1
        node = self.cluster.free_node(ep.hardware, ep.templates) or self._evict(ep, now)
        if node is None:
            waiting = self.waiting.setdefault(ep.hardware, deque())
            waiting.append(w)
            for _ in range(self.cluster.provision(ep.hardware, len(waiting))):
                at = now + self.config.cold.node_provision.draw(self.rng)
                self._push(at, _NODE_UP, ep.hardware)
            return
        self._place(w, node, now)

    def _place(self, w: _Worker, node: Node, now: float) -> None:
        ep = w.ep
        self.cluster.take(node)
        w.node = node
        w.placed_at = now
        if ep.hardware != "cpu":
            path = StartPath.GPU
        elif node.id in ep.templates:
            path = StartPath.LOCAL_FORK if node.id == 0 else StartPath.AGENT_FORK
        else:
            path = StartPath.SPAWN
            ep.templates.add(node.id)
            node.templates.add(ep.idx)
        self.starts[path.value] += 1
        self._push(now + self.config.cold.draw(path, ep.model_mb, self.rng), _READY, w)

    def _stop(self, w: _Worker, now: float) -> None:
        ep = w.ep
        w.stopped = True
        del ep.workers[w.sid]
        ep.views = ep.vlist = None
        self.worker_count -= 1
        self.dirty.add(ep.idx)
        node = w.node
        if node is None:
            return
        self._bill(w, now)
        self.cluster.give_back(node, now)
        waiting = self.waiting.get(node.hardware)
        if waiting:
            self._place(waiting.popleft(), node, now)

    def _bill(self, w: _Worker, now: float) -> None:
        start = max(w.placed_at, self.config.warmup_s)
        end = min(now, self.config.duration_s)
        if end > start:
            hardware = w.ep.hardware
            self.billed[hardware] = self.billed.get(hardware, 0.0) + end - start

    def _evict(self, ep: _Endpoint, now: float) -> Node | None:
        """Free a slot for `ep` by stopping the least recently used idle worker of another
        endpoint that is above its floor, as placement does when slots run out."""
        lru = self.idle_lru.get(ep.hardware)
        kept = []
        node = None
        while lru:
            idle_since, _, w = lru[0]
            if w.stopped or w.active or w.idle_since != idle_since or w.node is None:
                heapq.heappop(lru)
                continue
            owner = w.ep
            floor = max(owner.spec.min_workers, owner.floor)
            if owner is ep or len(owner.workers) <= floor:
                kept.append(heapq.heappop(lru))
                continue
            node = w.node
            self._stop(w, now)  # a worker waiting longer may take the slot first
            if node.used >= node.slots:
                node = None
            break
        for item in kept:
            heapq.heappush(lru, item)
        return node

    def _node_up(self, hardware: str, now: float) -> None:
        node = self.cluster.node_up(hardware, now)
        waiting = self.waiting.get(hardware)
        while waiting and node.used < node.slots:
            self._place(waiting.popleft(), node, now)

    def _forget(self, node: Node) -> None:
        for idx in node.templates:
            self.eps[idx].templates.discard(node.id)

    def _refresh_floors(self, now: float) -> None:
        for ep in self.eps:
            if ep.profile is None:
                continue
            floor = prewarm_workers(ep.profile, WALL_START_S + now, ep.spec.prewarm_lead_s, 1.0)
            if floor != ep.floor:
                ep.floor = floor
                self.dirty.add(ep.idx)

    # -- the loop -----------------------------------------------------------------------------

    def _begin(self) -> None:
        for ep in self.eps:
            spec = ep.spec
            if spec.min_workers or spec.prewarm == "auto" or spec.buffer_workers:
                self.dirty.add(ep.idx)
            if self.config.warm_start:
                for _ in range(spec.min_workers):
                    self._warm_worker(ep)
        self._refresh_floors(0.0)

    def _warm_worker(self, ep: _Endpoint) -> None:
        """A worker already up at t=0 (no cold start), on any free slot or a new node."""
        self.seq += 1
        w = _Worker(self.seq, ep)
        ep.workers[w.sid] = w
        ep.views = ep.vlist = None
        self.worker_count += 1
        node = self.cluster.free_node(ep.hardware, ep.templates)
        if node is None:
            node = self.cluster.add_node(ep.hardware, 0.0, initial=True)
        self.cluster.take(node)
        w.node = node
        w.ready = True
        heapq.heappush(ep.free, (w.seq, w))
        self._idle(w, 0.0)

    def run(self) -> Outcome:
        """Play every arrival, then finish the queued jobs (for at most `drain_s`).

        The cyclic garbage collector is paused meanwhile: the run keeps millions of small,
        long-lived tuples in its heaps, and full collections over them cost more than the
        simulation itself (nothing here needs collecting before the run ends)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if enabled:
                gc.enable()

    def _run(self) -> Outcome:
        config = self.config
        self._begin()
        arrival, endpoint = self.arrival, self.trace.endpoint.tolist()
        eps, heap = self.eps, self.heap
        pop, n, i = heapq.heappop, len(arrival), 0
        tick_s, next_tick = config.tick_interval_s, 0.0
        next_floor, next_nodes = PREWARM_EVERY_S, NODE_CHECK_EVERY_S
        end_s = config.duration_s
        stop_at = (arrival[-1] if n else 0.0) + config.drain_s
        inf = float("inf")
        while True:
            t_arr = arrival[i] if i < n else inf
            t_heap = heap[0][0] if heap else inf
            if t_heap <= t_arr and t_heap < next_tick:
                at, _, kind, obj, arg = pop(heap)
                self.events += 1
                if kind == _DONE:
                    self._done(obj, at)  # type: ignore[arg-type]
                elif kind == _READY:
                    self._ready(obj, at)  # type: ignore[arg-type]
                elif kind == _WAKE:
                    self._wake(obj, at)  # type: ignore[arg-type]
                else:
                    self._node_up(obj, at)  # type: ignore[arg-type]
            elif t_arr < next_tick:
                self.events += 1
                self._arrive(i, eps[endpoint[i]], t_arr)
                i += 1
            else:
                now = next_tick
                if i >= n and (now >= stop_at or not (self.queued_total or self.running_total)):
                    break
                if now >= next_floor:
                    self._refresh_floors(now)
                    next_floor += PREWARM_EVERY_S
                if now >= next_nodes and now <= end_s:
                    self.cluster.release_idle(now, self._forget)
                    next_nodes += NODE_CHECK_EVERY_S
                self._tick(now)
                next_tick = now + tick_s
        return self._outcome()

    def _outcome(self) -> Outcome:
        end_s = self.config.duration_s
        for ep in self.eps:
            for w in ep.workers.values():
                if w.node is not None:
                    self._bill(w, end_s)
        return Outcome(
            wait_s=self.wait,
            cold=self.cold,
            starts=dict(self.starts),
            billed_s=dict(sorted(self.billed.items())),
            node_s=dict(sorted(self.cluster.node_seconds(end_s).items())),
            node_slots={h: self.cluster.slots_per_node(h) for h in self.cluster.nodes},
            peak_nodes=dict(sorted(self.cluster.peak_nodes.items())),
            decide_calls=self.decide_calls,
            events=self.events,
            duration_s=end_s,
            measure_from_s=self.config.warmup_s,
            prices_per_hour_usd=dict(self.config.prices_per_hour_usd),
            arrival_s=self.trace.arrival_s,
            endpoint=self.trace.endpoint,
        )
