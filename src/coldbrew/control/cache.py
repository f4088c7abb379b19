"""The result cache: outputs of endpoints with `cache_ttl_s`, keyed by version and exact input.

In-process and bounded by bytes (least recently used out first) by default; with
`COLDBREW_CACHE_URL=redis://…` a Redis shared by several gateways. A hit never reaches a worker
and costs nothing; `Cache-Control: no-cache` on a request skips the lookup.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Protocol

import orjson

from coldbrew.clock import Clock


def cache_key(version_id: int, payload: dict[str, Any]) -> str:
    """A canonical hash of the validated input (key order does not matter)."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{version_id}:{hashlib.sha256(canonical).hexdigest()}"


class ResultCache(Protocol):
    """Where cached outputs live."""

    async def get(self, key: str) -> tuple[bool, Any]: ...

    async def put(self, key: str, output: Any, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """Outputs by key, each kept until its own deadline, within `max_bytes` in total."""

    def __init__(self, clock: Clock, max_bytes: int) -> None:
        self.clock = clock
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires_at, blob = entry
        if expires_at <= self.clock.monotonic():
            self._drop(key)
            return False, None
        self._entries.move_to_end(key)
        return True, orjson.loads(blob)

    async def put(self, key: str, output: Any, ttl_s: float) -> None:
        blob = orjson.dumps(output, option=orjson.OPT_SERIALIZE_NUMPY)
        if len(blob) > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = (self.clock.monotonic() + ttl_s, blob)
        self._bytes += len(blob)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def close(self) -> None:
        self._entries.clear()

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])


class RedisCache:
    """Outputs in Redis (`SET key value PX ttl`), shared by every gateway that points at it."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(url)

    async def get(self, key: str) -> tuple[bool, Any]:
        blob = await self._redis.get(f"coldbrew:cache:{key}")
        return (False, None) if blob is None else (True, orjson.loads(blob))

    async def put(self, key: str, output: Any, ttl_s: float) -> None:
        await self._redis.set(
            f"coldbrew:cache:{key}",
            orjson.dumps(output, option=orjson.OPT_SERIALIZE_NUMPY),
            px=max(1, int(ttl_s * 1000)),
        )

    async def close(self) -> None:
        await self._redis.aclose()


def make_cache(url: str | None, clock: Clock, max_bytes: int) -> ResultCache:
    """Redis when a URL is configured, else the in-process cache."""
    return RedisCache(url) if url else MemoryCache(clock, max_bytes)
