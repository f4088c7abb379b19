"""A worker's result nested deeper than the store and the API can encode (parsers take 1024
levels, orjson writes 254) fails that job with the reason, the same way on every path: a
durable job, a sync-lane job answered from memory, a stream chunk, and a RunPod handler's
job-done post. Everything else keeps working. Scripted workers (from test_sync_lane)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from tests.unit.conftest import World, settle
from tests.unit.test_poison import final, nested

from coldbrew.backends.runpod import HandlerWorker
from coldbrew.clock import FakeClock
from coldbrew.runtime.protocol import RESULT_MAX_DEPTH, nests_deeper
from coldbrew.store.models import Job, JobStatus


def answer(w: World, job: Job, frame: dict[str, Any]) -> None:
    handle = w.backend.handles[0]
    handle.running.discard(job.id)
    handle.frames.put_nowait({"t": "done", "id": job.id, **frame})


def assert_too_deep(job: Job, part: str) -> None:
    assert job.status is JobStatus.FAILED and job.output is None and job.error is not None
    assert job.error["type"] == "not_storable"
    assert f"job's {part} nests more than {RESULT_MAX_DEPTH} levels" in job.error["message"]
    orjson.dumps({"stream": [{"output": job.output}], "error": job.error})  # answerable


async def still_works(w: World) -> None:
    job = w.job()
    future = await w.scheduler.run_sync(job)
    assert future is not None
    w.backend.handles[0].done(job.id)
    assert (await asyncio.wait_for(future, 5)).status is JobStatus.COMPLETED


def test_depth_is_counted_without_recursion() -> None:
    assert not nests_deeper(nested(RESULT_MAX_DEPTH - 1))  # the list around 1 ...
    assert nests_deeper(nested(RESULT_MAX_DEPTH + 1))
    assert nests_deeper({"a": nested(1023)})  # past Python's recursion limit
    assert not nests_deeper("x" * 10) and not nests_deeper(None)


def test_a_sync_lane_output_too_deep_fails_the_job_before_the_caller_sees_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job = w.job()
        future = await w.scheduler.run_sync(job)
        assert future is not None
        await settle()
        answer(w, job, {"output": {"value": nested(300)}})
        # was COMPLETED with the deep output: /runsync could not encode it (a 500) and the
        # store said FAILED only after the next flush
        assert_too_deep(await asyncio.wait_for(future, 5), "output")
        await w.scheduler.write_back()
        stored = await w.store.get_job(job.id)
        assert stored is not None
        assert_too_deep(stored, "output")
        await still_works(w)
        await w.scheduler.stop()

    asyncio.run(scenario())


def test_a_durable_output_or_error_too_deep_fails_the_job_with_the_reason(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        for frame, part in (
            ({"output": nested(1000)}, "output"),
            ({"error": {"type": "E", "message": "m", "detail": nested(1000)}}, "error"),
        ):
            job = w.job()
            await w.run_durable(job)
            await settle()
            answer(w, job, frame)
            assert_too_deep(await final(w, job.id), part)
        await still_works(w)
        await w.scheduler.stop()

    asyncio.run(scenario())


def test_a_stream_chunk_too_deep_is_not_served_and_fails_the_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        w = World(tmp_path)
        await w.setup()
        job = w.job()
        future = await w.scheduler.run_sync(job)
        assert future is not None
        await settle()
        handle = w.backend.handles[0]
        for output in ({"i": 0}, nested(300), {"i": 2}):
            handle.frames.put_nowait({"t": "chunk", "id": job.id, "output": output})
        await settle()
        _, chunks = await w.scheduler.poll_stream(job, 0)
        assert chunks == [{"i": 0}, {"i": 2}]  # a poll can encode what it returns
        answer(w, job, {"output": None, "streamed": True})
        assert_too_deep(await asyncio.wait_for(future, 5), "stream")
        await still_works(w)
        await w.scheduler.stop()

    asyncio.run(scenario())


def test_a_runpod_handlers_deep_error_or_progress_is_answered(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = HandlerWorker("w-1", "secret", FakeClock(), tmp_path / "log")
        handler.taken.add("j")
        # progress that /status could not encode is not kept (a line in the job's log says so)
        assert await handler.answer("j", {"status": "IN_PROGRESS", "output": nested(1000)})
        assert "j" not in handler.progress
        # an error json.dumps cannot write (RecursionError: the post was a 500 and the job
        # waited for its timeout) reaches the scheduler, which fails the job with the reason
        assert await handler.answer("j", {"error": nested(1000)})
        frames = [handler.frames.get_nowait() for _ in range(handler.frames.qsize())]
        done = frames[-1]
        assert done["t"] == "done" and done["id"] == "j" and nests_deeper(done["error"])

    asyncio.run(scenario())
