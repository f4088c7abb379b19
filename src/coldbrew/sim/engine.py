"""The discrete-event core: arrivals, per-endpoint FIFO queues, worker slots, cold starts,
and the real autoscaler (`control.autoscaler.decide`) called on the scheduler's tick.

Time is a number the event loop advances (a heap of events plus the sorted arrival array);
nothing reads a wall clock, so a seed fixes every result. A tick calls `decide` for each
endpoint whose observation changed (an arrival, a finished job, a worker up or past its
keep-warm window, a prewarm floor that moved) where the policy could act
(`Endpoint.may_act`); elsewhere it would answer "hold", so the skipped calls change nothing but
the run time (a test runs both ways). Dispatch follows the fleet's: a job goes to the oldest
worker with a free slot or waits in its endpoint's FIFO queue; a freed slot takes the next.
"""

from __future__ import annotations

import gc
import heapq
import random
from collections import deque
from collections.abc import Sequence

import numpy as np

from coldbrew.control.autoscaler import decide
from coldbrew.control.warmth import TrafficProfile, prewarm_workers
from coldbrew.sim.cluster import Cluster, Node
from coldbrew.sim.latency import StartPath
from coldbrew.sim.model import Endpoint, IdleWorkers, Outcome, SimConfig, Worker, touch
from coldbrew.sim.workload import Trace
from coldbrew.spec import DeploymentSpec

PREWARM_EVERY_S = 60.0  # how often prewarm floors are re-read (the profile has 300 s buckets)
NODE_CHECK_EVERY_S = 10.0
#: The wall-clock instant of simulated t=0: midnight UTC of a day after a week of history, so a
#: prewarm profile learned on the days before has whole days to average.
WALL_START_S = 7 * 86_400.0
_DONE, _READY, _WAKE, _NODE_UP = 0, 1, 2, 3


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
            Endpoint(i, spec, load.model_mb)
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
        self.heap: list[tuple[float, int, int, object]] = []
        self.seq = 0
        self.dirty: set[int] = set()
        self.waiting: dict[str, deque[Worker]] = {}
        self.idle_lru: dict[str, IdleWorkers] = {}
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

    def _push(self, at: float, kind: int, obj: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, obj))

    def _start_job(self, w: Worker, r: int, now: float) -> None:
        self.wait[r] = now - self.arrival[r]
        if self.arrival[r] < w.ready_at:  # it waited for a worker that was not up yet
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
        self._push(now + self.duration[r], _DONE, w)

    def _arrive(self, r: int, ep: Endpoint, now: float) -> None:
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

    def _idle(self, w: Worker, now: float) -> None:
        """`w` has nothing running: its keep-warm window starts now."""
        ep = w.ep
        w.idle_since = now
        touch(w)
        lru = self.idle_lru.get(ep.hardware)
        if lru is None:
            lru = self.idle_lru[ep.hardware] = IdleWorkers()
        lru.push(now, w, self.worker_count)
        expiry = now + ep.spec.idle_timeout_s
        ep.expiries.append((expiry, now, w))
        if ep.wake_at is None:
            ep.wake_at = expiry
            self._push(expiry, _WAKE, ep)

    def _wake(self, ep: Endpoint, now: float) -> None:
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

    def _done(self, w: Worker, now: float) -> None:
        was_full = w.active >= w.ep.conc
        w.active -= 1
        touch(w)
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

    def _ready(self, w: Worker, now: float) -> None:
        w.ready = True
        w.ready_at = now
        ep = w.ep
        touch(w)
        queue = ep.queue
        while queue and w.active < ep.conc:
            self.queued_total -= 1
            self._start_job(w, queue.popleft(), now)
        if w.active < ep.conc:
            heapq.heappush(ep.free, (w.seq, w))
        if w.active == 0:
            self._idle(w, now)
        self.dirty.add(ep.idx)

    def _tick(self, now: float) -> None:
        if self.config.exhaustive:
            dirty = [ep.idx for ep in self.eps if ep.workers or ep.queue or ep.floor]
            dirty += [i for i in self.dirty if not (self.eps[i].workers or self.eps[i].queue)]
            dirty = sorted(set(dirty))
            self.dirty = set()
        else:
            dirty, self.dirty = sorted(self.dirty), set()
        exhaustive = self.config.exhaustive
        for idx in dirty:
            ep = self.eps[idx]
            if not exhaustive and not ep.may_act():
                continue
            decision, ep.state = decide(ep.observe(now, self.arrival), ep.spec, ep.state)
            self.decide_calls += 1
            for sid in decision.stop:
                self._stop(ep.workers[sid], now)
            for _ in range(decision.start):
                self._launch(ep, now)
            if ep.queue:
                self.dirty.add(idx)

    def _launch(self, ep: Endpoint, now: float) -> None:
        self.seq += 1
        w = Worker(self.seq, ep)
        ep.add(w)
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

    def _place(self, w: Worker, node: Node, now: float) -> None:
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

    def _stop(self, w: Worker, now: float) -> None:
        ep = w.ep
        w.stopped = True
        ep.remove(w)
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

    def _bill(self, w: Worker, now: float) -> None:
        start = max(w.placed_at, self.config.warmup_s)
        end = min(now, self.config.duration_s)
        if end > start:
            hardware = w.ep.hardware
            self.billed[hardware] = self.billed.get(hardware, 0.0) + end - start

    def _evict(self, ep: Endpoint, now: float) -> Node | None:
        """Free a slot for `ep` by stopping the least recently used idle worker of another
        endpoint that is above its floor, as placement does when slots run out."""
        lru = self.idle_lru.get(ep.hardware)
        w = lru.evictable(ep) if lru is not None else None
        if w is None or w.node is None:
            return None
        node = w.node
        self._stop(w, now)  # a worker waiting longer may take the slot first
        return node if node.used < node.slots else None

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

    def _begin(self) -> None:
        for ep in self.eps:
            spec = ep.spec
            if spec.min_workers or spec.prewarm == "auto" or spec.buffer_workers:
                self.dirty.add(ep.idx)
            if self.config.warm_start:
                for _ in range(spec.min_workers):
                    self._warm_worker(ep)
        self._refresh_floors(0.0)

    def _warm_worker(self, ep: Endpoint) -> None:
        """A worker already up at t=0 (no cold start), on any free slot or a new node."""
        self.seq += 1
        w = Worker(self.seq, ep)
        ep.add(w)
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
        """Play every arrival up to `duration_s`, then finish the queued jobs (for at most
        `drain_s` more).

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
        tick_s, ticks, next_tick = config.tick_interval_s, 0, 0.0
        next_floor, next_nodes = PREWARM_EVERY_S, NODE_CHECK_EVERY_S
        end_s = config.duration_s
        stop_at = max(end_s, arrival[-1] if n else 0.0) + config.drain_s
        inf = float("inf")
        while True:
            t_arr = arrival[i] if i < n else inf
            t_heap = heap[0][0] if heap else inf
            if t_heap <= t_arr and t_heap < next_tick:
                at, _, kind, obj = pop(heap)
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
                busy = self.queued_total or self.running_total
                if i >= n and now >= end_s and (now >= stop_at or not busy):
                    break
                if now >= next_floor:
                    self._refresh_floors(now)
                    next_floor += PREWARM_EVERY_S
                if now >= next_nodes and now <= end_s:
                    self.cluster.release_idle(now, self._forget)
                    next_nodes += NODE_CHECK_EVERY_S
                self._tick(now)
                ticks += 1
                next_tick = ticks * tick_s  # no drift from adding tick_s up
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
