"""CPU cost of the scheduler's warm path per job, in process: `run_sync` of a job on an idle
worker whose (scripted) handle answers at once, until its future resolves. No HTTP, no worker
process, so it measures the control plane alone and is steady on a busy machine (CPU time of
this process, not wall time).

    python bench/hotpath.py --jobs 20000 --rounds 5

Uses only the scheduler's public surface, so the same script runs against any commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from coldbrew.backends.base import WorkerLaunch
from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.scheduler import Scheduler
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.sqlite import SQLiteStore


class InstantHandle:
    """A worker that answers every job as soon as it is sent."""

    pid = 1

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.frames.put_nowait({"t": "ready", "import_s": 0.0, "setup_s": 0.0})

    async def send(self, frame: dict[str, Any]) -> None:
        if frame["t"] == "job":
            self.frames.put_nowait({"t": "done", "id": frame["id"], "output": frame["input"]})
        elif frame["t"] == "stop":
            self.frames.put_nowait(None)

    async def recv(self) -> dict[str, Any] | None:
        return await self.frames.get()

    def kill(self) -> None:
        self.frames.put_nowait(None)

    async def wait(self) -> int:
        return 0


class Backend:
    async def start(self, launch: WorkerLaunch) -> InstantHandle:
        return InstantHandle()

    async def prepare(self, launches: list[WorkerLaunch]) -> None:
        return None

    async def close(self) -> None:
        return None


async def measure(home: Path, jobs: int) -> float:
    """Microseconds of CPU per job."""
    clock, store = FakeClock(), SQLiteStore(":memory:")
    scheduler = Scheduler(store, Backend(), clock, Settings(home=home))  # type: ignore[arg-type]
    await store.create_account("a", "whsec_x", clock.time())
    version, _ = await store.add_version("a", "e", "sha", "app", "E", {"min_workers": 1}, {}, 0.0)
    await scheduler.refresh_endpoints()
    await scheduler.tick()
    for _ in range(20):
        await asyncio.sleep(0)
    started = time.process_time()
    for i in range(jobs):
        job = Job(
            id=str(uuid.uuid4()),
            account="a",
            endpoint_id=version.endpoint_id,
            endpoint="e",
            version_id=version.id,
            status=JobStatus.IN_QUEUE,
            input={"i": i},
            created_at=clock.time(),
            expires_at=clock.time() + 3600,
            timeout_s=600,
            max_attempts=1,
        )
        future = await scheduler.run_sync(job)
        assert future is not None
        final = await future
        assert final.status is JobStatus.COMPLETED
        if i % 1000 == 999:
            await scheduler.write_back()
    spent = time.process_time() - started
    await scheduler.stop()
    await store.close()
    return spent / jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        runs = [asyncio.run(measure(Path(home), args.jobs)) for _ in range(args.rounds)]
    print(json.dumps({"us_per_job_median": round(statistics.median(runs), 1), "runs": runs}))


if __name__ == "__main__":
    main()
