"""A worker's `coldbrew.state` requests, answered off its frame loop (split from the fleet).

Each request is answered in its own task, so a slow store never holds up the worker's other
frames (its results, its logs). A worker with `STATE_CALLS_MAX` requests in flight is refused
more, so tenant code cannot pile up tasks in the gateway. What a request may do is checked by
`control/state.py`, which `on_state` calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from coldbrew.control.workers import ManagedWorker, WorkerState

#: (account, endpoint, request) -> the reply's fields
StateCall = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]
STATE_CALLS_MAX = 64  # a worker's state requests in flight at once


class StateCalls:
    """Answers workers' state requests; `on_state` is wired by the platform."""

    def __init__(self, send: Callable[[ManagedWorker, dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self.on_state: StateCall | None = None
        self._in_flight: dict[str, int] = {}  # requests in flight, by worker
        self._tasks: set[asyncio.Task[None]] = set()

    def take(self, worker: ManagedWorker, frame: dict[str, Any]) -> None:
        """Answer a state request in its own task (refused past `STATE_CALLS_MAX`)."""
        busy = self._in_flight.get(worker.id, 0)
        self._in_flight[worker.id] = busy + 1
        task = asyncio.create_task(self._answer(worker, frame, busy >= STATE_CALLS_MAX))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, worker: ManagedWorker, frame: dict[str, Any], refuse: bool) -> None:
        try:
            if refuse or self.on_state is None:
                why = "too many state calls at once" if refuse else "state is not available"
                reply: dict[str, Any] = {"error": {"type": "conflict", "message": why}}
            else:
                version = worker.version
                reply = await self.on_state(version.account, version.endpoint, frame)
            if worker.handle is not None and worker.state is not WorkerState.STOPPED:
                await self._send(worker, {"t": "state_reply", "rid": frame["rid"], **reply})
        finally:
            left = self._in_flight.get(worker.id, 1) - 1
            if left > 0:
                self._in_flight[worker.id] = left
            else:
                self._in_flight.pop(worker.id, None)
