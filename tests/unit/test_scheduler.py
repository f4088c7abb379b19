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


GATEWAY_SURFACE = [
    "run_sync", "persist", "find_job", "watch", "unwatch", "cancel", "dispatch_now", "admit",
    "mark_queued", "notify", "write_back", "flush_usage", "poll_stream", "stream_events",
    "health", "worker_counts", "state_counts", "queue_lengths", "known_accounts",
    "refresh_endpoints", "purge_queue", "delete_endpoint", "record_arrival",
    "add_final_listener", "announce_final", "start", "stop", "tick",
]  # fmt: skip


def test_the_facade_keeps_every_call_the_gateway_makes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    scheduler = Scheduler(SQLiteStore(":memory:"), BrokenBackend(), FakeClock(), settings)
    missing = [name for name in GATEWAY_SURFACE if not callable(getattr(scheduler, name, None))]
    assert missing == []
