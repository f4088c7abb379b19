"""Helpers for the message-broker trigger tests: reach a loopback broker (skip when it is not
there, fail under CI, which always has them), build a TriggerContext, drain a source."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

import pytest

from coldbrew.clock import SystemClock
from coldbrew.integrations.triggers.base import Message, Source, TriggerContext


def require_broker(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip the test when `name` does not answer on host:port, unless CI is set (then fail)."""
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not reachable on {host}:{port} under CI: {exc}")
        pytest.skip(f"no {name} on {host}:{port} (CI always has one)")


def unique(prefix: str) -> str:
    """A name no other test (or test run) uses: brokers outlive the test process."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class NoCursor:
    """Broker sources keep their position in the broker; they never touch the cursor."""

    async def load(self) -> dict[str, Any] | None:
        raise AssertionError("a broker source must not use the trigger cursor")

    async def save(self, cursor: dict[str, Any]) -> None:
        raise AssertionError("a broker source must not use the trigger cursor")


def context(trigger_id: str = "trg-test") -> TriggerContext:
    return TriggerContext(
        trigger_id=trigger_id, consumer="test-runner", clock=SystemClock(), cursor=NoCursor()
    )


async def drain(
    source: Source, expected: int, *, batch: int = 10, ack: bool = False, timeout_s: float = 20.0
) -> list[Message]:
    """Fetch until `expected` messages came (a bound, not a timing assertion), then one more
    short fetch: the caller's count check catches anything past `expected` (a duplicate).

    `ack` acks each batch as it comes, as the runner does; brokers that cap unacked deliveries
    (RabbitMQ's prefetch, MQTT's receive maximum) send nothing more until then.
    """
    got: list[Message] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < expected:
            window = await source.fetch(batch, 0.5)
            if ack:
                await source.ack(window)
            got += window
    tail = await source.fetch(batch, 0.3)
    if ack:
        await source.ack(tail)
    return got + tail
