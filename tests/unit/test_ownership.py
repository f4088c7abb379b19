"""Endpoint ownership between gateways on one lease table (in-process, FakeClock): the spread,
hand-over to a gateway that joins, take-over from one that died, and jobs of a dead gateway
requeued exactly once, never those of a gateway that is still running."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from tests.unit.store_contract.helpers import SPEC

from coldbrew.clock import FakeClock
from coldbrew.cluster.leases import LocalLeases
from coldbrew.cluster.ownership import Ownership
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.sqlite import SQLiteStore

TTL_S = 10.0
ENDPOINTS = 40


class Catalog:
    """The part of the catalog ownership reads: the endpoints' ids."""

    def __init__(self, count: int) -> None:
        self.ids = list(range(1, count + 1))

    async def list_endpoints(self, account: str | None) -> list[Any]:
        return [SimpleNamespace(id=i) for i in self.ids]


class Gateway:
    """One gateway's ownership, recording what it changed and requeued."""

    def __init__(self, gid: str, leases: LocalLeases, clock: FakeClock, catalog: Catalog) -> None:
        self.own = Ownership(
            leases,
            catalog,
            clock,
            gid,
            f"http://{gid}",
            TTL_S,
            fenced=True,  # type: ignore[arg-type]
        )
        self.changes = 0
        self.requeued: list[str] = []
        self.running: list[Job] = []  # what `in_progress` answers
        self.own.on_change = self._changed
        self.own.on_orphan = self._orphan
        self.own.in_progress = self._in_progress

    async def _changed(self) -> None:
        self.changes += 1

    async def _orphan(self, job: Job) -> None:
        """As the store's requeue: the job is queued again, no longer IN_PROGRESS."""
        self.requeued.append(job.id)
        self.running.remove(job)

    async def _in_progress(self) -> list[Job]:
        return list(self.running)  # a fresh list, as the store answers

    @property
    def owned(self) -> set[int]:
        return {e for e in self.own.epochs if self.own.owns(e)}


def _job(job_id: str, endpoint_id: int, worker_id: str) -> Job:
    return Job(
        id=job_id,
        account="acme",
        endpoint_id=endpoint_id,
        endpoint=f"e{endpoint_id}",
        version_id=endpoint_id,
        status=JobStatus.IN_PROGRESS,
        input={},
        created_at=0.0,
        expires_at=1e12,
        timeout_s=60.0,
        max_attempts=3,
        attempts=1,
        worker_id=worker_id,
    )


def _world(*ids: str) -> tuple[FakeClock, Catalog, list[Gateway]]:
    clock = FakeClock()
    leases = LocalLeases(clock)
    catalog = Catalog(ENDPOINTS)
    return clock, catalog, [Gateway(g, leases, clock, catalog) for g in ids]


async def _rounds(*gateways: Gateway, times: int = 2) -> None:
    for _ in range(times):
        for g in gateways:
            await g.own.round()


def test_two_gateways_split_the_endpoints_and_one_leads() -> None:
    async def scenario() -> None:
        _, _, (a, b) = _world("ga", "gb")
        await _rounds(a, b, times=3)
        assert a.owned.isdisjoint(b.owned)
        assert a.owned | b.owned == set(range(1, ENDPOINTS + 1))
        assert 8 <= len(a.owned) <= 32  # rendezvous: about half each
        assert a.own.leads() != b.own.leads()
        assert a.own.owner_url(min(b.owned)) == "http://gb"
        assert a.own.owner_url(min(a.owned)) is None  # its own

    asyncio.run(scenario())


def test_a_joining_gateway_gets_its_share_handed_over_without_requeues() -> None:
    async def scenario() -> None:
        _clock, catalog, (a, b) = _world("ga", "gb")
        await a.own.round()
        assert a.owned == set(catalog.ids)  # alone: everything
        a.running = [_job(f"j{e}", e, f"w-ga-{e:012x}") for e in catalog.ids]
        await _rounds(b, a, b)
        assert b.owned and a.owned == set(catalog.ids) - b.owned
        assert a.requeued == [] and b.requeued == []  # ga is alive: its jobs finish there

    asyncio.run(scenario())


def test_a_dead_gateways_endpoints_move_within_the_ttl_and_its_jobs_requeue_once() -> None:
    async def scenario() -> None:
        clock, catalog, (a, b) = _world("ga", "gb")
        await _rounds(a, b, times=3)
        b_endpoints = set(b.owned)
        b_epochs = dict(b.own.epochs)
        running = [_job(f"j{e}", e, f"w-gb-{e:012x}") for e in sorted(b_endpoints)]
        running.append(_job("mine", min(a.owned), "w-ga-000000000001"))
        a.running = running
        # gb dies (kill -9): it renews nothing; ga keeps its rounds every TTL/3
        for _ in range(3):
            clock.advance(TTL_S / 3)
            await a.own.round()
            assert not b_endpoints & a.owned  # not before gb's leases ran out
        clock.advance(TTL_S / 3)
        await a.own.round()
        assert a.owned == set(catalog.ids)  # within TTL + one round
        assert all(a.own.epochs[e] == b_epochs[e] + 1 for e in b_endpoints)  # taken over
        assert sorted(a.requeued) == sorted(f"j{e}" for e in b_endpoints)  # not "mine"
        await _rounds(a, times=3)
        assert len(a.requeued) == len(b_endpoints)  # once

    asyncio.run(scenario())


