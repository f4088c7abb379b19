"""The shared state in Redis, for several gateways: slots as one sorted set per account, budget
stops as one hash, and wake-ups on one pub/sub channel, every key under `redis_prefix`.

Slot leases use Redis's own clock (`TIME` inside the scripts), so gateways whose clocks
disagree still agree on which leases lapsed. Writes that the caller need not wait for (giving
slots back, publishing wake-ups) are queued and sent in one pipeline by a background task.
A Redis that cannot be reached grants no slot (jobs wait queued) and is retried, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis.asyncio
from redis.exceptions import RedisError

from coldbrew.clock import Clock
from coldbrew.errors import StorageUnavailable
from coldbrew.store.shared.stops import Stop

log = logging.getLogger("coldbrew.shared")

RETRY_S = 1.0  # a lost pub/sub connection is opened again after this

# KEYS[1] the account's slots; ARGV: cap, lease_ms, tokens… Expired leases go first.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local room = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 3, #ARGV do
  if room <= 0 then break end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i])
  granted[#granted + 1] = ARGV[i]
  room = room - 1
end
if #granted > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return granted
"""

# KEYS[1] the account's slots; ARGV: lease_ms, tokens… A job still running keeps counting,
# even if its lease lapsed meanwhile (a stalled gateway): the cap is about running jobs.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""


class RedisLink:
    """One Redis connection pool and the key prefix every shared key starts with."""

    def __init__(self, url: str, prefix: str) -> None:
        self.redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url)
        self.prefix = prefix
        self._users = 0

    async def ping(self) -> None:
        """Raise `StorageUnavailable` saying the fix when Redis does not answer (at start-up:
        a gateway that cannot share its caps and stops must not serve)."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise StorageUnavailable(
                f"Redis does not answer at redis_url: {exc}",
                hint="start Redis, or fix --redis-url (COLDBREW_REDIS_URL); one gateway alone "
                "needs none: leave it unset",
            ) from None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def opened(self) -> None:
        self._users += 1

    async def closed(self) -> None:
        """The last user closes the pool."""
        self._users -= 1
        if self._users <= 0:
            await self.redis.aclose()


class _Sender:
    """Queued writes sent in one pipeline by one background task; errors are logged."""

    def __init__(self, link: RedisLink, what: str) -> None:
        self.link = link
        self.what = what
        self._queue: list[tuple[str, tuple[Any, ...]]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, command: str, *args: Any) -> None:
        self._queue.append((command, args))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self.link.redis.pipeline(transaction=False) as pipe:
                    for command, args in batch:
                        pipe.execute_command(command, *args)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("could not %s in Redis: %s", self.what, exc)

    async def drain(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


class _Listener:
    """A pub/sub subscription kept open: `handle(data)` per message; `reopened()` after a lost
    connection came back (messages may have been missed meanwhile)."""

    def __init__(
        self,
        link: RedisLink,
        channel: str,
        handle: Callable[[bytes], None],
        reopened: Callable[[], None],
        clock: Clock | None = None,
    ) -> None:
        self.link, self.channel, self.handle, self.reopened = link, channel, handle, reopened
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._ready.wait()  # subscribed: nothing published from here on is missed

    async def _run(self) -> None:
        first = True
        while True:
            try:
                async with self.link.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    if not first:
                        self.reopened()
                    first = False
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.handle(message["data"])
            except RedisError as exc:
                log.warning("Redis subscription %s lost (%s); reopening", self.channel, exc)
                self._ready.set()  # start() must not hang on a Redis that is down
                first = False
                await self._pause()

    async def _pause(self) -> None:
        if self.clock is not None:
            await self.clock.sleep(RETRY_S)
        else:  # pragma: no cover - every caller passes a clock
            await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RedisSlots:
    """Account slots as `{prefix}:slots:{account}`: a sorted set of slot tokens scored by lease
    expiry (ms, Redis time). Taking is one script (drop lapsed, count, add while under the
    cap); this gateway renews its tokens every third of a lease; a dead gateway's lapse."""

    def __init__(self, link: RedisLink, clock: Clock, gateway_id: str, lease_s: float) -> None:
        self.link = link
        self.clock = clock
        self.gateway_id = gateway_id
        self.lease_ms = max(1, int(lease_s * 1000))
        self._held: defaultdict[str, set[str]] = defaultdict(set)
        self._take = link.redis.register_script(_TAKE)
        self._renew = link.redis.register_script(_RENEW)
        self._returns = _Sender(link, "give slots back")
        self._renewed_at = clock.monotonic()
        self._warned = False
        link.opened()

    async def take(self, account: str, cap: int, count: int = 1) -> list[str]:
        tokens = [f"{self.gateway_id}:{uuid.uuid4().hex[:12]}" for _ in range(max(0, count))]
        if not tokens:
            return []
        try:
            granted = await self._take(
                keys=[self.link.key("slots", account)], args=[cap, self.lease_ms, *tokens]
            )
        except RedisError as exc:
            if not self._warned:
                log.warning("Redis unreachable, no job starts until it is back: %s", exc)
                self._warned = True
            return []
        self._warned = False
        mine = [t.decode() if isinstance(t, bytes) else str(t) for t in granted]
        self._held[account].update(mine)
        return mine

    def give_back(self, account: str, tokens: Iterable[str]) -> None:
        tokens = [t for t in tokens if t in self._held[account]]
        if not tokens:
            return
        self._held[account].difference_update(tokens)
        if not self._held[account]:
            del self._held[account]
        self._returns.add("ZREM", self.link.key("slots", account), *tokens)

    async def renew(self) -> None:
        now = self.clock.monotonic()
        if now - self._renewed_at < self.lease_ms / 3000:
            return
        self._renewed_at = now
        for account, tokens in list(self._held.items()):
            try:
                await self._renew(
                    keys=[self.link.key("slots", account)], args=[self.lease_ms, *tokens]
                )
            except RedisError as exc:
                log.warning("could not renew the slots of %s: %s", account, exc)

    def held(self, account: str) -> int:
        return len(self._held.get(account, ()))

    async def close(self) -> None:
        for account, tokens in list(self._held.items()):
            self.give_back(account, list(tokens))
        await self._returns.drain()
        await self.link.closed()


