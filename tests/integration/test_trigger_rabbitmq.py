"""The RabbitMQ trigger source and sink against the real broker on 127.0.0.1:5672."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from coldbrew.errors import InvalidRequest, ServerError
from coldbrew.integrations.triggers.base import Message, SinkRecord, sink_kind, source_kind
from coldbrew.integrations.triggers.rabbitmq import RabbitSink, RabbitSource
from tests.integration.brokers import context, drain, require_broker, unique

pytest.importorskip("aio_pika")
pytestmark = pytest.mark.anyio
URL = "amqp://guest:guest@127.0.0.1:5672/"


class Broker:
    """A publishing channel; the queues a test names through `queue()` are deleted after it."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.queues: list[str] = []

    def queue(self, prefix: str = "cbtest") -> str:
        name = unique(prefix)
        self.queues.append(name)
        return name

    async def publish(self, queue: str, body: bytes, **props: Any) -> None:
        import aio_pika

        await self.channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props),
            routing_key=queue,
        )

    async def get_all(self, queue: str, expected: int) -> list[Any]:
        q = await self.channel.declare_queue(queue, passive=True)
        got = []
        for _ in range(expected + 1):
            message = await q.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                break
            got.append(message)
        return got


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    import aio_pika

    require_broker("RabbitMQ", 5672)
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    broker = Broker(channel)
    yield broker
    for name in broker.queues:
        with contextlib.suppress(Exception):  # a test that failed early made fewer
            await channel.queue_delete(name)
    await connection.close()


def _source(raw: dict[str, Any]) -> RabbitSource:
    source = source_kind("rabbitmq").create(raw, context())
    assert isinstance(source, RabbitSource)
    return source


def _config(broker: Broker, **extra: Any) -> dict[str, Any]:
    raw = {"url": URL, "queue": broker.queue(), "create": True}
    return raw | {"dead_letter_queue": broker.queue("cbdead")} | extra


async def test_n_published_are_fetched_and_acked_exactly_once(broker: Broker) -> None:
    raw = _config(broker)
    source = _source(raw)
    await source.open()
    try:
        for i in range(40):
            await broker.publish(raw["queue"], orjson.dumps({"i": i}), message_id=f"m{i}")
        got = await drain(source, 40, ack=True)
        assert len(got) == 40 and len({m.key for m in got}) == 40
        assert sorted(m.body["i"] for m in got) == list(range(40))
        assert got[0].key == "id:m0"
        assert await source.lag() == 0
    finally:
        await source.close()
    again = _source(raw)
    await again.open()
    try:
        assert await again.fetch(10, 0.5) == []  # acked means gone, also for a new runner
    finally:
        await again.close()


async def test_the_prefetch_is_the_batch_size(broker: Broker) -> None:
    raw = _config(broker)
    source = _source(raw)
    await source.open()
    try:
        for i in range(12):
            await broker.publish(raw["queue"], orjson.dumps({"i": i}))
        first = await drain(source, 5, batch=5)
        assert len(first) == 5  # nothing more came while 5 were unacked (drain's last fetch)
        assert await source.lag() == 7
        await source.ack(first)
        rest = await drain(source, 7, batch=5, ack=True)
        assert len(rest) == 7
    finally:
        await source.close()


async def test_unacked_messages_come_back_after_a_restart_with_the_same_keys(
    broker: Broker,
) -> None:
    raw = _config(broker)
    source = _source(raw)
    await source.open()
    for i in range(6):
        props = {"message_id": f"order-{i}"} if i % 2 else {}  # else aiormq makes one up
        await broker.publish(raw["queue"], orjson.dumps({"i": i}), **props)
    first = await drain(source, 6)
    await source.ack(first[:2])
    await source.close()

    source = _source(raw)
    await source.open()
    try:
        second = await drain(source, 4)
        assert {m.key for m in second} == {m.key for m in first[2:]}
        assert all(m.handle.redelivered for m in second)
        assert {f"id:order-{i}" for i in (1, 3, 5)} <= {m.key for m in first}
        await source.ack(second)
    finally:
        await source.close()


