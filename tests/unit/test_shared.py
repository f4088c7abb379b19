"""What gateways share, in one process: account slots held across two dispatchers, budget stops
posted by one keeper and read by another, and a waiter woken for a job another gateway ended."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.unit.conftest import World, make_job, settle

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.jobbook import JobBook
from coldbrew.errors import BudgetExceeded
from coldbrew.integrations.webhooks import WebhookSender
from coldbrew.metering.budgets import BudgetKeeper
from coldbrew.store.models import Budget, JobStatus, UsageKind, UsageRow
from coldbrew.store.shared import LocalSignals, LocalSlots, LocalStops, Stop, make_shared
from coldbrew.store.sqlite import SQLiteStore


def test_local_slots_grant_up_to_the_cap_and_take_back() -> None:
    async def scenario() -> None:
        slots = LocalSlots()
        first = await slots.take("a", 3, 2)
        assert len(first) == 2
        assert len(await slots.take("a", 3, 5)) == 1  # one left under the cap
        assert await slots.take("a", 3) == []
        assert len(await slots.take("b", 3)) == 1  # another account's cap is its own
        slots.give_back("a", first[:1])
        assert slots.held("a") == 2
        assert len(await slots.take("a", 3)) == 1
        slots.give_back("a", ["not-a-token"])
        assert slots.held("a") == 3

    asyncio.run(scenario())


def test_two_gateways_sharing_slots_never_pass_the_account_cap(tmp_path: Path) -> None:
    """Two schedulers (two gateways) on one set of slots: with a cap of 1, the second gateway's
    free worker waits until the first gateway's job ended."""

    async def scenario() -> None:
        shared = LocalSlots()
        one = World(tmp_path / "one", account_concurrency_cap=1)
        two = World(tmp_path / "two", account_concurrency_cap=1)
        for world in (one, two):
            world.scheduler.dispatcher.slots = shared
            await world.setup(concurrency=2)
        first, second = one.job(), two.job()
        await one.run_durable(first)
        await two.run_durable(second)
        assert one.backend.handles[0].job_ids() == [first.id]
        assert two.backend.handles[0].job_ids() == []  # its worker is free, the cap is not
        assert shared.held("a") == 1
        one.backend.handles[0].done(first.id)
        await settle()
        assert shared.held("a") == 0
        await two.scheduler.tick()
        assert two.backend.handles[0].job_ids() == [second.id]
        assert shared.held("a") == 1

    asyncio.run(scenario())


def _usage(account: str, seconds: float, now: float) -> UsageRow:
    return UsageRow(
        worker_id="w1",
        account=account,
        endpoint="e",
        version_id=1,
        hardware="cpu",
        kind=UsageKind.BUSY,
        hour_start=now - now % 3600,
        seconds=seconds,
    )


def test_a_stop_one_gateway_finds_refuses_jobs_on_another(tmp_path: Path) -> None:
    """Keeper `one` sees the spend (its usage view), `two` does not yet: the board carries the
    stop to `two` at once, `two`'s own check does not lift it, and raising the budget does."""

    async def scenario() -> None:
        clock = FakeClock()
        settings = Settings(home=tmp_path)
        board = LocalStops()
        spent, behind = SQLiteStore(":memory:"), SQLiteStore(":memory:")
        keepers = []
        for store in (spent, behind):
            await store.create_account("a", "whsec_x", clock.time())
            await store.set_budget(Budget("a", None, 0.01, [], True, None, 0.0))
            keepers.append(
                BudgetKeeper(store, clock, settings, WebhookSender(store, clock, settings), board)
            )
        await spent.add_usage([_usage("a", 3600.0, clock.time())])  # $0.05 of cpu, past $0.01
        one, two = keepers
        await one.check()
        await settle()
        for keeper in (one, two):
            with pytest.raises(BudgetExceeded):
                keeper.admit("a", "e")
        await two.check()  # its usage is behind: it finds no stop, and lifts none
        await settle()
        with pytest.raises(BudgetExceeded):
            two.admit("a", "e")
        await behind.set_budget(Budget("a", None, 100.0, [], True, None, 0.0))
        await two.check()  # the budget was raised: the posted stop no longer holds
        await settle()
        one.admit("a", "e")
        two.admit("a", "e")
        assert await board.read() == []

    asyncio.run(scenario())


def test_a_waiter_is_woken_for_a_job_another_gateway_ended(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job = make_job(w.version, w.clock)
        await w.store.create_job(job)
        book: JobBook = w.scheduler.book
        future = book.watch(job.id)
        signals = LocalSignals()
        signals.on_final(book.wake)
        signals.publish(job.id)  # not final yet: the waiter keeps waiting
        await asyncio.gather(*book._waking)
        assert not future.done()
        await w.store.finish(
            job.id,
            JobStatus.COMPLETED,
            w.clock.time(),
            output={"ok": 1},
            from_statuses=[JobStatus.IN_QUEUE],
        )
        signals.publish(job.id)  # what the other gateway publishes once it wrote the end
        await asyncio.gather(*book._waking)
        assert future.done() and future.result().output == {"ok": 1}
        signals.publish("unknown")  # nobody waits: nothing is read
        assert not book._waking

    asyncio.run(scenario())


def test_without_redis_everything_stays_in_the_process(tmp_path: Path) -> None:
    shared = make_shared(Settings(home=tmp_path), FakeClock(), "gw-1")
    assert isinstance(shared.slots, LocalSlots)
    assert isinstance(shared.stops, LocalStops)
    assert isinstance(shared.signals, LocalSignals)
    assert Settings(home=tmp_path, redis_url="redis://x:1/0").shared_cache_url == "redis://x:1/0"
    both = Settings(home=tmp_path, redis_url="redis://x:1/0", cache_url="redis://y:1/0")
    assert both.shared_cache_url == "redis://y:1/0"
    assert Settings(home=tmp_path).shared_cache_url is None
    assert Settings(home=tmp_path, redis_url="redis://x:1/0").shared_state_url == "redis://x:1/0"
    assert Settings(home=tmp_path).shared_state_url is None  # state.db in the home


def test_shared_dir_holds_artifacts_and_files(tmp_path: Path) -> None:
    home = Settings(home=tmp_path / "home")
    assert home.artifacts_dir == tmp_path / "home" / "artifacts"
    moved = Settings(home=tmp_path / "home", shared_dir=tmp_path / "nfs")
    assert moved.artifact_dir("acme", "abc") == tmp_path / "nfs" / "artifacts" / "acme" / "abc"
    assert moved.files_dir == tmp_path / "nfs" / "files"
    assert moved.db_path == tmp_path / "home" / "coldbrew.db"  # the home's own state stays


def test_stop_keys_are_account_and_endpoint() -> None:
    assert Stop("a", "e", 1.0, 2.0, "2026-11").key == ("a", "e")
