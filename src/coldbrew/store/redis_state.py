"""The state store on Redis, for gateways on several machines (`state_url = redis://…`).

Per namespace, under one prefix: a hash per entry (`v:<key>`: value, version, size, times), a
sorted set of keys for listing in key order (`index`), a sorted set of expiry times (`exp`),
the size of each key (`sizes`) and the byte total (`bytes`). A write is an optimistic
transaction (WATCH the entry and the total, MULTI, EXEC; again on a conflict), so `append` and
`incr` are atomic without decoding JSON in Lua. Expired keys are swept by one Lua script before
each write and by `purge_expired`, so their bytes leave the quota. Expiry is by the injected
clock, never Redis's own (`PEXPIREAT` would tie entries to the Redis host's clock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from coldbrew.errors import Conflict, PayloadTooLarge
from coldbrew.store.state import (
    Entry,
    Namespace,
    StateStore,
    appended,
    check_size,
    checked,
    incremented,
)

_SWEEP = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1] .. 'exp', '-inf', ARGV[1])
for _, key in ipairs(gone) do
  local size = tonumber(redis.call('HGET', KEYS[1] .. 'sizes', key) or '0')
  redis.call('DECRBY', KEYS[1] .. 'bytes', size)
  redis.call('HDEL', KEYS[1] .. 'sizes', key)
  redis.call('ZREM', KEYS[1] .. 'exp', key)
  redis.call('ZREM', KEYS[1] .. 'index', key)
  redis.call('DEL', KEYS[1] .. 'v:' .. key)
end
return #gone
"""
_ATTEMPTS = 50  # optimistic retries before a write gives up (only under a storm on one key)

#: What a write does to the current entry (None when missing): the new value.
Change = Callable[[Entry | None], Any]


