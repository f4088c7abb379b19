"""The `redis` source (Redis Streams through a consumer group) and the `redis` sink (a stream).

Source: `XREADGROUP` as consumer `<runner>` of the trigger's group; `XACK` once the job is
accepted. What this consumer read and never acked (it crashed) is read back first on restart
(`XREADGROUP … 0`), and entries pending on other consumers for longer than `claim_idle_ms`
(another gateway died) are taken over with `XAUTOCLAIM`. The entry id is the message key. The
job input is the entry's `body` field decoded as JSON when there is one (what `XADD s * body
'{…}'` sends), else the entry's fields as an object. Dead letters are also `XADD`ed to
`<stream>:dead` with the error.

Sink: one `XADD` per result, with `trigger`, `key`, `job`, `status` and JSON `output`/`error`.
A reader de-duplicates on `key` if it must (a crash may repeat a write).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # the client loads in `open()`: a gateway with no Redis trigger skips its
    import redis.asyncio as aioredis  # ~25 MB of imports (the embeddings tree's PSS counts it)

from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    Sink,
    SinkRecord,
    Source,
    TriggerContext,
    decode_body,
    register_sink,
    register_source,
)


class RedisSourceConfig(KindConfig):
    """A stream and consumer group on a Redis server (the group is created if missing)."""

    url: str = "redis://127.0.0.1:6379/0"
    stream: str
    group: str = "coldbrew"
    start: str = "$"  # where a new group starts: "$" new entries only, "0" the whole stream
    claim_idle_ms: int = 60_000  # entries pending this long on another consumer are taken over
    dead_letter_stream: str | None = None  # default "<stream>:dead"


def _entry_time_s(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000


def _body(fields: dict[bytes, bytes]) -> Any:
    if b"body" in fields:
        return decode_body(fields[b"body"])
    return {k.decode(): decode_body(v) for k, v in fields.items()}


class RedisStreamSource(Source):
    def __init__(self, config: RedisSourceConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self.client: aioredis.Redis | None = None
        self._backlog = True  # this consumer's own pending entries come first
        self._claimed_at = 0.0

    async def open(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import ResponseError

        self.client = aioredis.Redis.from_url(self.config.url)
        try:
            await self.client.xgroup_create(
                self.config.stream, self.config.group, id=self.config.start, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._backlog = True

    def _messages(self, entries: list[Any]) -> list[Message]:
        out = []
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream while pending: nothing to run
                continue
            key = entry_id.decode()
            out.append(Message(key, _body(fields), _entry_time_s(key), entry_id))
        return out

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        assert self.client is not None
        c, group, me = self.config, self.config.group, self.ctx.consumer
        if self._backlog:  # what this consumer held when it stopped
            reply: Any = await self.client.xreadgroup(
                group, me, {c.stream: "0"}, count=max_messages
            )
            entries = reply[0][1] if reply else []
            if entries:
                return self._messages(entries)
            self._backlog = False
        now = self.ctx.clock.monotonic()
        if now - self._claimed_at >= c.claim_idle_ms / 1000:
            self._claimed_at = now
            claim: Any = await self.client.xautoclaim(
                c.stream, group, me, c.claim_idle_ms, "0-0", count=max_messages
            )
            claimed = claim[1]
            if claimed:
                return self._messages(claimed)
        block_ms = max(1, int(wait_s * 1000))
        reply = await self.client.xreadgroup(
            group, me, {c.stream: ">"}, count=max_messages, block=block_ms
        )
        return self._messages(reply[0][1]) if reply else []

    async def ack(self, messages: Sequence[Message]) -> None:
        assert self.client is not None
        if messages:
            await self.client.xack(
                self.config.stream, self.config.group, *[m.key for m in messages]
            )

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        assert self.client is not None
        stream = self.config.dead_letter_stream or f"{self.config.stream}:dead"
        fields = {
            "key": message.key,
            "body": orjson.dumps(message.body),
            "error": orjson.dumps(error),
        }
        await self.client.xadd(stream, fields)  # type: ignore[arg-type]

    async def lag(self) -> int | None:
        assert self.client is not None
        for group in await self.client.xinfo_groups(self.config.stream):
            if group["name"].decode() == self.config.group:
                lag = group.get("lag")
                return None if lag is None else int(lag)
        return None

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


class RedisSinkConfig(KindConfig):
    """A stream results are `XADD`ed to (trimmed to about `max_len` entries when set)."""

    url: str = "redis://127.0.0.1:6379/0"
    stream: str
    max_len: int | None = None


class RedisStreamSink(Sink):
    def __init__(self, config: RedisSinkConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.client: aioredis.Redis | None = None

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(self.config.url)

    async def write(self, records: Sequence[SinkRecord]) -> None:
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for r in records:
                fields = {
                    "trigger": r.trigger_id,
                    "key": r.message_key,
                    "job": r.job_id,
                    "status": r.status,
                    "output": orjson.dumps(r.output),
                    "error": orjson.dumps(r.error),
                }
                pipe.xadd(
                    self.config.stream,
                    fields,  # type: ignore[arg-type]
                    maxlen=self.config.max_len,
                    approximate=True,
                )
            await pipe.execute()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


register_source(
    Kind("redis", RedisSourceConfig, RedisStreamSource, "stream='orders', group='coldbrew'")
)
register_sink(Kind("redis", RedisSinkConfig, RedisStreamSink, "stream='results'"))
