"""Accounts share the hardware fairly: one account's deep backlog neither starves another's
first request nor slows its own draining.

The 10,000 backlog jobs are written straight into the store (one transaction, as `/run` would
write them one by one): submitting them over HTTP would take most of the test's time on two
cores and measure the gateway, not the scheduler.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from coldbrew.control.scheduler import Scheduler
from coldbrew.platform import Platform
from coldbrew.store.models import Job, JobStatus
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for
from tests.integration.test_tenants import deploy_as, key_for

pytestmark = pytest.mark.anyio
NOOP = FIXTURES / "tenants" / "noop"
BACKLOG = 10_000
SHALLOW = 1_000  # a queue this short cost little to count even before the counters
SLOTS = 2


async def queue_directly(platform: Platform, account: str, count: int) -> int:
    """Write `count` queued jobs for `account`'s noop endpoint into the store at once."""
    endpoint = await platform.store.get_endpoint(account, "noop")
    assert endpoint is not None
    now = platform.clock.time()
    jobs = [
        Job(
            id=str(uuid.uuid4()),
            account=account,
            endpoint_id=endpoint.id,
            endpoint="noop",
            version_id=endpoint.current_version_id,
            status=JobStatus.IN_QUEUE,
            input={"i": i},
            created_at=now,
            expires_at=now + 86_400,
            timeout_s=60.0,
            max_attempts=1,
        )
        for i in range(count)
    ]
    await platform.store.save_jobs(jobs)
    platform.scheduler.mark_queued(endpoint.current_version_id)
    return endpoint.current_version_id


def record(scheduler: Scheduler) -> list[tuple[str, str, str]]:
    """Events (kind, account, detail) in the order the scheduler acted on them."""
    events: list[tuple[str, str, str]] = []
    fleet = scheduler.fleet
    assign, drain, launch, ready = (
        scheduler.dispatcher.assign,
        fleet.drain,
        fleet.launch,
        fleet.on_ready,
    )
    dispatch_now = scheduler.dispatch_now

    async def on_assign(worker: Any, job: Job, slot: str = "") -> None:
        events.append(("assign", job.account, job.id))
        await assign(worker, job, slot)

    def on_drain(worker: Any, reason: str) -> bool:
        events.append(("stop", worker.version.account, reason))
        return drain(worker, reason)

    def on_launch(version: Any, spec: Any) -> None:
        events.append(("launch", version.account, ""))
        launch(version, spec)

    def on_ready(worker: Any, frame: dict[str, Any]) -> None:
        events.append(("ready", worker.version.account, worker.id))
        ready(worker, frame)

    async def on_queued(job: Job) -> bool:
        events.append(("queued", job.account, job.id))
        return await dispatch_now(job)

    scheduler.dispatcher.assign = on_assign  # type: ignore[method-assign]
    fleet.drain = on_drain  # type: ignore[method-assign]
    fleet.launch = on_launch  # type: ignore[method-assign]
    fleet.on_ready = on_ready  # type: ignore[method-assign]
    scheduler.dispatch_now = on_queued  # type: ignore[method-assign]
    return events


def first(events: list[tuple[str, str, str]], kind: str, account: str, after: int = 0) -> int:
    return next(i for i, e in enumerate(events) if i >= after and e[0] == kind and e[1] == account)


