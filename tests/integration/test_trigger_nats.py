"""The NATS JetStream trigger source and sink against the real server on 127.0.0.1:4222."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from coldbrew.errors import InvalidRequest
from coldbrew.integrations.triggers.base import Message, SinkRecord, sink_kind, source_kind
from coldbrew.integrations.triggers.nats_jetstream import NatsSink, NatsSource
from tests.integration.brokers import context, drain, require_broker, unique

pytest.importorskip("nats")
pytestmark = pytest.mark.anyio
URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def js() -> AsyncIterator[Any]:
    """A JetStream context; every stream a test names with `unique` is deleted afterwards."""
    import nats

    require_broker("NATS", 4222)
    nc = await nats.connect(URL)
    js = nc.jetstream()
    js.created = []
    yield js
    for name in js.created:
        with contextlib.suppress(Exception):  # a test that failed early made fewer
            await js.delete_stream(name)
    await nc.close()


def _config(js: Any, **extra: Any) -> dict[str, Any]:
    stream = unique("cbtest").replace("-", "_")
    js.created += [stream, f"{stream}_DEAD"]
    base = {
        "url": URL,
        "stream": stream,
        "subject": f"{stream}.in",
        "durable": "runner",
        "create": True,
        "dead_letter_subject": f"{stream}_dead.in",
    }
    return base | extra


def _source(raw: dict[str, Any]) -> NatsSource:
    source = source_kind("nats").create(raw, context())
    assert isinstance(source, NatsSource)
    return source


async def test_n_published_are_fetched_and_acked_exactly_once(js: Any) -> None:
    raw = _config(js)
    source = _source(raw)
    await source.open()
    try:
        for i in range(40):
            await js.publish(raw["subject"], orjson.dumps({"i": i}))
        await js.publish(raw["subject"], b"\x00not json")
        got = await drain(source, 41)
        assert len(got) == 41 and len({m.key for m in got}) == 41
        assert sorted(m.body["i"] for m in got[:40]) == list(range(40))
        assert got[40].body == {"data": "AG5vdCBqc29u"}  # bytes that are not JSON: base64
        await source.ack(got)
        assert await source.lag() == 0
    finally:
        await source.close()
    again = _source(raw)
    await again.open()
    try:
        assert await again.fetch(10, 0.5) == []  # acked means gone, also for a new runner
    finally:
        await again.close()


async def test_unacked_messages_come_back_after_a_restart_with_the_same_keys(js: Any) -> None:
    raw = _config(js)
    source = _source(raw)
    await source.open()
    for i in range(6):
        headers = {"Nats-Msg-Id": f"order-{i}"} if i % 2 else None
        await js.publish(raw["subject"], orjson.dumps({"i": i}), headers=headers)
    first = await drain(source, 6)
    await source.ack(first[:2])
    await source.close()  # a clean stop: the rest is naked, so it comes back at once

    source = _source(raw)
    await source.open()
    try:
        second = await drain(source, 4)
        assert {m.key for m in second} == {m.key for m in first[2:]}
        assert {m.key for m in first if m.key.startswith("id:")} == {
            "id:order-1",
            "id:order-3",
            "id:order-5",
        }
        await source.ack(second)
    finally:
        await source.close()


async def test_a_crashed_runner_s_messages_come_back_after_ack_wait(js: Any) -> None:
    raw = _config(js, ack_wait_s=1.0)
    crashed = _source(raw)
    await crashed.open()
    await js.publish(raw["subject"], b'{"n": 1}')
    (held,) = await drain(crashed, 1)
    assert crashed._nc is not None
    await crashed._nc.close()  # the process died: no nak, no ack

    survivor = _source(raw)
    await survivor.open()
    try:
        (back,) = await drain(survivor, 1, timeout_s=10)
        assert back.key == held.key and back.body == {"n": 1}
        await survivor.ack([back])
    finally:
        await survivor.close()


async def test_a_dead_letter_lands_with_its_error(js: Any) -> None:
    raw = _config(js)
    source = _source(raw)
    await source.open()
    try:
        await js.publish(raw["subject"], b'{"poison": true}')
        (poison,) = await drain(source, 1)
        await source.ack([poison])
    finally:
        await source.close()
    source = _source(raw)  # after a restart, from the runner's copy (no handle)
    await source.open()
    try:
        error = {"type": "invalid_input", "message": "x must be an integer", "hint": "fix it"}
        await source.dead_letter(Message(poison.key, poison.body, poison.received_at), error)
    finally:
        await source.close()
    dead = await js.pull_subscribe(raw["dead_letter_subject"], stream=f"{raw['stream']}_DEAD")
    (msg,) = await dead.fetch(1, timeout=5)
    assert orjson.loads(msg.data) == {"poison": True}
    assert msg.headers["coldbrew-error-type"] == "invalid_input"
    assert orjson.loads(msg.headers["coldbrew-error"])["message"] == "x must be an integer"
    assert msg.headers["coldbrew-message-key"] == poison.key


async def test_sink_writes_arrive_once_each(js: Any) -> None:
    stream = unique("cbsink").replace("-", "_")
    js.created.append(stream)
    raw = {"url": URL, "subject": f"{stream}.out", "stream": stream, "create": True}
    sink = sink_kind("nats").create(raw, context())
    assert isinstance(sink, NatsSink)
    await sink.open()
    records = [
        SinkRecord("trg-test", f"k{i}", f"job-{i}", "COMPLETED", {"y": i}, None, 1.0)
        for i in range(5)
    ]
    try:
        await sink.write(records)
        await sink.write(records[:2])  # a repeat after a crash: same Nats-Msg-Id, dropped
    finally:
        await sink.close()
    info = await js.stream_info(stream)
    assert info.state.messages == 5
    sub = await js.pull_subscribe(f"{stream}.out", stream=stream)
    got = [orjson.loads(m.data) for m in await sub.fetch(5, timeout=5)]
    assert [g["job_id"] for g in got] == [f"job-{i}" for i in range(5)]
    assert got[0]["output"] == {"y": 0} and got[0]["message_key"] == "k0"


async def test_a_missing_stream_says_how_to_fix_it(js: Any) -> None:
    raw = _config(js, create=False)
    source = _source(raw)
    with pytest.raises(InvalidRequest, match="does not exist") as info:
        await source.open()
    assert "create=true" in info.value.hint
