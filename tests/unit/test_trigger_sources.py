"""Sources that need no service: cron ticks on a FakeClock (a missed tick after downtime fires
once, in the schedule's time zone), S3 event parsing and the signed events URL, config errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from coldbrew.clock import FakeClock
from coldbrew.errors import InvalidRequest
from coldbrew.integrations.triggers import kinds
from coldbrew.integrations.triggers.base import TriggerContext, decode_body, source_kind
from coldbrew.integrations.triggers.cron import CronConfig, CronSource
from coldbrew.integrations.triggers.push import s3_messages, sign, verify

pytestmark = pytest.mark.anyio
kinds.load()


class MemoryCursor:
    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None

    async def load(self) -> dict[str, Any] | None:
        return self.value

    async def save(self, cursor: dict[str, Any]) -> None:
        self.value = cursor


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_cron_fires_each_tick_in_its_time_zone_and_a_missed_run_once() -> None:
    clock, cursor = FakeClock(_at("2026-03-01T07:59:30")), MemoryCursor()
    config = CronConfig(schedule="0 9 * * *", timezone="Europe/Berlin", input={"report": "daily"})
    source = CronSource(config, TriggerContext("t1", "me", clock, cursor))
    await source.open()
    assert await source.fetch(1, 0.0) == []  # 08:59:30 in Berlin: not yet
    clock.advance(30)  # 09:00 Berlin = 08:00 UTC
    (tick,) = await source.fetch(1, 0.0)
    assert tick.body == {"report": "daily", "scheduled_at": "2026-03-01T09:00:00+01:00"}
    assert tick.key == "tick:2026-03-01T08:00:00+00:00"
    assert await source.fetch(1, 0.0) == [tick]  # not acked: the same tick again
    await source.ack([tick])
    assert await source.fetch(1, 0.0) == []
    clock.advance(3 * 86400)  # down for three days: one run, for the latest tick
    restarted = CronSource(config, TriggerContext("t1", "me", clock, cursor))
    await restarted.open()
    (late,) = await restarted.fetch(1, 0.0)
    assert late.body["scheduled_at"] == "2026-03-04T09:00:00+01:00"
    await restarted.ack([late])
    assert await restarted.lag() == 0


def test_s3_records_become_one_message_each_with_the_key_decoded() -> None:
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "a+b%2Fc.png", "size": 3, "sequencer": "01"},
                },
            },
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {}}},
            {
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "x.txt", "sequencer": "02"}},
            },
        ]
    }
    messages = s3_messages(event, 1.0, suffix=".png")
    assert [(m.key, m.body) for m in messages] == [
        ("b/a b/c.png#01", {"bucket": "b", "key": "a b/c.png", "size": 3,
                            "eventName": "ObjectCreated:Put"}),
    ]  # fmt: skip
    sns = {"Type": "Notification", "Message": '{"Records": []}'}
    assert s3_messages(sns, 1.0) == []
    with pytest.raises(InvalidRequest):
        s3_messages({"Records": "nope"}, 1.0)


def test_the_events_url_signature_is_bound_to_the_trigger() -> None:
    sig = sign("trg_1", "secret")
    assert verify("trg_1", "secret", sig)
    assert not verify("trg_2", "secret", sig) and not verify("trg_1", "other", sig)


def test_configs_are_checked_when_the_trigger_is_created() -> None:
    with pytest.raises(InvalidRequest, match="schedule"):
        source_kind("cron").validate({"schedule": "61 * * * *"})
    with pytest.raises(InvalidRequest, match="time zone"):
        source_kind("cron").validate({"schedule": "* * * * *", "timezone": "Mars/Base"})
    with pytest.raises(InvalidRequest, match="strem"):
        source_kind("redis").validate({"stream": "s", "strem": "typo"})
    with pytest.raises(InvalidRequest, match="plain SQL name"):
        source_kind("postgres").validate({"dsn": "postgresql://x", "table": "t; DROP"})
    with pytest.raises(InvalidRequest, match="unknown trigger source"):
        source_kind("ftp")


def test_bodies_that_are_not_json_arrive_as_base64() -> None:
    assert decode_body(b'{"a": 1}') == {"a": 1}
    assert decode_body(b"\xff\x00") == {"data": "/wA="}