async def test_a_backlog_of_10000_does_not_starve_another_accounts_first_runsync(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, hardware_slots={"cpu": SLOTS}) as cb:
        await deploy_as(cb.platform, "big", NOOP)
        await deploy_as(cb.platform, "small", NOOP)
        small = await key_for(cb, "small")
        scheduler = cb.platform.scheduler
        events = record(scheduler)
        await queue_directly(cb.platform, "big", BACKLOG)
        await wait_for(  # the backlog holds every slot, each worker past its first job (a fresh
            # worker is not taken back before it served one: fairshare.pick_victim)
            lambda: asyncio.sleep(0, [w for w in scheduler.workers.values() if w.served]),
            lambda served: len(served) == SLOTS,
        )

        answer = await cb.http.post("/v2/noop/runsync", json={"input": {"i": 7}}, headers=small)
        left = scheduler.queue_lengths().get(("big", "noop"), 0)

    body = answer.json()
    assert body["status"] == "COMPLETED" and body["output"] == {"i": 7}  # one call, no IN_QUEUE
    assert left > 0  # served while the backlog was still queued
    queued = first(events, "queued", "small")
    evicted = first(events, "stop", "big", after=queued)
    assert "fair share" in events[evicted][2]
    # the eviction came in the first tick after the job was queued: at most the tick already
    # running handed out one round of backlog jobs meanwhile (a tick fills only the slots free
    # when it began, though store calls yield to the loop and slots free up while it runs)
    backlog_meanwhile = [e for e in events[queued:evicted] if e[0] == "assign"]
    assert len(backlog_meanwhile) <= SLOTS
    # the slot freed (after the drained worker's one job) went to the small account
    launches = [e for e in events[evicted:] if e[0] == "launch"]
    assert launches[0][1] == "small"
    # once its worker was ready, its job went before the backlog's next round (the backlog has
    # one worker left: a tick already running may hand it one job, the next tick one more)
    ready = first(events, "ready", "small", after=evicted)
    started = first(events, "assign", "small", after=ready)
    assert len([e for e in events[ready:started] if e[0] == "assign"]) <= SLOTS


async def test_an_accounts_weight_set_by_an_admin_gives_it_more_slots(tmp_path: Path) -> None:
    async with running(tmp_path, hardware_slots={"cpu": 3}) as cb:
        # by name alone the first account would get the odd slot; its weight decides instead
        await deploy_as(cb.platform, "a-light", NOOP)
        await deploy_as(cb.platform, "b-heavy", NOOP)
        await key_for(cb, "a-light")
        await key_for(cb, "b-heavy")
        weighted = await cb.http.patch("/v1/accounts/b-heavy", json={"weight": 2})
        assert weighted.status_code == 200 and weighted.json()["weight"] == 2.0
        await queue_directly(cb.platform, "a-light", 3_000)
        await queue_directly(cb.platform, "b-heavy", 3_000)
        scheduler = cb.platform.scheduler

        async def held() -> dict[str, int]:
            counts: dict[str, int] = {}
            for worker in scheduler.workers.values():
                if worker.live:
                    counts[worker.version.account] = counts.get(worker.version.account, 0) + 1
            return counts

        await wait_for(held, lambda counts: counts == {"a-light": 1, "b-heavy": 2}, 60)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_deep_backlog_drains_as_fast_as_a_shallow_one(tmp_path: Path) -> None:
    async with running(tmp_path, hardware_slots={"cpu": SLOTS}) as cb:
        await deploy_as(cb.platform, "big", NOOP)
        done = 0
        reached = asyncio.Event()
        target = 0

        def count(job: Job) -> None:
            nonlocal done
            done += 1
            if done >= target:
                reached.set()

        cb.platform.scheduler.add_final_listener(count)

        async def drain(jobs: int) -> float:
            nonlocal done, target
            done, target = 0, jobs
            reached.clear()
            started = time.perf_counter()
            await queue_directly(cb.platform, "big", jobs)
            await asyncio.wait_for(reached.wait(), 600)
            return jobs / (time.perf_counter() - started)

        await drain(300)  # both workers up and warm
        before = await drain(SHALLOW)
        deep = await drain(BACKLOG)
        after = await drain(SHALLOW)  # the machine is shared: measure the shallow one twice
    shallow = (before + after) / 2
    print(
        f"\ndrain rate: {BACKLOG:,}-job backlog {deep:,.0f} jobs/s; {SHALLOW:,}-job backlog "
        f"{before:,.0f} and {after:,.0f} jobs/s; deep/shallow {deep / shallow:.0%}"
    )
