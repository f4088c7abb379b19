"""Shared fakes for the unit tests: scripted workers and backends, a fake clock and the real
SQLite store in memory, and `World`, a scheduler wired to them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from coldbrew.backends.base import ColdPath, WorkerHandle, WorkerLaunch
from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.scheduler import Scheduler
from coldbrew.store.models import Job, JobStatus, Version
from coldbrew.store.sqlite import SQLiteStore


class FakeHandle:
    """A worker that is ready at once; the test answers its jobs with `done()`."""

    pid = 1

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.running: set[str] = set()
        self.draining = False
        self.frames.put_nowait({"t": "ready", "import_s": 0.0, "setup_s": 0.0})

    async def send(self, frame: dict[str, Any]) -> None:
        self.sent.append(frame)
        if frame["t"] == "job":
            self.running.add(frame["id"])
        elif frame["t"] == "batch":
            self.running.update(frame["ids"])
        elif frame["t"] == "stop":  # as the real worker: finish what runs, then exit
            self.draining = True
            if not self.running:
                self.frames.put_nowait(None)

    async def recv(self) -> dict[str, Any] | None:
        return await self.frames.get()

    def kill(self) -> None:
        self.frames.put_nowait(None)

    async def wait(self) -> int:
        return 0

    def done(self, job_id: str) -> None:
        self.running.discard(job_id)
        self.frames.put_nowait({"t": "done", "id": job_id, "output": {"ok": True}})
        if self.draining and not self.running:
            self.frames.put_nowait(None)

    def job_ids(self) -> list[str]:
        ids: list[str] = []
        for f in self.sent:
            ids += [f["id"]] if f["t"] == "job" else f.get("ids", [])
        return ids


class FakeBackend:
    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []

    async def start(self, launch: WorkerLaunch) -> FakeHandle:
        handle = FakeHandle()
        self.handles.append(handle)
        return handle

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        return None

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        return [ColdPath.SPAWN for _ in launches]

    async def close(self) -> None:
        return None


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class World:
    """A scheduler on a fake clock, the real store in memory and scripted workers."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.clock = FakeClock()
        self.store = SQLiteStore(":memory:")
        self.backend = FakeBackend()
        settings = Settings(**({"home": tmp_path, "hardware_slots": {"cpu": 1}} | overrides))
        self.scheduler = Scheduler(self.store, self.backend, self.clock, settings)

    async def setup(self, **spec: Any) -> None:
        """One account, one endpoint (`min_workers=1` unless `spec` says), its worker ready."""
        await self.store.create_account("a", "whsec_x", self.clock.time())
        self.version, _ = await self.store.add_version(
            "a", "e", "sha", "app", "E", {"min_workers": 1} | spec, {}, self.clock.time()
        )
        await self.scheduler.refresh_endpoints()
        await self.scheduler.tick()  # min_workers=1: one worker starts
        await settle()
        assert len(self.backend.handles) == 1

    def job(self) -> Job:
        """A queued job of the endpoint, 10 ms after the last (distinct, ordered created_at)."""
        return make_job(self.version, self.clock)

    async def run_durable(self, job: Job) -> None:
        """What the job service does for POST /run (no wait)."""
        await self.store.create_job(job)
        self.scheduler.record_arrival(job)
        await self.scheduler.dispatch_now(job)


class BrokenBackend:
    """Every start fails, as with a full disk or no file descriptors left."""

    def __init__(self) -> None:
        self.starts = 0

    async def start(self, launch: WorkerLaunch) -> WorkerHandle:
        self.starts += 1
        raise OSError("Too many open files")

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        return None

    async def ready(self, launches: list[WorkerLaunch], timeout_s: float) -> list[ColdPath]:
        return [ColdPath.SPAWN for _ in launches]

    async def close(self) -> None:
        return None


def make_job(version: Version, clock: FakeClock, **fields: Any) -> Job:
    """A queued job of `version`, created now (the clock moves on 10 ms: arrival order)."""
    clock.advance(0.01)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "account": version.account,
        "endpoint_id": version.endpoint_id,
        "endpoint": version.endpoint,
        "version_id": version.id,
        "status": JobStatus.IN_QUEUE,
        "input": {},
        "created_at": clock.time(),
        "expires_at": clock.time() + 3600,
        "timeout_s": 600,
        "max_attempts": 3,
    }
    return Job(**(values | fields))
