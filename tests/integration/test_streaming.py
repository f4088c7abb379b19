"""Generator models stream: RunPod-style /stream polls, server-sent events, and the final list."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import running

pytestmark = pytest.mark.anyio
TOYS = FIXTURES / "toys"


async def test_the_final_output_of_a_generator_is_the_list_of_its_chunks(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        result = await cb.runsync("counter", {"n": 3})
        assert result["status"] == "COMPLETED"
        assert result["output"] == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_each_stream_poll_returns_only_new_chunks(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        job_id = await cb.run("counter", {"n": 5, "pause_s": 0.15})
        seen: list[dict[str, int]] = []
        polls = 0
        while True:
            body = (await cb.http.get(f"/v2/counter/stream/{job_id}")).json()
            polls += 1
            assert set(body) == {"id", "status", "stream"}
            seen += [item["output"] for item in body["stream"]]
            if body["status"] == "COMPLETED" and not body["stream"]:
                break
            assert polls < 100
        assert seen == [{"i": i} for i in range(5)]
        assert polls >= 3  # chunks arrived over several polls, none twice


async def test_server_sent_events_carry_every_chunk_then_the_final_status(tmp_path: Path) -> None:
    async with running(tmp_path, TOYS) as cb:
        job_id = await cb.run("counter", {"n": 3, "pause_s": 0.05})
        async with cb.http.stream(
            "GET", f"/v2/counter/stream/{job_id}", headers={"Accept": "text/event-stream"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = []
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, orjson.loads(line[6:])))
        assert events[:3] == [("chunk", {"i": 0}), ("chunk", {"i": 1}), ("chunk", {"i": 2})]
        kind, final = events[3]
        assert kind == "done" and final["status"] == "COMPLETED"
        assert final["output"] == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_a_generator_that_fails_midway_keeps_its_chunks_and_its_error(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, TOYS) as cb:
        job_id = await cb.run("counter", {"n": 5, "fail_at": 2})
        job = await cb.wait_job(job_id)
        assert job["status"] == "FAILED" and job["error"] == "failed at chunk 2"
        body = (await cb.http.get(f"/v2/counter/stream/{job_id}")).json()
        assert body["status"] == "FAILED"
        assert [item["output"] for item in body["stream"]] == [{"i": 0}, {"i": 1}]
