"""A worker forked by a template (`backends/template.py`): its pid is the template's child,
so its exit status comes from the template's report, not from `wait()` on a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from coldbrew.backends.local import LocalWorker
from coldbrew.runtime.sandbox.host import Box


class ForkedWorker(LocalWorker):
    """A worker forked by a template: its exit status comes from the template's report."""

    def __init__(
        self,
        pid: int,
        exited: asyncio.Future[int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        box: Box | None = None,
        placing: asyncio.Future[None] | None = None,
    ) -> None:
        self.pid: int | None = pid
        self._placing = placing
        self._fork_pid = pid
        self._exited = exited
        self._reader = reader
        self._writer = writer
        self._box = box
        self.exit_reason: str | None = None
        self._first: list[dict[str, Any]] = []

    async def recv(self) -> dict[str, Any] | None:
        if self._first:
            return self._first.pop()
        return await super().recv()

    def kill(self) -> None:
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._fork_pid, signal.SIGKILL)
        if self._box is not None:
            self._box.kill_all()

    async def wait(self) -> int:
        code = await asyncio.shield(self._exited)
        self._writer.close()
        if self._placing is not None:  # the move into its cgroup ends before the group goes
            await asyncio.shield(self._placing)
        self._close_box()
        return code
