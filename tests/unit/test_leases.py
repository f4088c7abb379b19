"""Leases, one contract for both implementations: in-process (FakeClock) and PostgreSQL (the
database's clock; a lease is made to run out by moving its expiry into the past, as the TTL
would, so no test sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.pg_database import fresh_database

from coldbrew.clock import FakeClock
from coldbrew.cluster.leases import (
    FORGET_AFTER_S,
    LEADER,
    Leases,
    LocalLeases,
    endpoint_lease,
    gateway_of,
    lease_endpoint,
    rendezvous_owner,
)

TTL_S = 10.0


@dataclass
class Table:
    """A lease table under test, and how to let every lease in it run out."""

    leases: Leases
    run_out: Callable[[], Awaitable[None]]


async def _pg_table(url: str) -> Table:
    from coldbrew.cluster.pg_leases import PgLeases

    leases = await PgLeases.connect(url)

    async def run_out() -> None:
        await leases._pool.execute(
            "UPDATE leases SET expires_at = clock_timestamp() - interval '1 s'"
        )
        await leases._pool.execute(
            "UPDATE gateways SET live_until = clock_timestamp() - interval '1 s'"
        )

    return Table(leases, run_out)


def _local_table() -> Table:
    clock = FakeClock()

    async def run_out() -> None:
        clock.advance(TTL_S + 1)

    return Table(LocalLeases(clock), run_out)


@pytest.fixture(params=["local", "postgres"])
def opener(request: pytest.FixtureRequest) -> Iterator[Callable[[], Awaitable[Table]]]:
    if request.param == "local":

        async def local() -> Table:
            return _local_table()

        yield local
        return
    with fresh_database() as url:
        yield lambda: _pg_table(url)


def run(opener: Callable[[], Awaitable[Table]], body: Callable[[Table], Awaitable[Any]]) -> None:
    async def scenario() -> None:
        table = await opener()
        try:
            await body(table)
        finally:
            await table.leases.close()

    asyncio.run(scenario())


def test_a_lease_goes_to_one_holder_until_it_runs_out(opener: Any) -> None:
    async def body(t: Table) -> None:
        name = endpoint_lease(7)
        assert await t.leases.acquire([name, LEADER], "ga", TTL_S) == {name: 1, LEADER: 1}
        assert await t.leases.acquire([name, LEADER], "gb", TTL_S) == {}  # held by ga
        assert await t.leases.acquire([name], "ga", TTL_S) == {name: 1}  # a renewal keeps it
        await t.run_out()
        assert await t.leases.acquire([name], "gb", TTL_S) == {name: 2}  # taken over: epoch + 1
        assert await t.leases.acquire([name], "ga", TTL_S) == {}  # the old holder lost it
        holding = (await t.leases.holdings())[name]
        assert (holding.holder, holding.epoch, holding.live) == ("gb", 2, True)

    run(opener, body)


def test_a_released_lease_is_free_at_once_and_keeps_counting_epochs(opener: Any) -> None:
    async def body(t: Table) -> None:
        name = endpoint_lease(1)
        await t.leases.acquire([name], "ga", TTL_S)
        await t.leases.release([name], "gb")  # not gb's: nothing happens
        assert await t.leases.acquire([name], "gb", TTL_S) == {}
        await t.leases.release([name], "ga")
        assert await t.leases.acquire([name], "gb", TTL_S) == {name: 2}

    run(opener, body)


def test_gateways_find_each_other_until_a_heartbeat_runs_out(opener: Any) -> None:
    async def body(t: Table) -> None:
        await t.leases.heartbeat("ga", "http://127.0.0.1:1", TTL_S)
        await t.leases.heartbeat("gb", "http://127.0.0.1:2", TTL_S)
        assert await t.leases.live_gateways() == {
            "ga": "http://127.0.0.1:1",
            "gb": "http://127.0.0.1:2",
        }
        await t.leases.acquire([endpoint_lease(3)], "gb", TTL_S)
        await t.leases.leave("gb")  # a clean stop: gone, and its lease free now
        assert await t.leases.live_gateways() == {"ga": "http://127.0.0.1:1"}
        assert await t.leases.acquire([endpoint_lease(3)], "ga", TTL_S) == {endpoint_lease(3): 2}
        await t.run_out()
        assert await t.leases.live_gateways() == {}

    run(opener, body)


def test_gateways_gone_for_an_hour_are_forgotten(opener: Any) -> None:
    async def body(t: Table) -> None:
        await t.leases.heartbeat("ga", "http://127.0.0.1:1", TTL_S)
        await t.run_out()
        assert await t.leases.forget_gone() == 0  # gone, but not for long: kept
        if isinstance(t.leases, LocalLeases):
            t.leases.clock.advance(FORGET_AFTER_S)  # type: ignore[attr-defined]
        else:
            await t.leases._pool.execute(  # type: ignore[attr-defined]
                "UPDATE gateways SET live_until = clock_timestamp() - interval '2 hours'"
            )
        assert await t.leases.forget_gone() == 1

    run(opener, body)


def test_two_gateways_racing_for_many_leases_split_them_without_overlap() -> None:
    with fresh_database() as url:

        async def scenario() -> None:
            a, b = (await _pg_table(url)).leases, (await _pg_table(url)).leases
            names = [endpoint_lease(i) for i in range(200)]
            try:
                got_a, got_b = await asyncio.gather(
                    a.acquire(names, "ga", TTL_S), b.acquire(reversed(names), "gb", TTL_S)
                )
                assert not set(got_a) & set(got_b)
                assert set(got_a) | set(got_b) == set(names)
            finally:
                await a.close()
                await b.close()

        asyncio.run(scenario())


def test_rendezvous_spreads_endpoints_and_moves_only_the_leavers() -> None:
    two = ["g1", "g2"]
    owners = {e: rendezvous_owner(e, two) for e in range(1000)}
    share = sum(o == "g1" for o in owners.values())
    assert 400 < share < 600  # about half each
    three = {e: rendezvous_owner(e, [*two, "g3"]) for e in range(1000)}
    moved = [e for e in owners if three[e] != owners[e]]
    assert all(three[e] == "g3" for e in moved)  # a joiner takes only what it wins
    assert 250 < len(moved) < 420  # about a third
    assert rendezvous_owner(5, []) is None


def test_names_and_worker_ids_say_what_they_stand_for() -> None:
    assert lease_endpoint(endpoint_lease(42)) == 42
    assert lease_endpoint(LEADER) is None
    assert gateway_of("w-g1a2b3c4d-0123456789ab") == "g1a2b3c4d"
    assert gateway_of("w-0123456789ab") is None  # a worker from before gateways had ids
    assert gateway_of(None) is None
