"""RabbitMQ (AMQP 0-9-1) as a trigger source (a durable queue, manual acks) and as a sink.

Source: consumes `queue` with manual acks and a prefetch equal to the runner's batch size, so
the broker never hands this runner more than one batch it has not acked. Unacked deliveries go
back to the queue when the channel closes, cleanly or because the process died, and are
delivered again (`redelivered` set).

The message key: AMQP redelivers the same message, properties included, so a publisher's
`message_id` is stable across redeliveries and is the key when set (`id:<message_id>`). Without
one the key is a SHA-256 of exchange, routing key and body (`sha256:<hex>`), which a redelivery
also keeps; the delivery tag is not used, it changes on every delivery. The cost of the hash:
two publishes of the same body to the same routing key are one message to coldbrew (one job).
Publishers that send repeated identical bodies should set `message_id`.

Dead letters (published long after the message was acked, from the runner's copy) go to
`dead_letter_queue` through the default exchange, or to `dead_letter_exchange` with
`dead_letter_routing_key` (default: the source queue's name, as RabbitMQ's own dead-lettering
keeps it), with publisher confirms and the error in headers. A queue's `x-dead-letter-exchange`
cannot be used for them: it only routes messages rejected while still unacked, and these were
acked when their first job was accepted.

aio-pika is imported in `open()` only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from coldbrew.errors import ServerError
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
    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractIncomingMessage,
        AbstractQueue,
    )

log = logging.getLogger(__name__)
_URL = r"^amqps?://"


class RabbitSourceConfig(KindConfig):
    """A durable queue read with manual acks."""

    url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", pattern=_URL)
    queue: str = Field(min_length=1, max_length=255)
    create: bool = Field(default=False, description="declare the queue (durable) when missing")
    queue_arguments: dict[str, Any] = Field(
        default_factory=dict, description="x-arguments when create declares the queue"
    )
    dead_letter_queue: str | None = Field(default=None, min_length=1, max_length=255)
    dead_letter_exchange: str | None = Field(default=None, min_length=1, max_length=255)
    dead_letter_routing_key: str | None = Field(default=None, max_length=255)
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> RabbitSourceConfig:
        brokerwire.require_client("rabbitmq", "aio_pika", "aio-pika")
        if self.dead_letter_queue is not None and self.dead_letter_exchange is not None:
            raise ValueError("choose one of dead_letter_queue and dead_letter_exchange")
        if self.dead_letter_queue == self.queue:
            raise ValueError("dead_letter_queue must differ from queue (it would read them again)")
        return self


class RabbitSinkConfig(KindConfig):
    """Publish each result as JSON to an exchange (the default one: straight to a queue)."""

    url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", pattern=_URL)
    exchange: str = ""
    routing_key: str = Field(min_length=1, max_length=255)
    create: bool = Field(
        default=False, description="declare a durable queue named routing_key (default exchange)"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> RabbitSinkConfig:
        brokerwire.require_client("rabbitmq", "aio_pika", "aio-pika")
        if self.create and self.exchange:
            raise ValueError("create declares a queue for the default exchange: leave exchange ''")
        return self


def message_key(message: AbstractIncomingMessage) -> str:
    """`id:<message_id>`, else a hash of where it was published and what it says (both survive
    a redelivery; the delivery tag does not)."""
    if message.message_id:
        return f"id:{message.message_id}"
    digest = hashlib.sha256()
    for part in (message.exchange or "", message.routing_key or ""):
        digest.update(part.encode() + b"\0")
    digest.update(message.body)
    return "sha256:" + digest.hexdigest()


async def _open_channel(url: str, timeout_s: float) -> tuple[AbstractConnection, AbstractChannel]:
    import aio_pika

    try:
        connection = await aio_pika.connect(url, timeout=timeout_s)
    except Exception as exc:
        raise brokerwire.unreachable("rabbitmq", brokerwire.redact(url), exc) from exc
    # publisher confirms: a publish returns once the broker has taken the message
    return connection, await connection.channel(publisher_confirms=True)


async def _declare(
    channel: AbstractChannel, name: str, create: bool, arguments: dict[str, Any] | None = None
) -> AbstractQueue:
    from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed

    try:
        return await channel.declare_queue(
            name, durable=True, passive=not create, arguments=arguments or None
        )
    except ChannelNotFoundEntity:
        raise brokerwire.missing_object(
            "rabbitmq", "queue", name, "declare it (rabbitmqadmin declare queue) or set create=true"
        ) from None
    except ChannelPreconditionFailed as exc:
        raise brokerwire.missing_object(
            "rabbitmq",
            "queue with these settings",
            name,
            f"the queue exists with other settings ({exc}); match them or use another name",
        ) from None


class RabbitSource:
    """Consumes one durable queue; see the module docstring for keys and dead letters."""

    def __init__(self, config: RabbitSourceConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._prefetch = 0
        self._consumer_tag: str | None = None

    async def open(self) -> None:
        cfg = self.config
        self._connection, self._channel = await _open_channel(cfg.url, cfg.connect_timeout_s)
        try:
            self._queue = await _declare(self._channel, cfg.queue, cfg.create, cfg.queue_arguments)
            if cfg.dead_letter_queue is not None:
                await _declare(self._channel, cfg.dead_letter_queue, cfg.create)
        except BaseException:
            await self.close()
            raise

    async def _reconnect(self) -> None:
        """The channel closed under us (the broker restarted, the connection dropped): open a
        new one. The broker requeued every unacked delivery of the old one; they come again
        (the runner skips those it already accepted, by key, and acks them)."""
        log.warning("rabbitmq: the channel to queue %s closed; reconnecting", self.config.queue)
        await self.close()
        await self.open()

    async def _consume(self, prefetch: int) -> None:
        """Start (or grow) the consumer: the prefetch is set before the first delivery, so the
        broker never pushes this runner more than its largest batch unacked. It only grows: a
        smaller window (the runner near its in-flight cap) takes part of what has arrived."""
        assert self._channel is not None and self._queue is not None, "open() first"
        await self._channel.set_qos(prefetch_count=prefetch)
        self._prefetch = prefetch
        if self._consumer_tag is None:
            self._consumer_tag = await self._queue.consume(self._inbox.put, no_ack=False)

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Waits (through the clock) for the first delivery, then takes what else has arrived."""
        if self._channel is None or self._channel.is_closed:
            await self._reconnect()
        if max_messages > self._prefetch:
            await self._consume(max_messages)
        deliveries: list[AbstractIncomingMessage] = []
        if self._inbox.empty():
            try:
                deliveries.append(await self.ctx.clock.wait_for(self._inbox.get(), wait_s))
            except TimeoutError:
                return []
        while len(deliveries) < max_messages and not self._inbox.empty():
            deliveries.append(self._inbox.get_nowait())
        now = self.ctx.clock.time()
        return [
            Message(
                key=message_key(d),
                body=decode_body(d.body),
                received_at=d.timestamp.timestamp() if d.timestamp else now,
                handle=d,
            )
            for d in deliveries
        ]

    async def ack(self, messages: Sequence[Message]) -> None:
        """Ack each delivery (AMQP acks have no reply; a lost one is a redelivery). Deliveries
        of a channel that closed since cannot be acked: the broker has requeued them."""
        if self._channel is None or self._channel.is_closed:
            raise ServerError(
                "rabbitmq: the channel closed before the ack; the broker requeued the messages",
                hint="nothing to do: they come again and the runner skips those it has",
            )
        for message in messages:
            delivery: AbstractIncomingMessage = message.handle
            await delivery.ack()

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        """Publish the message's input with the error in headers; returns once the broker
        confirmed it. The AMQP message_id is the key, so a reader can drop a repeat."""
        import aio_pika

        cfg = self.config
        if cfg.dead_letter_queue is None and cfg.dead_letter_exchange is None:
            return  # the runner's own dead-letter table has it
        assert self._channel is not None, "open() first"
        headers: dict[str, Any] = brokerwire.error_fields(self.ctx.trigger_id, message.key, error)
        headers["coldbrew-source-queue"] = cfg.queue
        dead = aio_pika.Message(
            brokerwire.dead_letter_payload(message),
            headers=headers,
            content_type="application/json",
            message_id=brokerwire.short_id(message.key),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if cfg.dead_letter_queue is not None:
            await self._channel.default_exchange.publish(dead, routing_key=cfg.dead_letter_queue)
            return
        assert cfg.dead_letter_exchange is not None
        exchange = await self._channel.get_exchange(cfg.dead_letter_exchange, ensure=False)
        await exchange.publish(dead, routing_key=cfg.dead_letter_routing_key or cfg.queue)

    async def lag(self) -> int | None:
        if self._queue is None or self._channel is None or self._channel.is_closed:
            return None
        declared = await self._queue.declare()
        return int(declared.message_count or 0)

    async def close(self) -> None:
        """Closing the channel hands every unacked delivery back to the queue."""
        connection, self._connection, self._channel, self._queue = (
            self._connection,
            None,
            None,
            None,
        )
        self._consumer_tag, self._prefetch = None, 0
        self._inbox = asyncio.Queue()
        if connection is not None:
            try:
                await connection.close()
            except Exception as exc:  # already gone: the broker requeued everything anyway
                log.debug("rabbitmq: close failed: %s", exc)


class RabbitSink:
    """Publishes each finished job's record as a persistent JSON message, with confirms."""

    def __init__(self, config: RabbitSinkConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def open(self) -> None:
        cfg = self.config
        self._connection, self._channel = await _open_channel(cfg.url, cfg.connect_timeout_s)
        try:
            if cfg.create:
                await _declare(self._channel, cfg.routing_key, create=True)
        except BaseException:
            await self.close()
            raise

    async def write(self, records: Sequence[SinkRecord]) -> None:
        import aio_pika

        if self._channel is None or self._channel.is_closed:  # the runner retries, never reopens
            await self.close()
            await self.open()
        assert self._channel is not None
        cfg = self.config
        exchange = (
            await self._channel.get_exchange(cfg.exchange, ensure=False)
            if cfg.exchange
            else self._channel.default_exchange
        )
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        brokerwire.record_json(r),
                        content_type="application/json",
                        message_id=brokerwire.short_id(brokerwire.record_id(r)),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=cfg.routing_key,
                )
                for r in records
            )
        )

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                await connection.close()
            except Exception as exc:
                log.debug("rabbitmq: close failed: %s", exc)


register_source(
    Kind(
        name="rabbitmq",
        config=RabbitSourceConfig,
        build=RabbitSource,
        summary="a durable queue with manual acks: url, queue, create, queue_arguments, "
        "dead_letter_queue or dead_letter_exchange (+ dead_letter_routing_key)",
    )
)
register_sink(
    Kind(
        name="rabbitmq",
        config=RabbitSinkConfig,
        build=RabbitSink,
        summary="publish results as JSON: url, exchange, routing_key, create",
    )
)
