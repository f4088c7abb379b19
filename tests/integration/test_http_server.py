"""The gateway behind a real uvicorn server in process: connection-level limits and 500s."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn

from coldbrew.api.app import create_app
from coldbrew.cli.http import MAX_HEAD_BYTES, server_limits
from coldbrew.platform import Platform
from tests.integration.conftest import make_settings

pytestmark = pytest.mark.anyio

BOUND_S = 30.0  # a bound on waiting, not a timing assertion


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving(home: Path) -> AsyncIterator[int]:
    settings = make_settings(home, header_timeout_s=0.3)
    platform = Platform.create(settings)
    await platform.start()
    app = create_app(platform, manage_lifecycle=False)

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("a bug")

    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="critical",
        access_log=False,
        **server_limits(settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task
        await platform.stop()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND_S)
    lines = head.decode().split("\r\n")
    length = next(
        int(v)
        for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
        if k.lower() == "content-length"
    )
    body = await reader.readexactly(length)
    return int(lines[0].split()[1]), body


async def test_a_500_keeps_the_keep_alive_connection(tmp_path: Path) -> None:
    async with serving(tmp_path) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # the second request goes over the same connection
            writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
            status, body = await _response(reader)
            assert status == 500
            assert b"RuntimeError: a bug" in body
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(reader))[0] == 200
        writer.close()


async def test_a_client_that_never_finishes_its_headers_is_hung_up_on(tmp_path: Path) -> None:
    async with serving(tmp_path) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # slowloris: no blank line, ever
        assert await asyncio.wait_for(reader.read(), BOUND_S) == b""
        writer.close()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(idle_reader.read(), BOUND_S) == b""  # sent nothing at all
        idle_writer.close()


async def test_the_header_deadline_restarts_for_each_request_on_a_connection(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(reader))[0] == 200
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # the second head never completes
        assert await asyncio.wait_for(reader.read(), BOUND_S) == b""
        writer.close()


async def test_a_huge_request_head_is_a_431(tmp_path: Path) -> None:
    async with serving(tmp_path) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES)
        status, _ = await _response(reader)
        assert status == 431
        writer.close()


async def test_a_response_head_and_body_arrive_together(tmp_path: Path) -> None:
    async with serving(tmp_path) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.read(65536), BOUND_S)  # one segment: both parts
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body
        writer.close()
