"""Placement: how many workers each version should run, and on which hardware slots.

Per version the autoscaler (`control/autoscaler.py`) decides from an observation; warm windows
and learned traffic set a floor (pre-warming). Starts are then placed on free slots of their
hardware account by account in fair-share order (`control/fairshare.py`); when no slot is
free, one is freed: an idle worker, or a busy one of an account above its share (LRU).

`plan()` decides and takes the workers it stops out of service at once (so later decisions in
the same tick count them as gone); the scheduler acts on the plan: stop frames, launches.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.control import fairshare
from coldbrew.control.autoscaler import Observation, ScalerState, WorkerView, decide
from coldbrew.control.fleet import Fleet
from coldbrew.control.queues import QueueLedger
from coldbrew.control.warmth import TrafficProfile, prewarm_workers, scheduled_min_workers
from coldbrew.control.workers import ManagedWorker, WorkerState
from coldbrew.control.writer import BUCKET_S
from coldbrew.spec import DeploymentSpec
from coldbrew.store.base import Store
from coldbrew.store.models import QueueStat, Version

PROFILE_REFRESH_S = 60.0  # a learned traffic profile is reread from the store this often


@dataclass
class Plan:
    """What one tick decided: workers to ask to stop (already drained) and versions to launch
    (one entry per worker)."""

    stop: list[ManagedWorker] = field(default_factory=list)
    launch: list[int] = field(default_factory=list)


class Placement:
    """The scaling decision per version and the placement of new workers on slots."""

    def __init__(
        self,
        fleet: Fleet,
        store: Store,
        clock: Clock,
        settings: Settings,
        ledger: QueueLedger,
        profiles: dict[int, tuple[float, TrafficProfile]] | None = None,
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.clock = clock
        self.settings = settings
        self.ledger = ledger  # accounts' fair-share weights
        self._scaler: dict[int, ScalerState] = {}
        # hardware -> account -> when it last held a slot (monotonic): whose turn a slot is
        self._last_held: dict[str, dict[str, float]] = {}
        # endpoint -> (read at, profile); the writer records arrivals into them as they come
        self._profiles = profiles if profiles is not None else {}

    async def plan(self, stats: dict[int, QueueStat], now: float) -> Plan:
        """Scale every version with queued jobs, live workers or a floor; place the starts."""
        plan = Plan()
        fleet = self.fleet
        version_ids = set(stats) | {w.version.id for w in fleet.workers.values() if w.live}
        for vid in fleet.current:
            spec = (await fleet.version(vid))[1]
            if (
                spec.min_workers > 0
                or spec.reserved_workers > 0
                or spec.warm_schedule
                or spec.prewarm == "auto"
            ):
                version_ids.add(vid)
        wall = self.clock.time()
        wants: dict[int, int] = {}  # workers to start per version, placed fairly below
        for vid in sorted(version_ids):
            version, spec = await fleet.version(vid)
            live = [w for w in fleet.workers.values() if w.version.id == vid and w.live]
            stat = stats.get(vid)
            obs = Observation(
                now=now,
                queued=stat.queued if stat else 0,
                running=sum(len(w.jobs) for w in live),
                oldest_queued_age_s=max(0.0, wall - stat.oldest_created_at) if stat else 0.0,
                workers=tuple(
                    WorkerView(
                        w.id,
                        w.state in (WorkerState.IDLE, WorkerState.BUSY),
                        len(w.jobs),
                        w.idle_since,
                        w.reserved and vid in fleet.current,
                    )
                    for w in live
                ),
                retired=vid not in fleet.current,
                floor_workers=await self._floor(version, spec, wall),
            )
            # a batching worker takes up to batch.max_size jobs at once
            policy_spec = (
                spec.model_copy(update={"concurrency": spec.batch.max_size}) if spec.batch else spec
            )
            decision, self._scaler[vid] = decide(
                obs, policy_spec, self._scaler.get(vid, ScalerState())
            )
            for worker_id in decision.stop:
                self._stop(plan, fleet.workers[worker_id], "idle past its keep-warm window")
            if decision.start and fleet.backoff.get(vid, (0.0, 0.0))[0] > now:
                continue  # setup failed recently: wait before trying again
            if decision.start:
                wants[vid] = decision.start
        for hardware in sorted({fleet.versions[vid][1].hardware for vid in wants}):
            self._place(hardware, {v: n for v, n in wants.items() if self._hw(v) == hardware}, plan)
        return plan

    def _hw(self, version_id: int) -> str:
        return self.fleet.versions[version_id][1].hardware

    def _stop(self, plan: Plan, worker: ManagedWorker, reason: str) -> None:
        if self.fleet.drain(worker, reason):
            plan.stop.append(worker)

    async def _floor(self, version: Version, spec: DeploymentSpec, wall: float) -> int:
        """Workers the version's warm windows and learned traffic ask for at `wall`."""
        windows = [(w.cron, w.min_workers, w.timezone) for w in spec.warm_schedule]
        floor = scheduled_min_workers(windows, wall) if windows else 0
        if spec.prewarm == "auto":
            profile = await self._profile(version.endpoint_id)
            floor = max(floor, prewarm_workers(profile, wall, spec.prewarm_lead_s, 1.0))
        return floor

    async def _profile(self, endpoint_id: int) -> TrafficProfile:
        now = self.clock.monotonic()
        cached = self._profiles.get(endpoint_id)
        if cached is None or now - cached[0] > PROFILE_REFRESH_S:
            profile = TrafficProfile(bucket_s=BUCKET_S)
            today = int(self.clock.time() // 86_400)
            for day, bucket, count in await self.store.traffic(endpoint_id, today - profile.days):
                profile.counts[(day, bucket)] = count
            cached = (now, profile)
            self._profiles[endpoint_id] = cached
        return cached[1]

    def _place(self, hardware: str, wants: dict[int, int], plan: Plan) -> None:
        """Launch the wanted workers on free `hardware` slots, account by account in
        fair-share order; when none is free, free one."""
        versions = self.fleet.versions
        holders = [w for w in self.fleet.workers.values() if w.hardware == hardware]
        held = Counter(w.version.account for w in holders if w.live)
        last_held = self._last_held.setdefault(hardware, {})
        last_held.update(dict.fromkeys(held, self.clock.monotonic()))
        demand = Counter(held)
        for vid, n in wants.items():
            demand[versions[vid][0].account] += n
        weights = self.ledger.weights
        slots = self.settings.hardware_slots.get(hardware, 0)
        shares = fairshare.fair_shares(slots, demand, weights, held, last_held)
        free = slots - len(holders)
        while wants:
            account = fairshare.next_claimant(
                held, {versions[v][0].account for v in wants}, weights, shares
            )
            vid = min(v for v in wants if versions[v][0].account == account)
            if free <= 0:
                self._free_slot(holders, vid, held, shares, plan)
                return
            plan.launch.append(vid)
            free -= 1
            held[versions[vid][0].account] += 1
            wants[vid] -= 1
            if wants[vid] <= 0:
                del wants[vid]

    def _free_slot(
        self,
        holders: list[ManagedWorker],
        version_id: int,
        held: Counter[str],
        shares: dict[str, int],
        plan: Plan,
    ) -> None:
        """Start freeing a slot for `version_id` (unless one is already being freed)."""
        if any(
            w.state is WorkerState.DRAINING and (w.stop_reason or "").startswith("evicted")
            for w in holders
        ):
            return  # a slot is already being freed; wait for it
        per_version = Counter(w.version.id for w in holders if w.live)
        views = [
            fairshare.Holder(
                id=w.id,
                account=w.version.account,
                version_id=w.version.id,
                idle=w.state is WorkerState.IDLE,
                active_jobs=len(w.jobs),
                last_used=w.last_used,
                spare=w.version.id not in self.fleet.current
                or per_version[w.version.id] > w.spec.min_workers,
                fresh=not w.served,
            )
            for w in holders
            if w.live and not (w.reserved and w.version.id in self.fleet.current)
        ]  # a current version's reserved workers hold their slots: never evicted
        account = self.fleet.versions[version_id][0].account
        victim = fairshare.pick_victim(views, account, version_id, held, shares)
        if victim is None:
            return
        worker = self.fleet.workers[victim.id]
        reason = "evicted to free a slot for another endpoint"
        if victim.account != account:
            reason = (
                f"evicted to give account {account!r} its fair share of {worker.hardware} slots"
            )
        self._stop(plan, worker, reason)
