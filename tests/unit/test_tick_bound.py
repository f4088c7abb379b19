"""A tick dispatches onto the slots free when it began, no more.

Store calls run on the store thread and yield to the loop, so short jobs end (and free their
slot) while a tick's dispatch loop runs. Refilling those slots in the same tick kept one tick
going for as long as a backlog lasted: another account's job queued meanwhile was not placed
(no scaling, no fair-share eviction) until that tick ended (the fairness test's flake)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.unit.conftest import World, settle


def test_a_tick_does_not_refill_slots_freed_while_it_runs(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.store.create_account("a", "whsec_x", w.clock.time())
        spec = {"min_workers": 1, "concurrency": 2}  # two slots: one claims while one frees
        w.version, _ = await w.store.add_version("a", "e", "sha", "app", "E", spec, {}, 0.0)
        await w.scheduler.refresh_endpoints()
        await w.scheduler.tick()
        await settle()
        handle = w.backend.handles[0]
        real_send = handle.send

        async def instant(frame: dict[str, Any]) -> None:  # each job ends as soon as it is sent
            await real_send(frame)
            if frame["t"] == "job":
                handle.done(frame["id"])

        handle.send = instant  # type: ignore[method-assign]
        jobs = [w.job() for _ in range(20)]
        for job in jobs:
            await w.store.create_job(job)
        w.scheduler.mark_queued(w.version.id)
        await w.scheduler.tick()
        assert len(handle.job_ids()) == 2  # two slots were free when the tick began
        for _ in range(len(jobs)):  # each freed slot wakes a tick of its own
            await w.scheduler.tick()
            await settle()
        assert sorted(handle.job_ids()) == sorted(j.id for j in jobs)
        await w.scheduler.stop()

    asyncio.run(scenario())