def test_a_gateway_that_restarts_with_a_new_id_leaves_running_peers_jobs_alone() -> None:
    async def scenario() -> None:
        clock, catalog, (a, b) = _world("ga", "gb")
        await _rounds(a, b)
        old_b = set(b.owned)
        jobs = [_job(f"a{e}", e, f"w-ga-{e:012x}") for e in sorted(a.owned)]
        jobs += [_job(f"b{e}", e, f"w-gb-{e:012x}") for e in sorted(old_b)]
        await b.own.stop()  # a clean stop (its workers' jobs were settled before it left)
        c = Gateway("gc", a.own.leases, clock, catalog)  # type: ignore[arg-type]
        c.running = a.running = jobs
        await _rounds(c, a, c, a)
        assert c.owned and a.owned | c.owned == set(catalog.ids)
        assert not any(j.startswith("a") for j in c.requeued + a.requeued)  # ga lives
        requeued = c.requeued + a.requeued
        assert sorted(requeued) == sorted(f"b{e}" for e in old_b)  # gb's, once each

    asyncio.run(scenario())


def test_a_gateway_that_cannot_renew_stops_owning_when_its_grant_may_have_run_out() -> None:
    async def scenario() -> None:
        clock, _, (a,) = _world("ga")
        await a.own.round()
        assert a.own.owns(1) and a.own.leads()
        clock.advance(TTL_S - 0.1)
        assert a.own.owns(1)
        clock.advance(0.2)  # no renewal went through (the database is unreachable)
        assert not a.own.owns(1) and not a.own.leads()

    asyncio.run(scenario())


def test_the_store_requeues_a_dead_gateways_job_only_for_the_worker_that_ran_it() -> None:
    async def scenario() -> None:
        store = SQLiteStore(":memory:")
        try:
            await store.create_account("acme", "whsec", 1.0)
            version, _ = await store.add_version(
                "acme",
                "echo",
                now=1.0,
                artifact_sha="s",
                module="app",
                class_name="Echo",
                spec=SPEC,
                input_schema={},
            )
            job = _job("j1", version.endpoint_id, "")
            job.version_id, job.status, job.worker_id = version.id, JobStatus.IN_QUEUE, None
            await store.create_job(job)
            await store.claim_job("j1", "w-gb-000000000001", 1.0)
            stale = (await store.in_progress())[0]
            assert await store.requeue(stale.id, worker_id=stale.worker_id)
            await store.claim_job("j1", "w-ga-000000000002", 2.0)  # runs again, on ga
            assert not await store.requeue(stale.id, worker_id=stale.worker_id)  # a no-op
            assert (await store.get_job("j1")).worker_id == "w-ga-000000000002"  # type: ignore[union-attr]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_on_postgres_a_dead_gateways_endpoints_move_once_with_a_new_epoch() -> None:
    from tests.pg_database import fresh_database

    from coldbrew.cluster.pg_leases import PgLeases

    with fresh_database() as url:

        async def scenario() -> None:
            clock = FakeClock()
            catalog = Catalog(ENDPOINTS)
            table_a, table_b = await PgLeases.connect(url), await PgLeases.connect(url)
            try:
                a = Gateway("ga", table_a, clock, catalog)  # type: ignore[arg-type]
                b = Gateway("gb", table_b, clock, catalog)  # type: ignore[arg-type]
                await _rounds(a, b, times=3)
                assert a.owned.isdisjoint(b.owned) and a.owned | b.owned == set(catalog.ids)
                assert a.own.leads() != b.own.leads()
                b_epochs = dict(b.own.epochs)
                a.running = [_job(f"j{e}", e, f"w-gb-{e:012x}") for e in sorted(b_epochs)]
                await a.own.round()
                assert a.requeued == []  # gb is alive
                # gb dies: its heartbeat and leases run out (the database's clock decides)
                await table_a._pool.execute(
                    "UPDATE leases SET expires_at = clock_timestamp() - interval '1 s' "
                    "WHERE holder = 'gb'"
                )
                await table_a._pool.execute(
                    "UPDATE gateways SET live_until = clock_timestamp() - interval '1 s' "
                    "WHERE id = 'gb'"
                )
                await _rounds(a, times=2)
                assert a.owned == set(catalog.ids) and a.own.leads()
                assert all(a.own.epochs[e] == n + 1 for e, n in b_epochs.items())
                assert sorted(a.requeued) == sorted(f"j{e}" for e in b_epochs)  # once each
            finally:
                await table_a.close()
                await table_b.close()

        asyncio.run(scenario())
