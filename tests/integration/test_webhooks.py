"""Webhooks: signed with the account's secret, retried with backoff, every attempt recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from coldbrew import verify_webhook
from tests.conftest import FIXTURES
from tests.integration.conftest import running, wait_for

pytestmark = pytest.mark.anyio


@dataclass
class Receiver:
    """A loopback HTTP receiver that fails its first `fail_first` requests with 500."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append((headers, body))
        status = "500 Internal Server Error" if len(self.received) <= self.fail_first else "200 OK"
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


@asynccontextmanager
async def receiver(fail_first: int = 0) -> AsyncIterator[Receiver]:
    recv = Receiver(fail_first=fail_first)
    server = await asyncio.start_server(recv.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recv.url = f"http://127.0.0.1:{port}/hook"
    async with server:
        yield recv


async def test_a_final_job_is_posted_signed_and_retried_until_accepted(tmp_path: Path) -> None:
    async with receiver(fail_first=2) as hook, running(tmp_path, FIXTURES / "toys") as cb:
        secret = (await cb.http.get("/v1/account")).json()["webhookSecret"]
        job_id = await cb.run("toy", {"value": 42}, webhook=hook.url)

        job = await wait_for(
            lambda: cb.job(job_id), lambda j: j.get("webhook", {}).get("state") == "delivered"
        )

        assert len(hook.received) == 3
        headers, body = hook.received[-1]
        assert verify_webhook(secret, headers, body)
        assert not verify_webhook(secret, headers, body.replace(b"42", b"43"))
        status = orjson.loads(body)
        assert status["id"] == job_id and status["status"] == "COMPLETED"
        assert status["output"]["value"] == 42
        deliveries = job["webhook"]["deliveries"]
        assert [d["statusCode"] for d in deliveries] == [500, 500, 200]
        assert deliveries[0]["error"] == "receiver answered HTTP 500"
        assert deliveries[1]["at"] < deliveries[2]["at"]


async def test_a_receiver_that_never_accepts_is_given_up_after_the_last_attempt(
    tmp_path: Path,
) -> None:
    async with (
        receiver(fail_first=100) as hook,
        running(tmp_path, FIXTURES / "toys", webhook_max_attempts=3) as cb,
    ):
        job_id = await cb.run("toy", {"crash": "boom"}, webhook=hook.url)
        job = await wait_for(
            lambda: cb.job(job_id), lambda j: j.get("webhook", {}).get("state") == "gave_up"
        )
        assert job["status"] == "FAILED"
        assert len(job["webhook"]["deliveries"]) == 3 == len(hook.received)
        assert orjson.loads(hook.received[0][1])["error"] == "boom"


async def test_a_webhook_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path, FIXTURES / "toys") as cb:
        response = await cb.http.post("/v2/toy/run", json={"input": {}, "webhook": "ftp://x"})
        assert response.status_code == 400
        assert "webhook" in response.json()["error"]["message"]


async def test_a_retried_job_sends_a_new_message_with_a_fresh_delivery_log(
    tmp_path: Path,
) -> None:
    # sandbox off: the toy leaves its once-marker in the test's directory
    async with receiver() as hook, running(tmp_path, FIXTURES / "toys", sandbox="off") as cb:
        marker = tmp_path / "fail-once"
        job_id = await cb.run(
            "toy", {"crash": "first run fails", "once_marker": str(marker)}, webhook=hook.url
        )
        await wait_for(lambda: cb.job(job_id), lambda j: j["webhook"]["state"] == "delivered")
        assert (await cb.http.post(f"/v2/toy/retry/{job_id}")).status_code == 200
        job = await wait_for(
            lambda: cb.job(job_id),
            lambda j: j["status"] == "COMPLETED" and j["webhook"]["state"] == "delivered",
        )
        assert len(job["webhook"]["deliveries"]) == 1
        (first_headers, first_body), (second_headers, second_body) = hook.received
        assert first_headers["webhook-id"] != second_headers["webhook-id"]
        assert orjson.loads(first_body)["status"] == "FAILED"
        assert orjson.loads(second_body)["status"] == "COMPLETED"
