"""Leases and the gateway directory in PostgreSQL: every call is one conditional statement.

Acquire and renew are the same statement (`INSERT … ON CONFLICT DO UPDATE … WHERE the lease
ran out OR it is mine`), so two gateways can never both be granted a lease, and expiry is
judged by the database's clock (`clock_timestamp()`), never a machine's: two gateways whose
clocks disagree by minutes still agree on who holds what. Not advisory locks: a lock dies with
its connection (a network blip would hand an endpoint over), carries no epoch, and cannot be
listed by the other gateways.

The tables are this part's own migrations (`PART`), run and recorded in `schema_versions` by
the store's migration runner, under its advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from coldbrew.cluster.leases import FORGET_AFTER_S, Holding, Leases
from coldbrew.store.pg_db import Migration, Part, migrate

#: The cluster part's migrations, run and recorded as the store's parts are (`store/pg_db.py`).
PART = Part(
    "cluster",
    (
        Migration(
            "leases with an epoch and a TTL; the gateways' directory",
            (
                """CREATE TABLE IF NOT EXISTS leases (
                    name TEXT PRIMARY KEY,
                    holder TEXT NOT NULL,
                    epoch BIGINT NOT NULL,
                    expires_at TIMESTAMPTZ NOT NULL)""",
                """CREATE TABLE IF NOT EXISTS gateways (
                    id TEXT PRIMARY KEY,
                    url TEXT NOT NULL,
                    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
                    heartbeat_at TIMESTAMPTZ NOT NULL,
                    live_until TIMESTAMPTZ NOT NULL)""",
            ),
        ),
    ),
)

# One statement for every lease asked: a free, expired or own lease is granted (epoch + 1 when
# it changes hands), any other is left alone and not returned.
_ACQUIRE = """
INSERT INTO leases AS l (name, holder, epoch, expires_at)
SELECT n, $2, 1, clock_timestamp() + make_interval(secs => $3) FROM unnest($1::text[]) AS n
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN l.holder = EXCLUDED.holder THEN l.epoch ELSE l.epoch + 1 END,
    expires_at = EXCLUDED.expires_at
WHERE l.expires_at < clock_timestamp() OR l.holder = EXCLUDED.holder
RETURNING name, epoch"""

# Released leases run out now: the epoch stays, so the next holder bumps it.
_RELEASE = """UPDATE leases SET expires_at = clock_timestamp() - interval '1 microsecond'
WHERE name = ANY($1::text[]) AND holder = $2"""

_HOLDINGS = "SELECT name, holder, epoch, expires_at >= clock_timestamp() AS live FROM leases"

_HEARTBEAT = """
INSERT INTO gateways (id, url, heartbeat_at, live_until)
VALUES ($1, $2, clock_timestamp(), clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, heartbeat_at = EXCLUDED.heartbeat_at,
    live_until = EXCLUDED.live_until"""

_LIVE = "SELECT id, url FROM gateways WHERE live_until >= clock_timestamp()"

_FORGET = "DELETE FROM gateways WHERE live_until < clock_timestamp() - make_interval(secs => $1)"


class PgLeases(Leases):
    """`Leases` on a PostgreSQL database, through a small asyncpg pool of its own (lease calls
    must not wait behind the job store's queries: a renewal that waits loses the lease)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, database_url: str) -> PgLeases:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        async with pool.acquire() as conn:
            await migrate(conn, [PART])
        return cls(pool)

    async def acquire(self, names: Iterable[str], holder: str, ttl_s: float) -> dict[str, int]:
        wanted = sorted(set(names))  # one order everywhere: no deadlock between two gateways
        if not wanted:
            return {}
        rows = await self._pool.fetch(_ACQUIRE, wanted, holder, float(ttl_s))
        return {str(r["name"]): int(r["epoch"]) for r in rows}

    async def release(self, names: Iterable[str], holder: str) -> None:
        wanted = sorted(set(names))
        if wanted:
            await self._pool.execute(_RELEASE, wanted, holder)

    async def holdings(self) -> dict[str, Holding]:
        rows = await self._pool.fetch(_HOLDINGS)
        return {
            str(r["name"]): Holding(str(r["holder"]), int(r["epoch"]), bool(r["live"]))
            for r in rows
        }

    async def heartbeat(self, gateway_id: str, url: str, ttl_s: float) -> None:
        await self._pool.execute(_HEARTBEAT, gateway_id, url, float(ttl_s))

    async def live_gateways(self) -> dict[str, str]:
        return {str(r["id"]): str(r["url"]) for r in await self._pool.fetch(_LIVE)}

    async def forget_gone(self) -> int:
        done = await self._pool.execute(_FORGET, FORGET_AFTER_S)
        return int(str(done).split()[-1])

    async def leave(self, gateway_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM gateways WHERE id = $1", gateway_id)
            await conn.execute(
                "UPDATE leases SET expires_at = clock_timestamp() - interval '1 microsecond' "
                "WHERE holder = $1",
                gateway_id,
            )

    async def close(self) -> None:
        await self._pool.close()
