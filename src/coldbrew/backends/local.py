"""Workers as local processes, each with a socket pair for frames and a log file for output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

from coldbrew.backends.base import WorkerHandle, WorkerLaunch
from coldbrew.runtime import protocol
from coldbrew.sdk.names import SKIP_VALIDATION_ENV


class LocalWorker:
    """A worker process started by `LocalBackend`."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._process = process
        self._reader = reader
        self._writer = writer
        self.pid: int | None = process.pid

    async def send(self, frame: dict[str, Any]) -> None:
        if self._writer.is_closing():
            raise ConnectionError("worker connection closed")
        self._writer.write(protocol.encode(frame))
        await self._writer.drain()

    async def recv(self) -> dict[str, Any] | None:
        try:
            header = await self._reader.readexactly(protocol.HEADER.size)
            (length,) = protocol.HEADER.unpack(header)
            if length > protocol.MAX_FRAME_BYTES:  # never buffer what a hostile worker claims
                raise ValueError(f"the worker sent a frame of {length} bytes")
            return protocol.decode(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def kill(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def wait(self) -> int:
        code = await self._process.wait()
        self._writer.close()
        return code


def worker_env(launch: WorkerLaunch, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker or template process."""
    env = dict(os.environ)
    env.update(extra or {})
    env.update(launch.env)  # the endpoint's secrets (the sandbox will build this env from clean)
    env["COLDBREW_WORKER_ID"] = launch.worker_id
    env["PYTHONUNBUFFERED"] = "1"
    env[SKIP_VALIDATION_ENV] = "1"
    return env


async def spawn_runtime(
    module: str, args: list[str], env: dict[str, str], log_path: Path, fd: int
) -> asyncio.subprocess.Process:
    """Start `python -m coldbrew.runtime.<module> ARGS` in its own session, handing it `fd`,
    with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"coldbrew.runtime.{module}",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(fd,),
            env=env,
            start_new_session=True,
        )


class LocalBackend:
    """Starts each worker as a fresh `python -m coldbrew.runtime.worker` process.

    Workers get their own session so a Ctrl-C in the server's terminal reaches only the server,
    which then stops them in order.
    """

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = extra_env or {}  # for every worker and template

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        parent, child = socket.socketpair()
        env = worker_env(launch, self.extra_env)
        env["COLDBREW_WORKER_FD"] = str(child.fileno())
        args = [str(launch.artifact_dir), launch.module, launch.class_name, str(launch.concurrency)]
        process = await spawn_runtime("worker", args, env, launch.log_path, child.fileno())
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return LocalWorker(process, reader, writer)

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Spawned workers need no preparation."""

    async def close(self) -> None:
        """Nothing is held between workers."""
