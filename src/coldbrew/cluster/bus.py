"""Catalog news between gateways: a deploy, delete, traffic split, rollback or secret change on
one gateway reaches every other within a second, through PostgreSQL's `NOTIFY`.

The gateway that made the change sends `NOTIFY coldbrew_catalog, '<its id>'` after its own
refresh; every other gateway listens on one connection of its own (asyncpg's `add_listener`)
and reloads endpoints, splits and secrets. Notifications are not durable (a gateway whose
listening connection dropped misses them), so each gateway also reloads every
`CATALOG_BACKSTOP_S` whatever it heard: a missed notice costs at most that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from coldbrew.clock import Clock

log = logging.getLogger("coldbrew.cluster")

CHANNEL = "coldbrew_catalog"
#: Every gateway reloads the catalog this often even when it heard nothing.
CATALOG_BACKSTOP_S = 15.0


class CatalogBus:
    """Sends this gateway's catalog changes and runs `on_news` when another gateway's arrive."""

    def __init__(
        self,
        database_url: str,
        gateway_id: str,
        clock: Clock,
        on_news: Callable[[], Awaitable[None]],
        backstop_s: float = CATALOG_BACKSTOP_S,
    ) -> None:
        self.database_url = database_url
        self.gateway_id = gateway_id
        self.clock = clock
        self.on_news = on_news
        self.backstop_s = backstop_s
        self.heard = 0  # notices from other gateways, for tests and metrics
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the listening connection
        self._news = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def publish(self) -> None:
        """Tell the other gateways the catalog changed (best effort: the backstop covers a
        notice that could not be sent)."""
        try:
            async with self._lock:
                if self._conn is None or self._conn.is_closed():
                    await self._connect()
                await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self.gateway_id)
        except Exception:
            log.warning(
                "could not announce a catalog change; peers reload within %g s",
                self.backstop_s,
                exc_info=True,
            )

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self.database_url)
        await self._conn.add_listener(CHANNEL, self._heard)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self.gateway_id:  # this gateway refreshed itself before it sent it
            self.heard += 1
            self._news.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._news.wait(), self.backstop_s)
            self._news.clear()
            try:
                if self._conn is None or self._conn.is_closed():
                    async with self._lock:
                        await self._connect()  # notices sent meanwhile are lost: reload below
                await self.on_news()
            except Exception:
                log.exception("catalog reload failed; trying again in %g s", self.backstop_s)
