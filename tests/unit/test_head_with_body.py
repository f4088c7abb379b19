"""A response's head waits for its body and goes out in the same write; a head whose body does
not follow in the same turn of the event loop (a stream) goes out alone at the end of it."""

from __future__ import annotations

import asyncio
from typing import Any

from coldbrew.cli.http import HeadWithBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_the_head_and_body_go_in_one_write() -> None:
    async def scenario() -> None:
        raw = Recorder()
        held = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(HEAD)
        held.write(b"ok")
        await asyncio.sleep(0)
        assert raw.writes == [HEAD + b"ok"]
        assert held.get_extra_info("peername") == "info:peername"  # the rest is the transport's

    asyncio.run(scenario())


def test_a_head_without_a_body_yet_goes_alone_at_the_end_of_the_turn() -> None:
    async def scenario() -> None:
        raw = Recorder()
        held = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(HEAD)
        assert raw.writes == []
        await asyncio.sleep(0)
        assert raw.writes == [HEAD]
        held.write(b"data: 1\n\n")
        assert raw.writes == [HEAD, b"data: 1\n\n"]

    asyncio.run(scenario())


def test_closing_sends_a_held_head_first() -> None:
    async def scenario() -> None:
        raw = Recorder()
        held = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(HEAD)
        held.close()
        assert raw.writes == [HEAD] and raw.closed
        await asyncio.sleep(0)
        assert raw.writes == [HEAD]  # sent once

    asyncio.run(scenario())
