"""The HTTP server's own limits, set deliberately: connections, header time and header size.

uvicorn bounds a request's head in neither time nor size when it parses with httptools: a client
that opens a connection and sends nothing, or one header byte a second (slowloris), holds the
connection forever, and its headers are kept however long they grow. `GuardedHttp` closes a
connection whose request head is not complete within `header_timeout_s` (counted from the
connection, or from the first byte of each later request on it) and answers 431 to a head over
`MAX_HEAD_BYTES`. `limit_concurrency` makes uvicorn answer 503 past `max_connections` open
connections or running requests. The idle time between requests is uvicorn's keep-alive timeout.

uvicorn writes a response's status line and headers, then its body, as two socket writes: two
send() calls, two packets, and a client woken twice. `HeadWithBody` holds the head until the
body's first bytes (written in the same turn of the event loop for an ordinary response) and
sends both at once; a head with no body by the end of that turn (a stream waiting for its first
chunk) is sent alone then.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coldbrew.config import Settings

#: The most bytes a request line and headers may take (nginx allows 4 x 8 KB by default).
MAX_HEAD_BYTES = 64 * 1024


class HeadWithBody:
    """A transport whose writes of a response head wait for the body (see the module's doc).
    Everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is not None:
            data, self._head = self._head + bytes(data), None
        elif bytes(data[:9]) == b"HTTP/1.1 " and bytes(data[-4:]) == b"\r\n\r\n":
            self._head = bytes(data)  # uvicorn's response head: its body follows at once
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None and not self._transport.is_closing():
            self._transport.write(self._head)
        self._head = None

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound on each request head."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        held = HeadWithBody(transport, self.loop)
        super().connection_made(held)  # type: ignore[arg-type]
        self._head_bytes = 0
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        # the event loop's own timer, as uvicorn's keep-alive timeout uses: this is transport
        # plumbing, not a control-loop decision, so it does not go through the Clock
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request head in time")
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # parser callbacks below track where the head ends
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True  # the first byte of a request: of a later one on a kept-alive
        self._head_bytes = 0  # connection too, which the keep-alive timeout no longer covers
        self._arm()

    def _refuse_head(self) -> None:
        msg = b"request head larger than 64 KB"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
            b"content-length: " + str(len(msg)).encode() + b"\r\nconnection: close\r\n\r\n" + msg
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_http(header_timeout_s: float) -> type[GuardedHttp]:
    """A `GuardedHttp` with this deadline (uvicorn builds protocols from a class)."""
    return type("GuardedHttp", (GuardedHttp,), {"header_timeout_s": header_timeout_s})


def server_limits(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config arguments that bound what clients may hold."""
    return {
        "http": guarded_http(settings.header_timeout_s),
        "limit_concurrency": settings.max_connections,
    }


def home_problem(home: Path) -> str | None:
    """Why coldbrew cannot keep its state in `home`, as one line with the fix; None if it can."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            why += " (read-only or not yours)"
        return (
            f"error: coldbrew cannot write its state directory {home}: {why}; "
            "set COLDBREW_HOME to a writable directory (or fix its permissions)"
        )
    return None
