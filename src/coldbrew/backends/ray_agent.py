"""The node agent: one long-lived Ray actor per node that forks that node's workers.

Starting a Ray actor per worker costs about a second; forking from a template that already
imported the model (and, for CPU models, ran `setup()`) costs milliseconds. So each node runs one
agent (`num_cpus=0`, pinned to its node), which is a local template backend driven by Ray calls:
it keeps that node's templates (`TemplateBackend`, spawning when it cannot fork) and starts each
worker on a TCP connection it opens to the gateway's worker socket (`worker_socket.py`), so the
worker's frames never go through Ray. Ray counts the slots (`ray.py` reserves a placement group
per worker); the agent only runs processes.

Everything the agent starts dies with it (`runtime/lifeline.py`): a lost node leaves no worker
answering jobs that the gateway has already requeued.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import signal
import socket
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldbrew.backends.base import ColdPath, WorkerLaunch
from coldbrew.backends.local import LocalBackend
from coldbrew.backends.template import TemplateBackend
from coldbrew.backends.worker_socket import hello, keep_alive
from coldbrew.runtime.lifeline import DIE_WITH_PARENT_ENV, PARENT_PID_ENV
from coldbrew.runtime.sandbox.host import Box, Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode

#: Set in every template's and worker's environment: the Ray node it runs on.
NODE_ID_ENV = "COLDBREW_NODE_ID"


@dataclass(frozen=True)
class AgentConfig:
    """What an agent needs from the gateway's settings (sent once, when it is created)."""

    home: Path
    sandbox: str = "off"
    scratch_mb: int = 1024
    pids_max: int = 512
    open_files: int = 4096
    gateway: tuple[str, int] | None = None  # the gateway's HTTP address, for sandboxed SDK calls
    extra_env: dict[str, str] = field(default_factory=dict)
    fork_ready_timeout_s: float = 10.0
    template_backoff_s: float = 1.0
    template_backoff_max_s: float = 60.0
    template_load_wait_s: float = 120.0
    connect_timeout_s: float = 10.0


class _Child:
    """A worker the agent started: only killed and waited for here (its frames go to the
    gateway). Forked ones exit through their template's report; spawned ones are our child."""

    def __init__(
        self,
        pid: int,
        exited: asyncio.Future[int] | None = None,
        process: asyncio.subprocess.Process | None = None,
        box: Box | None = None,
        placing: asyncio.Future[None] | None = None,
    ) -> None:
        self.pid = pid
        self._exited = exited
        self._process = process
        self._box = box
        self._placing = placing

    def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        elif self._exited is not None and not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._box is not None:
            self._box.kill_all()

    async def wait(self) -> int:
        if self._process is not None:
            code = await self._process.wait()
        else:
            assert self._exited is not None
            code = await asyncio.shield(self._exited)
        if self._placing is not None:  # the move into its cgroup ends before the group goes
            await asyncio.shield(self._placing)
        if self._box is not None:
            self._box.close()
            self._box = None
        return code


class NodeTemplates(TemplateBackend):
    """The template backend, starting workers on a socket that is already connected."""

    async def start_on(
        self, launch: WorkerLaunch, channel: socket.socket, extra: dict[str, str]
    ) -> _Child:
        """Fork (else spawn) the launch's worker on `channel` (the caller's to close), with
        `extra` added to its environment (its GPUs) beside the endpoint's secrets."""
        template = await self._loaded(launch)  # looked up before `extra` changes its key
        launch = dataclasses.replace(launch, env={**launch.env, **extra})
        if template is not None:
            try:
                forked, creating = self._request_fork(template, launch, channel)
                pid = await self._forked_pid(template, launch, forked, creating)
                box, placing = await self._forked_box(template, launch, pid, creating)
                return _Child(pid, template.exits[pid], box=box, placing=placing)
            except Exception:
                self._retire(template.key, failed=True)  # as `start` does: spawn from now on
        process, box = await self.spawn.spawn_on(launch, channel)
        return _Child(process.pid, process=process, box=box)

    def pids(self) -> list[int]:
        """The templates' processes (for checks that nothing outlives the agent)."""
        return [t.process.pid for t in (*self._templates.values(), *self._retired)]