async def test_a_dead_letter_lands_with_its_error(broker: Broker) -> None:
    raw = _config(broker)
    source = _source(raw)
    await source.open()
    try:
        await broker.publish(raw["queue"], b"not json at all")
        (poison,) = await drain(source, 1)
        await source.ack([poison])
        error = {"type": "handler_error", "message": "bad input", "traceback": "x" * 10_000}
        await source.dead_letter(Message(poison.key, poison.body, poison.received_at), error)
    finally:
        await source.close()
    (dead,) = await broker.get_all(raw["dead_letter_queue"], 1)
    assert orjson.loads(dead.body) == {"data": "bm90IGpzb24gYXQgYWxs"}
    assert dead.headers["coldbrew-error-type"] == "handler_error"
    assert dead.message_id == poison.key
    record = orjson.loads(dead.headers["coldbrew-error"])
    assert record["message"] == "bad input" and len(dead.headers["coldbrew-error"]) <= 4096


async def test_sink_writes_arrive(broker: Broker) -> None:
    queue = broker.queue("cbsink")
    sink = sink_kind("rabbitmq").create(
        {"url": URL, "routing_key": queue, "create": True}, context()
    )
    assert isinstance(sink, RabbitSink)
    await sink.open()
    records = [
        SinkRecord("trg-test", f"k{i}", f"job-{i}", "COMPLETED", {"y": i}, None, 1.0)
        for i in range(5)
    ]
    try:
        await sink.write(records)
    finally:
        await sink.close()
    got = await broker.get_all(queue, 5)
    assert [orjson.loads(m.body)["job_id"] for m in got] == [f"job-{i}" for i in range(5)]
    assert got[0].message_id == "trg-test:k0" and got[0].content_type == "application/json"


async def test_a_missing_queue_says_how_to_fix_it(broker: Broker) -> None:
    source = _source({"url": URL, "queue": broker.queue("cbmissing")})
    with pytest.raises(InvalidRequest, match="does not exist") as info:
        await source.open()
    assert "create=true" in info.value.hint


def test_config_mistakes_are_400s_that_name_the_field() -> None:
    kind = source_kind("rabbitmq")
    with pytest.raises(InvalidRequest, match="queue"):
        kind.validate({"url": URL})
    with pytest.raises(InvalidRequest, match="dead_letter_queue must differ"):
        kind.validate({"queue": "a", "dead_letter_queue": "a"})
    with pytest.raises(InvalidRequest, match="url"):
        kind.validate({"queue": "a", "url": "http://x"})


async def test_a_dropped_connection_is_reopened_by_the_next_fetch(broker: Broker) -> None:
    raw = _config(broker)
    source = _source(raw)
    await source.open()
    try:
        for i in range(3):
            await broker.publish(raw["queue"], orjson.dumps({"i": i}), message_id=f"d{i}")
        first = await drain(source, 3)
        assert source._connection is not None
        await source._connection.close()  # the connection drops with 3 deliveries unacked
        with pytest.raises(ServerError, match="requeued"):
            await source.ack(first)
        again = await drain(source, 3, ack=True)  # reconnects; the broker requeued all three
        assert sorted(m.key for m in again) == ["id:d0", "id:d1", "id:d2"]
        assert all(m.handle.redelivered for m in again)
    finally:
        await source.close()


async def test_the_sink_reconnects_after_a_dropped_connection(broker: Broker) -> None:
    queue = broker.queue("cbsink")
    sink = sink_kind("rabbitmq").create(
        {"url": URL, "routing_key": queue, "create": True}, context()
    )
    assert isinstance(sink, RabbitSink)
    await sink.open()
    record = SinkRecord("trg-test", "k", "job-1", "COMPLETED", {"y": 1}, None, 1.0)
    try:
        assert sink._connection is not None
        await sink._connection.close()  # dropped: the runner only ever retries write
        await sink.write([record])
    finally:
        await sink.close()
    (got,) = await broker.get_all(queue, 1)
    assert orjson.loads(got.body)["job_id"] == "job-1"
