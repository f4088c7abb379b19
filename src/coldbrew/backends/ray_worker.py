"""The gateway's side of a worker on a Ray node: the slot it holds (a placement group of its
hardware class's resources), its frames over the TCP connection the node's agent opened for it
(`worker_socket.py`), its kill and exit status through that agent (`ray_agent.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.local import LocalWorker
from coldbrew.errors import ClusterUnavailable


def bundle(hardware: str, gpus: int) -> dict[str, float]:
    """The Ray resources one worker of a hardware class holds."""
    if hardware == "cpu":
        return {"CPU": 1.0}
    resources = {hardware: 1.0}
    if gpus:
        resources["GPU"] = float(gpus)
    return resources


class NodeView:
    """The gateway's view of one node's agent."""

    def __init__(self, actor: Any, node_id: str, resources: dict[str, float]) -> None:
        self.actor = actor
        self.node_id = node_id
        self.resources = resources
        self.artifacts: set[str] = set()
        self.prepared: list[WorkerLaunch] | None = None


class RayWorker(LocalWorker):
    """A worker on a Ray node: frames over its TCP connection, kill and wait through its agent."""

    def __init__(
        self,
        agent: NodeView,
        worker_id: str,
        pid: int,
        group: Any,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        call: Callable[[Awaitable[int]], Awaitable[int]],
        release: Callable[[Any], None],
    ) -> None:
        self.pid: int | None = pid
        self.node_id = agent.node_id
        self.exit_reason: str | None = None
        self._call = call  # a Ray call, bounded (`RayBackend.call`)
        self._release = release  # gives the placement group back
        self._agent = agent
        self._worker_id = worker_id
        self._group = group
        self._reader = reader
        self._writer = writer
        self._box = None

    async def recv(self) -> dict[str, Any] | None:
        try:
            return await super().recv()
        except OSError:  # TCP_USER_TIMEOUT or keepalive gave up: its node is gone
            return None

    def kill(self) -> None:
        with contextlib.suppress(Exception):  # the agent may be gone with its node
            self._agent.actor.kill_worker.remote(self._worker_id)
        self._writer.close()  # the worker sees its connection end and exits too

    async def wait(self) -> int:
        try:
            code = await self._call(self._agent.actor.wait_worker.remote(self._worker_id))
        except ClusterUnavailable:  # its node is gone, and the worker with it (or it is slow:
            code = -signal.SIGKILL  # the connection is closed either way)
        self._writer.close()
        self._release(self._group)
        return code
