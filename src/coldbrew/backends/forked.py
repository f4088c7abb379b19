"""What a template backend (`backends/template.py`) keeps per template, and the workers it
forks: a forked worker's pid is the template's child, so its exit status comes from the
template's report, not from `wait()` on a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

from coldbrew.backends.base import WorkerLaunch
from coldbrew.backends.fork_boxes import SpareBox
from coldbrew.backends.local import LocalWorker
from coldbrew.runtime.sandbox.host import Box


@dataclass(frozen=True)
class TemplateKey:
    """What makes two launches forkable from the same template.

    The environment is part of it: a forked worker inherits the template's, so a template
    serves only launches with the same endpoint secrets (another endpoint deployed from the
    same artifact, or the same endpoint after a rotation, gets a template of its own).
    """

    artifact_dir: str
    module: str
    class_name: str
    concurrency: int
    snapshot: bool
    preload: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # secrets: never shown

    @classmethod
    def of(cls, launch: WorkerLaunch) -> TemplateKey:
        return cls(
            str(launch.artifact_dir),
            launch.module,
            launch.class_name,
            launch.concurrency,
            launch.snapshot,
            launch.preload,
            tuple(sorted(launch.env.items())),
        )


@dataclass
class _Template:
    key: TemplateKey
    process: asyncio.subprocess.Process
    ctl: socket.socket
    ready: asyncio.Future[dict[str, Any]]
    box: Box | None = None
    forks: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    broken: bool = False
    spare: SpareBox | None = None  # the groups made ahead for its spare child

    @property
    def usable(self) -> bool:
        return (
            not self.broken
            and self.ready.done()
            and not self.ready.exception()
            and self.process.returncode is None
        )


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
