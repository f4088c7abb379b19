"""NATS JetStream as a trigger source (a durable pull consumer) and as a sink (a subject).

Source: one durable pull consumer (`durable`) on `stream`, filtered to `subject`. JetStream keeps
the consumer's state on the server, so a message fetched and never acked is redelivered once
`ack_wait_s` passes (after a crash) or at once (after `close`, which naks what it still holds).
The message key is the publisher's `Nats-Msg-Id` header when it set one (JetStream already
de-duplicates on it), else `<stream>:<stream sequence>`, which never changes for a stored
message. Dead letters (long after the ack, from the runner's copy: the JSON input, the error in
headers) are published to `dead_letter_subject`, which a JetStream stream must store (`create`
makes `<stream>_DEAD`); the PubAck is awaited.

Sink: each result is one JSON message on `subject`. With `jetstream` (the default) the write
waits for the stream's PubAck and sets `Nats-Msg-Id` to `<trigger>:<message key>`, so a record
written twice after a runner crash is stored once (within the stream's duplicate window).

nats-py is imported in `open()` only: the embedded default never loads it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from coldbrew.integrations.triggers import brokerwire
from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    SinkRecord,
    TriggerContext,
    decode_body,
    register_sink,
    register_source,
)

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9_-]+$"  # JetStream stream and consumer names: no '.', '*', '>' or spaces
_SUBJECT = r"^[^\s]+$"
MSG_ID = "Nats-Msg-Id"


class NatsSourceConfig(KindConfig):
    """A durable pull consumer on a JetStream stream."""

    url: str = "nats://127.0.0.1:4222"
    stream: str = Field(pattern=_NAME, description="the JetStream stream to read")
    subject: str = Field(pattern=_SUBJECT, description="subject (filter) of the messages to read")
    durable: str = Field(pattern=_NAME, description="durable consumer name; keep it stable")
    create: bool = Field(
        default=False,
        description="create the stream, the consumer and the dead-letter stream when missing",
    )
    # the next two shape a consumer that `create` makes; an existing consumer keeps its own
    ack_wait_s: float = Field(default=30.0, gt=0, description="unacked → redelivered after this")
    max_ack_pending: int = Field(default=1000, ge=1)
    dead_letter_subject: str | None = Field(default=None, pattern=_SUBJECT)
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> NatsSourceConfig:
        brokerwire.require_client("nats", "nats", "nats-py")
        dead = self.dead_letter_subject
        if dead is not None and _overlaps(dead, self.subject):
            raise ValueError(
                f"dead_letter_subject {self.dead_letter_subject!r} falls under subject "
                f"{self.subject!r}: dead letters would be read again as new messages; "
                "choose a subject outside it"
            )
        return self


class NatsSinkConfig(KindConfig):
    """Publish each result as JSON to a subject."""

    url: str = "nats://127.0.0.1:4222"
    subject: str = Field(pattern=_SUBJECT)
    jetstream: bool = Field(
        default=True, description="wait for a JetStream PubAck (a stream must store the subject)"
    )
    stream: str | None = Field(
        default=None, pattern=_NAME, description="with create: the stream to make for subject"
    )
    create: bool = False
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> NatsSinkConfig:
        brokerwire.require_client("nats", "nats", "nats-py")
        if self.create and (self.stream is None or not self.jetstream):
            raise ValueError("create needs jetstream=true and a stream name to create")
        return self


def _overlaps(a: str, b: str) -> bool:
    """Whether subject patterns `a` and `b` can match one subject (`*` one token, `>` the rest)."""
    ta, tb = a.split("."), b.split(".")
    for i, (x, y) in enumerate(zip(ta, tb, strict=False)):
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
        if i == min(len(ta), len(tb)) - 1:
            return len(ta) == len(tb)
    return False


def message_key(stream: str, msg: Msg) -> str:
    """The publisher's `Nats-Msg-Id`, else `<stream>:<stream sequence>`: both survive redelivery."""
    msg_id = (msg.headers or {}).get(MSG_ID)
    if msg_id:
        return f"id:{msg_id}"
    return f"{stream}:{msg.metadata.sequence.stream}"


async def _connect(url: str, timeout_s: float, name: str) -> NatsClient:
    import nats

    try:
        return await nats.connect(
            servers=[url],
            name=name,
            connect_timeout=timeout_s,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
        )
    except Exception as exc:
        raise brokerwire.unreachable("nats", brokerwire.redact(url), exc) from exc


async def _ensure_stream(js: JetStreamContext, name: str, subject: str, create: bool) -> None:
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(name)
    except NotFoundError:
        if not create:
            raise brokerwire.missing_object(
                "nats", "JetStream stream", name, "create it (nats stream add) or set create=true"
            ) from None
        await js.add_stream(name=name, subjects=[subject])


