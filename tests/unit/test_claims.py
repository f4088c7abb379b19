"""Claimants' leases between gateways on one lease table (in-process, FakeClock): triggers and
pipelines are spread by rendezvous hashing, never run on two gateways at once (a hand-over
stops the work before the lease is released), and a dead gateway's are taken over once its
leases ran out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from coldbrew.clock import FakeClock
from coldbrew.cluster.leases import LocalLeases, rendezvous_owner
from coldbrew.cluster.ownership import Ownership

TTL_S = 10.0
NAMES = {f"trigger:trg_{i}" for i in range(30)}


class Catalog:
    async def list_endpoints(self, account: str | None) -> list[Any]:
        return [SimpleNamespace(id=1)]


class Work:
    """Who runs each named piece of work now, across every gateway: a double start fails."""

    def __init__(self) -> None:
        self.running: dict[str, str] = {}  # name -> gateway
        self.starts: dict[str, int] = {}

    def start(self, name: str, gateway: str) -> None:
        holder = self.running.get(name)
        assert holder in (None, gateway), f"{name} runs on {holder} and {gateway}"
        if holder is None:
            self.running[name] = gateway
            self.starts[name] = self.starts.get(name, 0) + 1

    def stop(self, name: str, gateway: str) -> None:
        if self.running.get(name) == gateway:
            del self.running[name]


class Claimant:
    """A role with a piece of work per name (what the trigger manager and the driver are)."""

    def __init__(self, gateway: str, work: Work, names: set[str]) -> None:
        self.gateway = gateway
        self.work = work
        self.names = names
        self.mine: set[str] = set()

    async def lease_names(self) -> set[str]:
        return set(self.names)

    async def owned(self, held: Mapping[str, int]) -> None:
        for name in self.mine - set(held):
            self.work.stop(name, self.gateway)
        for name in set(held) - self.mine:
            self.work.start(name, self.gateway)
        self.mine = set(held)


def _gateway(gid: str, leases: LocalLeases, clock: FakeClock, work: Work) -> Ownership:
    own = Ownership(leases, Catalog(), clock, gid, f"http://{gid}", TTL_S, fenced=True)  # type: ignore[arg-type]
    own.claimants.append(Claimant(gid, work, NAMES))
    return own


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_every_name_runs_on_exactly_one_gateway_spread_by_hashing(clock: FakeClock) -> None:
    async def scenario() -> None:
        leases, work = LocalLeases(clock), Work()
        gateways = [_gateway(g, leases, clock, work) for g in ("g1", "g2", "g3")]
        for _ in range(2):  # the first round of each sees the others only once they advertised
            for own in gateways:
                await own.round()
        assert set(work.running) == NAMES
        for name, gateway in work.running.items():
            assert rendezvous_owner(name, ["g1", "g2", "g3"]) == gateway
        counts = [sum(1 for g in work.running.values() if g == own.gateway_id) for own in gateways]
        assert min(counts) >= 4, counts  # spread, not all on one

    asyncio.run(scenario())


def test_a_joining_gateway_gets_its_share_only_after_the_holder_stopped_it(
    clock: FakeClock,
) -> None:
    async def scenario() -> None:
        leases, work = LocalLeases(clock), Work()
        g1 = _gateway("g1", leases, clock, work)
        await g1.round()
        assert set(work.running.values()) == {"g1"} and set(work.running) == NAMES
        g2 = _gateway("g2", leases, clock, work)
        await g2.round()  # advertises; g1 still holds every lease: g2 gets none yet
        assert not g2.names
        await g1.round()  # g1 sees g2, stops and releases what hashing now gives g2
        await g2.round()
        moved = {n for n in NAMES if rendezvous_owner(n, ["g1", "g2"]) == "g2"}
        assert moved and set(g2.names) == moved
        assert {n for n, g in work.running.items() if g == "g2"} == moved
        assert set(work.running) == NAMES

    asyncio.run(scenario())


def test_a_dead_gateways_names_are_taken_over_after_the_ttl_at_a_new_epoch(
    clock: FakeClock,
) -> None:
    async def scenario() -> None:
        leases, work = LocalLeases(clock), Work()
        g1, g2 = _gateway("g1", leases, clock, work), _gateway("g2", leases, clock, work)
        for own in (g1, g2, g1, g2):
            await own.round()
        dead = dict(g1.names)
        assert dead
        for _ in range(9):  # g1 is killed: it renews nothing; g2 goes on every second
            clock.advance(1.0)
            await g2.round()
            assert not set(dead) & set(g2.names), "taken before the lease ran out"
        clock.advance(TTL_S - 9 + 1.0)  # just past the TTL: the next round takes them over
        await g2.round()
        assert set(g2.names) == NAMES
        assert all(g2.names[n] == dead[n] + 1 for n in dead)
        # the dead gateway's work was never stopped (kill -9): the test's Work still has it
        # as g1's; what matters is that g2 only started after the TTL, as asserted above

    asyncio.run(scenario())


def test_a_gateway_that_cannot_renew_stops_its_work_once_its_grant_ran_out(
    clock: FakeClock,
) -> None:
    async def scenario() -> None:
        leases, work = LocalLeases(clock), Work()
        g1 = _gateway("g1", leases, clock, work)
        await g1.round()
        assert len(work.running) == len(NAMES)
        clock.advance(TTL_S / 2)
        await g1._lapse()  # a failed round before the grant ran out: keeps working
        assert len(work.running) == len(NAMES)
        clock.advance(TTL_S / 2)
        await g1._lapse()
        assert work.running == {} and not g1.names

    asyncio.run(scenario())


def test_claim_takes_a_new_name_at_once_on_its_owner_only(clock: FakeClock) -> None:
    async def scenario() -> None:
        leases, work = LocalLeases(clock), Work()
        g1, g2 = _gateway("g1", leases, clock, work), _gateway("g2", leases, clock, work)
        for own in (g1, g2, g1, g2):
            await own.round()
        fresh = "trigger:trg_new"
        NAMES_PLUS = {*NAMES, fresh}
        for own in (g1, g2):
            own.claimants[0].names = NAMES_PLUS  # type: ignore[attr-defined]
        owner = rendezvous_owner(fresh, ["g1", "g2"])
        results = {own.gateway_id: await own.claim(fresh) for own in (g1, g2)}
        assert results == {"g1": owner == "g1", "g2": owner == "g2"}
        assert work.running[fresh] == owner

    asyncio.run(scenario())
