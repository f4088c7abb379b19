"""The backend interface: start a worker for a version and talk to it in frames."""

from __future__ import annotations

from dataclasses import dataclass, field
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


class Backend(Protocol):
    """Starts workers. The scheduler decides how many and where; the backend only runs them."""

    async def start(self, launch: WorkerLaunch) -> WorkerHandle: ...

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        """Get ready to start workers for exactly these versions (templates); may do nothing."""

    async def close(self) -> None:
        """Release what `prepare` holds."""
