"""A sandboxed process's only way out of its network namespace: a line to the gateway.

Tenant code talks HTTP to the gateway in two cases: RunPod handlers (the worker protocol) and
workers fetching uploaded files through signed links. Neither can reach it from a namespace with
only `lo`. So each sandboxed process gets a SOCK_SEQPACKET socket (`COLDBREW_FORWARD_FD`); at
start-up, once sandboxed, it forks a forwarder that listens on 127.0.0.1:`COLDBREW_FORWARD_PORT`
inside its namespace, and for every connection there asks the gateway, over the line, for a
fresh connection to itself, handed back as a descriptor; the forwarder copies bytes both ways.
The gateway only ever connects to its own address: the line reaches nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading

from coldbrew.runtime.sandbox import _libc

FORWARD_FD_ENV = "COLDBREW_FORWARD_FD"
FORWARD_PORT_ENV = "COLDBREW_FORWARD_PORT"


class GatewayLine:
    """The gateway's end of one process's line (registered on the running event loop)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._ours: socket.socket | None = ours
        self.child_fd: int | None = theirs.detach()
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_request)

    def env(self) -> dict[str, str]:
        return {FORWARD_FD_ENV: str(self.child_fd), FORWARD_PORT_ENV: str(self.port)}

    def started(self) -> None:
        """The process has its copy: drop ours."""
        if self.child_fd is not None:
            os.close(self.child_fd)
            self.child_fd = None

    def close(self) -> None:
        self.started()
        if self._ours is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._ours.fileno())
            self._ours.close()
            self._ours = None

    def _on_request(self) -> None:
        line = self._ours
        if line is None:
            return
        try:
            request = line.recv(64)
        except BlockingIOError:
            return
        except OSError:
            request = b""
        if not request:
            self.close()
            return
        try:
            upstream = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError:
            with contextlib.suppress(OSError):
                line.send(b"refused")
            return
        upstream.setblocking(True)
        with upstream, contextlib.suppress(OSError):
            socket.send_fds(line, [b"ok"], [upstream.fileno()])


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def forward(listener: socket.socket, connector: socket.socket) -> None:
    """Serve connections on `listener` through upstream sockets the gateway hands over."""
    while True:
        conn, _ = listener.accept()
        connector.send(b"connect")
        _, fds, _, _ = socket.recv_fds(connector, 16, 1)
        if not fds:
            conn.close()
            continue
        upstream = socket.socket(fileno=fds[0])
        upstream.setblocking(True)  # it arrives in whatever mode the gateway left it
        for source, target in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pipe, args=(source, target), daemon=True).start()


def start_forwarder(fd: int, port: int) -> None:
    """Fork the forwarder (call once sandboxed, before any tenant code)."""
    listener = socket.create_server(("127.0.0.1", port))
    if os.fork() == 0:  # pragma: no cover - the forwarder process
        code = 0
        try:
            _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            # a SIGTERM to a RunPod handler's group asks the handler to finish: its last answer
            # still has to get through; the forwarder goes when its parent has gone
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            forward(listener, socket.socket(fileno=fd))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    listener.close()
    os.close(fd)
