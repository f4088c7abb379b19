"""Pipeline runs between two gateways on one lease table (in-process, FakeClock, one SQLite
store): a run is driven only by the holder of its pipeline's lease, wherever it was started,
and when that gateway dies the other resumes it once the lease ran out, without a restart and
without running a finished stage again."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

from tests.unit.test_pipeline_driver import FOUR, ME, FakeJobs, handlers, settle, stages_of, until

from coldbrew.clock import FakeClock
from coldbrew.cluster.leases import LocalLeases, rendezvous_owner
from coldbrew.cluster.ownership import Ownership
from coldbrew.control.pipelines import Pipelines, pipeline_lease
from coldbrew.store.models import JobStatus

TTL_S = 10.0


class Catalog:
    async def list_endpoints(self, account: str | None) -> list[Any]:
        return [SimpleNamespace(id=1)]


def _gateway(gid: str, leases: LocalLeases, driver: Pipelines, clock: FakeClock) -> Ownership:
    own = Ownership(leases, Catalog(), clock, gid, f"http://{gid}", TTL_S, fenced=True)  # type: ignore[arg-type]
    own.claimants.append(driver)
    driver.attach(own.claim, own.round)
    return own


def test_a_run_is_driven_by_its_pipelines_owner_and_resumed_by_a_survivor() -> None:
    async def main() -> None:
        from coldbrew.store.sqlite import SQLiteStore

        clock = FakeClock()
        store = SQLiteStore(":memory:")
        await store.create_account("acme", "whsec", clock.time())
        for name in handlers():
            await store.add_version("acme", name, "sha", "app", "M", {}, {}, clock.time())
        jobs = FakeJobs(clock, handlers())
        leases = LocalLeases(clock)
        drivers = {g: Pipelines(store, jobs, clock) for g in ("g1", "g2")}  # type: ignore[arg-type]
        owns = {g: _gateway(g, leases, d, clock) for g, d in drivers.items()}
        for g in ("g1", "g2", "g1", "g2"):
            await owns[g].round()
        # (no `resume()`: its purge loop sleeps on the FakeClock, which moves it on; rounds
        # call `owned` on drivers that were not stopped)
        lease = pipeline_lease("acme", "moods")
        owner = rendezvous_owner(lease, ["g1", "g2"])
        other = "g2" if owner == "g1" else "g1"
        assert owner is not None

        found, _ = await drivers[other].define(ME, FOUR)
        run = await drivers[other].submit(ME, found, {"who": "ana"}, None)
        await settle()
        assert run.id not in drivers[other]._tasks  # not its pipeline: it does not drive it
        await owns[owner].round()  # the owner sees the unfinished run at its next round
        assert owns[owner].holds(lease) and run.id in drivers[owner]._tasks
        await stages_of(store, run.id, 1)
        assert await jobs.run_all() == 1  # see
        await stages_of(store, run.id, 2)  # feel is queued when the owner dies

        await drivers[owner].stop()  # kill -9: its drivers are gone, its leases not released
        for _ in range(int(TTL_S) - 1):
            clock.advance(1.0)
            await owns[other].round()
            assert run.id not in drivers[other]._tasks, "resumed before the lease ran out"
        clock.advance(2.0)
        await owns[other].round()
        assert owns[other].holds(lease) and run.id in drivers[other]._tasks

        async def ended() -> bool:
            await jobs.run_all()
            current = await store.get_run(run.id)
            return current is not None and current.status.final

        await until(ended, "the run ending on the survivor")
        done = await store.get_run(run.id)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.output == {"text": "ana: try a happy song"}
        assert jobs.submitted == Counter(digits=1, emotion=1, recommend=1, notify=1)
        await drivers[other].stop()
        await store.close()

    asyncio.run(main())


def test_a_keyed_submit_returns_the_first_run() -> None:
    async def main() -> None:
        from coldbrew.store.sqlite import SQLiteStore

        clock = FakeClock()
        store = SQLiteStore(":memory:")
        await store.create_account("acme", "whsec", clock.time())
        for name in handlers():
            await store.add_version("acme", name, "sha", "app", "M", {}, {}, clock.time())
        jobs = FakeJobs(clock, handlers())
        driver = Pipelines(store, jobs, clock)  # type: ignore[arg-type]
        found, _ = await driver.define(ME, FOUR)
        created: list[str] = []

        async def on_create(run: Any) -> None:
            created.append(run.id)

        first = await driver.submit(ME, found, {"who": "a"}, None, key="k1", on_create=on_create)
        again = await driver.submit(ME, found, {"who": "a"}, None, key="k1", on_create=on_create)
        other = await driver.submit(ME, found, {"who": "a"}, None, key="k2", on_create=on_create)
        assert first.id == again.id != other.id
        assert created == [first.id, other.id]
        await driver.stop()
        await store.close()

    asyncio.run(main())
