"""Placement against its own interface: a plan launches what the autoscaler asks for on free
slots, backs off after a failed setup, and frees a slot (LRU, idle first) when none is free."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.conftest import FakeBackend, World

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.fleet import Fleet
from coldbrew.control.placement import Placement
from coldbrew.control.queues import QueueLedger
from coldbrew.control.workers import WorkerState
from coldbrew.store.models import QueueStat, Version
from coldbrew.store.sqlite import SQLiteStore


async def world(tmp_path: Path, slots: int) -> tuple[Placement, Fleet, list[Version]]:
    clock, store = FakeClock(), SQLiteStore(":memory:")
    versions = []
    for account in ("a", "b"):
        await store.create_account(account, "whsec_x", clock.time())
        version, _ = await store.add_version(
            account, "e", "sha", "app", "E", {"idle_timeout_s": 600}, {}, clock.time()
        )
        versions.append(version)
    settings = Settings(home=tmp_path, hardware_slots={"cpu": slots})
    fleet = Fleet(store, FakeBackend(), clock, settings)
    await fleet.refresh({v.id for v in versions})
    return Placement(fleet, store, clock, settings, QueueLedger(100)), fleet, versions


def test_a_queue_asks_for_a_worker_on_a_free_slot(tmp_path: Path) -> None:
    async def scenario() -> None:
        placement, fleet, (a, _) = await world(tmp_path, slots=2)
        plan = await placement.plan({a.id: QueueStat(queued=1, oldest_created_at=0.0)}, 0.0)
        assert plan.launch == [a.id] and plan.stop == []
        fleet.backoff[a.id] = (10.0, 5.0)  # its setup failed: no start before 10 s
        plan = await placement.plan({a.id: QueueStat(queued=1, oldest_created_at=0.0)}, 1.0)
        assert plan.launch == []

    asyncio.run(scenario())


def test_with_no_free_slot_an_idle_worker_of_another_account_is_drained(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        placement, fleet, (a, b) = await world(tmp_path, slots=1)
        fleet.launch(*fleet.versions[b.id])
        (holder,) = fleet.workers.values()
        holder.state, holder.served = WorkerState.IDLE, True
        plan = await placement.plan({a.id: QueueStat(queued=3, oldest_created_at=0.0)}, 0.0)
        assert plan.launch == [] and plan.stop == [holder]
        assert holder.state is WorkerState.DRAINING  # decided now, signalled by the act step
        assert (holder.stop_reason or "").startswith("evicted")

    asyncio.run(scenario())


def test_an_arrival_reaches_the_traffic_profile_placement_keeps(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup(prewarm="auto")  # the tick read (and cached) the endpoint's profile
        job = w.job()
        w.scheduler.record_arrival(job)
        profile = w.scheduler.placement._profiles[w.version.endpoint_id][1]
        assert sum(profile.counts.values()) == 1  # learned now, not at the next store read

    asyncio.run(scenario())
