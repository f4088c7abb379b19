"""The MQTT trigger source and sink against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from coldbrew.errors import InvalidRequest, ServerError
from coldbrew.integrations.triggers.base import Message, SinkRecord, sink_kind, source_kind
from coldbrew.integrations.triggers.mqtt import (
    MqttSink,
    MqttSource,
    publish_properties,
    user_properties,
)
from tests.integration.brokers import context, drain, require_broker, unique

aiomqtt = pytest.importorskip("aiomqtt")
pytestmark = pytest.mark.anyio


class Broker:
    """A publisher; every persistent session a test opens through `config` is ended after it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sessions: list[str] = []

    def config(self, **extra: Any) -> dict[str, Any]:
        root = unique("cbtest")
        client_id = unique("cb-runner")
        self.sessions.append(client_id)
        raw = {"topic": f"{root}/in/#", "client_id": client_id}
        return raw | {"dead_letter_topic": f"{root}/dead"} | extra

    async def publish(self, topic: str, payload: bytes, message_id: str | None = None) -> None:
        props = publish_properties({"message-id": message_id}) if message_id else None
        await self.client.publish(topic, payload, qos=1, properties=props)

    async def end_sessions(self) -> None:
        """Connect once more with clean start and no expiry: Mosquitto drops the session."""
        for client_id in self.sessions:
            async with aiomqtt.Client(
                "127.0.0.1", identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5
            ):
                pass


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    require_broker("Mosquitto", 1883)
    async with aiomqtt.Client(
        "127.0.0.1", identifier=unique("cb-pub"), protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        broker = Broker(client)
        yield broker
    await broker.end_sessions()


def _source(raw: dict[str, Any]) -> MqttSource:
    source = source_kind("mqtt").create(raw, context())
    assert isinstance(source, MqttSource)
    return source


def _in(raw: dict[str, Any], leaf: str = "x") -> str:
    return str(raw["topic"]).replace("#", leaf)


async def test_n_published_are_fetched_and_acked_exactly_once(broker: Broker) -> None:
    raw = broker.config()
    source = _source(raw)
    await source.open()
    try:
        for i in range(50):
            await broker.publish(_in(raw, f"dev{i % 3}"), orjson.dumps({"i": i}), f"m{i}")
        got = await drain(source, 50, ack=True)
        assert len(got) == 50 and len({m.key for m in got}) == 50
        assert sorted(m.body["i"] for m in got) == list(range(50))
        assert got[0].key == f"{_in(raw, 'dev0')}|id:m0"
    finally:
        await source.close()
    again = _source(raw)
    await again.open()
    try:
        assert await again.fetch(10, 0.5) == []  # acked (PUBACK sent) means gone
    finally:
        await again.close()


async def test_messages_published_while_the_runner_is_away_arrive_on_reconnect(
    broker: Broker,
) -> None:
    raw = broker.config()
    source = _source(raw)
    await source.open()  # makes the session and its subscription
    await source.close()
    for i in range(5):
        await broker.publish(_in(raw), orjson.dumps({"i": i}))
    source = _source(raw)
    await source.open()
    try:
        got = await drain(source, 5, ack=True)
        assert sorted(m.body["i"] for m in got) == list(range(5))
        assert all(m.key.startswith(f"{_in(raw)}|sha256:") for m in got)
    finally:
        await source.close()


async def test_unacked_messages_come_back_after_a_restart_with_the_same_keys(
    broker: Broker,
) -> None:
    raw = broker.config()
    source = _source(raw)
    await source.open()
    for i in range(6):
        await broker.publish(_in(raw), orjson.dumps({"i": i}), f"order-{i}" if i % 2 else None)
    first = await drain(source, 6)
    await source.ack(first[:2])
    await source.close()  # 4 never PUBACKed: still in flight in the broker's session

    source = _source(raw)
    await source.open()
    try:
        second = await drain(source, 4, ack=True)
        assert sorted(m.key for m in second) == sorted(m.key for m in first[2:])
        assert sorted(m.body["i"] for m in second) == sorted(m.body["i"] for m in first[2:])
    finally:
        await source.close()


async def test_a_dead_letter_lands_with_its_error(broker: Broker) -> None:
    raw = broker.config()
    async with aiomqtt.Client(
        "127.0.0.1", identifier=unique("cb-dl"), protocol=aiomqtt.ProtocolVersion.V5
    ) as reader:
        await reader.subscribe(raw["dead_letter_topic"], qos=1)
        source = _source(raw)
        await source.open()
        try:
            await broker.publish(_in(raw), b'{"poison": 1}')
            (poison,) = await drain(source, 1, ack=True)
            error = {"type": "timed_out", "message": "ran past 5 s"}
            await source.dead_letter(Message(poison.key, poison.body, poison.received_at), error)
        finally:
            await source.close()
        async with asyncio.timeout(5):
            dead = await anext(reader.messages)
    assert orjson.loads(dead.payload) == {"poison": 1}
    props = user_properties(dead.properties)
    assert props["coldbrew-error-type"] == "timed_out"
    assert orjson.loads(props["coldbrew-error"])["message"] == "ran past 5 s"
    assert props["message-id"] == poison.key


async def test_sink_writes_arrive(broker: Broker) -> None:
    topic = unique("cbsink") + "/out"
    async with aiomqtt.Client(
        "127.0.0.1", identifier=unique("cb-sinkreader"), protocol=aiomqtt.ProtocolVersion.V5
    ) as reader:
        await reader.subscribe(topic, qos=1)
        sink = sink_kind("mqtt").create({"topic": topic}, context())
        assert isinstance(sink, MqttSink)
        await sink.open()
        records = [
            SinkRecord("trg-test", f"k{i}", f"job-{i}", "COMPLETED", {"y": i}, None, 1.0)
            for i in range(5)
        ]
        try:
            await sink.write(records)
        finally:
            await sink.close()
        got = []
        async with asyncio.timeout(5):
            while len(got) < 5:
                got.append(await anext(reader.messages))
    assert [orjson.loads(m.payload)["job_id"] for m in got] == [f"job-{i}" for i in range(5)]
    assert user_properties(got[0].properties)["message-id"] == "trg-test:k0"


def test_config_mistakes_are_400s_that_name_the_field() -> None:
    kind = source_kind("mqtt")
    with pytest.raises(InvalidRequest, match="client_id"):
        kind.validate({"topic": "a/#"})
    with pytest.raises(InvalidRequest, match="dead_letter_topic 'a/dead' matches topic"):
        kind.validate({"topic": "a/#", "client_id": "c", "dead_letter_topic": "a/dead"})
    with pytest.raises(InvalidRequest, match="topic"):
        kind.validate({"topic": "a/#/b", "client_id": "c"})


async def test_a_dropped_connection_is_reopened_and_in_flight_messages_come_again(
    broker: Broker,
) -> None:
    raw = broker.config()
    source = _source(raw)
    await source.open()
    try:
        for i in range(3):
            await broker.publish(_in(raw), orjson.dumps({"i": i}), f"d{i}")
        first = await drain(source, 3)
        assert source._client is not None
        source._client._client.disconnect()  # the connection drops, 3 messages unacked
        with pytest.raises(ServerError, match="lost the connection"):
            await source.fetch(10, 2.0)
        again = await drain(source, 3)  # reconnects; the session resends the three
        assert sorted(m.key for m in again) == sorted(m.key for m in first)
        await source.ack(first)  # stale handles: no PUBACK (their packet ids may be reused)
        await source.ack(again)
    finally:
        await source.close()
    source = _source(raw)
    await source.open()
    try:
        assert await source.fetch(10, 0.5) == []  # the resent copies' PUBACKs settled them
    finally:
        await source.close()


async def test_the_sink_reconnects_after_a_dropped_connection(broker: Broker) -> None:
    topic = unique("cbsink") + "/out"
    async with aiomqtt.Client(
        "127.0.0.1", identifier=unique("cb-sinkreader"), protocol=aiomqtt.ProtocolVersion.V5
    ) as reader:
        await reader.subscribe(topic, qos=1)
        sink = sink_kind("mqtt").create({"topic": topic}, context())
        assert isinstance(sink, MqttSink)
        await sink.open()
        record = SinkRecord("trg-test", "k", "job-1", "COMPLETED", {"y": 1}, None, 1.0)
        try:
            assert sink._client is not None
            sink._client._client.disconnect()  # dropped: the runner only ever retries write
            with pytest.raises(aiomqtt.MqttError):
                await sink.write([record])  # the drop shows here...
            await sink.write([record])  # ...and the retry reconnects
        finally:
            await sink.close()
        async with asyncio.timeout(5):
            got = await anext(reader.messages)
    assert orjson.loads(got.payload)["job_id"] == "job-1"