class NatsSource:
    """Reads one durable JetStream pull consumer; see the module docstring for guarantees."""

    def __init__(self, config: NatsSourceConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._held: dict[int, Msg] = {}  # fetched, not yet acked: naked on close

    async def open(self) -> None:
        cfg = self.config
        self._nc = await _connect(cfg.url, cfg.connect_timeout_s, f"coldbrew-{self.ctx.consumer}")
        self._js = self._nc.jetstream()
        try:
            await _ensure_stream(self._js, cfg.stream, cfg.subject, cfg.create)
            await self._ensure_consumer()
            if cfg.dead_letter_subject is not None:
                await self._ensure_dead_letter_stream(cfg.dead_letter_subject)
            self._sub = await self._js.pull_subscribe_bind(durable=cfg.durable, stream=cfg.stream)
        except BaseException:
            await self.close()
            raise

    async def _ensure_consumer(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        assert self._js is not None
        cfg = self.config
        try:
            info = await self._js.consumer_info(cfg.stream, cfg.durable)
        except NotFoundError:
            if not cfg.create:
                raise brokerwire.missing_object(
                    "nats",
                    "durable consumer",
                    f"{cfg.stream}/{cfg.durable}",
                    "create it (nats consumer add) or set create=true",
                ) from None
            consumer = ConsumerConfig(
                durable_name=cfg.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=cfg.ack_wait_s,
                max_ack_pending=cfg.max_ack_pending,
                filter_subject=cfg.subject,
            )
            await self._js.add_consumer(cfg.stream, config=consumer)
            return
        if info.config.ack_policy != AckPolicy.EXPLICIT:
            raise brokerwire.missing_object(
                "nats",
                "consumer with explicit acks",
                f"{cfg.stream}/{cfg.durable}",
                "the durable consumer must use ack_policy=explicit; pick another durable name",
            )

    async def _ensure_dead_letter_stream(self, subject: str) -> None:
        from nats.js.errors import NotFoundError

        assert self._js is not None
        try:
            await self._js.find_stream_name_by_subject(subject)
        except NotFoundError:
            if not self.config.create:
                raise brokerwire.missing_object(
                    "nats",
                    "stream storing dead-letter subject",
                    subject,
                    "add a stream for it or set create=true (makes <stream>_DEAD)",
                ) from None
            await self._js.add_stream(name=f"{self.config.stream}_DEAD", subjects=[subject])

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Up to `max_messages`; the wait is JetStream's own long poll (the request's expiry),
        so it costs no timer here and ends as soon as one message arrives."""
        from nats.errors import TimeoutError as NatsTimeout

        assert self._sub is not None, "open() first"
        try:
            batch = await self._sub.fetch(batch=max_messages, timeout=max(wait_s, 0.001))
        except (TimeoutError, NatsTimeout):
            return []
        out = []
        for msg in batch:
            meta = msg.metadata
            self._held[meta.sequence.stream] = msg
            out.append(
                Message(
                    key=message_key(self.config.stream, msg),
                    body=decode_body(msg.data),
                    received_at=meta.timestamp.timestamp()
                    if meta.timestamp
                    else self.ctx.clock.time(),
                    handle=msg,
                )
            )
        return out

    async def ack(self, messages: Sequence[Message]) -> None:
        """Acks go out together and one flush waits for the server to have read them; a lost
        ack redelivers the message, which the runner's idempotency key turns into no new job."""
        assert self._nc is not None
        for message in messages:
            msg: Msg = message.handle
            await msg.ack()
            self._held.pop(msg.metadata.sequence.stream, None)
        await self._nc.flush()

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        """Publish the message's input with the error in headers and wait for the stream's
        PubAck; `Nats-Msg-Id` = the key, so a repeated dead letter is stored once."""
        subject = self.config.dead_letter_subject
        if subject is None:
            return  # the runner's own dead-letter table has it
        assert self._js is not None, "open() first"
        headers = brokerwire.error_fields(self.ctx.trigger_id, message.key, error)
        headers["coldbrew-source-subject"] = self.config.subject
        headers[MSG_ID] = message.key
        await self._js.publish(subject, brokerwire.dead_letter_payload(message), headers=headers)

    async def lag(self) -> int | None:
        if self._js is None:
            return None
        info = await self._js.consumer_info(self.config.stream, self.config.durable)
        return int(info.num_pending or 0)

    async def close(self) -> None:
        """Nak what is still held, so another runner gets it now rather than after ack_wait."""
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        held, self._held = list(self._held.values()), {}
        if nc is None:
            return
        try:
            for msg in held:
                await msg.nak()
            await nc.flush()
        except Exception as exc:  # the connection is going anyway; ack_wait redelivers them
            log.debug("nats: nak on close failed: %s", exc)
        await nc.close()


class NatsSink:
    """Publishes each finished job's record as JSON on one subject."""

    def __init__(self, config: NatsSinkConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None

    async def open(self) -> None:
        cfg = self.config
        self._nc = await _connect(
            cfg.url, cfg.connect_timeout_s, f"coldbrew-sink-{self.ctx.consumer}"
        )
        if cfg.jetstream:
            self._js = self._nc.jetstream()
            if cfg.stream is not None:
                try:
                    await _ensure_stream(self._js, cfg.stream, cfg.subject, cfg.create)
                except BaseException:
                    await self.close()
                    raise

    async def write(self, records: Sequence[SinkRecord]) -> None:
        assert self._nc is not None, "open() first"
        if self._js is None:
            for record in records:
                await self._nc.publish(self.config.subject, brokerwire.record_json(record))
            await self._nc.flush()
            return
        js = self._js
        await asyncio.gather(
            *(
                js.publish(
                    self.config.subject,
                    brokerwire.record_json(r),
                    headers={MSG_ID: brokerwire.record_id(r)},
                )
                for r in records
            )
        )

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await nc.close()


register_source(
    Kind(
        name="nats",
        config=NatsSourceConfig,
        build=NatsSource,
        summary="a durable JetStream pull consumer: url, stream, subject, durable, create, "
        "ack_wait_s, dead_letter_subject",
    )
)
register_sink(
    Kind(
        name="nats",
        config=NatsSinkConfig,
        build=NatsSink,
        summary="publish results as JSON: url, subject, jetstream, stream, create",
    )
)