class NodeAgent:
    """The agent's body; `ray.py` makes it a Ray actor (this module never imports ray)."""

    def __init__(self, config: AgentConfig, node_id: str, gpu_ids: list[str]) -> None:
        self.config = config
        self.node_id = node_id
        self._free_gpus = list(gpu_ids)
        sandbox = Sandbox(
            SandboxMode(config.sandbox),
            config.home,
            scratch_mb=config.scratch_mb,
            pids_max=config.pids_max,
            open_files=config.open_files,
            gateway=config.gateway,
        )
        lifeline = {
            DIE_WITH_PARENT_ENV: "1",
            PARENT_PID_ENV: str(os.getpid()),
            NODE_ID_ENV: node_id,
        }
        spawn = LocalBackend({**config.extra_env, **lifeline}, sandbox=sandbox)
        self.templates = NodeTemplates(
            config.fork_ready_timeout_s,
            spawn,
            backoff_s=config.template_backoff_s,
            backoff_max_s=config.template_backoff_max_s,
            load_wait_s=config.template_load_wait_s,
        )
        self._children: dict[str, _Child] = {}
        self._exits: dict[str, asyncio.Future[int]] = {}
        self._gpus: dict[str, list[str]] = {}
        self._reaping: set[asyncio.Task[None]] = set()

    async def ready(self) -> dict[str, Any]:
        """Who this agent is: its node, its process, its free GPUs."""
        return {"node_id": self.node_id, "pid": os.getpid(), "free_gpus": list(self._free_gpus)}

    async def has_artifact(self, path: str) -> bool:
        return Path(path).is_dir()

    async def put_artifact(self, path: str, tar_bytes: bytes) -> None:
        """Unpack a version's code (sent by the gateway when this node lacks it)."""
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Keep templates for exactly these launches (those this node's classes can run)."""
        await self.templates.prepare(launches)

    async def cold_paths(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        """Wait up to `timeout_s` for the launches' templates; how each next cold start goes."""
        return await self.templates.ready(launches, timeout_s)

    async def start_worker(
        self, launch: WorkerLaunch, address: tuple[str, int], token: str, gpus: int
    ) -> int:
        """Connect to the gateway for the worker, then fork (else spawn) it on that connection;
        its pid."""
        if gpus > len(self._free_gpus):
            raise RuntimeError(f"{gpus} GPUs wanted, {len(self._free_gpus)} free on this node")
        sock = await self._connect(address, launch.worker_id, token)
        taken = [self._free_gpus.pop(0) for _ in range(gpus)]
        extra = {"CUDA_VISIBLE_DEVICES": ",".join(taken)} if gpus else {}
        try:
            child = await self.templates.start_on(launch, sock, extra)
        except BaseException:
            self._free_gpus.extend(taken)
            raise
        finally:
            sock.close()  # the worker holds its own copy
        self._children[launch.worker_id] = child
        self._gpus[launch.worker_id] = taken
        exit_future = asyncio.get_running_loop().create_future()
        self._exits[launch.worker_id] = exit_future
        task = asyncio.get_running_loop().create_task(
            self._reap(launch.worker_id, child, exit_future)
        )
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)
        return child.pid

    async def kill_worker(self, worker_id: str) -> None:
        child = self._children.get(worker_id)
        if child is not None:
            child.kill()

    async def wait_worker(self, worker_id: str) -> int:
        """The worker's exit status once it has exited (negative: the signal that killed it)."""
        exit_future = self._exits.get(worker_id)
        if exit_future is None:
            return -signal.SIGKILL
        code = await asyncio.shield(exit_future)
        self._exits.pop(worker_id, None)
        return code

    async def pids(self) -> list[int]:
        """Every process the agent started and is still tracking, templates first."""
        return [*self.templates.pids(), *(c.pid for c in self._children.values())]

    async def close(self) -> None:
        for child in list(self._children.values()):
            child.kill()
        await self.templates.close()

    async def _connect(self, address: tuple[str, int], worker_id: str, token: str) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        sock.setblocking(False)
        try:
            keep_alive(sock)
            async with asyncio.timeout(self.config.connect_timeout_s):
                await loop.sock_connect(sock, address)
                await loop.sock_sendall(sock, hello(worker_id, token))
        except BaseException:
            sock.close()
            raise
        sock.setblocking(True)  # the worker reads it with blocking calls
        return sock

    async def _reap(self, worker_id: str, child: _Child, exit_future: asyncio.Future[int]) -> None:
        try:
            code = await child.wait()
        except Exception:
            code = -signal.SIGKILL
        self._children.pop(worker_id, None)
        self._free_gpus.extend(self._gpus.pop(worker_id, []))
        if not exit_future.done():
            exit_future.set_result(code)
