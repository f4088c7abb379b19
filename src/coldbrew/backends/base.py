"""The backend interface: start a worker for a version and talk to it in frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class WorkerLaunch:
    """Everything a backend needs to start one worker."""

    worker_id: str
    artifact_dir: Path
    module: str
    class_name: str
    concurrency: int
    hardware: str
    log_path: Path
    snapshot: bool = False  # fork from a template that already ran setup() (CPU models)
    preload: tuple[str, ...] = ()  # modules a template imports before forking
    # the endpoint's own secrets, delivered to this worker (spawned or forked) as environment
    # variables; never logged
    env: dict[str, str] = field(default_factory=dict, repr=False)
    account: str = ""  # whose code this is: the sandbox runs it as that account's own uid
    memory_mb: int = 2048  # the worker's memory limit (cgroup, or a data-size rlimit)
    network: bool = False  # the endpoint opted in to network egress from its sandbox


class WorkerHandle(Protocol):
    """A running worker: send it frames, read its frames, stop it."""

    pid: int | None

    async def send(self, frame: dict[str, Any]) -> None:
        """Deliver one frame; raises ConnectionError when the worker is gone."""

    async def recv(self) -> dict[str, Any] | None:
        """The next frame, or None once the worker has gone away."""

    def kill(self) -> None:
        """Stop the worker at once (SIGKILL); idempotent."""

    async def wait(self) -> int:
        """Wait for the worker to exit; its exit status (negative: killed by that signal)."""


class ColdPath(StrEnum):
    """How a version's next worker will start, as a deploy reports it."""

    FORK = "fork"  # its template is loaded: a fork, milliseconds
    LOADING = "loading"  # its template is still importing or running setup()
    SPAWN = "spawn"  # no template (fast start off, a handler file, or it failed): a new process


class Backend(Protocol):
    """Starts workers. The scheduler decides how many and where; the backend only runs them."""

    async def start(self, launch: WorkerLaunch) -> WorkerHandle: ...

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Get ready to start workers for exactly these versions (templates); may do nothing."""

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        """Wait up to `timeout_s` for what `prepare` started; how each launch's next cold
        start will go."""

    async def close(self) -> None:
        """Release what `prepare` holds."""