def _field(stop: Stop) -> str:
    return orjson.dumps([stop.account, stop.endpoint]).decode()


class RedisStops:
    """Budget stops as the hash `{prefix}:budget_stops` (field: account and endpoint; value: the
    stop), changes announced on the channel of the same name."""

    def __init__(self, link: RedisLink, clock: Clock | None = None) -> None:
        self.link = link
        self.key = link.key("budget_stops")
        self._callbacks: list[Callable[[], None]] = []
        self._listener = _Listener(link, self.key, self._changed, self._changed, clock)
        link.opened()

    async def read(self) -> list[Stop]:
        values = await self.link.redis.hvals(self.key)
        return [Stop(*orjson.loads(v)) for v in values]

    async def update(self, found: list[Stop], lifted: list[Stop]) -> None:
        async with self.link.redis.pipeline(transaction=True) as pipe:
            for stop in lifted:
                pipe.hdel(self.key, _field(stop))
            for stop in found:
                value = [stop.account, stop.endpoint, stop.monthly_usd, stop.spent_usd, stop.period]
                pipe.hset(self.key, _field(stop), orjson.dumps(value))
            if found or lifted:
                pipe.publish(self.key, b"changed")
            await pipe.execute()

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def _changed(self, _data: bytes | None = None) -> None:
        for callback in self._callbacks:
            callback()

    async def start(self) -> None:
        await self._listener.start()

    async def close(self) -> None:
        await self._listener.close()
        await self.link.closed()


class RedisSignals:
    """Wake-ups on the channel `{prefix}:final`: one message per stored job made final."""

    def __init__(self, link: RedisLink, clock: Clock | None = None) -> None:
        self.link = link
        self.channel = link.key("final")
        self._callbacks: list[Callable[[str], None]] = []
        self._out = _Sender(link, "publish a wake-up")
        self._listener = _Listener(link, self.channel, self._heard, lambda: None, clock)
        link.opened()

    def publish(self, job_id: str) -> None:
        self._out.add("PUBLISH", self.channel, job_id)

    def on_final(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def _heard(self, data: bytes) -> None:
        job_id = data.decode()
        for callback in self._callbacks:
            callback(job_id)

    async def start(self) -> None:
        await self._listener.start()

    async def close(self) -> None:
        await self._out.drain()
        await self._listener.close()
        await self.link.closed()
