"""Calls from a worker to the gateway in the middle of a job (`coldbrew.state`), over the one
control socket the worker already has.

The socket carries the gateway's frames (jobs, stop) and, now, replies to the worker's own
requests (`state_reply` with the request's `rid`). Whoever is free reads: the serving loop
between jobs, or — while a one-at-a-time model is inside `predict`, so the loop is not reading
— the thread that made the request. A reader files each reply with the request that waits for
it and keeps every other frame, in order, for the serving loop.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Reads one frame from the socket (None when the gateway went away).
Receive = Callable[[], dict[str, Any] | None]
Send = Callable[[dict[str, Any]], None]


class GatewayGone(ConnectionError):
    """The control socket closed while a call waited for its reply."""


class Calls:
    """Request/reply over the control socket, shared by the serving loop and job threads."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._reader = threading.Lock()  # one thread reads the socket at a time
        self._changed = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._waiting: set[int] = set()
        self._backlog: deque[dict[str, Any] | None] = deque()
        self._ids = itertools.count(1)
        self._closed = False

    def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send `frame` with a fresh `rid` and return the gateway's reply to it."""
        rid = next(self._ids)
        with self._changed:
            self._waiting.add(rid)
        self._send({**frame, "rid": rid})
        while True:
            with self._changed:
                if rid in self._replies:
                    self._waiting.discard(rid)
                    return self._replies.pop(rid)
                if self._closed:
                    raise GatewayGone("the gateway closed the worker's channel")
            if self._reader.acquire(blocking=False):
                try:
                    self._read_one()
                finally:
                    self._reader.release()
            else:
                with self._changed:
                    if rid not in self._replies and not self._closed:
                        self._changed.wait(0.05)

    def next_frame(self) -> dict[str, Any] | None:
        """The next frame for the serving loop (replies are filed on the way)."""
        while True:
            with self._changed:
                if self._backlog:
                    return self._backlog.popleft()
            with self._reader:
                with self._changed:
                    if self._backlog:  # a request's reader kept it while we waited
                        continue
                frame = self._receive()
                if frame is None:
                    with self._changed:
                        self._closed = True
                        self._changed.notify_all()
                    return None
                if frame.get("t") != "state_reply":
                    return frame
                self._file(frame)

    def _read_one(self) -> None:
        frame = self._receive()
        if frame is not None and frame.get("t") == "state_reply":
            self._file(frame)
            return
        with self._changed:
            self._backlog.append(frame)
            if frame is None:
                self._closed = True
            self._changed.notify_all()

    def _file(self, frame: dict[str, Any]) -> None:
        with self._changed:
            rid = frame.get("rid")
            if isinstance(rid, int) and rid in self._waiting:
                self._replies[rid] = frame
            self._changed.notify_all()