class RedisState(StateStore):
    """`StateStore` on Redis; `prefix` keeps tests (and deployments) apart."""

    def __init__(
        self, url: str, quota_bytes: int, value_max_bytes: int, prefix: str = "coldbrew:state:"
    ) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)  # replies are bytes (no decode_responses)
        self._watch_error: type[Exception] = redis.WatchError
        self.quota_bytes = quota_bytes
        self.value_max_bytes = value_max_bytes
        self.prefix = prefix
        self._sweep = self._redis.register_script(_SWEEP)
        self._namespaces = prefix + "namespaces"

    def _base(self, ns: Namespace) -> str:
        return f"{self.prefix}{{{ns.account}/{ns.endpoint}}}:"

    async def get(self, ns: Namespace, key: str, now: float) -> Entry | None:
        return _entry(key, await self._redis.hgetall(self._base(ns) + "v:" + key), now)

    async def set(
        self,
        ns: Namespace,
        key: str,
        value: Any,
        now: float,
        *,
        ttl_s: float | None = None,
        if_version: int | None = None,
    ) -> Entry:
        def change(current: Entry | None) -> Any:
            checked(key, current, if_version)
            return value

        return await self._write(ns, key, now, change, ttl_s, keep_expiry=False)

    async def append(
        self,
        ns: Namespace,
        key: str,
        items: list[Any],
        now: float,
        *,
        max_items: int | None = None,
        ttl_s: float | None = None,
    ) -> Entry:
        def change(current: Entry | None) -> Any:
            return appended(key, current, items, max_items)

        return await self._write(ns, key, now, change, ttl_s, keep_expiry=True)

    async def incr(
        self, ns: Namespace, key: str, by: float, now: float, *, ttl_s: float | None = None
    ) -> Entry:
        def change(current: Entry | None) -> Any:
            return incremented(key, current, by)

        return await self._write(ns, key, now, change, ttl_s, keep_expiry=True)

    async def delete(self, ns: Namespace, key: str, now: float) -> bool:
        base = self._base(ns)
        await self._sweep(keys=[base], args=[now])
        current = await self.get(ns, key, now)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(base + "sizes", key)
            pipe.hdel(base + "sizes", key)
            pipe.zrem(base + "index", key)
            pipe.zrem(base + "exp", key)
            pipe.delete(base + "v:" + key)
            size, *_ = await pipe.execute()
        if size:
            await self._redis.decrby(base + "bytes", int(size))
        return current is not None

    async def entries(
        self, ns: Namespace, now: float, *, prefix: str = "", after: str = "", limit: int = 100
    ) -> list[Entry]:
        base = self._base(ns)
        low = f"({after}" if after > prefix else f"[{prefix}"
        high = f"[{prefix}\xff" if prefix else "+"
        found: list[Entry] = []
        while len(found) < limit:
            keys = await self._redis.zrangebylex(base + "index", low, high, start=0, num=limit)
            if not keys:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for raw in keys:
                    pipe.hgetall(base + "v:" + raw.decode())
                rows = await pipe.execute()
            for raw, row in zip(keys, rows, strict=True):
                entry = _entry(raw.decode(), row, now)
                if entry is not None and len(found) < limit:
                    found.append(entry)
            low = "(" + keys[-1].decode()
        return found

    async def clear(self, ns: Namespace, now: float) -> int:
        base = self._base(ns)
        count = 0
        while keys := await self._redis.zrange(base + "index", 0, 499):
            live = [k.decode() for k in keys]
            for key in live:
                count += await self.get(ns, key, now) is not None
            await self._redis.delete(*(base + "v:" + k for k in live))
            await self._redis.zrem(base + "index", *live)
        await self._redis.delete(base + "sizes", base + "exp", base + "bytes", base + "index")
        return count

    async def purge_expired(self, now: float) -> int:
        total = 0
        async for raw in self._redis.sscan_iter(self._namespaces):
            total += int(await self._sweep(keys=[raw.decode()], args=[now]))
        return total

    async def close(self) -> None:
        await self._redis.aclose()

    async def _write(
        self,
        ns: Namespace,
        key: str,
        now: float,
        change: Change,
        ttl_s: float | None,
        *,
        keep_expiry: bool,
    ) -> Entry:
        base = self._base(ns)
        await self._redis.sadd(self._namespaces, base)
        await self._sweep(keys=[base], args=[now])
        for _ in range(_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(base + "v:" + key, base + "bytes")
                    entry = await self._apply(pipe, base, key, now, change, ttl_s, keep_expiry)
                    await pipe.execute()
                    return entry
                except self._watch_error:
                    continue
        raise Conflict(
            f"state key {key!r} changed {_ATTEMPTS} times while this write tried to land",
            hint="retry later; many writers are updating this key at once",
        )

    async def _apply(
        self,
        pipe: Any,
        base: str,
        key: str,
        now: float,
        change: Change,
        ttl_s: float | None,
        keep_expiry: bool,
    ) -> Entry:
        current = _entry(key, await pipe.hgetall(base + "v:" + key), now)
        old_size = int(await pipe.hget(base + "sizes", key) or 0)
        used = int(await pipe.get(base + "bytes") or 0)
        text = orjson.dumps(change(current))
        check_size(key, len(text), self.value_max_bytes)
        if used - old_size + len(text) > self.quota_bytes:
            raise PayloadTooLarge(
                f"endpoint would hold {used - old_size + len(text)} bytes of state, more than "
                f"its quota of {self.quota_bytes}",
                hint="delete keys you no longer need, give entries a ttl_s, or raise "
                "COLDBREW_STATE_QUOTA_MB",
            )
        if ttl_s is not None:
            expires_at: float | None = now + ttl_s
        else:
            expires_at = current.expires_at if keep_expiry and current else None
        version = (current.version if current else 0) + 1
        pipe.multi()
        vkey = base + "v:" + key
        pipe.delete(vkey)
        fields = {"value": text, "version": version, "size": len(text), "updated_at": now}
        if expires_at is not None:
            fields["expires_at"] = expires_at
        pipe.hset(vkey, mapping=fields)
        if expires_at is not None:
            pipe.zadd(base + "exp", {key: expires_at})
        else:
            pipe.zrem(base + "exp", key)
        pipe.hset(base + "sizes", key, len(text))
        pipe.incrby(base + "bytes", len(text) - old_size)
        pipe.zadd(base + "index", {key: 0})
        return Entry(key, orjson.loads(text), version, len(text), now, expires_at)


def _entry(key: str, row: dict[bytes, bytes], now: float) -> Entry | None:
    if not row:
        return None
    expires = row.get(b"expires_at")
    expires_at = None if expires is None else float(expires)
    if expires_at is not None and expires_at <= now:
        return None
    return Entry(
        key,
        orjson.loads(row[b"value"]),
        int(row[b"version"]),
        int(row[b"size"]),
        float(row[b"updated_at"]),
        expires_at,
    )
