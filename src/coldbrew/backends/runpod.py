"""RunPod handler files as workers: each worker is the unmodified handler process, which takes
its jobs from this gateway over RunPod's worker protocol (routes in `api/runpod_worker.py`).

The scheduler sees an ordinary `WorkerHandle` (`HandlerWorker`, `backends/runpod_handler.py`):
a `job` frame becomes the answer to the handler's next job-take poll, and what the handler posts
back (stream chunks, progress, its output or error) becomes `chunk`, `log` and `done` frames. The
handler's first job-take poll is its `ready`: everything before it (the module's imports and
model loading) is the cold start. This module starts the processes; each gets
its own secret in its webhook URLs and `RUNPOD_AI_API_KEY`, so a handler can only take and answer
the jobs handed to it. All other launches go to the wrapped backend unchanged.

Handlers run in the sandbox like any worker (`runtime/sandbox/run.py` enters it, then executes
the handler file). In their own network namespace the SDK's URLs point at 127.0.0.1:<port>
inside it, where a forwarder asks this backend for a connection to the gateway per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from typing import Any

from coldbrew.backends.base import Backend, ColdPath, WorkerHandle, WorkerLaunch
from coldbrew.backends.envs import SERVER, Environments, Interpreter
from coldbrew.backends.local import box_spec, worker_env
from coldbrew.backends.runpod_handler import HandlerWorker, error_record
from coldbrew.clock import Clock
from coldbrew.config import Settings
from coldbrew.errors import Unauthorized
from coldbrew.runtime.adapters.runpod import HANDLER_CLASS
from coldbrew.runtime.sandbox.host import Box, Sandbox
from coldbrew.runtime.sandbox.policy import SandboxMode

__all__ = ["ROUTE_PREFIX", "HandlerWorker", "RunPodBackend", "error_record", "is_handler_launch"]

log = logging.getLogger("coldbrew.runpod")

#: Where the protocol routes live on the gateway.
ROUTE_PREFIX = "/v1/runpod-worker"


def is_handler_launch(launch: WorkerLaunch) -> bool:
    """Whether the launch is a RunPod handler file (this backend's), not a coldbrew model."""
    return launch.class_name == HANDLER_CLASS


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The handler gets SIGTERM when the gateway dies, even by SIGKILL (Linux)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


class RunPodBackend:
    """Starts RunPod handler workers itself and hands every other launch to `inner`."""

    def __init__(
        self,
        inner: Backend,
        settings: Settings,
        clock: Clock,
        sandbox: Sandbox | None = None,
        environments: Environments | None = None,
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.clock = clock
        self.sandbox = sandbox or Sandbox(SandboxMode.OFF, settings.home)
        self.environments = environments  # the handler runs its version's environment
        self.workers: dict[str, HandlerWorker] = {}

    @property
    def gateway_url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.settings.port}"

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        if not is_handler_launch(launch):
            return await self.inner.start(launch)
        worker = HandlerWorker(
            launch.worker_id, secrets.token_urlsafe(32), self.clock, launch.log_path
        )
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        worker.box = self.sandbox.box(box_spec(launch))
        worker.started_at = self.clock.monotonic()
        read_fd, write_fd = os.pipe()
        try:
            env = self._env(launch, worker)
            worker.process = await asyncio.create_subprocess_exec(
                *self._command(launch, worker.box),
                cwd=worker.box.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                env=env,
                pass_fds=worker.box.pass_fds,
                start_new_session=True,  # one process group: the SDK's ping process goes with it
                preexec_fn=_die_with_parent,
            )
        except BaseException:
            os.close(read_fd)
            worker._release()
            raise
        finally:
            os.close(write_fd)
            worker.box.started()
        output = asyncio.StreamReader(limit=1 << 20)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(output), os.fdopen(read_fd, "rb", 0)
        )
        worker.output_fd = read_fd
        worker.pid = worker.process.pid
        self.workers[launch.worker_id] = worker
        worker.watcher = asyncio.create_task(worker.watch(output))
        worker.watcher.add_done_callback(lambda _: self.workers.pop(launch.worker_id, None))
        return worker

    def _interpreter(self, launch: WorkerLaunch) -> Interpreter:
        if self.environments is None:
            return SERVER
        return self.environments.for_launch(launch.account, launch.artifact_dir)

    def _command(self, launch: WorkerLaunch, box: Box) -> list[str]:
        handler = f"{launch.module}.py"
        python = self._interpreter(launch)
        if box.policy is None:  # no sandbox: the handler file itself
            return [python.python, str(launch.artifact_dir / handler)]
        return python.module("coldbrew.runtime.sandbox.run", str(box.workdir), handler)

    def _env(self, launch: WorkerLaunch, worker: HandlerWorker) -> dict[str, str]:
        """What the RunPod SDK reads: its webhook URLs (each already holding a `?`), its pod id
        and key; never the start-up checks that would reach outside this machine. Inside a
        network namespace the URLs name its line's forwarder (`runtime/sandbox/line.py`)."""
        assert worker.box is not None
        env = worker.box.env(worker_env(launch, self._interpreter(launch).env), launch.env)
        gateway = self.gateway_url
        if worker.box.line is not None:
            gateway = f"http://127.0.0.1:{self.settings.port}"
        base = f"{gateway}{ROUTE_PREFIX}"
        wid, query = worker.worker_id, f"?token={worker.secret}"
        env.update(
            RUNPOD_WEBHOOK_GET_JOB=f"{base}/job-take/{wid}{query}",
            RUNPOD_WEBHOOK_POST_OUTPUT=f"{base}/job-done/{wid}/$ID{query}",
            RUNPOD_WEBHOOK_POST_STREAM=f"{base}/job-stream/{wid}/$ID{query}",
            RUNPOD_WEBHOOK_PING=f"{base}/ping/{wid}{query}",
            RUNPOD_POD_ID=wid,
            RUNPOD_AI_API_KEY=worker.secret,
            RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
            RUNPOD_SKIP_GPU_CHECK="true",
            RUNPOD_LOG_LEVEL=os.environ.get("RUNPOD_LOG_LEVEL", "INFO"),
        )
        env.pop("RUNPOD_ENDPOINT_ID", None)  # makes the SDK log JSON lines
        return env

    def authenticate(self, worker_id: str, token: str) -> HandlerWorker:
        """The worker whose secret `token` is; the same error for any mismatch."""
        worker = self.workers.get(worker_id)
        if worker is None or not worker.authentic(token):
            raise Unauthorized(
                "unknown RunPod worker or wrong worker secret",
                hint="these routes serve handler processes that coldbrew started",
            )
        return worker

    def progress(self, job_id: str) -> Any:
        """The latest `progress_update` of a running job, or None."""
        for worker in self.workers.values():
            if job_id in worker.progress:
                return worker.progress[job_id]
        return None

    def __getattr__(self, name: str) -> Any:
        """Anything else is the wrapped backend's (what tools and tests inspect, e.g. templates)."""
        if name == "inner":  # not set yet (unpickling, early errors): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        await self.inner.prepare([launch for launch in launches if not is_handler_launch(launch)])

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        """Handler files are spawned; the rest are the wrapped backend's."""
        forkable = [launch for launch in launches if not is_handler_launch(launch)]
        paths = iter(await self.inner.ready(forkable, timeout_s))
        return [ColdPath.SPAWN if is_handler_launch(la) else next(paths) for la in launches]

    async def close(self) -> None:
        for worker in list(self.workers.values()):
            worker.kill()
        await self.inner.close()
