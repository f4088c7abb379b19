"""The gateway's worker socket: where workers on other machines (Ray nodes) connect back.

A local worker talks to the gateway over one end of a socket pair. A worker on a Ray node
cannot: its node agent (`ray_agent.py`) connects to this TCP socket instead, says which worker
the connection is for (a `hello` frame with a one-time token the gateway handed the agent), and
passes the connected socket to the worker it forks. From then on the worker's frames go straight
to the gateway, as a local worker's do; Ray carries only the control calls (fork, kill, wait).

A remote worker's machine can vanish without closing its connections, so both ends turn on TCP
keepalive and `TCP_USER_TIMEOUT`: a connection to a lost node fails within seconds instead of
the kernel's default two hours, and the worker's slot and jobs come back to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import socket
from dataclasses import dataclass

from coldbrew.runtime import protocol

log = logging.getLogger("coldbrew.worker_socket")

#: Idle seconds before the first keepalive probe, seconds between probes, probes before the
#: connection is dropped, and the most milliseconds sent data may stay unacknowledged: a lost
#: node is noticed in about 10 s on either end, whether the connection is idle or busy.
KEEPALIVE_IDLE_S = 4
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_PROBES = 3
USER_TIMEOUT_MS = 10_000
#: A hello bigger than this is not a hello.
_MAX_HELLO_BYTES = 4096


def keep_alive(sock: socket.socket) -> None:
    """Turn on the options that let a connection to a lost machine fail within seconds."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has all four
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def hello(worker_id: str, token: str) -> bytes:
    """The first frame on a worker's connection: which worker it is, and its proof."""
    return protocol.encode({"t": "hello", "worker_id": worker_id, "token": token})


@dataclass
class _Expected:
    token: str
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


class WorkerSocket:
    """Accepts workers' connections and hands each to the `start` that expects it."""

    def __init__(self, bind_host: str, advertise_host: str, port: int = 0) -> None:
        self.bind_host = bind_host
        self.advertise_host = advertise_host
        self.port = port
        self.hello_timeout_s = 10.0
        self._server: asyncio.Server | None = None
        self._expected: dict[str, _Expected] = {}

    async def start(self) -> None:
        """Listen (on a free port when `port` is 0)."""
        self._server = await asyncio.start_server(self._accept, self.bind_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> tuple[str, int]:
        """Where a worker on another machine connects."""
        return self.advertise_host, self.port

    def expect(
        self, worker_id: str
    ) -> tuple[str, asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
        """A one-time token for the worker's connection, and the future of that connection."""
        token = secrets.token_urlsafe(24)
        connected = asyncio.get_running_loop().create_future()
        self._expected[worker_id] = _Expected(token, connected)
        return token, connected

    def forget(self, worker_id: str) -> None:
        """Stop waiting for a worker's connection (its start failed or timed out)."""
        expected = self._expected.pop(worker_id, None)
        if expected is not None and not expected.connected.done():
            expected.connected.cancel()

    async def close(self) -> None:
        for worker_id in list(self._expected):
            self.forget(worker_id)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            keep_alive(sock)
        try:
            async with asyncio.timeout(self.hello_timeout_s):
                frame = await _read_hello(reader)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            frame = None
        expected = None
        if frame is not None:
            expected = self._expected.get(str(frame.get("worker_id")))
        if (
            frame is None
            or expected is None
            or not hmac.compare_digest(str(frame.get("token", "")), expected.token)
            or expected.connected.done()
        ):
            log.warning("refused a worker connection from %s", writer.get_extra_info("peername"))
            writer.close()
            return
        del self._expected[str(frame["worker_id"])]
        expected.connected.set_result((reader, writer))


async def _read_hello(reader: asyncio.StreamReader) -> dict[str, object]:
    (length,) = protocol.HEADER.unpack(await reader.readexactly(protocol.HEADER.size))
    if length > _MAX_HELLO_BYTES:
        raise ValueError("not a hello")
    frame = protocol.decode(await reader.readexactly(length))
    if frame.get("t") != "hello":
        raise ValueError("not a hello")
    return frame
