"""The buffered writer against its own interface: log lines within caps, arrivals and usage
written in batches, kept in memory while the storage is down."""

from __future__ import annotations

import asyncio

from tests.unit.conftest import make_job

from coldbrew.clock import FakeClock
from coldbrew.control.frames import JobLogLimits
from coldbrew.control.writer import USAGE_FLUSH_S, BufferedWriter
from coldbrew.errors import StorageUnavailable
from coldbrew.store.models import UsageKind, UsageRow
from coldbrew.store.sqlite import SQLiteStore


def usage(seconds: float) -> UsageRow:
    return UsageRow("w-1", "a", "e", 1, "cpu", UsageKind.BUSY, 0.0, seconds)


def test_logs_and_arrivals_are_written_in_one_flush() -> None:
    async def scenario() -> None:
        clock, store = FakeClock(), SQLiteStore(":memory:")
        await store.create_account("a", "whsec_x", clock.time())
        version, _ = await store.add_version("a", "e", "sha", "app", "E", {}, {}, clock.time())
        writer = BufferedWriter(store, clock, JobLogLimits(1000, 100))
        job = make_job(version, clock)
        await store.create_job(job)
        writer.log({"id": job.id, "ts": 1.0, "stream": "stdout", "line": "hello"})
        writer.count_arrival(job)
        writer.count_arrival(job)
        await writer.flush()
        assert [entry["line"] for entry in await store.job_logs(job.id)] == ["hello"]
        day = int(job.created_at) // 86_400
        assert sum(n for _, _, n in await store.traffic(version.endpoint_id, day)) == 2

    asyncio.run(scenario())


def test_usage_waits_in_memory_while_the_storage_is_down() -> None:
    async def scenario() -> None:
        clock, store = FakeClock(), SQLiteStore(":memory:")
        writer = BufferedWriter(store, clock, JobLogLimits(1000, 100))
        written: list[list[UsageRow]] = []
        down = True

        async def add_usage(rows: list[UsageRow]) -> None:
            if down:
                raise StorageUnavailable.because("disk I/O error")
            written.append(rows)

        store.add_usage = add_usage  # type: ignore[method-assign]
        await writer.write_usage([usage(2.0)])
        await writer.write_usage([usage(3.0)])  # same (worker, kind, hour): one row
        down = False
        await writer.write_usage([])
        assert [[r.seconds for r in rows] for rows in written] == [[5.0]]

    asyncio.run(scenario())


def test_usage_is_due_every_few_seconds_or_when_forced() -> None:
    clock = FakeClock()
    writer = BufferedWriter(SQLiteStore(":memory:"), clock, JobLogLimits(1000, 100))
    clock.advance(USAGE_FLUSH_S)
    assert writer.usage_due(force=False)
    assert not writer.usage_due(force=False)
    assert writer.usage_due(force=True)
