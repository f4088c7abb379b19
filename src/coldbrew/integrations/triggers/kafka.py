"""Kafka as a trigger source: a consumer group, offsets committed only after acceptance.

UNTESTED AGAINST A BROKER: no Kafka broker can run on the machines this project is built and
tested on (docs/brokers.md). The config, the message keys and the commit arithmetic
(`OffsetBook`) are unit-tested; the aiokafka calls are written to its documented API and have
never met a real cluster. Treat this kind as a preview.

Kafka keeps one committed offset per partition, not one ack per message, so a message is
"acked" by committing past it, and a commit may only pass messages that are all settled:
`OffsetBook` commits each partition up to its lowest fetched-but-unsettled offset. After a
restart (or a rebalance) the group resumes from the committed offsets, so what was fetched and
never acked is read again; its key `<topic>/<partition>/<offset>` is the same, and the runner's
idempotency key makes the second read no new job. Dead letters are produced (acks=all) to
`dead_letter_topic` with the error in headers.

aiokafka is imported in `open()` only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from coldbrew.integrations.triggers import brokerwire
from coldbrew.integrations.triggers.base import (
    Kind,
    KindConfig,
    Message,
    TriggerContext,
    decode_body,
    register_source,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

log = logging.getLogger(__name__)
Partition = tuple[str, int]  # (topic, partition)
_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"  # Kafka's legal topic names


class KafkaSourceConfig(KindConfig):
    """A consumer group over one or more topics, committing by hand."""

    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    topics: list[str] = Field(min_length=1)
    group_id: str = Field(min_length=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    dead_letter_topic: str | None = Field(default=None, pattern=_TOPIC)
    request_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> KafkaSourceConfig:
        brokerwire.require_client("kafka", "aiokafka", "aiokafka")
        import re

        bad = [t for t in self.topics if not re.match(_TOPIC, t)]
        if bad:
            raise ValueError(f"not Kafka topic names: {bad} (letters, digits, '.', '_', '-')")
        if self.dead_letter_topic in self.topics:
            raise ValueError("dead_letter_topic must not be one of topics (it would be read again)")
        return self


def message_key(topic: str, partition: int, offset: int) -> str:
    """`<topic>/<partition>/<offset>`: a record's place in the log never changes."""
    return f"{topic}/{partition}/{offset}"


class OffsetBook:
    """Which fetched offsets are still unsettled, per partition, and how far a commit may go.

    A partition's commit position is its lowest unsettled offset, or one past the highest
    fetched when all are settled: committing further would skip a message whose job may not
    exist yet. Positions only move forward.
    """

    def __init__(self) -> None:
        self._open: dict[Partition, set[int]] = {}
        self._next: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}

    def fetched(self, partition: Partition, offset: int) -> None:
        # the first offset seen is where the group stood: nothing is due until past it
        self._committed.setdefault(partition, offset)
        self._open.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def settle(self, partition: Partition, offset: int) -> None:
        self._open.get(partition, set()).discard(offset)

    def due(self) -> dict[Partition, int]:
        """Commit positions that moved past the last commit (empty when none did)."""
        out = {}
        for partition, nxt in self._next.items():
            pending = self._open.get(partition)
            position = min(pending) if pending else nxt
            if position > self._committed[partition]:
                out[partition] = position
        return out

    def committed(self, positions: dict[Partition, int]) -> None:
        """Record that `positions` were committed."""
        self._committed.update(positions)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions this consumer no longer owns (a rebalance): their next owner starts at
        the last commit, so their unsettled messages are read again there."""
        for partition in partitions:
            self._open.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)


class KafkaSource:
    """One consumer-group member; see the module docstring (and its warning)."""

    def __init__(self, config: KafkaSourceConfig, ctx: TriggerContext) -> None:
        self.config = config
        self.ctx = ctx
        self.book = OffsetBook()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def open(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

        cfg = self.config
        book = self.book

        class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                book.forget((tp.topic, tp.partition) for tp in revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                return None

        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            group_id=cfg.group_id,
            client_id=f"coldbrew-{self.ctx.consumer}",
            enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset,
            request_timeout_ms=int(cfg.request_timeout_s * 1000),
        )
        consumer.subscribe(topics=cfg.topics, listener=_Revoked())
        try:
            await consumer.start()
        except Exception as exc:
            await consumer.stop()
            raise brokerwire.unreachable("kafka", cfg.bootstrap_servers, exc) from exc
        self._consumer = consumer
        if cfg.dead_letter_topic is not None:
            producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap_servers, acks="all")
            try:
                await producer.start()
            except Exception as exc:
                await self.close()
                raise brokerwire.unreachable("kafka", cfg.bootstrap_servers, exc) from exc
            self._producer = producer

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """aiokafka's own long poll waits up to `wait_s` for records."""
        assert self._consumer is not None, "open() first"
        batches = await self._consumer.getmany(
            timeout_ms=int(wait_s * 1000), max_records=max_messages
        )
        out = []
        for tp, records in batches.items():
            for record in records:
                self.book.fetched((tp.topic, tp.partition), record.offset)
                out.append(
                    Message(
                        key=message_key(tp.topic, tp.partition, record.offset),
                        body=decode_body(record.value or b"null"),
                        received_at=record.timestamp / 1000,
                        handle=record,
                    )
                )
        return out

    async def ack(self, messages: Sequence[Message]) -> None:
        """Settle the messages, then commit every partition as far as the book allows."""
        from aiokafka import TopicPartition

        assert self._consumer is not None
        for message in messages:
            record = message.handle
            self.book.settle((record.topic, record.partition), record.offset)
        due = self.book.due()
        if due:
            await self._consumer.commit({TopicPartition(t, p): pos for (t, p), pos in due.items()})
            self.book.committed(due)

    async def dead_letter(self, message: Message, error: dict[str, Any]) -> None:
        if self._producer is None or self.config.dead_letter_topic is None:
            return  # the runner's own dead-letter table has it
        fields = brokerwire.error_fields(self.ctx.trigger_id, message.key, error)
        await self._producer.send_and_wait(
            self.config.dead_letter_topic,
            value=brokerwire.dead_letter_payload(message),
            key=message.key.encode(),
            headers=[(k, v.encode()) for k, v in fields.items()],
        )

    async def lag(self) -> int | None:
        return None

    async def close(self) -> None:
        """Stop without committing: what was not acked is read again by the group."""
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        self.book = OffsetBook()
        for client in (producer, consumer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:
                    log.debug("kafka: stop failed: %s", exc)


register_source(
    Kind(
        name="kafka",
        config=KafkaSourceConfig,
        build=KafkaSource,
        summary="a consumer group committing after acceptance (untested against a broker): "
        "bootstrap_servers, topics, group_id, auto_offset_reset, dead_letter_topic",
    )
)
