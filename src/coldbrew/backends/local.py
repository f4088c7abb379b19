"""Workers as local processes, each with a socket pair for frames and a log file for output."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

from coldbrew.backends.base import ColdPath, WorkerHandle, WorkerLaunch
from coldbrew.backends.envs import SERVER, Environments, Interpreter
from coldbrew.names import SKIP_VALIDATION_ENV
from coldbrew.runtime import protocol
from coldbrew.runtime.sandbox.host import Box, BoxSpec, Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode


class LocalWorker:
    """A worker process started by `LocalBackend`."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        box: Box | None = None,
    ) -> None:
        self._process = process
        self._reader = reader
        self._writer = writer
        self._box = box
        self.pid: int | None = process.pid
        self.exit_reason: str | None = None  # a sandbox limit that killed it, for job errors

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
        if self._box is not None:
            self._box.kill_all()  # what it started, detached or not

    async def wait(self) -> int:
        code = await self._process.wait()
        self._writer.close()
        self._close_box()
        return code

    def _close_box(self) -> None:
        if self._box is not None:
            self.exit_reason = self._box.exit_reason()
            self._box.close()
            self._box = None


def worker_env(launch: WorkerLaunch, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What the runtime needs in a worker's or template's environment (the sandbox adds the
    rest: `Box.env`)."""
    env = dict(extra or {})
    env["COLDBREW_WORKER_ID"] = launch.worker_id
    env["PYTHONUNBUFFERED"] = "1"
    env[SKIP_VALIDATION_ENV] = "1"
    return env


def box_spec(launch: WorkerLaunch, name: str | None = None) -> BoxSpec:
    """The sandbox's view of a launch."""
    return BoxSpec(
        name=name or launch.worker_id,
        account=launch.account,
        artifact_dir=launch.artifact_dir,
        memory_mb=launch.memory_mb,
        network=launch.network,
        gpu=launch.hardware != "cpu",
    )


async def spawn_runtime(
    module: str,
    args: list[str],
    env: dict[str, str],
    log_path: Path,
    fd: int,
    cwd: Path | None = None,
    more_fds: tuple[int, ...] = (),
    python: Interpreter = SERVER,
) -> asyncio.subprocess.Process:
    """Start `python -m coldbrew.runtime.<module> ARGS` in its own session, handing it `fd`,
    with stdout and stderr appended to `log_path`; `python` is the version's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return await asyncio.create_subprocess_exec(
            *python.module(f"coldbrew.runtime.{module}", *args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(fd, *more_fds),
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


class LocalBackend:
    """Starts each worker as a fresh `python -m coldbrew.runtime.worker` process.

    Workers get their own session so a Ctrl-C in the server's terminal reaches only the server,
    which then stops them in order.
    """

    def __init__(
        self,
        extra_env: dict[str, str] | None = None,
        sandbox: Sandbox | None = None,
        environments: Environments | None = None,
    ) -> None:
        self.extra_env = extra_env or {}  # for every worker and template
        self.sandbox = sandbox or Sandbox(SandboxMode.OFF, Path("."))
        self.environments = environments

    def interpreter(self, launch: WorkerLaunch) -> Interpreter:
        """The interpreter of the launch's environment: the server's own when it has none."""
        if self.environments is None:
            return SERVER
        return self.environments.for_launch(launch.account, launch.artifact_dir)

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        parent, child = socket.socketpair()
        try:
            process, box = await self.spawn_on(launch, child)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        return LocalWorker(process, reader, writer, box)

    async def spawn_on(
        self, launch: WorkerLaunch, channel: socket.socket
    ) -> tuple[asyncio.subprocess.Process, Box]:
        """Start the worker process with `channel` (the caller's to close) as its socket: one
        end of a pair here, a connection to the gateway on a Ray node (`backends/ray_agent.py`)."""
        box = self.sandbox.box(box_spec(launch))
        try:
            python = self.interpreter(launch)
            runtime = worker_env(launch, {**self.extra_env, **python.env})
            runtime["COLDBREW_WORKER_FD"] = str(channel.fileno())
            env = box.env(runtime, launch.env)
            args = [str(box.workdir), launch.module, launch.class_name, str(launch.concurrency)]
            process = await spawn_runtime(
                "worker",
                args,
                env,
                launch.log_path,
                channel.fileno(),
                box.cwd,
                box.pass_fds,
                python,
            )
            box.started()
        except BaseException:
            box.close()
            raise
        return process, box

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Spawned workers need no preparation."""

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        return [ColdPath.SPAWN for _ in launches]

    async def close(self) -> None:
        """Nothing is held between workers."""
