"""Webhook egress: metadata and (by setting) loopback targets refused, no port-scan oracle."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import Running, running, wait_for
from tests.integration.test_webhooks import receiver

pytestmark = pytest.mark.anyio


async def _final_delivery(cb: Running, url: str) -> dict[str, Any]:
    job_id = await cb.run("toy", {"value": 1}, webhook=url)
    job = await wait_for(
        lambda: cb.job(job_id),
        lambda j: j.get("webhook", {}).get("state") in ("delivered", "gave_up"),
    )
    webhook: dict[str, Any] = job["webhook"]
    return webhook


async def test_a_metadata_address_is_refused_by_policy_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys", webhook_max_attempts=4) as cb:
        webhook = await _final_delivery(cb, "http://169.254.169.254/latest/meta-data/")
        assert webhook["state"] == "gave_up"
        (delivery,) = webhook["deliveries"]  # no retries: a policy does not change
        assert delivery["error"].startswith("refused by policy")
        assert "metadata" in delivery["error"]


async def test_loopback_is_refused_when_the_operator_says_so(tmp_path: Path) -> None:
    async with (
        receiver() as hook,
        running(tmp_path, FIXTURES / "toys", webhook_allow_loopback=False) as cb,
    ):
        webhook = await _final_delivery(cb, hook.url)
        assert webhook["state"] == "gave_up"
        assert webhook["deliveries"][0]["error"] == (
            "refused by policy: 127.0.0.1 is a loopback address "
            "(COLDBREW_WEBHOOK_ALLOW_LOOPBACK allows it)"
        )
        assert hook.received == []


async def test_loopback_is_allowed_on_the_embedded_loopback_gateway(tmp_path: Path) -> None:
    async with receiver() as hook, running(tmp_path, FIXTURES / "toys") as cb:
        webhook = await _final_delivery(cb, hook.url.replace("127.0.0.1", "localhost"))
        assert webhook["state"] == "delivered"
        assert hook.received[0][0]["host"].startswith("localhost:")


async def test_the_delivery_log_does_not_tell_open_ports_from_closed_ones(tmp_path: Path) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")  # an open port that speaks something else
        await writer.drain()
        writer.close()

    open_port = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # bound, never listening: connections are refused
        async with open_port, running(tmp_path, FIXTURES / "toys", webhook_max_attempts=1) as cb:
            port = open_port.sockets[0].getsockname()[1]
            to_open = await _final_delivery(cb, f"http://127.0.0.1:{port}/")
            to_closed = await _final_delivery(cb, f"http://127.0.0.1:{closed}/")
    assert to_open["deliveries"][0]["error"] == to_closed["deliveries"][0]["error"]
    assert to_open["deliveries"][0]["error"] == "no HTTP response from the receiver"
