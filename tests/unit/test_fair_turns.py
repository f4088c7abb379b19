"""Fewer slots than accounts that want them: the contested slot takes turns between accounts,
a job or two at a time, instead of going to the first account by name for as long as it has
work (starving the others) or moving on every tick (thrashing cold starts)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.unit.conftest import FakeBackend, settle
from tests.unit.test_fairshare import holder

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.fairshare import fair_shares, pick_victim
from coldbrew.control.scheduler import Scheduler
from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore


def test_the_leftover_slot_goes_to_the_account_without_one() -> None:
    backlog = {"alpha": 9, "zed": 9}
    assert fair_shares(1, backlog, {}, {"alpha": 1}, {"alpha": 5.0}) == {"alpha": 0, "zed": 1}
    # nobody holds it now: the one that has gone longer without it
    assert fair_shares(1, backlog, {}, {}, {"alpha": 5.0, "zed": 7.0}) == {"alpha": 1, "zed": 0}
    # with a whole slot each, the leftover stays where it is (no slot moving on every job)
    held = {"alpha": 1, "zed": 2}
    assert fair_shares(3, backlog, {}, held, {}) == {"alpha": 1, "zed": 2}


def test_a_worker_that_has_not_finished_a_job_is_not_taken_by_another_account() -> None:
    starting = holder("z1", "zed", 2, jobs=1)
    fresh = starting.__class__(**{**starting.__dict__, "fresh": True})
    assert pick_victim([fresh], "alpha", 1, {"zed": 1}, {"alpha": 1, "zed": 0}) is None
    assert pick_victim([starting], "alpha", 1, {"zed": 1}, {"alpha": 1, "zed": 0}) == starting


async def _version(store: SQLiteStore, account: str, clock: FakeClock) -> Version:
    await store.create_account(account, "whsec", clock.time())
    spec = {"max_workers": 1, "idle_timeout_s": 600}
    version, _ = await store.add_version(account, "e", "sha", "app", "E", spec, {}, clock.time())
    return version


def _job(version: Version, clock: FakeClock) -> Job:
    clock.advance(0.01)
    return Job(
        id=str(uuid.uuid4()),
        account=version.account,
        endpoint_id=version.endpoint_id,
        endpoint="e",
        version_id=version.id,
        status=JobStatus.IN_QUEUE,
        input={},
        created_at=clock.time(),
        expires_at=clock.time() + 3600,
        timeout_s=600,
        max_attempts=3,
    )


def test_one_slot_two_backlogs_take_turns_without_thrashing(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        clock, store, backend = FakeClock(), SQLiteStore(":memory:"), FakeBackend()
        settings = Settings(home=tmp_path, hardware_slots={"cpu": 1})
        scheduler = Scheduler(store, backend, clock, settings)
        alpha, zed = await _version(store, "alpha", clock), await _version(store, "zed", clock)
        await scheduler.refresh_endpoints()
        for _ in range(6):
            await store.create_job(_job(alpha, clock))
        for _ in range(2):
            await store.create_job(_job(zed, clock))
        ran: list[str] = []
        for _ in range(60):  # ticks; each answers the jobs its workers run
            clock.advance(0.1)
            await scheduler.tick()
            await settle()
            for handle in backend.handles:
                for job_id in sorted(handle.running):
                    job = await store.get_job(job_id)
                    assert job is not None
                    ran.append(job.account)
                    handle.done(job_id)
            await settle()
        assert len(backend.handles) <= 5  # a few turns, not a worker per tick
        return ran

    ran = asyncio.run(scenario())
    assert sorted(ran) == ["alpha"] * 6 + ["zed"] * 2
    # zed's first job does not wait for alpha's whole backlog of 6
    assert ran.index("zed") < 3, ran
