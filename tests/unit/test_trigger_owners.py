"""Triggers between two gateways' managers on one store and one lease table (in-process,
FakeClock): a trigger runs on exactly one gateway, moves to a survivor once a dead gateway's
lease ran out, stops at once when paused; and a job that ends before its message is acked
is settled only once, by whoever runs the trigger after a crash."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from tests.unit.test_trigger_runner import FakeSink, FakeSource, FakeSubmitter, _trigger

from coldbrew.clock import FakeClock
from coldbrew.cluster.leases import LocalLeases, rendezvous_owner
from coldbrew.cluster.ownership import Ownership
from coldbrew.integrations.triggers.base import (
    SOURCES,
    Kind,
    KindConfig,
    Message,
    register_source,
)
from coldbrew.integrations.triggers.manager import TriggerManager, TriggerRequest, trigger_lease
from coldbrew.integrations.triggers.runner import TriggerRunner
from coldbrew.store.models import JobStatus
from coldbrew.store.sqlite import SQLiteStore
from coldbrew.store.triggers import TriggerState

TTL_S = 10.0
IDLE = TriggerRequest("nightly", "idle-test", {}, "echo")


class IdleConfig(KindConfig):
    """No settings."""


class IdleSource(FakeSource):
    """A source with nothing to fetch, which waits without the clock (cron's wait would move
    the FakeClock on, and with it every lease)."""

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        await asyncio.Event().wait()
        return []


@pytest.fixture(autouse=True)
def idle_kind() -> Iterator[None]:
    """The test's source kind, registered for this module's tests only."""
    register_source(Kind("idle-test", IdleConfig, lambda c, ctx: IdleSource(), "a test source"))
    yield
    SOURCES.pop("idle-test")


class Catalog:
    async def list_endpoints(self, account: str | None) -> list[Any]:
        return [SimpleNamespace(id=1)]


def _gateway(
    gid: str, leases: LocalLeases, store: SQLiteStore, clock: FakeClock
) -> tuple[Ownership, TriggerManager]:
    own = Ownership(leases, Catalog(), clock, gid, f"http://{gid}", TTL_S, fenced=True)  # type: ignore[arg-type]
    manager = TriggerManager(store, FakeSubmitter(), clock, f"consumer-{gid}")
    manager.attach(own.claim, own.round)
    own.claimants.append(manager)
    return own, manager


def test_a_trigger_runs_on_one_gateway_and_moves_when_it_dies() -> None:
    async def main() -> None:
        clock, store = FakeClock(), SQLiteStore(":memory:")
        leases = LocalLeases(clock)
        g1, m1 = _gateway("g1", leases, store, clock)
        g2, m2 = _gateway("g2", leases, store, clock)
        for own in (g1, g2, g1, g2):
            await own.round()
        created = [
            await (m1, m2)[i % 2].create("acme", replace(IDLE, name=f"nightly{i}"))
            for i in range(24)  # all on one gateway by chance: 2 in 16.7 million
        ]
        for own in (g1, g2):
            await own.round()
        running = {gid: set(m.runners) for gid, m in (("g1", m1), ("g2", m2))}
        assert not running["g1"] & running["g2"]
        assert running["g1"] | running["g2"] == {t.id for t in created}
        for t in created:
            owner = rendezvous_owner(trigger_lease(t.id), ["g1", "g2"])
            assert t.id in running[owner or ""]
        assert running["g1"] and running["g2"]  # spread

        paused = next(iter(running["g1"]))
        trigger = await m2.get(None, paused)
        await m2.set_state(trigger, TriggerState.PAUSED)  # on the gateway not running it
        await g1.round()  # the owner stops it at its next round: the lease is not wanted
        assert paused not in m1.runners

        await m1.stop()  # g1 is killed: no rounds, its leases run out after the TTL
        gone = running["g1"] - {paused}
        clock.advance(TTL_S - 1)
        await g2.round()
        assert not gone & set(m2.runners), "taken before the lease ran out"
        clock.advance(2.0)
        await g2.round()
        assert gone <= set(m2.runners)
        assert set(m2.runners) == {t.id for t in created} - {paused}
        await m2.stop()
        await store.close()

    asyncio.run(main())


class CrashingSource(FakeSource):
    """The job ends while the window is being accepted, then the process dies before the ack."""

    def __init__(self) -> None:
        super().__init__()
        self.runner: TriggerRunner | None = None
        self.submitter: FakeSubmitter | None = None

    async def ack(self, messages: Any) -> None:
        assert self.runner is not None and self.submitter is not None
        self.runner.on_final(self.submitter.end("j1", JobStatus.COMPLETED))
        await self.runner._settle(list(self.runner._ended))  # the finish loop's turn
        raise asyncio.CancelledError  # kill -9 before the ack


def test_a_job_that_ends_before_its_ack_is_settled_once_across_a_crash() -> None:
    async def main() -> None:
        clock, store = FakeClock(), SQLiteStore(":memory:")
        await store.create_trigger(_trigger())
        submitter, source, sink = FakeSubmitter(), CrashingSource(), FakeSink()
        runner = TriggerRunner(_trigger(), source, sink, submitter, store, clock)
        source.runner, source.submitter = runner, submitter
        window = [Message("a", {"n": "a"}, 0.0)]
        with contextlib.suppress(asyncio.CancelledError):
            await runner._accept(window)
        assert sink.records == []  # not settled before the ack
        assert (await store.counters("t1")).received == 1  # counted with its row

        after, again = FakeSource(), FakeSink()  # the next owner: the message is redelivered
        second = TriggerRunner(_trigger(), after, again, submitter, store, clock)
        await second._recover()  # reads the row back and settles the ended job
        await second._accept(window)  # the redelivery: acked, no new job, not counted again
        assert [r.message_key for r in again.records] == ["a"]
        assert after.acked == ["a"] and len(submitter.jobs) == 1
        counters = await store.counters("t1")
        assert (counters.received, counters.completed) == (1, 1)
        await store.close()

    asyncio.run(main())
