"""The scheduler with a fake clock, the real store in memory, and a backend that cannot start."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.unit.conftest import BrokenBackend

from coldbrew.clock import FakeClock
from coldbrew.config import Settings
from coldbrew.control.scheduler import Scheduler
from coldbrew.store.models import Job, JobStatus
from coldbrew.store.sqlite import SQLiteStore


async def _scenario(tmp_path: Path) -> tuple[int, JobStatus, str]:
    clock = FakeClock()
    store = SQLiteStore(":memory:")
    settings = Settings(home=tmp_path, setup_backoff_s=5.0, hardware_slots={"cpu": 2})
    backend = BrokenBackend()
    scheduler = Scheduler(store, backend, clock, settings)
    await store.create_account("a", "whsec_x", clock.time())
    version, _ = await store.add_version("a", "e", "sha", "app", "E", {}, {}, clock.time())
    await scheduler.refresh_endpoints()
    job = Job(
        id=str(uuid.uuid4()),
        account="a",
        endpoint_id=version.endpoint_id,
        endpoint="e",
        version_id=version.id,
        status=JobStatus.IN_QUEUE,
        input={},
        created_at=clock.time(),
        expires_at=clock.time() + 60,
        timeout_s=10,
        max_attempts=1,
    )
    await store.create_job(job)
    for _ in range(20):  # 20 ticks within the back-off window
        await scheduler.tick()
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(0.1)
    final = await store.get_job(job.id)
    assert final is not None
    await store.close()
    return backend.starts, final.status, (final.error or {}).get("message", "")


def test_a_backend_that_cannot_start_workers_backs_off_and_fails_the_queue(
    tmp_path: Path,
) -> None:
    starts, status, message = asyncio.run(_scenario(tmp_path))
    assert starts == 1  # not once per tick
    assert status is JobStatus.FAILED
    assert "Too many open files" in message
