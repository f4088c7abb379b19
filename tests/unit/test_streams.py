"""Streams against their own interface: a /stream poll waits on the injected clock, a chunk
nested too deep is kept out and fails the job, and a final job ends its stream."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.conftest import make_job

from coldbrew.clock import FakeClock
from coldbrew.control.streams import Streams
from coldbrew.runtime.protocol import RESULT_MAX_DEPTH
from coldbrew.store.models import Job, JobStatus, Version

VERSION = Version(1, 1, "a", "e", 1, "sha", "m", "C", {}, {}, 0.0)


def streams_for(job: Job, clock: FakeClock) -> Streams:
    async def find(job_id: str) -> Job | None:
        return job if job_id == job.id else None

    return Streams(clock, find)


def test_a_poll_waits_for_a_chunk_on_the_fake_clock() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        job = make_job(VERSION, clock, status=JobStatus.IN_PROGRESS)
        streams = streams_for(job, clock)
        poll = asyncio.ensure_future(streams.poll(job, wait_s=10.0))
        await asyncio.sleep(0)
        assert not poll.done()
        streams.add_chunk(job.id, {"token": "a"})
        assert (await poll)[1] == [{"token": "a"}]
        empty = asyncio.ensure_future(streams.poll(job, wait_s=10.0))  # nothing new
        await asyncio.sleep(0)
        clock.advance(10.0)  # the wait runs out when time moves, not by sleeping
        assert (await empty)[1] == []

    asyncio.run(scenario())


def test_a_chunk_nested_too_deep_is_dropped_and_fails_the_job() -> None:
    clock = FakeClock()
    job = make_job(VERSION, clock, status=JobStatus.IN_PROGRESS)
    streams = streams_for(job, clock)
    deep: Any = 1
    for _ in range(RESULT_MAX_DEPTH + 2):
        deep = [deep]
    streams.add_chunk(job.id, {"ok": 1})
    streams.add_chunk(job.id, deep)
    assert streams.chunks(job.id) == [{"ok": 1}]
    done = streams.storable_done({"t": "done", "id": job.id, "streamed": True})
    assert done["error"]["type"] == "not_storable" and done["streamed"] is False


def test_events_end_with_the_final_job() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        clock = FakeClock()
        job = make_job(VERSION, clock, status=JobStatus.IN_PROGRESS)
        streams = streams_for(job, clock)
        streams.add_chunk(job.id, 1)
        seen: list[tuple[str, Any]] = []

        async def read() -> None:
            async for event in streams.events(job):
                seen.append(event)

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0)
        streams.add_chunk(job.id, 2)
        job.status = JobStatus.COMPLETED
        streams.close(job)
        await reader
        return seen

    seen = asyncio.run(scenario())
    assert [kind for kind, _ in seen] == ["chunk", "chunk", "done"]
    assert [value for kind, value in seen if kind == "chunk"] == [1, 2]
